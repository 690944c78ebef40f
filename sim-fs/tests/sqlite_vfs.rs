//! The SQLite VFS bridge on the real filesystem: SQLite works through it,
//! locks and shared memory work across registrations ("processes"), every
//! file and every sync goes through the `Fs`, and faults become errors.
#![cfg(feature = "sqlite")]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode, OpenFlags, ffi};
use tearline_sim_fs::{
    ByteRange, DirEntry, FileHandle, FileIdentity, Fs, FsExt, LockGuard, Metadata, OpenOptions, RangeLockMode, RealFs,
    SimClock, SimConfig, SimFs, SqliteVfs, VfsOptions, errno, reserve_page_checksum_bytes,
};

/// What the recording `Fs` saw, in order (the calls that matter here).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Open(PathBuf),
    Remove(PathBuf),
    SyncDir(PathBuf),
    SyncFile(PathBuf),
}

/// The log and the fault switches shared by a `RecordingFs` and its files.
#[derive(Debug, Default)]
struct Recorder {
    ops: Mutex<Vec<Op>>,
    enospc_on_write: AtomicBool,
    panic_on_write: AtomicBool,
}

impl Recorder {
    fn record(&self, op: Op) {
        self.ops.lock().expect("ops").push(op);
    }

    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().expect("ops"))
    }
}

/// `RealFs`, recording opens, removes and syncs, and failing writes on demand.
#[derive(Debug)]
struct RecordingFs {
    recorder: Arc<Recorder>,
}

#[derive(Debug)]
struct RecordingFile {
    inner: Box<dyn FileHandle>,
    path: PathBuf,
    recorder: Arc<Recorder>,
}

impl FileHandle for RecordingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.recorder.panic_on_write.load(Ordering::SeqCst) {
            panic!("injected panic in write_at");
        }
        if self.recorder.enospc_on_write.load(Ordering::SeqCst) {
            return Err(errno::enospc());
        }
        self.inner.write_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.recorder.record(Op::SyncFile(self.path.clone()));
        self.inner.sync_all()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.recorder.record(Op::SyncFile(self.path.clone()));
        self.inner.sync_data()
    }

    fn lock_range(&self, range: ByteRange, mode: RangeLockMode) -> io::Result<()> {
        self.inner.lock_range(range, mode)
    }

    fn identity(&self) -> io::Result<FileIdentity> {
        self.inner.identity()
    }
}

