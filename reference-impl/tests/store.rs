//! The reference store's operations, on `SimFs` and on a real temporary
//! directory: the same test bodies must pass on both.

#[macro_use]
mod common;

use std::sync::Arc;

use common::Env;
use tearline_refstore::{RebuildMode, Store, StoreError, StoreOptions};

on_both!(
    documents_round_trip,
    search_finds_the_nearest_summary,
    replacing_a_document_drops_its_old_vector,
    removing_a_document_removes_everything,
    a_second_writer_is_refused_and_readers_are_not,
    the_lock_cannot_be_removed_or_replaced_under_its_holder,
    a_read_only_store_refuses_to_write,
    bad_input_gets_a_clear_error,
    init_twice_is_refused_and_open_needs_init,
    data_survives_reopening,
);

const CRASH: &str = "Crash safety\n\nWrite to a temp file, fsync it, rename it over the target, fsync the directory.";
const CAKE: &str = "Lemon cake\n\nButter, sugar, eggs, flour and the zest of two lemons.";
const FSYNC: &str = "Fsync semantics\n\nAn fsync makes a file's data durable but not its name in the directory.";

fn documents_round_trip(env: &Env) {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    let outcome = store.add("crash.md", CRASH.as_bytes()).expect("add");
    assert!(!outcome.replaced);
    let doc = store.get("crash.md").expect("get").expect("present");
    assert_eq!(doc.content, CRASH);
    assert_eq!(doc.summary, "Crash safety");
    assert_eq!(doc.vector_id, outcome.vector_id);
    assert_eq!(doc.chunks, 1);
    assert_eq!(store.get("absent.md").expect("get"), None);
    assert_eq!(store.list().expect("list"), ["crash.md"]);
    let verify = store.verify().expect("verify");
    assert!(verify.is_clean(), "{verify:?}");
    let status = store.status().expect("status");
    assert_eq!((status.documents, status.vectors, status.pending_intents), (1, 1, 0));
    assert!(status.writable);
}

fn search_finds_the_nearest_summary(env: &Env) {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    for (name, text) in [("crash.md", CRASH), ("cake.md", CAKE), ("fsync.md", FSYNC)] {
        store.add(name, text.as_bytes()).expect("add");
    }
    let hits = store.search("lemon cake recipe", 2).expect("search");
    assert_eq!(hits[0].name, "cake.md");
    assert_eq!(hits.len(), 2);
    assert!(hits[0].score > hits[1].score);
    let hits = store.search("fsync semantics", 1).expect("search");
    assert_eq!(hits[0].name, "fsync.md");
}

fn replacing_a_document_drops_its_old_vector(env: &Env) {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    let first = store.add("doc.md", CRASH.as_bytes()).expect("add");
    let second = store.add("doc.md", CAKE.as_bytes()).expect("replace");
    assert!(second.replaced);
    assert_ne!(first.vector_id, second.vector_id);
    let status = store.status().expect("status");
    assert_eq!((status.documents, status.vectors), (1, 1), "the old vector is gone");
    assert_eq!(store.get("doc.md").expect("get").expect("present").content, CAKE);
    assert!(store.verify().expect("verify").is_clean());
}

fn removing_a_document_removes_everything(env: &Env) {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    store.add("a.md", CRASH.as_bytes()).expect("add");
    store.add("b.md", CAKE.as_bytes()).expect("add");
    store.remove("a.md").expect("remove");
    assert_eq!(store.get("a.md").expect("get"), None);
    assert_eq!(store.list().expect("list"), ["b.md"]);
    assert!(env.fs.metadata(&env.root.join("source/a.md")).is_err());
    let status = store.status().expect("status");
    assert_eq!((status.documents, status.vectors), (1, 1));
    assert!(store.verify().expect("verify").is_clean());
    assert!(matches!(store.remove("a.md"), Err(StoreError::NotFound { .. })));
}

