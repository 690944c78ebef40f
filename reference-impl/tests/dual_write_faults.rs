//! The two-phase dual write under faults: a power cut at every syscall of an
//! add, a replace and a remove (SQLite's and the vector store's alike), and
//! EIO / ENOSPC at each. After reopening (which recovers): the index and the
//! vector store agree both ways, nothing is pending, and the document is
//! entirely the new version if the call returned `Ok`, else entirely the new
//! or entirely the old one.

use std::path::Path;
use std::sync::Arc;

use tearline_refstore::{Store, StoreOptions};
use tearline_sim_fs::{CrashChoice, Fault, FaultPlan, PersistenceModel, SimConfig, SimFs, SimSnapshot, SyscallKind};

const ROOT: &str = "/store";
const OLD: &str = "Old version\n\nThe document as it was before.";
const NEW: &str = "New version\n\nThe document as the operation leaves it.";

/// What is being done to `doc.md`.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Add it (it does not exist).
    Add,
    /// Replace its old version.
    Replace,
    /// Remove it.
    Remove,
}

impl Op {
    /// The states the document may legitimately be in afterwards.
    fn allowed(&self, acknowledged: bool) -> Vec<Option<&'static str>> {
        match (self, acknowledged) {
            (Op::Add, true) | (Op::Replace, true) => vec![Some(NEW)],
            (Op::Remove, true) => vec![None],
            (Op::Add, false) => vec![None, Some(NEW)],
            (Op::Replace, false) => vec![Some(OLD), Some(NEW)],
            (Op::Remove, false) => vec![Some(OLD), None],
        }
    }

    fn run(&self, store: &mut Store) -> bool {
        match self {
            Op::Add | Op::Replace => store.add("doc.md", NEW.as_bytes()).is_ok(),
            Op::Remove => store.remove("doc.md").is_ok(),
        }
    }
}

fn open(fs: &SimFs) -> Store {
    Store::open(
        Arc::new(fs.clone()),
        Arc::new(fs.clock()),
        Path::new(ROOT),
        StoreOptions::default(),
    )
    .unwrap_or_else(|e| panic!("the store must open and recover: {e}"))
}

/// A machine with an initialised store (holding the old version unless the
/// op adds), and that store opened.
fn setup(op: Op) -> (SimFs, Store) {
    let fs = SimFs::new(SimConfig::with_seed(21));
    Store::init(Arc::new(fs.clone()), Arc::new(fs.clock()), Path::new(ROOT)).expect("init");
    let mut store = open(&fs);
    store.add("other.md", b"Another\n\nA bystander document.").expect("add");
    if !matches!(op, Op::Add) {
        store.add("doc.md", OLD.as_bytes()).expect("add old");
    }
    (fs, store)
}

/// Opens (recovering) and checks the invariants; `what` names the case.
fn check(fs: &SimFs, op: Op, acknowledged: bool, what: &str) {
    let store = open(fs);
    let report = store.verify().expect("verify");
    assert!(
        report.is_clean(),
        "{what}: {report:?}\nrecovery: {:?}",
        store.open_report().recovery
    );
    let doc = store.get("doc.md").expect("get").map(|d| d.content);
    let allowed = op.allowed(acknowledged);
    assert!(
        allowed.iter().any(|a| a.map(str::to_string) == doc),
        "{what}: doc.md is {doc:?}, allowed {allowed:?}"
    );
    assert!(
        store.get("other.md").expect("get").is_some(),
        "{what}: the bystander was lost"
    );
}

/// Right after an acknowledged operation, before any recovery: the document
/// is entirely the new version and its vector is in place. (A later `drop`
/// of a replaced vector may still be pending; the old vector is then named by
/// its intent, so it is no orphan.)
fn assert_acknowledged_without_recovery(store: &Store, op: Op, what: &str) {
    let report = store.verify().expect("verify");
    assert_eq!(report.integrity, "ok", "{what}");
    assert!(report.missing_vectors.is_empty(), "{what}: {report:?}");
    assert!(report.orphan_vectors.is_empty(), "{what}: {report:?}");
    assert!(
        report.stale.is_empty() && report.missing_sources.is_empty(),
        "{what}: {report:?}"
    );
    let doc = store.get("doc.md").expect("get").map(|d| d.content);
    assert_eq!(doc, op.allowed(true)[0].map(str::to_string), "{what}");
}

