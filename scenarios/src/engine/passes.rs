//! The checks after a recovery, each run once per distinct machine.
//!
//! After every recovery that kept every invariant, recovery-idempotent
//! opens the store a second time, then cuts the power (nothing unsynced
//! survives) and opens it a third time on the rebooted machine: right after
//! the recovery if it left anything unsynced, and in the middle of the
//! second open. Recoveries from different faults mostly end in the same few
//! stores, so most of those machines are ones an earlier case of the matrix
//! already checked: in long-mixed, 18,771 third opens booted 4,748 distinct
//! machines, and 13,186 second opens started from 7,070. A check that
//! passed there passes again, and is not run again.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tearline_model::{Observation, RemoteFault};
use tearline_sim_fs::{PageHashes, SimFs};

/// The checks after a recovery that passed, for the cases of one probe's
/// matrix: the engine remembers them only while it deduplicates states.
pub(crate) struct Passes {
    /// The third opens, each on a rebooted machine that is thrown away
    /// after it.
    pub reboots: PassedChecks,
    /// The whole check after a recovery (the second open and the third
    /// ones), where the case throws its machine away after it (a power
    /// cut's, or a last recovery's, unless the scenario's cause of failure
    /// persists): only the lock invariant reads what the machine did, and a
    /// pass is remembered only where nobody held the lock before the second
    /// open and it kept the invariant on its own.
    pub reopens: PassedChecks,
}

impl Passes {
    /// Remembers third opens if `reboots`, whole checks if `reopens`
    /// (which skip syscalls of the case's machine, so not where its trace
    /// is hashed).
    pub(crate) fn new(reboots: bool, reopens: bool) -> Self {
        Self {
            reboots: PassedChecks::new(reboots),
            reopens: PassedChecks::new(reopens),
        }
    }

    /// Remembers nothing: every check runs.
    pub(crate) fn off() -> Self {
        Self::new(false, false)
    }
}

/// Checks that passed, by the machine they started from
/// ([`SimFs::state_key`], which holds everything a store can tell apart
/// but the clock and the syscall numbering, as the matrix's deduplication
/// assumes), each with the observation it compared against and the most
/// syscalls any of its opens took. A check of an equal machine, against an
/// equal observation, with more syscalls of budget than that, passes too:
/// it is not run again. Only passes are kept; a failure is checked every
/// time, so its evidence is the case's own.
pub(crate) struct PassedChecks {
    remember: bool,
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    pages: PageHashes,
    passed: BTreeMap<u64, Vec<Pass>>,
}

/// One check that passed.
struct Pass {
    recovered: Observation,
    remote: RemoteFault,
    syscalls: u64,
}

impl PassedChecks {
    /// Remembers passes if `remember`.
    fn new(remember: bool) -> Self {
        Self {
            remember,
            known: Mutex::new(Known::default()),
        }
    }

    /// The key of `machine` before the check, if passes are remembered.
    pub(crate) fn key(&self, machine: &SimFs) -> Option<u64> {
        self.remember.then(|| machine.state_key(&mut self.known().pages))
    }

    /// If the check of a machine keyed `key`, against `recovered` with the
    /// remote dependency `remote`, already passed in fewer syscalls than
    /// `budget` (an open at most): how many it took.
    pub(crate) fn passed(&self, key: u64, recovered: &Observation, remote: RemoteFault, budget: u64) -> Option<u64> {
        let known = self.known();
        let passes = known.passed.get(&key)?;
        passes
            .iter()
            .find(|p| p.remote == remote && p.syscalls < budget && p.recovered == *recovered)
            .map(|p| p.syscalls)
    }