fn a_second_writer_is_refused_and_readers_are_not(env: &Env) {
    env.init();
    let mut writer = env.open(StoreOptions::default()).expect("open");
    writer.add("a.md", CRASH.as_bytes()).expect("add");
    let err = env
        .open_in_other_process(StoreOptions::default())
        .expect_err("second writer");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("locked by another process"), "{message}");
    assert!(message.contains("released when that process exits"), "{message}");
    assert!(!message.contains("delete"), "never invite deleting the lock: {message}");
    let reader = env.open_in_other_process(StoreOptions::read_only()).expect("reader");
    assert_eq!(reader.list().expect("list"), ["a.md"]);
    assert!(reader.verify().expect("verify").is_clean());
    drop(writer);
    env.open_in_other_process(StoreOptions::default())
        .expect("writer after the first closed");
}

fn a_read_only_store_refuses_to_write(env: &Env) {
    env.init();
    let mut reader = env.open(StoreOptions::read_only()).expect("open");
    assert!(reader.add("a.md", CRASH.as_bytes()).is_err());
    assert!(reader.recover().is_err());
    assert!(!reader.status().expect("status").writable);
}

fn bad_input_gets_a_clear_error(env: &Env) {
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    for bad in ["", ".hidden", "a/b.md", "../x"] {
        let err = store.add(bad, b"text").expect_err("invalid name");
        assert!(matches!(err, StoreError::InvalidName { .. }), "{bad:?}: {err}");
    }
    let err = store.add("binary.bin", &[0xff, 0xfe, 0x00]).expect_err("not text");
    assert!(matches!(err, StoreError::NotText { .. }), "{err}");
    assert!(
        store.verify().expect("verify").is_clean(),
        "refused input leaves nothing behind"
    );
    assert_eq!(store.status().expect("status").documents, 0);
}

fn init_twice_is_refused_and_open_needs_init(env: &Env) {
    let err = env.open(StoreOptions::default()).expect_err("not initialised");
    assert!(matches!(err, StoreError::NotInitialized { .. }), "{err}");
    env.init();
    let err = Store::init(Arc::clone(&env.fs), Arc::clone(&env.clock), &env.root).expect_err("twice");
    assert!(matches!(err, StoreError::AlreadyInitialized { .. }), "{err}");
}

fn data_survives_reopening(env: &Env) {
    env.init();
    {
        let mut store = env.open(StoreOptions::default()).expect("open");
        store.add("a.md", CRASH.as_bytes()).expect("add");
        store.add("b.md", CAKE.as_bytes()).expect("add");
    }
    let store = env.open(StoreOptions::default()).expect("reopen");
    assert!(store.open_report().recovery.is_empty(), "{:?}", store.open_report());
    assert_eq!(store.list().expect("list"), ["a.md", "b.md"]);
    assert_eq!(store.search("lemon", 1).expect("search")[0].name, "b.md");
}

/// A corrupt pointer: a read-only open refuses naming it; a writable open
/// rebuilds from the sources (more cases in `tests/damage.rs`).
#[test]
fn a_corrupt_generation_pointer_is_a_clear_error_and_a_writable_open_repairs_it() {
    let env = Env::sim();
    env.init();
    tearline_sim_fs::FsExt::write_file(env.fs.as_ref(), &env.root.join("CURRENT"), b"garbage").expect("write");
    let err = env.open(StoreOptions::read_only()).expect_err("corrupt pointer");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("CURRENT"));
    let store = env.open(StoreOptions::default()).expect("repaired");
    let repaired = store.open_report().repaired.clone().expect("a repair");
    assert_eq!(repaired.damaged, env.root.join("CURRENT"));
    assert!(store.verify().expect("verify").is_clean());
}

