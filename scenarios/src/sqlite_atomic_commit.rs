//! SQLite's own atomic-commit crash matrix.
//!
//! The workload opens a database through the SQLite VFS bridge on a
//! [`SimFs`], creates a table, and commits a number of transactions of a few
//! rows each. The matrix then injects a fault at every syscall of that
//! workload and checks what a restarted process finds:
//!
//! - **complete-database**: the database opens and `PRAGMA integrity_check`
//!   says `ok`;
//! - **atomic-op**: every transaction is there whole or not at all, and the
//!   transactions present are a prefix of those issued;
//! - **committed-durable**: every transaction whose `COMMIT` returned before
//!   the fault is there.
//!
//! Faults: a power cut at every syscall, with the post-crash disk derived
//! from a snapshot under each persistence model (every distinct state where
//! there are few, seeded samples otherwise); `EIO` and `ENOSPC` at every
//! syscall they apply to (the process then restarts, and later the power
//! fails too); and a torn write at every write.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OpenFlags};

use crate::case::crash_picks;
pub use crate::case::{Case, CrashPick};
pub use tearline_model::Invariant;
use tearline_model::Violation;
use tearline_sim_fs::sqlite::{SqliteVfs, VfsOptions, reseed_sqlite_prng};
use tearline_sim_fs::{
    Fault, FaultPlan, Fs, FsExt, PersistenceModel, SimConfig, SimFs, SimSnapshot, SyscallKind, Trace,
};

/// SQLite's journal mode for the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JournalMode {
    /// Rollback journal, deleted at commit (`journal_mode=DELETE`).
    Delete,
    /// Write-ahead log (`journal_mode=WAL`), with frequent checkpoints.
    Wal,
}

/// SQLite's `synchronous` setting for the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Synchronous {
    /// `synchronous=FULL`: fsync at every commit.
    Full,
    /// `synchronous=EXTRA`: FULL, and fsync the directory after deleting the journal.
    Extra,
}

/// One atomic-commit workload and how SQLite is set up for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtomicCommitWorkload {
    /// Journal mode.
    pub journal: JournalMode,
    /// Sync level.
    pub synchronous: Synchronous,
    /// Transactions committed after the table is created. Default 6.
    pub transactions: u32,
    /// Rows inserted by each transaction. Default 10.
    pub rows_per_transaction: u32,
    /// The VFS drops every fsync: a broken setup the matrix must catch.
    pub skip_sync: bool,
}

impl AtomicCommitWorkload {
    /// A workload with the default size.
    pub fn new(journal: JournalMode, synchronous: Synchronous) -> Self {
        Self {
            journal,
            synchronous,
            transactions: 6,
            rows_per_transaction: 10,
            skip_sync: false,
        }
    }

    /// A name such as `sqlite-delete-full`.
    pub fn name(&self) -> String {
        let journal = match self.journal {
            JournalMode::Delete => "delete",
            JournalMode::Wal => "wal",
        };
        let sync = match self.synchronous {
            Synchronous::Full => "full",
            Synchronous::Extra => "extra",
        };
        let broken = if self.skip_sync { "-nosync" } else { "" };
        format!("sqlite-{journal}-{sync}{broken}")
    }
}

/// What the matrix tries at each point.
#[derive(Clone, Debug)]
pub struct MatrixOptions {
    /// The run seed. Default 0.
    pub seed: u64,
    /// Persistence models for power cuts. Default: all four.
    pub models: Vec<PersistenceModel>,
    /// Enumerate every distinct outcome of a power cut when there are at most
    /// this many; sample otherwise. Default 16.
    pub exhaustive_limit: usize,
    /// Samples per point and model when not enumerating. Default 3.
    pub samples_per_point: u64,
    /// Errno faults injected once at every syscall they apply to. Default
    /// `EIO` and `ENOSPC`.
    pub errno_faults: Vec<Fault>,
    /// Inject a torn write at every write. Default true.
    pub torn_writes: bool,
    /// Check only every n-th syscall (1 = every one). Default 1.
    pub stride: u64,
    /// Run only the points (by ordinal) this part owns: how the matrix is
    /// split over shards and worker processes. Default: the whole matrix.
    pub part: crate::engine::Part,
}

impl Default for MatrixOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            models: PersistenceModel::ALL.to_vec(),
            exhaustive_limit: 16,
            samples_per_point: 3,
            errno_faults: vec![Fault::EIO, Fault::ENOSPC],
            torn_writes: true,
            stride: 1,
            part: crate::engine::Part::WHOLE,
        }
    }
}

