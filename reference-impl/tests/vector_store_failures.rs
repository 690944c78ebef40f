//! The dual write when the vector store misbehaves as a remote one does:
//! unreachable, failing, or timing out before or after applying a write (an
//! ambiguous outcome). Nothing is left inconsistent once recovery has run.

use std::path::Path;
use std::sync::Arc;

use tearline_refstore::vectors::{FaultMode, FaultSwitch, FaultyVectorStore};
use tearline_refstore::{FailureEffect, Store, StoreError, StoreOptions};
use tearline_sim_fs::FsExt;
use tearline_sim_fs::{SimConfig, SimFs};

const ROOT: &str = "/store";
const TEXT: &str = "Dual writes\n\nAn intent is committed before the vector is written.";

fn machine() -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(5));
    Store::init(Arc::new(fs.clone()), Arc::new(fs.clock()), Path::new(ROOT)).expect("init");
    fs
}

fn open(fs: &SimFs, switch: &FaultSwitch) -> Result<Store, StoreError> {
    open_as(fs, switch, StoreOptions::default())
}

fn open_read_only(fs: &SimFs, switch: &FaultSwitch) -> Result<Store, StoreError> {
    open_as(fs, switch, StoreOptions::read_only())
}

/// Opens the store with `options`, its vector store behind `switch`.
fn open_as(fs: &SimFs, switch: &FaultSwitch, options: StoreOptions) -> Result<Store, StoreError> {
    let switch = switch.clone();
    let options = StoreOptions {
        wrap_vectors: Some(Box::new(move |inner| {
            Box::new(FaultyVectorStore::new(inner, switch.clone()))
        })),
        ..options
    };
    Store::open(Arc::new(fs.clone()), Arc::new(fs.clock()), Path::new(ROOT), options)
}

fn assert_clean_with(store: &Store, expected_docs: &[&str]) {
    let report = store.verify().expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.list().expect("list"), expected_docs);
}

#[test]
fn a_timeout_after_the_write_was_applied_is_resolved_by_what_the_store_holds() {
    let fs = machine();
    let switch = FaultSwitch::new();
    let mut store = open(&fs, &switch).expect("open");
    switch.set(FaultMode::TimeoutAfterApply);
    let err = store.add("doc.md", TEXT.as_bytes()).expect_err("the add times out");
    assert!(err.to_string().contains("timed out"), "{err}");
    // Recovery could not read the vector store either (reads time out too):
    // the intent waits.
    switch.set(FaultMode::Healthy);
    assert_eq!(store.status().expect("status").pending_intents, 1);
    let report = store.recover().expect("recover");
    assert_eq!(
        report.completed,
        ["doc.md"],
        "the vector was there: the add is completed"
    );
    assert_clean_with(&store, &["doc.md"]);
    assert_eq!(store.get("doc.md").expect("get").expect("present").content, TEXT);
}

#[test]
fn a_timeout_before_the_write_is_completed_from_the_source_by_recovery() {
    let fs = machine();
    let switch = FaultSwitch::new();
    let mut store = open(&fs, &switch).expect("open");
    switch.set(FaultMode::TimeoutBeforeApply);
    store.add("doc.md", TEXT.as_bytes()).expect_err("the add times out");
    drop(store);
    switch.set(FaultMode::Healthy);
    let store = open(&fs, &switch).expect("reopen recovers");
    assert_eq!(store.open_report().recovery.completed, ["doc.md"]);
    assert_clean_with(&store, &["doc.md"]);
}

