//! Shared by the store's test binaries: a store on `SimFs` or on a real
//! temporary directory, and a macro that runs a test body on both.

#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::sync::Arc;

use tearline_refstore::{Store, StoreError, StoreOptions};
use tearline_sim_fs::{Clock, Fs, RealFs, SimConfig, SimFs, SystemClock};

/// A filesystem, a clock, and a root for a store on it.
pub struct Env {
    pub fs: Arc<dyn Fs>,
    pub other_process: Arc<dyn Fs>,
    pub clock: Arc<dyn Clock>,
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Env {
    pub fn sim() -> Env {
        let sim = SimFs::new(SimConfig::with_seed(7));
        Env {
            other_process: Arc::new(sim.spawn_process()),
            clock: Arc::new(sim.clock()),
            fs: Arc::new(sim),
            root: PathBuf::from("/store"),
            _tmp: None,
        }
    }

    /// A store at `/store` on this simulated machine's process.
    pub fn on(sim: &SimFs) -> Env {
        Env {
            other_process: Arc::new(sim.spawn_process()),
            clock: Arc::new(sim.clock()),
            fs: Arc::new(sim.clone()),
            root: PathBuf::from("/store"),
            _tmp: None,
        }
    }

    pub fn real() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        Env {
            fs: Arc::new(RealFs),
            other_process: Arc::new(RealFs),
            clock: Arc::new(SystemClock),
            root: tmp.path().join("store"),
            _tmp: Some(tmp),
        }
    }

    pub fn init(&self) {
        Store::init(Arc::clone(&self.fs), Arc::clone(&self.clock), &self.root).expect("init");
    }

    pub fn open(&self, options: StoreOptions) -> Result<Store, StoreError> {
        Store::open(Arc::clone(&self.fs), Arc::clone(&self.clock), &self.root, options)
    }

    pub fn open_in_other_process(&self, options: StoreOptions) -> Result<Store, StoreError> {
        Store::open(
            Arc::clone(&self.other_process),
            Arc::clone(&self.clock),
            &self.root,
            options,
        )
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn on_simfs() {
                    super::$name(&crate::common::Env::sim());
                }
                #[test]
                fn on_realfs() {
                    super::$name(&crate::common::Env::real());
                }
            }
        )*
    };
}