/// One failed case.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The case.
    pub case: Case,
    /// The syscall the fault struck (`None` for a power cut after the last one).
    pub op: Option<SyscallKind>,
    /// What broke.
    pub violation: Violation,
}

/// What a matrix run found.
#[derive(Clone, Debug, Default)]
pub struct MatrixReport {
    /// Syscalls in the fault-free workload.
    pub workload_syscalls: u64,
    /// (syscall, fault) pairs tried.
    pub crash_points: u64,
    /// Post-fault states checked (a point may have several).
    pub states_checked: u64,
    /// Every failed case, in the order tried.
    pub failures: Vec<Failure>,
}

/// SQLite's PRNG is process-global: simulations that run SQLite are
/// serialised and reseed it, so each is deterministic whatever else runs.
static SQLITE_SERIAL: Mutex<()> = Mutex::new(());

fn sqlite_serial() -> MutexGuard<'static, ()> {
    SQLITE_SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

const DIR: &str = "/db";
const DB: &str = "/db/test.db";

/// A fresh machine with the database directory made durable.
fn machine(seed: u64) -> io::Result<SimFs> {
    let fs = SimFs::new(SimConfig::with_seed(seed));
    fs.create_dir_all(Path::new(DIR))?;
    fs.sync_dir(Path::new("/"))?;
    Ok(fs)
}

fn vfs_for(fs: &SimFs, seed: u64, skip_sync: bool) -> io::Result<SqliteVfs> {
    reseed_sqlite_prng(seed);
    SqliteVfs::register(
        Arc::new(fs.clone()),
        Arc::new(fs.clock()),
        VfsOptions {
            skip_sync,
            randomness_seed: seed,
            ..VfsOptions::default()
        },
    )
}

/// Runs a PRAGMA to completion (a PRAGMA's errors show only when stepped to
/// the end) and returns its first value.
fn pragma(conn: &Connection, sql: &str) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut first = None;
    while let Some(row) = rows.next()? {
        if first.is_none() {
            first = Some(row.get::<_, rusqlite::types::Value>(0)?);
        }
    }
    Ok(match first {
        Some(rusqlite::types::Value::Text(text)) => text,
        Some(rusqlite::types::Value::Integer(n)) => n.to_string(),
        _ => String::new(),
    })
}

/// What the workload got acknowledged: for each transaction whose COMMIT
/// returned (the table's creation first), the syscall count at that moment.
#[derive(Clone, Debug, Default)]
struct Acks {
    at: Vec<u64>,
}

impl Acks {
    /// Transactions acknowledged before the syscall with this index ran.
    fn before(&self, syscall: u64) -> usize {
        self.at.iter().filter(|&&at| at <= syscall).count()
    }
}

/// Runs the workload until it finishes or a syscall fails; returns the acks.
fn run_workload(fs: &SimFs, workload: &AtomicCommitWorkload, seed: u64) -> Acks {
    let mut acks = Acks::default();
    let Ok(vfs) = vfs_for(fs, seed, workload.skip_sync) else {
        return acks;
    };
    let _ = drive(fs, &vfs, workload, &mut acks);
    acks
}

fn drive(fs: &SimFs, vfs: &SqliteVfs, workload: &AtomicCommitWorkload, acks: &mut Acks) -> rusqlite::Result<()> {
    let conn = vfs.open(
        Path::new(DB),
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    let (mode, sync) = match (workload.journal, workload.synchronous) {
        (JournalMode::Delete, Synchronous::Full) => ("delete", "FULL"),
        (JournalMode::Delete, Synchronous::Extra) => ("delete", "EXTRA"),
        (JournalMode::Wal, Synchronous::Full) => ("wal", "FULL"),
        (JournalMode::Wal, Synchronous::Extra) => ("wal", "EXTRA"),
    };
    let actual = pragma(&conn, &format!("PRAGMA journal_mode={mode}"))?;
    if actual != mode {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {actual}, not {mode}"
        )));
    }
    pragma(&conn, &format!("PRAGMA synchronous={sync}"))?;
    pragma(&conn, "PRAGMA wal_autocheckpoint=4")?;
    conn.execute_batch("CREATE TABLE t(txn INTEGER NOT NULL, i INTEGER NOT NULL, payload BLOB NOT NULL)")?;
    acks.at.push(fs.syscall_count());
    for txn in 1..=workload.transactions {
        conn.execute_batch("BEGIN")?;
        for i in 0..workload.rows_per_transaction {
            let payload = vec![(txn * 31 + i) as u8; 200];
            conn.execute("INSERT INTO t VALUES (?1, ?2, ?3)", rusqlite::params![txn, i, payload])?;
        }
        conn.execute_batch("COMMIT")?;
        acks.at.push(fs.syscall_count());
    }
    conn.close().map_err(|(_, e)| e)
}

