//! Documents added per second by the reference store, on `SimFs` and on a
//! real temporary directory (`RealFs`), measured in one run.
//!
//! Run with `cargo bench -p tearline-refstore --bench add_documents`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tearline_refstore::{Store, StoreOptions};
use tearline_sim_fs::{Clock, Fs, RealFs, SimConfig, SimFs, SystemClock};

const DOCUMENTS: usize = 300;

fn document(i: usize) -> String {
    format!(
        "Document {i}\n\nA paragraph about topic {} and topic {}, long enough to chunk.\n\n{}",
        i % 17,
        i % 5,
        "More body text for the chunker. ".repeat(40)
    )
}

fn add_all(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, root: &Path) -> Duration {
    Store::init(Arc::clone(&fs), Arc::clone(&clock), root).expect("init");
    let mut store = Store::open(fs, clock, root, StoreOptions::default()).expect("open");
    let started = Instant::now();
    for i in 0..DOCUMENTS {
        store
            .add(&format!("doc-{i:04}.md"), document(i).as_bytes())
            .expect("add");
    }
    let elapsed = started.elapsed();
    assert!(store.verify().expect("verify").is_clean());
    elapsed
}

fn main() {
    let sim = SimFs::new(SimConfig::with_seed(1));
    let sim_time = add_all(Arc::new(sim.clone()), Arc::new(sim.clock()), Path::new("/store"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let real_time = add_all(Arc::new(RealFs), Arc::new(SystemClock), &tmp.path().join("store"));
    let rate = |t: Duration| DOCUMENTS as f64 / t.as_secs_f64();
    println!("{:<10} {:>12} {:>10}", "fs", "docs/s", "ms total");
    println!(
        "{:<10} {:>12.0} {:>10.1}",
        "SimFs",
        rate(sim_time),
        sim_time.as_secs_f64() * 1e3
    );
    println!(
        "{:<10} {:>12.0} {:>10.1}",
        "RealFs",
        rate(real_time),
        real_time.as_secs_f64() * 1e3
    );
    println!("SimFs / RealFs throughput: {:.1}x", rate(sim_time) / rate(real_time));
}