    /// Keeps a pass of a machine keyed `key` whose opens took at most
    /// `syscalls` each.
    pub(crate) fn remember(&self, key: u64, recovered: &Observation, remote: RemoteFault, syscalls: u64) {
        self.known().passed.entry(key).or_default().push(Pass {
            recovered: recovered.clone(),
            remote,
            syscalls,
        });
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tearline_model::{
        Access, Capabilities, Env, Model, Observation, Operation, RemoteFault, StoreFactory, StoreFailure,
        StoreUnderTest,
    };
    use tearline_sim_fs::{FsExt, LockGuard, SimConfig, SimFs};

    use super::Passes;
    use crate::engine::driver::{self, Reuse};
    use crate::engine::scenario::store_root;

    /// A store whose writable open leaves a mark, holding its lock, where
    /// there is none, and removes the mark where there is one: holding the
    /// lock if `tidies_locked`, else before taking it. Unlocked, it wipes
    /// without the lock in the second open after a recovery only: the
    /// recovery, its observation and the second's agree.
    struct Marks {
        tidies_locked: bool,
    }

    struct Handle {
        _lock: Box<dyn LockGuard>,
    }

    impl StoreUnderTest for Handle {
        fn apply(&mut self, _: &Operation) -> Result<(), StoreFailure> {
            Err(StoreFailure::new("nothing to apply"))
        }

        fn observe(&self) -> Result<Observation, StoreFailure> {
            Ok(Observation {
                integrity_ok: true,
                ..Observation::default()
            })
        }
    }

    impl StoreFactory for Marks {
        fn name(&self) -> &str {
            "marks"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                exclusive_lock: true,
                ..Capabilities::default()
            }
        }

        fn init(&self, env: &Env) -> Result<(), StoreFailure> {
            env.fs
                .create_dir_all_durable(&env.root.join("data"))
                .map_err(StoreFailure::new)
        }

        fn open(&self, env: &Env, _: Access) -> Result<Box<dyn StoreUnderTest>, StoreFailure> {
            let mark = env.root.join("data/mark");
            let marked = env.fs.exists(&mark).map_err(StoreFailure::new)?;
            if marked && !self.tidies_locked {
                env.fs.remove_file(&mark).map_err(StoreFailure::new)?;
            }
            let lock = env.fs.try_lock(&env.root.join("LOCK")).map_err(StoreFailure::new)?;
            if !marked {
                env.fs.write_file(&mark, b"opened").map_err(StoreFailure::new)?;
            } else if self.tidies_locked {
                env.fs.remove_file(&mark).map_err(StoreFailure::new)?;
            }
            Ok(Box::new(Handle { _lock: lock }))
        }

        fn source_dir(&self, _: &Env) -> Option<PathBuf> {
            None
        }

        fn protected_paths(&self, env: &Env) -> Vec<String> {
            vec![format!("{}/data/*", env.root.display())]
        }

        fn lock_file(&self, env: &Env) -> Option<PathBuf> {
            Some(env.root.join("LOCK"))
        }
    }

    /// Two equal machines, each recovered and checked in turn with the same
    /// passes: what each second check broke (the lock invariant over its
    /// trace), and how many syscalls it made.
    fn check_twice(factory: &Marks) -> [(Option<tearline_model::Violation>, u64); 2] {
        let first = SimFs::new(SimConfig::with_seed(1));
        let env = driver::env_for(&first, RemoteFault::Healthy);
        first.create_dir_all(store_root()).expect("root");
        factory.init(&env).expect("init");
        let second = first.duplicate_machine();
        let passes = Passes::new(true, true);
        let reuse = Reuse {
            reboots: Some(&passes.reboots),
            reopens: Some(&passes.reopens),
        };
        [first, second].map(|machine| {
            let start = machine.syscall_count();
            let recovered = driver::recover_and_check(
                factory,
                &machine,
                &Model::new(),
                start + 10_000,
                RemoteFault::Healthy,
                false,
                reuse,
            );
            assert!(recovered.violations.is_empty(), "{:?}", recovered.violations);
            (
                driver::check_machine_trace(factory, &machine),
                machine.syscall_count() - start,
            )
        })
    }

    #[test]
    fn a_check_after_a_recovery_that_passed_is_not_run_again_on_an_equal_machine() {
        let [(first, checked), (second, reused)] = check_twice(&Marks { tidies_locked: true });
        assert_eq!((first, second), (None, None));
        assert!(
            reused < checked,
            "the second machine reopened nothing ({reused} of {checked} syscalls)"
        );
    }

    #[test]
    fn a_check_whose_second_open_wipes_without_the_lock_is_run_again() {
        let [(first, checked), (second, rerun)] = check_twice(&Marks { tidies_locked: false });
        assert!(first.is_some(), "the second open removes the mark unlocked");
        assert_eq!(second, first, "found again on the equal machine");
        assert_eq!(rerun, checked);
    }
}