/// `verify` sees orphans both ways, and recovery repairs both.
#[test]
fn verify_reports_orphans_both_ways_and_recovery_repairs_them() {
    use tearline_refstore::vectors::{LocalVectorStore, OpenMode, VectorStore};
    let env = Env::sim();
    env.init();
    let linked = {
        let mut store = env.open(StoreOptions::default()).expect("open");
        store.add("a.md", CRASH.as_bytes()).expect("add");
        store.get("a.md").expect("get").expect("present").vector_id
    };
    // Behind the store's back: plant an orphan and delete a linked vector.
    {
        let dir = env.root.join("generations/gen-000001/vectors");
        let (mut vectors, _) =
            LocalVectorStore::open(Arc::clone(&env.fs), &dir, 64, OpenMode::ReadWrite).expect("vectors");
        vectors.upsert(999, &[0.125; 64]).expect("plant an orphan");
        vectors.delete(linked).expect("delete a linked vector");
    }
    let reader = env.open(StoreOptions::read_only()).expect("read-only");
    let report = reader.verify().expect("verify");
    assert_eq!(report.orphan_vectors, [999]);
    assert_eq!(report.missing_vectors, ["a.md"]);
    assert!(!report.is_clean());
    drop(reader);
    let store = env.open(StoreOptions::default()).expect("writable open recovers");
    let recovery = &store.open_report().recovery;
    assert_eq!(recovery.orphan_vectors_removed, [999]);
    assert_eq!(recovery.vectors_restored, ["a.md"]);
    assert!(store.verify().expect("verify").is_clean());
    assert_eq!(store.search("crash safety", 1).expect("search")[0].name, "a.md");
}

/// `reindex` follows the source file: an edit behind the store's back is
/// picked up, a deleted file's entry goes, and the dump shows the content.
#[test]
fn reindex_brings_one_entry_in_line_with_its_source() {
    use tearline_sim_fs::FsExt;
    let env = Env::sim();
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    store.add("a.md", CRASH.as_bytes()).expect("add");
    store.add("b.md", CAKE.as_bytes()).expect("add");
    env.fs
        .write_file(&env.root.join("source/a.md"), FSYNC.as_bytes())
        .expect("edit behind its back");
    assert_eq!(store.verify().expect("verify").stale, ["a.md"]);
    let outcome = store.reindex("a.md").expect("reindex").expect("still indexed");
    assert!(outcome.replaced);
    env.fs
        .remove_file(&env.root.join("source/b.md"))
        .expect("delete behind its back");
    assert_eq!(store.reindex("b.md").expect("reindex"), None);
    assert!(store.verify().expect("verify").is_clean());
    let dump = store.dump().expect("dump");
    assert_eq!(dump.documents.len(), 1);
    assert_eq!(dump.documents[0].name, "a.md");
    assert_eq!(dump.documents[0].summary, "Fsync semantics");
    assert!(dump.documents[0].vector.is_some());
    assert_eq!(store.reindex("absent.md").expect("nothing to do"), None);
}

/// The lock is the root directory: an operator who "cleans a stale lock"
/// finds no lock file to delete, cannot remove or replace the root while it
/// holds the store, and a second writer stays refused.
fn the_lock_cannot_be_removed_or_replaced_under_its_holder(env: &Env) {
    use tearline_sim_fs::FsExt;
    env.init();
    let mut writer = env.open(StoreOptions::default()).expect("open");
    writer.add("a.md", CRASH.as_bytes()).expect("add");
    let other = &env.other_process;
    let entries: Vec<String> = other
        .read_dir(&env.root)
        .expect("ls")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(
        !entries.iter().any(|n| n.contains("lock")),
        "no lock file to delete: {entries:?}"
    );
    assert!(other.remove_dir(&env.root).is_err(), "rmdir of the store's root");
    let replacement = env.root.with_extension("replacement");
    other.create_dir(&replacement).expect("mkdir");
    other.write_file(&replacement.join("f"), b"x").expect("write");
    assert!(other.rename(&replacement, &env.root).is_err(), "rename over the root");
    let err = env
        .open_in_other_process(StoreOptions::default())
        .expect_err("second writer");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    writer.add("b.md", CAKE.as_bytes()).expect("the first writer goes on");
    drop(writer);
    let next = env
        .open_in_other_process(StoreOptions::default())
        .expect("released on close");
    assert_eq!(next.list().expect("list"), ["a.md", "b.md"]);
}