impl Fs for RecordingFs {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<Box<dyn FileHandle>> {
        self.recorder.record(Op::Open(path.to_path_buf()));
        Ok(Box::new(RecordingFile {
            inner: RealFs.open(path, options)?,
            path: path.to_path_buf(),
            recorder: Arc::clone(&self.recorder),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        RealFs.hard_link(original, link)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.recorder.record(Op::Remove(path.to_path_buf()));
        RealFs.remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path)
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        RealFs.metadata(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.recorder.record(Op::SyncDir(path.to_path_buf()));
        RealFs.sync_dir(path)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.try_lock(path)
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        RealFs.free_space(path)
    }
}

/// A registration over a recording `RealFs`.
fn recording_vfs(options: VfsOptions) -> (Arc<Recorder>, SqliteVfs) {
    let recorder = Arc::new(Recorder::default());
    let fs = Arc::new(RecordingFs {
        recorder: Arc::clone(&recorder),
    });
    let vfs = SqliteVfs::register(fs, Arc::new(SimClock::new()), options).expect("register");
    (recorder, vfs)
}

/// A plain registration over `RealFs`: one simulated "process".
fn process() -> SqliteVfs {
    SqliteVfs::register(Arc::new(RealFs), Arc::new(SimClock::new()), VfsOptions::default()).expect("register")
}

fn open(vfs: &SqliteVfs, path: &Path) -> Connection {
    let conn = vfs.open(path, OpenFlags::default()).expect("open");
    conn.busy_timeout(std::time::Duration::ZERO).expect("busy_timeout");
    conn
}

/// Runs a PRAGMA to completion (a PRAGMA read with one step can hide the
/// error of its write) and returns its first column.
fn pragma(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(sql).expect("prepare pragma");
    let rows: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .expect("run pragma")
        .collect::<Result<_, _>>()
        .expect("pragma rows");
    rows.into_iter().next().unwrap_or_default()
}

fn set_journal_mode(conn: &Connection, mode: &str) {
    assert_eq!(pragma(conn, &format!("PRAGMA journal_mode={mode}")), mode);
    assert_eq!(pragma(conn, "PRAGMA journal_mode"), mode);
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .expect("count")
}

fn error_code(err: &rusqlite::Error) -> Option<(ErrorCode, i32)> {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => Some((e.code, e.extended_code)),
        _ => None,
    }
}

fn crud_survives_reopen(mode: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crud.db");
    {
        let vfs = process();
        let conn = open(&vfs, &path);
        set_journal_mode(&conn, mode);
        conn.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
             INSERT INTO t SELECT i, printf('%0100d', i) FROM n;
             COMMIT;
             UPDATE t SET v = 'even' WHERE id % 2 = 0;
             DELETE FROM t WHERE id > 400;",
        )
        .expect("crud");
        assert_eq!(count(&conn), 400);
        assert_eq!(pragma(&conn, "PRAGMA integrity_check"), "ok");
    }
    let vfs = process();
    let conn = open(&vfs, &path);
    assert_eq!(pragma(&conn, "PRAGMA journal_mode"), mode);
    assert_eq!(count(&conn), 400);
    let evens: i64 = conn
        .query_row("SELECT count(*) FROM t WHERE v = 'even'", [], |row| row.get(0))
        .expect("evens");
    assert_eq!(evens, 200);
    assert_eq!(pragma(&conn, "PRAGMA integrity_check"), "ok");
}

#[test]
fn crud_and_integrity_in_delete_mode() {
    crud_survives_reopen("delete");
}

#[test]
fn crud_and_integrity_in_wal_mode() {
    crud_survives_reopen("wal");
}

#[test]
fn a_writer_in_one_process_makes_the_other_busy_until_it_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("locks.db");
    let (p1, p2) = (process(), process());
    let a = open(&p1, &path);
    let b = open(&p2, &path);
    a.execute_batch("CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
        .expect("a writes");
    assert_eq!(count(&b), 0, "readers are not blocked by RESERVED");
    let err = b.execute("INSERT INTO t VALUES (2)", []).expect_err("b must be busy");
    assert_eq!(error_code(&err).map(|(code, _)| code), Some(ErrorCode::DatabaseBusy));
    a.execute_batch("COMMIT").expect("a commits");
    b.execute("INSERT INTO t VALUES (2)", [])
        .expect("b writes after the commit");
    assert_eq!(count(&a), 2);
}

#[test]
fn a_wal_reader_keeps_its_snapshot_while_another_process_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wal.db");
    let (p1, p2) = (process(), process());
    let a = open(&p1, &path);
    set_journal_mode(&a, "wal");
    a.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .expect("a writes");
    let b = open(&p2, &path);
    assert_eq!(pragma(&b, "PRAGMA journal_mode"), "wal");
    b.execute_batch("BEGIN").expect("b begins");
    assert_eq!(count(&b), 1);
    a.execute("INSERT INTO t VALUES (2)", [])
        .expect("a commits while b reads");
    assert_eq!(count(&b), 1, "b still sees its snapshot");
    let err = b
        .execute("INSERT INTO t VALUES (3)", [])
        .expect_err("b's snapshot is stale");
    assert_eq!(error_code(&err).map(|(code, _)| code), Some(ErrorCode::DatabaseBusy));
    b.execute_batch("COMMIT").expect("b ends");
    assert_eq!(count(&b), 2, "a new transaction sees the commit");
    assert!(dir.path().join("wal.db-shm").exists());
}