/// Opens the database as a restarted process would and checks it against
/// `acked` acknowledged transactions (the table's creation counts as one).
fn check(fs: &SimFs, workload: &AtomicCommitWorkload, seed: u64, acked: usize) -> Result<(), Violation> {
    let broken = |invariant, evidence: String| Violation { invariant, evidence };
    let vfs = vfs_for(fs, seed, false)
        .map_err(|e| broken(Invariant::CompleteDatabase, format!("VFS registration failed: {e}")))?;
    let conn = vfs
        .open(
            Path::new(DB),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|e| broken(Invariant::CompleteDatabase, format!("open failed: {e}")))?;
    let integrity =
        pragma(&conn, "PRAGMA integrity_check").map_err(|e| broken(Invariant::CompleteDatabase, e.to_string()))?;
    if integrity != "ok" {
        return Err(broken(
            Invariant::CompleteDatabase,
            format!("integrity_check: {integrity}"),
        ));
    }
    let has_table: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 't'", [], |r| r.get(0))
        .map_err(|e| broken(Invariant::CompleteDatabase, e.to_string()))?;
    let mut present = Vec::new();
    if has_table == 1 {
        let mut stmt = conn
            .prepare("SELECT txn, count(*) FROM t GROUP BY txn ORDER BY txn")
            .map_err(|e| broken(Invariant::CompleteDatabase, e.to_string()))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| broken(Invariant::CompleteDatabase, e.to_string()))?;
        present = rows;
    }
    for (position, (txn, count)) in present.iter().enumerate() {
        if *txn as usize != position + 1 {
            return Err(broken(
                Invariant::AtomicOp,
                format!("transactions present are not a prefix: {present:?}"),
            ));
        }
        if *count != workload.rows_per_transaction {
            return Err(broken(
                Invariant::AtomicOp,
                format!(
                    "transaction {txn} is partial: {count} of {} rows",
                    workload.rows_per_transaction
                ),
            ));
        }
    }
    let found = usize::from(has_table == 1) + present.len();
    if found < acked {
        return Err(broken(
            Invariant::CommittedDurable,
            format!(
                "{acked} transactions were acknowledged (table creation included), {found} survived; \
                 integrity_check is ok"
            ),
        ));
    }
    if found > acked + 1 {
        return Err(broken(
            Invariant::AtomicOp,
            format!("{found} transactions present but only {acked} acknowledged and one in flight"),
        ));
    }
    Ok(())
}

/// The fault-free probe: the syscall count, the acks, and a snapshot before
/// every syscall plus one after the last.
struct Probe {
    acks: Acks,
    crash_seed: u64,
    snapshots: Vec<SimSnapshot>,
    ops: Vec<SyscallKind>,
    start: u64,
    end: u64,
}

fn probe(workload: &AtomicCommitWorkload, seed: u64) -> io::Result<Probe> {
    let fs = machine(seed)?;
    let start = fs.syscall_count();
    fs.record_snapshots(true);
    let acks = run_workload(&fs, workload, seed);
    let mut snapshots = fs.take_snapshots();
    snapshots.push(fs.snapshot());
    let trace = fs.trace();
    let ops = trace
        .entries()
        .iter()
        .filter(|e| e.index >= start)
        .map(|e| e.op)
        .collect();
    let end = fs.syscall_count();
    if acks.at.len() != workload.transactions as usize + 1 {
        return Err(io::Error::other("the fault-free workload did not finish"));
    }
    Ok(Probe {
        acks,
        crash_seed: fs.crash_seed(),
        snapshots,
        ops,
        start,
        end,
    })
}

