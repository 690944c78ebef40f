//! Real SQLite on `SimFs`: SQLite's locks follow the simulated processes, a
//! dead process's locks go with it, WAL works between processes, and a power
//! cut gives SQLite errors (never an abort) and a database that reopens.
#![cfg(feature = "sqlite")]

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tearline_sim_fs::{Fs, FsExt, SimConfig, SimFs, SqliteVfs, VfsOptions, halted};

const DB: &str = "/data/app.db";

fn machine() -> SimFs {
    let fs = SimFs::new(SimConfig::with_seed(3));
    fs.create_dir_all(Path::new("/data")).expect("mkdir");
    fs
}

/// A VFS and a connection for one simulated process.
fn connect(process: &SimFs, journal: &str) -> (SqliteVfs, Connection) {
    let vfs = SqliteVfs::register(
        Arc::new(process.clone()),
        Arc::new(process.clock()),
        VfsOptions::default(),
    )
    .expect("register");
    let conn = vfs
        .open(
            Path::new(DB),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .expect("open");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={journal}"), [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, journal);
    conn.execute_batch("PRAGMA busy_timeout=0; CREATE TABLE IF NOT EXISTS t(v)")
        .expect("schema");
    (vfs, conn)
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count")
}

fn is_busy(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

#[test]
fn two_processes_lock_each_other_out_in_rollback_mode() {
    let fs = machine();
    let other = fs.spawn_process();
    let (_vfs_a, a) = connect(&fs, "delete");
    let (_vfs_b, b) = connect(&other, "delete");
    a.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
        .expect("a writes");
    let err = b
        .execute("INSERT INTO t VALUES (2)", [])
        .expect_err("b must wait for a");
    assert!(is_busy(&err), "{err}");
    a.execute_batch("COMMIT").expect("commit");
    b.execute("INSERT INTO t VALUES (2)", [])
        .expect("b writes after a commits");
    assert_eq!(count(&a), 2);
}

#[test]
fn a_crashed_process_releases_its_sqlite_locks() {
    let fs = machine();
    let survivor = fs.spawn_process();
    let (_vfs_a, a) = connect(&fs, "delete");
    let (_vfs_b, b) = connect(&survivor, "delete");
    a.execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (1)")
        .expect("a holds the lock");
    assert!(is_busy(&b.execute("INSERT INTO t VALUES (2)", []).expect_err("locked")));
    fs.crash_process();
    // The dead process's uncommitted transaction left a hot journal; the
    // survivor rolls it back and writes.
    b.execute("INSERT INTO t VALUES (2)", [])
        .expect("the lock died with its process");
    assert_eq!(count(&b), 1);
    let integrity: String = b.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
    assert_eq!(integrity, "ok");
    drop(a);
}

#[test]
fn wal_mode_works_between_processes() {
    let fs = machine();
    let other = fs.spawn_process();
    let (_vfs_a, a) = connect(&fs, "wal");
    let (_vfs_b, b) = connect(&other, "wal");
    b.execute_batch("BEGIN").expect("begin");
    assert_eq!(count(&b), 0, "b's snapshot");
    a.execute("INSERT INTO t VALUES (1)", [])
        .expect("a writes while b reads");
    assert_eq!(count(&b), 0, "b keeps its snapshot");
    b.execute_batch("COMMIT").expect("end");
    assert_eq!(count(&b), 1, "a new transaction sees a's row");
    assert!(fs.exists(Path::new("/data/app.db-wal")).expect("exists"));
    assert!(fs.exists(Path::new("/data/app.db-shm")).expect("exists"));
}

#[test]
fn a_power_cut_gives_errors_and_the_database_reopens_after_reboot() {
    let fs = machine();
    let (vfs, conn) = connect(&fs, "wal");
    conn.execute("INSERT INTO t VALUES (1)", []).expect("committed");
    fs.power_cut();
    let err = conn.execute("INSERT INTO t VALUES (2)", []).expect_err("no power");
    assert!(err.sqlite_error_code().is_some(), "{err}");
    assert!(fs.halted().is_some());
    assert!(halted(&fs.metadata(Path::new("/data")).expect_err("halted")).is_some());
    drop(conn);
    drop(vfs);
    let rebooted = fs.reboot();
    let (_vfs, conn) = connect(&rebooted, "wal");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(integrity, "ok");
    assert!(count(&conn) <= 1);
}
