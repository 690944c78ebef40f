//! A failed fsync is the loss of what was written (Linux: after `fsync`
//! returns `EIO` the dirty pages are marked clean, and a retry returns 0
//! with the data still not on disk). An add or a replace with an `EIO` at
//! each of its file fsyncs either fails saying nothing changed (and a power
//! cut then shows the old state), or reports what it did honestly; never
//! acknowledged on data that a power cut takes back.
//!
//! `SimFs` drops a file's dirty data on a failed fsync by default (Linux's
//! rule), so the known-bad `RetriesFsync`, which fsyncs again and carries
//! on, loses an acknowledged add; the real store does not.

use std::path::Path;
use std::sync::Arc;

use tearline_refstore::{Flaw, Store, StoreError, StoreOptions};
use tearline_sim_fs::{CrashChoice, Fault, FaultPlan, PersistenceModel, SimConfig, SimFs, SimSnapshot, SyscallFilter};

const OLD: &str = "Old\n\nThe version before.";
const NEW: &str = "New\n\nThe version after, about fsync.";

fn open(sim: &SimFs, flaw: Option<Flaw>) -> Store {
    let options = StoreOptions {
        flaw,
        ..StoreOptions::default()
    };
    Store::open(
        Arc::new(sim.clone()),
        Arc::new(sim.clock()),
        Path::new("/store"),
        options,
    )
    .expect("open")
}

/// A store holding `a.md` (old), durable.
fn prepared() -> SimSnapshot {
    let sim = SimFs::new(SimConfig::with_seed(31));
    Store::init(Arc::new(sim.clone()), Arc::new(sim.clock()), Path::new("/store")).expect("init");
    open(&sim, None).add("a.md", OLD.as_bytes()).expect("add");
    sim.snapshot()
}

fn boot(snapshot: &SimSnapshot) -> SimFs {
    snapshot.boot(
        PersistenceModel::NothingUnsynced,
        &CrashChoice::nothing(snapshot.pending_ops()),
    )
}

/// What each `EIO` case broke, for the store with `flaw`: `(name, n)` for
/// an add of `name` with `EIO` at its `n`-th file fsync.
fn broken_by_failed_fsyncs(flaw: Option<Flaw>) -> Vec<String> {
    let start = prepared();
    let mut broken = Vec::new();
    for name in ["a.md", "b.md"] {
        let old = (name == "a.md").then_some(OLD);
        // The probe: how many file fsyncs the add makes.
        let probe = boot(&start);
        let before = probe.syscall_count();
        open(&probe, flaw).add(name, NEW.as_bytes()).expect("probe");
        let syncs = probe
            .trace()
            .entries()
            .iter()
            .filter(|e| e.index >= before && SyscallFilter::file_syncs().matches(e.op, &e.path))
            .count() as u64;
        assert!(syncs > 0);
        for n in 1..=syncs {
            let sim = boot(&start);
            let mut store = open(&sim, flaw);
            sim.set_fault_plan(FaultPlan::none().nth(SyscallFilter::file_syncs(), n, Fault::EIO));
            let result = store.add(name, NEW.as_bytes());
            sim.set_fault_plan(FaultPlan::none());
            drop(store);
            let what = format!("{name}, EIO at file fsync {n} of {syncs}");
            // Which contents may the document have after a power cut?
            let allowed: Vec<Option<&str>> = match &result {
                Ok(_) => vec![Some(NEW)],
                Err(StoreError::NothingChanged { .. }) => vec![old],
                Err(StoreError::CommittedNotIndexed { .. }) => vec![Some(NEW)],
                Err(_) => vec![old, Some(NEW)],
            };
            let rebooted = sim.reboot_with(
                PersistenceModel::NothingUnsynced,
                &CrashChoice::nothing(sim.snapshot().pending_ops()),
            );
            let store = open(&rebooted, None);
            let found = store.get(name).expect("get").map(|d| d.content);
            if !allowed.contains(&found.as_deref()) {
                broken.push(format!(
                    "{what}: the add returned {:?}, after a power cut {name} holds {found:?}",
                    result.as_ref().map(drop).map_err(ToString::to_string)
                ));
            }
            let verify = store.verify().expect("verify");
            if !verify.is_clean() {
                broken.push(format!("{what}: verify after a power cut: {verify:?}"));
            }
        }
    }
    broken
}

#[test]
fn an_add_whose_fsync_fails_is_not_acknowledged_on_data_that_is_not_durable() {
    let broken = broken_by_failed_fsyncs(None);
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn a_store_that_retries_a_failed_fsync_loses_an_acknowledged_add() {
    let broken = broken_by_failed_fsyncs(Some(Flaw::RetriesFsync));
    assert!(!broken.is_empty(), "RetriesFsync was not caught");
    eprintln!("caught: {broken:#?}");
}
