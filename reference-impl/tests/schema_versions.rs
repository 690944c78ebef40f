//! Schema versioning: each wrong-version case, with and without the lock.
//! A rebuild is only ever done by a writable open that asked for it; any
//! other open refuses with `RebuildRequired` and leaves every byte as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::OpenFlags;
use tearline_refstore::schema::SCHEMA_VERSION;
use tearline_refstore::{Store, StoreError, StoreOptions};
use tearline_sim_fs::{
    Fault, FaultPlan, Fs, FsExt, SimConfig, SimFs, SqliteVfs, SyscallFilter, SyscallKind, VfsOptions,
};

const ROOT: &str = "/store";

fn index_path(generation: u64) -> PathBuf {
    PathBuf::from(format!("{ROOT}/generations/gen-{generation:06}/index.db"))
}

/// A store with two documents, closed.
fn store_with_documents() -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(3));
    let (dyn_fs, clock): (Arc<dyn Fs>, _) = (Arc::new(fs.clone()), Arc::new(fs.clock()));
    Store::init(Arc::clone(&dyn_fs), clock.clone(), Path::new(ROOT)).expect("init");
    let mut store = Store::open(dyn_fs, clock, Path::new(ROOT), StoreOptions::default()).expect("open");
    store.add("a.md", b"Alpha\n\nThe first document.").expect("add");
    store.add("b.md", b"Beta\n\nThe second document.").expect("add");
    fs
}

fn open(fs: &SimFs, options: StoreOptions) -> Result<Store, StoreError> {
    Store::open(Arc::new(fs.clone()), Arc::new(fs.clock()), Path::new(ROOT), options)
}

fn rebuild_allowed() -> StoreOptions {
    StoreOptions {
        rebuild_if_needed: true,
        ..StoreOptions::default()
    }
}

/// Runs SQL on the live index directly, as an older or newer build would have.
fn tamper(fs: &SimFs, sql: &str) {
    let vfs = SqliteVfs::register(Arc::new(fs.clone()), Arc::new(fs.clock()), checksummed()).expect("vfs");
    let conn = vfs
        .open(&index_path(1), OpenFlags::SQLITE_OPEN_READ_WRITE)
        .expect("open index");
    conn.execute_batch(sql).expect("tamper");
}