#[test]
fn an_unreachable_vector_store_refuses_writes_up_front_and_serves_reads_until_it_returns() {
    let fs = machine();
    let switch = FaultSwitch::new();
    let mut store = open(&fs, &switch).expect("open");
    store.add("a.md", TEXT.as_bytes()).expect("add while healthy");
    switch.set(FaultMode::Unavailable);
    let err = store.add("b.md", TEXT.as_bytes()).expect_err("unavailable");
    assert_eq!(err.effect(), FailureEffect::Unavailable, "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert!(
        !fs.exists(Path::new("/store/source/b.md")).expect("exists"),
        "refused before anything was written"
    );
    drop(store);
    // A writable open still opens (it settles what the files and the index
    // alone can, here nothing) and says the vectors wait; its writes refuse.
    let trace_before = fs.trace().entries().len();
    let mut writer = open(&fs, &switch).expect("a writable open while it is down");
    assert!(
        writer.open_report().vectors_deferred.is_some(),
        "{:?}",
        writer.open_report()
    );
    let err = writer.add("b.md", TEXT.as_bytes()).expect_err("writes wait");
    assert_eq!(err.effect(), FailureEffect::Unavailable, "{err}");
    assert!(
        fs.trace().entries()[trace_before..]
            .iter()
            .all(|e| !e.op.writes() || e.path.contains("index.db")),
        "nothing to settle: the open changed nothing but SQLite's own files"
    );
    let reader = open_read_only(&fs, &switch).expect("a read-only open while it is down");
    assert_eq!(reader.list().expect("list while down"), ["a.md"]);
    assert_eq!(reader.get("a.md").expect("get").expect("present").content, TEXT);
    drop(reader);
    // Back: the handle opened in the outage writes through, vectors and all.
    switch.set(FaultMode::Healthy);
    writer.add("b.md", TEXT.as_bytes()).expect("an add once it is back");
    assert_clean_with(&writer, &["a.md", "b.md"]);
    drop(writer);
    let store = open(&fs, &switch).expect("opens once it is back");
    assert_clean_with(&store, &["a.md", "b.md"]);
}

#[test]
fn a_replacement_whose_vector_write_fails_is_completed_by_recovery() {
    let fs = machine();
    let switch = FaultSwitch::new();
    let mut store = open(&fs, &switch).expect("open");
    let first = store.add("doc.md", TEXT.as_bytes()).expect("add");
    switch.set(FaultMode::IoError);
    store
        .add("doc.md", b"Second\n\nA replacement.")
        .expect_err("the new vector cannot be written");
    switch.set(FaultMode::Healthy);
    let report = store.recover().expect("recover");
    assert_eq!(report.completed, ["doc.md"], "the new source is in place: complete it");
    assert_clean_with(&store, &["doc.md"]);
    let doc = store.get("doc.md").expect("get").expect("present");
    assert_ne!(doc.vector_id, first.vector_id);
    assert_eq!(store.status().expect("status").vectors, 1, "the old vector is gone");
}

#[test]
fn a_failed_delete_of_a_replaced_vector_is_finished_by_recovery() {
    use tearline_sim_fs::{Fault, FaultPlan, SyscallFilter, SyscallKind};
    let fs = machine();
    let switch = FaultSwitch::new();
    let mut store = open(&fs, &switch).expect("open");
    let first = store.add("doc.md", TEXT.as_bytes()).expect("add");
    // The replacement writes two vector records: the new vector, then the old
    // one's tombstone. Fail the second: the add is already acknowledged.
    let vector_writes = SyscallFilter::ops(&[SyscallKind::Write])
        .path("*/vectors/*")
        .expect("glob");
    fs.set_fault_plan(FaultPlan::none().nth(vector_writes, 2, Fault::EIO));
    let outcome = store.add("doc.md", b"Second\n\nA replacement.").expect("acknowledged");
    fs.set_fault_plan(FaultPlan::none());
    assert!(outcome.replaced);
    let status = store.status().expect("status");
    assert_eq!(
        (status.vectors, status.pending_intents),
        (2, 1),
        "the old vector waits on a drop intent"
    );
    assert!(
        store.verify().expect("verify").orphan_vectors.is_empty(),
        "an intent names it: not an orphan"
    );
    drop(store);
    let store = open(&fs, &switch).expect("reopen recovers");
    assert_eq!(store.open_report().recovery.dropped_vectors, [first.vector_id]);
    assert_clean_with(&store, &["doc.md"]);
    assert_eq!(store.status().expect("status").vectors, 1);
}
