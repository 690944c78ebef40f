//! The same SQLite insert workload on `SimFs` and on a real temporary
//! directory through `RealFs`, both through the VFS bridge, measured in one
//! run. Prints each time and the ratio simulated / real.
//!
//! Run with `cargo bench -p tearline-sim-fs --bench sqlite_inserts`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::OpenFlags;
use tearline_sim_fs::sqlite::{SqliteVfs, VfsOptions};
use tearline_sim_fs::{Clock, Fs, FsExt, RealFs, SimConfig, SimFs, SystemClock};

/// A workload: how many transactions of how many rows, in which journal mode.
struct Workload {
    name: &'static str,
    journal: &'static str,
    transactions: u32,
    rows_per_transaction: u32,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "2000 one-row txns, DELETE, sync=FULL",
        journal: "delete",
        transactions: 2000,
        rows_per_transaction: 1,
    },
    Workload {
        name: "2000 one-row txns, WAL, sync=FULL",
        journal: "wal",
        transactions: 2000,
        rows_per_transaction: 1,
    },
    Workload {
        name: "1 txn of 100k rows, DELETE, sync=FULL",
        journal: "delete",
        transactions: 1,
        rows_per_transaction: 100_000,
    },
];

fn run(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, dir: &Path, workload: &Workload) -> Duration {
    fs.create_dir_all(dir).expect("create the database directory");
    let vfs = SqliteVfs::register(fs, clock, VfsOptions::default()).expect("register the VFS");
    let started = Instant::now();
    let conn = vfs
        .open(
            &dir.join("bench.db"),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .expect("open");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={}", workload.journal), [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode, workload.journal, "journal mode was not applied");
    conn.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE t(a INTEGER, b TEXT)")
        .expect("schema");
    let mut row = 0i64;
    for _ in 0..workload.transactions {
        let tx = conn.unchecked_transaction().expect("begin");
        for _ in 0..workload.rows_per_transaction {
            tx.execute(
                "INSERT INTO t VALUES (?1, 'some text to make the row a little longer')",
                [row],
            )
            .expect("insert");
            row += 1;
        }
        tx.commit().expect("commit");
    }
    let count: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, row);
    drop(conn);
    started.elapsed()
}

fn main() {
    println!(
        "{:<42} {:>10} {:>10} {:>12}",
        "workload", "SimFs ms", "RealFs ms", "Sim/Real"
    );
    for workload in &WORKLOADS {
        let sim = SimFs::new(SimConfig::with_seed(1));
        let sim_time = run(
            Arc::new(sim.clone()),
            Arc::new(sim.clock()),
            &PathBuf::from("/bench"),
            workload,
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let real_time = run(Arc::new(RealFs), Arc::new(SystemClock), tmp.path(), workload);
        println!(
            "{:<42} {:>10.1} {:>10.1} {:>11.2}x",
            workload.name,
            sim_time.as_secs_f64() * 1e3,
            real_time.as_secs_f64() * 1e3,
            sim_time.as_secs_f64() / real_time.as_secs_f64()
        );
    }
}