/// Fills a temp table far beyond a 10-page cache, so it spills to a file,
/// and sorts more than the sorter keeps in memory.
fn spill_to_temp_files(conn: &Connection) {
    conn.execute_batch(
        "PRAGMA temp_store=FILE;
         CREATE TEMP TABLE big(i, v);
         PRAGMA temp.cache_size=10;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO big SELECT i, printf('%01000d', i) FROM n;",
    )
    .expect("temp table");
    let last: i64 = conn
        .query_row("SELECT i FROM big ORDER BY v DESC LIMIT 1", [], |row| row.get(0))
        .expect("sort");
    assert_eq!(last, 5000);
}

/// The temp files the log shows opened and then removed, in `dir`.
fn temp_files_opened_and_removed(ops: &[Op], dir: &Path) -> Vec<PathBuf> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Open(path) if path.parent() == Some(dir) => Some(path.clone()),
            _ => None,
        })
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("etilqs_"))
        })
        .filter(|path| ops.contains(&Op::Remove(path.clone())))
        .collect()
}

#[test]
fn temp_files_go_through_the_fs_next_to_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (recorder, vfs) = recording_vfs(VfsOptions::default());
    let conn = open(&vfs, &dir.path().join("temp.db"));
    spill_to_temp_files(&conn);
    let ops = recorder.take();
    let temps = temp_files_opened_and_removed(&ops, dir.path());
    assert!(!temps.is_empty(), "no temp file went through the Fs");
    assert!(temps.iter().all(|path| !path.exists()));
}

#[test]
fn temp_files_go_to_the_configured_temp_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let temp_dir = dir.path().join("tmp");
    std::fs::create_dir(&temp_dir).expect("mkdir");
    let (recorder, vfs) = recording_vfs(VfsOptions {
        temp_dir: Some(temp_dir.clone()),
        ..VfsOptions::default()
    });
    let conn = open(&vfs, &dir.path().join("temp.db"));
    spill_to_temp_files(&conn);
    let ops = recorder.take();
    assert!(!temp_files_opened_and_removed(&ops, &temp_dir).is_empty());
    assert!(temp_files_opened_and_removed(&ops, dir.path()).is_empty());
}

/// The `Fs` calls of one autocommit INSERT in rollback mode.
fn ops_of_one_commit(recorder: &Recorder, vfs: &SqliteVfs, db: &Path, synchronous: &str) -> Vec<Op> {
    let conn = open(vfs, db);
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous}; CREATE TABLE IF NOT EXISTS t(x);"
    ))
    .expect("setup");
    recorder.take();
    conn.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    recorder.take()
}

fn syncs_after_journal_delete(ops: &[Op], journal: &Path) -> Vec<Op> {
    let removed = ops
        .iter()
        .position(|op| *op == Op::Remove(journal.to_path_buf()))
        .expect("the commit deletes the journal");
    ops[removed + 1..]
        .iter()
        .filter(|op| matches!(op, Op::SyncDir(_) | Op::SyncFile(_)))
        .cloned()
        .collect()
}

#[test]
fn synchronous_extra_syncs_the_directory_after_deleting_the_journal_and_full_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sync.db");
    let journal = dir.path().join("sync.db-journal");
    let (recorder, vfs) = recording_vfs(VfsOptions::default());

    let extra = ops_of_one_commit(&recorder, &vfs, &db, "EXTRA");
    assert!(extra.contains(&Op::SyncFile(journal.clone())));
    assert!(extra.contains(&Op::SyncFile(db.clone())));
    assert_eq!(
        syncs_after_journal_delete(&extra, &journal),
        [Op::SyncDir(dir.path().to_path_buf())]
    );

    let full = ops_of_one_commit(&recorder, &vfs, &db, "FULL");
    assert!(full.contains(&Op::SyncFile(journal.clone())));
    assert_eq!(syncs_after_journal_delete(&full, &journal), []);
    // The new journal's name is made durable at its first sync, in both.
    assert!(full.contains(&Op::SyncDir(dir.path().to_path_buf())));
}