fn version(fs: &SimFs, generation: u64) -> u32 {
    let vfs = SqliteVfs::register(Arc::new(fs.clone()), Arc::new(fs.clock()), checksummed()).expect("vfs");
    let conn = vfs
        .open(&index_path(generation), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open index");
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version")
}

/// Every open that may not rebuild refuses, and changes no byte anywhere.
fn assert_refused_untouched(fs: &SimFs, found: u32) {
    let before = fs.fingerprint();
    let index_before = fs.read_file(&index_path(1)).expect("read index");
    for options in [StoreOptions::read_only(), StoreOptions::default()] {
        let err = open(fs, options).expect_err("must refuse");
        match &err {
            StoreError::RebuildRequired { found: f, expected, .. } => {
                assert_eq!((*f, *expected), (found, SCHEMA_VERSION));
            }
            other => panic!("expected RebuildRequired, got {other}"),
        }
        assert!(err.to_string().contains("rebuild"), "{err}");
    }
    assert_eq!(
        fs.read_file(&index_path(1)).expect("read index"),
        index_before,
        "index bytes changed"
    );
    assert_eq!(fs.fingerprint(), before, "something on disk changed");
}

fn assert_documents_intact(store: &Store) {
    assert_eq!(store.list().expect("list"), ["a.md", "b.md"]);
    let report = store.verify().expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(store.get("b.md").expect("get").expect("present").summary, "Beta");
}

#[test]
fn a_fresh_store_is_stamped_with_the_current_version() {
    let fs = store_with_documents();
    assert_eq!(version(&fs, 1), SCHEMA_VERSION);
    let store = open(&fs, StoreOptions::default()).expect("open");
    assert_eq!(store.open_report().migrated_from, None);
    assert_eq!(store.open_report().rebuilt_from, None);
}

#[test]
fn an_older_index_is_migrated_in_place_by_a_writable_open_only() {
    let fs = store_with_documents();
    tamper(
        &fs,
        "ALTER TABLE files DROP COLUMN indexed_at_ms; PRAGMA user_version = 2;",
    );
    let before = fs.fingerprint();
    let err = open(&fs, StoreOptions::read_only()).expect_err("read-only cannot migrate");
    assert!(matches!(err, StoreError::RebuildRequired { found: 2, .. }), "{err}");
    assert_eq!(fs.fingerprint(), before);
    let store = open(&fs, StoreOptions::default()).expect("writable open migrates");
    assert_eq!(store.open_report().migrated_from, Some(2));
    assert_eq!(store.open_report().generation, 1, "in place: same generation");
    assert_documents_intact(&store);
    drop(store);
    assert_eq!(version(&fs, 1), SCHEMA_VERSION);
}

#[test]
fn a_failed_in_place_step_leaves_the_version_unstamped() {
    let fs = store_with_documents();
    tamper(
        &fs,
        "ALTER TABLE files DROP COLUMN indexed_at_ms; PRAGMA user_version = 2;",
    );
    let journal_writes = SyscallFilter::ops(&[SyscallKind::Write])
        .path("*index.db-journal")
        .expect("glob");
    fs.set_fault_plan(FaultPlan::none().nth(journal_writes, 1, Fault::EIO));
    let err = open(&fs, StoreOptions::default()).expect_err("the migration's journal write fails");
    assert!(err.to_string().contains("migrat"), "{err}");
    fs.set_fault_plan(FaultPlan::none());
    assert_eq!(version(&fs, 1), 2);
    let store = open(&fs, StoreOptions::default()).expect("a later open migrates");
    assert_eq!(store.open_report().migrated_from, Some(2));
}

#[test]
fn an_index_needing_a_rebuild_is_rebuilt_only_with_the_lock_and_permission() {
    let fs = store_with_documents();
    tamper(&fs, "PRAGMA user_version = 1;");
    assert_refused_untouched(&fs, 1);
    let store = open(&fs, rebuild_allowed()).expect("rebuild");
    assert_eq!(store.open_report().rebuilt_from, Some(1));
    assert_eq!(store.open_report().generation, 2);
    assert_documents_intact(&store);
    drop(store);
    // The replaced generation is kept as the backup, untouched.
    assert!(fs.exists(Path::new("/store/generations/gen-000001")).expect("exists"));
    assert_eq!(version(&fs, 1), 1);
    assert_eq!(version(&fs, 2), SCHEMA_VERSION);
}

#[test]
fn an_index_from_a_newer_build_is_rebuilt_only_with_the_lock_and_permission() {
    let fs = store_with_documents();
    tamper(&fs, "PRAGMA user_version = 99;");
    assert_refused_untouched(&fs, 99);
    let store = open(&fs, rebuild_allowed()).expect("rebuild");
    assert_eq!(store.open_report().rebuilt_from, Some(99));
    assert_documents_intact(&store);
}

#[test]
fn a_read_only_open_cannot_rebuild_even_when_asked() {
    let fs = store_with_documents();
    tamper(&fs, "PRAGMA user_version = 99;");
    let before = fs.fingerprint();
    let options = StoreOptions {
        rebuild_if_needed: true,
        ..StoreOptions::read_only()
    };
    assert!(matches!(open(&fs, options), Err(StoreError::RebuildRequired { .. })));
    assert_eq!(fs.fingerprint(), before);
}

#[test]
fn a_rebuild_interrupted_anywhere_leaves_a_store_that_opens() {
    // Power cut at every syscall of the rebuild: the old or the new generation
    // is live and complete, and the next writable open cleans up (keeping the
    // replaced generation as the backup).
    let fs = store_with_documents();
    tamper(&fs, "PRAGMA user_version = 1;");
    fs.record_snapshots(true);
    open(&fs, rebuild_allowed()).expect("rebuild");
    let snapshots = fs.take_snapshots();
    assert!(snapshots.len() > 50, "the rebuild made {} syscalls", snapshots.len());
    for snapshot in &snapshots {
        let model = tearline_sim_fs::PersistenceModel::NothingUnsynced;
        let choice = snapshot.sample_crash(model, 0);
        let after = snapshot.boot(model, &choice);
        let store =
            open(&after, rebuild_allowed()).unwrap_or_else(|e| panic!("cut at {}: {e}", snapshot.syscall_index()));
        assert_documents_intact(&store);
        // The live generation and at most the one backup the default
        // retention keeps; nothing newer than the live one.
        let generations: Vec<String> = after
            .read_dir(Path::new("/store/generations"))
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        let live = format!("gen-{:06}", store.open_report().generation);
        assert!(
            generations.len() <= 2 && generations.last() == Some(&live),
            "cut at {}: {generations:?}, live {live}",
            snapshot.syscall_index()
        );
    }
}

/// The bridge as the store opens its index: with page checksums (a page
/// written without one reads as damage).
fn checksummed() -> VfsOptions {
    VfsOptions {
        page_checksums: true,
        ..VfsOptions::default()
    }
}