/// A real source tree holds what the simulator cannot make: a name that is
/// not UTF-8, a symlink. With them, and an empty file, a file that is not
/// text and a directory under a document's name, every rebuild and verify
/// works: the documents are indexed, the rest is skipped and named.
#[test]
fn a_hostile_source_tree_on_a_real_disk_is_skipped_and_named_not_fatal() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::real();
    env.init();
    let mut store = env.open(StoreOptions::default()).expect("open");
    store.add("good.md", b"# good\n").expect("add");
    let source = env.root.join("source");
    std::fs::write(
        source.join(std::ffi::OsStr::from_bytes(b"caf\xe9.md")),
        b"latin-1 name\n",
    )
    .expect("write");
    std::os::unix::fs::symlink("/etc/hostname", source.join("link.md")).expect("symlink");
    std::fs::write(source.join("binary.md"), [0xff, 0xfe, 0x00]).expect("write");
    std::fs::create_dir(source.join("folder.md")).expect("mkdir");
    std::fs::write(source.join("empty.md"), b"").expect("write");
    for mode in [RebuildMode::Incremental, RebuildMode::Full] {
        store
            .rebuild(mode, &mut |_| {})
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    }
    assert_eq!(store.list().expect("list"), ["empty.md", "good.md"]);
    let report = store.verify().expect("verify");
    assert!(report.is_clean(), "{report:?}");
    let skipped: Vec<(&str, &str)> = report
        .skipped_sources
        .iter()
        .map(|s| (s.name.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    let reason = |name: &str| skipped.iter().find(|(n, _)| *n == name).map(|(_, r)| *r).unwrap_or("");
    assert!(reason("binary.md").contains("not UTF-8 text"), "{skipped:?}");
    assert!(reason("folder.md").contains("directory"), "{skipped:?}");
    assert!(reason("link.md").contains("symlink"), "{skipped:?}");
    assert!(reason("caf\u{fffd}.md").contains("not a document name"), "{skipped:?}");
}

/// A source file that vanishes between the listing and the read (another
/// process removed it; here its every open fails with `ENOENT` while the
/// listing still shows it) is skipped and named by a rebuild and by verify,
/// never an error.
#[test]
fn a_source_file_that_vanishes_between_listing_and_reading_is_skipped() {
    use tearline_sim_fs::{Fault, FaultPlan, FsExt, SimConfig, SimFs, SyscallFilter, SyscallKind};
    let sim = SimFs::new(SimConfig::with_seed(7));
    let fs: Arc<dyn tearline_sim_fs::Fs> = Arc::new(sim.clone());
    let clock: Arc<dyn tearline_sim_fs::Clock> = Arc::new(sim.clock());
    let root = std::path::Path::new("/store");
    Store::init(Arc::clone(&fs), Arc::clone(&clock), root).expect("init");
    let mut store = Store::open(Arc::clone(&fs), Arc::clone(&clock), root, StoreOptions::default()).expect("open");
    store.add("stays.md", b"# stays\n").expect("add");
    sim.write_file_atomic(&root.join("source/vanishing.md"), b"# gone\n")
        .expect("write");
    let opens = SyscallFilter::ops(&[SyscallKind::Open])
        .path("/store/source/vanishing.md")
        .expect("glob");
    sim.set_fault_plan(FaultPlan::none().random(opens, 1.0, Fault::Errno(libc_enoent())));
    for mode in [RebuildMode::Full, RebuildMode::Incremental] {
        let stats = store
            .rebuild(mode, &mut |_| {})
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(stats.skipped.len(), 1, "{stats:?}");
        assert!(stats.skipped[0].reason.contains("vanished"), "{stats:?}");
    }
    let report = store.verify().expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.list().expect("list"), ["stays.md"]);
}

fn libc_enoent() -> i32 {
    tearline_sim_fs::errno::enoent().raw_os_error().expect("a raw OS error")
}