#[test]
fn skip_sync_drops_every_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (recorder, vfs) = recording_vfs(VfsOptions {
        skip_sync: true,
        ..VfsOptions::default()
    });
    for mode in ["delete", "wal"] {
        let conn = open(&vfs, &dir.path().join(format!("{mode}.db")));
        conn.execute_batch("PRAGMA synchronous=EXTRA").expect("synchronous");
        set_journal_mode(&conn, mode);
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1); PRAGMA wal_checkpoint(FULL);")
            .expect("writes");
        drop(conn);
        let ops = recorder.take();
        assert!(ops.iter().any(|op| matches!(op, Op::Open(_))));
        let syncs: Vec<_> = ops
            .iter()
            .filter(|op| matches!(op, Op::SyncDir(_) | Op::SyncFile(_)))
            .collect();
        assert!(syncs.is_empty(), "{mode}: {syncs:?}");
    }
}

#[test]
fn enospc_on_write_is_sqlite_full_and_the_connection_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (recorder, vfs) = recording_vfs(VfsOptions::default());
    let conn = open(&vfs, &dir.path().join("full.db"));
    conn.execute_batch("CREATE TABLE t(x)").expect("create");
    recorder.enospc_on_write.store(true, Ordering::SeqCst);
    let err = conn.execute("INSERT INTO t VALUES (1)", []).expect_err("disk full");
    assert_eq!(error_code(&err), Some((ErrorCode::DiskFull, ffi::SQLITE_FULL)));
    recorder.enospc_on_write.store(false, Ordering::SeqCst);
    conn.execute("INSERT INTO t VALUES (2)", [])
        .expect("insert after space returns");
    assert_eq!(count(&conn), 1);
    assert_eq!(pragma(&conn, "PRAGMA integrity_check"), "ok");
}

#[test]
fn a_panicking_fs_is_an_io_error_not_an_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (recorder, vfs) = recording_vfs(VfsOptions::default());
    let conn = open(&vfs, &dir.path().join("panic.db"));
    conn.execute_batch("CREATE TABLE t(x)").expect("create");
    recorder.panic_on_write.store(true, Ordering::SeqCst);
    let err = conn
        .execute("INSERT INTO t VALUES (1)", [])
        .expect_err("the Fs panicked");
    assert_eq!(error_code(&err).map(|(code, _)| code), Some(ErrorCode::SystemIoFailure));
    recorder.panic_on_write.store(false, Ordering::SeqCst);
    conn.execute("INSERT INTO t VALUES (2)", [])
        .expect("insert after the panic");
    assert_eq!(count(&conn), 1);
}

#[test]
fn dropping_the_vfs_before_the_connection_is_safe_and_frees_the_fs_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("drop.db");
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let vfs = SqliteVfs::register(Arc::clone(&fs), Arc::new(SimClock::new()), VfsOptions::default()).expect("register");
    let name = vfs.name().to_owned();
    let conn = open(&vfs, &path);
    set_journal_mode(&conn, "wal");
    drop(vfs);
    assert!(Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), name.as_str()).is_err());
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .expect("the connection still works");
    assert_eq!(count(&conn), 1);
    assert!(Arc::strong_count(&fs) > 1, "the open connection keeps the Fs");
    drop(conn);
    assert_eq!(Arc::strong_count(&fs), 1, "the VFS was freed with its last file");
    assert!(!dir.path().join("drop.db-wal").exists());
}

#[test]
fn registrations_are_freed_when_their_last_file_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    for i in 0..200 {
        let vfs =
            SqliteVfs::register(Arc::clone(&fs), Arc::new(SimClock::new()), VfsOptions::default()).expect("register");
        let conn = open(&vfs, &dir.path().join("many.db"));
        conn.execute("CREATE TABLE IF NOT EXISTS t(x)", []).expect("create");
        conn.execute("INSERT INTO t VALUES (?1)", [i]).expect("insert");
    }
    assert_eq!(Arc::strong_count(&fs), 1);
}