/// The post-crash states a point is checked under.
fn crash_states(snapshot: &SimSnapshot) -> Vec<(PersistenceModel, CrashChoice)> {
    let mut states = Vec::new();
    for model in PersistenceModel::ALL {
        match snapshot.distinct_crashes(model, 4) {
            Some(choices) => states.extend(choices.into_iter().map(|c| (model, c))),
            None => states.extend((0..2).map(|i| (model, snapshot.sample_crash(model, i)))),
        }
    }
    states
}

fn power_cut_at_every_syscall(op: Op) {
    let (fs, mut store) = setup(op);
    fs.record_snapshots(true);
    let acknowledged = op.run(&mut store);
    assert!(acknowledged, "{op:?} fails without faults");
    assert_acknowledged_without_recovery(&store, op, "the fault-free run");
    let mut snapshots = fs.take_snapshots();
    fs.record_snapshots(false);
    snapshots.push(fs.snapshot());
    let last = snapshots.len() - 1;
    let mut states = 0;
    for (i, snapshot) in snapshots.iter().enumerate() {
        for (model, choice) in crash_states(snapshot) {
            let after = snapshot.boot(model, &choice);
            let what = format!(
                "{op:?}, power cut at syscall {} under {model} ({choice})",
                snapshot.syscall_index()
            );
            check(&after, op, i == last, &what);
            states += 1;
        }
    }
    eprintln!(
        "{op:?}: {} crash points, {states} post-crash states checked",
        snapshots.len()
    );
}

fn errors_at_every_syscall(op: Op) {
    // Probe once to learn the syscalls of the operation.
    let (fs, mut store) = setup(op);
    let start = fs.syscall_count();
    op.run(&mut store);
    let ops: Vec<SyscallKind> = fs.trace().entries()[start as usize..].iter().map(|e| e.op).collect();
    drop(store);
    let mut cases = 0;
    for (offset, kind) in ops.iter().enumerate() {
        for fault in [Fault::EIO, Fault::ENOSPC] {
            if !fault.applies_to(*kind) {
                continue;
            }
            let (fs, mut store) = setup(op);
            let at = fs.syscall_count() + offset as u64;
            fs.set_fault_plan(FaultPlan::none().at(at, fault));
            let acknowledged = op.run(&mut store);
            fs.set_fault_plan(FaultPlan::none());
            let what = format!("{op:?}, {fault} at syscall {at} ({kind})");
            if acknowledged {
                assert_acknowledged_without_recovery(&store, op, &what);
            }
            drop(store);
            check(&fs, op, acknowledged, &what);
            let pending = fs.snapshot().pending_ops();
            let rebooted = fs.reboot_with(PersistenceModel::NothingUnsynced, &CrashChoice::nothing(pending));
            check(&rebooted, op, acknowledged, &format!("{what}, then a power cut"));
            cases += 1;
        }
    }
    eprintln!("{op:?}: {} syscalls, {cases} error cases checked", ops.len());
}

#[test]
fn add_survives_a_power_cut_at_every_syscall() {
    power_cut_at_every_syscall(Op::Add);
}

#[test]
fn replace_survives_a_power_cut_at_every_syscall() {
    power_cut_at_every_syscall(Op::Replace);
}

#[test]
fn remove_survives_a_power_cut_at_every_syscall() {
    power_cut_at_every_syscall(Op::Remove);
}

#[test]
fn add_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Add);
}

#[test]
fn replace_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Replace);
}

#[test]
fn remove_survives_eio_and_enospc_at_every_syscall() {
    errors_at_every_syscall(Op::Remove);
}