/// Runs the whole matrix for one workload, calling `progress(done, total)`
/// as points complete.
pub fn run_matrix(
    workload: &AtomicCommitWorkload,
    options: &MatrixOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<MatrixReport> {
    let _serial = sqlite_serial();
    let probe = probe(workload, options.seed)?;
    let mut report = MatrixReport {
        workload_syscalls: probe.end - probe.start,
        ..MatrixReport::default()
    };
    let points: Vec<u64> = (probe.start..=probe.end)
        .filter(|k| (k - probe.start) % options.stride.max(1) == 0 || *k == probe.end)
        .collect();
    let total = points.len() as u64;
    for (done, &syscall) in points.iter().enumerate() {
        if !options.part.owns(done as u64) {
            progress(done as u64 + 1, total);
            continue;
        }
        let snapshot = &probe.snapshots[(syscall - probe.start) as usize];
        let acked = probe.acks.before(syscall);
        for &model in &options.models {
            report.crash_points += 1;
            for (pick, choice) in crash_picks(
                snapshot,
                model,
                options.exhaustive_limit,
                options.samples_per_point,
                probe.crash_seed,
            ) {
                let rebooted = snapshot.boot(model, &choice);
                report.states_checked += 1;
                if let Err(violation) = check(&rebooted, workload, options.seed, acked) {
                    report.failures.push(Failure {
                        case: Case {
                            syscall,
                            fault: Fault::PowerCut,
                            crash: Some((model, pick)),
                        },
                        op: probe.ops.get((syscall - probe.start) as usize).copied(),
                        violation,
                    });
                }
            }
        }
        if let Some(op) = probe.ops.get((syscall - probe.start) as usize) {
            let mut faults: Vec<Fault> = options
                .errno_faults
                .iter()
                .copied()
                .filter(|f| f.applies_to(*op))
                .collect();
            if options.torn_writes && *op == SyscallKind::Write {
                faults.push(Fault::TornWrite);
            }
            for fault in faults {
                let case = Case {
                    syscall,
                    fault,
                    crash: None,
                };
                let outcome = replay_locked(workload, options.seed, &case)?;
                report.crash_points += 1;
                report.states_checked += outcome.states_checked;
                if let Err(violation) = outcome.verdict {
                    report.failures.push(Failure {
                        case,
                        op: Some(*op),
                        violation,
                    });
                }
            }
        }
        progress(done as u64 + 1, total);
    }
    Ok(report)
}

/// What replaying one case found.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// The first broken invariant, if any.
    pub verdict: Result<(), Violation>,
    /// How many post-fault states were checked.
    pub states_checked: u64,
    /// The whole trace: workload, fault, reboot, recovery.
    pub trace: Trace,
}

/// Re-runs one case from scratch, by injecting the fault into a fresh run
/// (no snapshots), and checks it. A power cut is replayed with the outcome the
/// matrix derived from its snapshot, so a repro line reproduces exactly.
pub fn replay(workload: &AtomicCommitWorkload, seed: u64, case: &Case) -> io::Result<ReplayOutcome> {
    let _serial = sqlite_serial();
    replay_locked(workload, seed, case)
}

fn replay_locked(workload: &AtomicCommitWorkload, seed: u64, case: &Case) -> io::Result<ReplayOutcome> {
    let fs = machine(seed)?;
    fs.set_fault_plan(FaultPlan::none().at(case.syscall, case.fault));
    // The workload stops at the fault, or runs on past an error SQLite
    // tolerated: either way every ack it got came before the check.
    let acked = run_workload(&fs, workload, seed).at.len();
    // The plan is for the workload: a fault not reached (a power cut after the
    // last syscall) must not strike the recovery instead.
    fs.set_fault_plan(FaultPlan::none());
    let mut states_checked = 0;
    let verdict = match (case.fault, &case.crash) {
        (Fault::PowerCut, Some((model, pick))) => {
            let snapshot = fs.snapshot();
            let choice = match pick {
                CrashPick::Distinct(i) => snapshot
                    .distinct_crashes(*model, usize::MAX >> 1)
                    .and_then(|all| all.get(*i).cloned())
                    .ok_or_else(|| io::Error::other(format!("no distinct outcome {i} at this point")))?,
                CrashPick::Sample(i) => snapshot.sample_crash(*model, fs.crash_seed().wrapping_add(*i)),
            };
            fs.power_cut();
            let rebooted = fs.reboot_with(*model, &choice);
            states_checked += 1;
            check(&rebooted, workload, seed, acked)
        }
        _ => {
            // The process that saw the fault gives up; a new one recovers.
            states_checked += 1;
            let restarted = fs.spawn_process();
            let after_restart = if fs
                .halted()
                .is_some_and(|h| h.kind == tearline_sim_fs::HaltKind::PowerCut)
            {
                Ok(())
            } else {
                check(&restarted, workload, seed, acked)
            };
            // Then the power fails (if it has not), keeping nothing unsynced
            // but the sectors a torn write put on the disk.
            let model = PersistenceModel::NothingUnsynced;
            let rebooted = fs.reboot_with(model, &fs.crash_choice(model));
            states_checked += 1;
            after_restart.and_then(|()| check(&rebooted, workload, seed, acked))
        }
    };
    Ok(ReplayOutcome {
        verdict,
        states_checked,
        trace: fs.trace(),
    })
}