#[test]
fn in_memory_databases_and_bad_options_are_refused() {
    let vfs = process();
    for path in ["", ":memory:"] {
        assert!(matches!(
            vfs.open(Path::new(path), OpenFlags::default()),
            Err(rusqlite::Error::InvalidPath(_))
        ));
    }
    let bad = VfsOptions {
        sector_size: 1000,
        ..VfsOptions::default()
    };
    let err = SqliteVfs::register(Arc::new(RealFs), Arc::new(SimClock::new()), bad).expect_err("bad sector size");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// A database of 200 rows on a simulated disk, made with page checksums
/// (reserved and checked) or without; the connection closed.
fn database_on_simfs(checksums: bool) -> (SimFs, SqliteVfs) {
    let fs = SimFs::new(SimConfig::with_seed(9));
    let options = VfsOptions {
        page_checksums: checksums,
        ..VfsOptions::default()
    };
    let vfs = SqliteVfs::register(Arc::new(fs.clone()), Arc::new(SimClock::new()), options).expect("register");
    let conn = open(&vfs, Path::new("/db"));
    if checksums {
        reserve_page_checksum_bytes(&conn).expect("reserve");
    }
    conn.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
        .expect("create");
    for k in 0..200 {
        conn.execute("INSERT INTO t VALUES (?1, ?2)", (k, format!("value number {k:04}")))
            .expect("insert");
    }
    drop(conn);
    (fs, vfs)
}

/// Reads every row, or the error that stopped it.
fn all_rows(vfs: &SqliteVfs) -> rusqlite::Result<Vec<(i64, String)>> {
    let conn = open(vfs, Path::new("/db"));
    let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k")?;
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect()
}

#[test]
fn page_checksums_turn_bit_rot_and_misplaced_pages_into_errors() {
    for checksums in [true, false] {
        let (fs, vfs) = database_on_simfs(checksums);
        let clean = all_rows(&vfs).expect("the clean database reads");
        assert_eq!(clean.len(), 200);
        let db = fs.read_file(Path::new("/db")).expect("read the file");
        assert_eq!(db[20] == 8, checksums, "byte 20 is the reserve");
        // One bit of a value on the last page flips on the medium.
        let last = db.len() - 4096;
        let at = last
            + db[last..]
                .iter()
                .rposition(|&b| b == b'0')
                .expect("a digit on the last page");
        let file = fs.open(Path::new("/db"), &OpenOptions::read_write()).expect("open");
        file.write_at(&[db[at] ^ 0x01], at as u64).expect("flip");
        let rotted = all_rows(&vfs);
        if checksums {
            let err = rotted.expect_err("a rotted page is an error");
            assert_eq!(error_code(&err).map(|c| c.1), Some(ffi::SQLITE_IOERR_DATA), "{err}");
        } else {
            let rows = rotted.expect("without checksums SQLite serves the rotted page");
            assert_ne!(rows, clean, "served silently different data");
        }
        // Page 3 written where page 2 belongs (a misdirected write).
        file.write_at(&db[last..], at as u64 - (at as u64 % 4096))
            .expect("undo the flip");
        file.write_at(&db[2 * 4096..3 * 4096], 4096).expect("misplace");
        let conn = open(&vfs, Path::new("/db"));
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("the first line of the check");
        if checksums {
            // integrity_check reads every page and names the one it could not.
            assert!(
                check.contains("page 2: unable to get the page. error code=8202"),
                "{check}"
            );
            let err = all_rows(&vfs).expect_err("a misplaced page is an error");
            assert_eq!(error_code(&err).map(|c| c.1), Some(ffi::SQLITE_IOERR_DATA), "{err}");
        }
    }
}
