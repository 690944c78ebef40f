//! What the service's zero-downtime reads cost each write, on a real temp
//! dir: the store's own `add`, versus the same `add` through
//! [`Service::write_in_place`], which also keeps readers out while it
//! writes and then opens a fresh read-only view (an integrity check of the
//! index and a CRC of every vector) before it lets them back. Measured in
//! one run as the store grows, so the per-write price of the view, which
//! grows with the store, is shown beside the write it rides on.
//!
//! Run with `cargo bench -p tearline-service --bench write_cost`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tearline_refstore::{Store, StoreOptions};
use tearline_service::{Keys, Service, ServiceOptions};
use tearline_sim_fs::{Clock, Fs, RealFs, SystemClock};

/// Store sizes (documents already indexed when the timed writes start).
const SIZES: [usize; 3] = [250, 1_000, 4_000];
/// Timed writes per size and way.
const WRITES: usize = 60;

fn content(i: usize) -> String {
    format!("document {i}: what a document service writes, one put at a time, with its readers kept whole")
}

/// A store at `root` holding `documents` documents.
fn store_with(fs: &Arc<dyn Fs>, clock: &Arc<dyn Clock>, root: &Path, documents: usize) {
    Store::init(Arc::clone(fs), Arc::clone(clock), root).expect("init");
    let staging = root.with_extension("staging");
    std::fs::create_dir_all(&staging).expect("staging dir");
    for i in 0..documents {
        std::fs::write(staging.join(format!("doc-{i:05}.md")), content(i)).expect("staged");
    }
    let mut store = Store::open(Arc::clone(fs), Arc::clone(clock), root, StoreOptions::default()).expect("open");
    store.import(&staging).expect("import");
}

/// Seconds per write: `WRITES` adds of new documents by `write`.
fn per_write(mut write: impl FnMut(&str, &[u8])) -> f64 {
    let started = Instant::now();
    for i in 0..WRITES {
        write(&format!("timed-{i:03}.md"), content(i).as_bytes());
    }
    started.elapsed().as_secs_f64() / WRITES as f64
}

fn main() {
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    println!(
        "{:>10} {:>14} {:>16} {:>8}",
        "documents", "store add ms", "service put ms", "ratio"
    );
    for documents in SIZES {
        let tmp = tempfile::tempdir().expect("temp dir");

        let plain = tmp.path().join("plain");
        store_with(&fs, &clock, &plain, documents);
        let mut store =
            Store::open(Arc::clone(&fs), Arc::clone(&clock), &plain, StoreOptions::default()).expect("open");
        let store_add = per_write(|name, bytes| {
            store.add(name, bytes).expect("add");
        });
        drop(store);

        let served = tmp.path().join("served");
        store_with(&fs, &clock, &served, documents);
        let service = Service::open(
            Arc::clone(&fs),
            Arc::clone(&clock),
            ServiceOptions::new(
                served,
                Keys::parse_list("admin:bench-key-0123456789").expect("keys"),
                tmp.path(),
            ),
        )
        .expect("service");
        let service_put = per_write(|name, bytes| {
            service.write_in_place(|store| store.add(name, bytes)).expect("put");
        });

        println!(
            "{documents:>10} {:>14.2} {:>16.2} {:>7.1}x",
            store_add * 1e3,
            service_put * 1e3,
            service_put / store_add
        );
    }
}
