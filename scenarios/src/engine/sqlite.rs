//! SQLite's own atomic-commit workload as a [`Subject`] of the engine.
//!
//! The workload opens a database through the SQLite VFS bridge on a
//! [`SimFs`], creates a table, commits a number of transactions of a few
//! rows each, and closes the database. Each step is an operation of the
//! [`Model`] (creating the table, then each transaction, is an `add` of one
//! entry), so a restarted process's view of the database is an
//! [`Observation`] checked by the same invariants as any store's:
//!
//! - **complete-database**: the database opens and `PRAGMA integrity_check`
//!   says `ok` (a database that fails it has no trustworthy contents, so
//!   nothing else is compared);
//! - **atomic-op**: the transaction in flight is there whole or not at all;
//! - **committed-durable**: every transaction whose `COMMIT` returned before
//!   the fault is there, and nothing that was never committed is.
//!
//! Faults are the engine's (every one but a process crash, which SQLite's
//! matrix has never included): a power cut at every syscall under every
//! persistence model, `ENOSPC`/`EIO` where they apply, a torn write at
//! every write. After an errno or a torn write the process restarts and
//! checks, then the power fails keeping nothing unsynced, and it checks
//! again.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OpenFlags};
use tearline_model::invariants::{check_recovered, complete_database};
use tearline_model::{Capabilities, Invariant, Model, Observation, Operation, Violation, content_hash};
use tearline_sim_fs::sqlite::{SqliteVfs, VfsOptions, reseed_sqlite_prng};
use tearline_sim_fs::{Fault, FaultPlan, Fs, FsExt, HaltKind, PersistenceModel, SimConfig, SimFs};

use super::HarnessError;
use super::branch::Branches;
use super::driver::first_of_each;
use super::passes::Passes;
use super::subject::{Mark, Probe, Replay, Subject, reboot_after_power_cut, record};
use crate::case::{Case, Injection};
use crate::stores;

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

    /// The model's operation for step `i`: creating the table (0), then
    /// transaction `i`.
    fn operation(&self, i: u32) -> Operation {
        if i == 0 {
            Operation::Add {
                name: TABLE.to_string(),
                content: TABLE_CREATED.to_string(),
            }
        } else {
            Operation::Add {
                name: transaction_name(i),
                content: rows(self.rows_per_transaction),
            }
        }
    }

    /// Each step, described: the table's creation, the transactions, the close.
    fn steps(&self) -> Vec<String> {
        let mut steps = vec!["open and create table t".to_string()];
        steps.extend((1..=self.transactions).map(|i| format!("transaction {i}")));
        steps.push("close".to_string());
        steps
    }

    /// The model after `acked` steps were acknowledged, with the next in
    /// flight if `in_flight` (and there is a next).
    fn model(&self, acked: u32, in_flight: bool) -> Model {
        let mut model = Model::new();
        for i in 0..acked {
            model.begin(&self.operation(i));
            model.acknowledge();
        }
        if in_flight && acked <= self.transactions {
            model.begin(&self.operation(acked));
        }
        model
    }
}

/// The entry the table's creation adds.
const TABLE: &str = "table t";
const TABLE_CREATED: &str = "created";

fn transaction_name(i: u32) -> String {
    format!("transaction {i:03}")
}

fn rows(count: u32) -> String {
    format!("{count} rows")
}

/// The atomic-commit workload at one scale, as the engine runs it.
pub struct SqliteSubject {
    name: String,
    workload: AtomicCommitWorkload,
    scale: u32,
}

impl SqliteSubject {
    /// The workload, sized at `scale` (the scale goes into repro lines).
    pub fn new(workload: AtomicCommitWorkload, scale: u32) -> Self {
        Self {
            name: workload.name(),
            workload,
            scale,
        }
    }
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

/// Runs the workload until it finishes or a syscall fails; returns the
/// syscall count at each acknowledgement (the table's creation first).
fn run_workload(fs: &SimFs, workload: &AtomicCommitWorkload, seed: u64) -> Vec<u64> {
    let mut acks = Vec::new();
    if let Ok(vfs) = vfs_for(fs, seed, workload.skip_sync) {
        let _ = drive(fs, &vfs, workload, &mut acks);
    }
    acks
}

fn drive(fs: &SimFs, vfs: &SqliteVfs, workload: &AtomicCommitWorkload, acks: &mut Vec<u64>) -> rusqlite::Result<()> {
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
    acks.push(fs.syscall_count());
    for txn in 1..=workload.transactions {
        conn.execute_batch("BEGIN")?;
        for i in 0..workload.rows_per_transaction {
            let payload = vec![(txn * 31 + i) as u8; 200];
            conn.execute("INSERT INTO t VALUES (?1, ?2, ?3)", rusqlite::params![txn, i, payload])?;
        }
        conn.execute_batch("COMMIT")?;
        acks.push(fs.syscall_count());
    }
    conn.close().map_err(|(_, e)| e)
}

/// What a restarted process finds: the database as an observation, or why
/// it could not be read (a complete-database violation).
fn observe(fs: &SimFs, seed: u64) -> Result<Observation, Violation> {
    let broken = complete_database::observe_failed;
    let vfs = vfs_for(fs, seed, false).map_err(complete_database::open_failed)?;
    let conn = vfs
        .open(
            Path::new(DB),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(complete_database::open_failed)?;
    let integrity = pragma(&conn, "PRAGMA integrity_check").map_err(broken)?;
    let mut observation = Observation {
        integrity_ok: integrity == "ok",
        integrity_detail: format!("integrity_check: {integrity}"),
        ..Observation::default()
    };
    if !observation.integrity_ok {
        return Ok(observation);
    }
    let has_table: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 't'", [], |r| r.get(0))
        .map_err(broken)?;
    if has_table == 1 {
        observation
            .indexed
            .insert(TABLE.to_string(), content_hash(TABLE_CREATED.as_bytes()));
        let mut stmt = conn
            .prepare("SELECT txn, count(*) FROM t GROUP BY txn ORDER BY txn")
            .map_err(broken)?;
        let groups = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(broken)?;
        for (txn, count) in groups {
            observation
                .indexed
                .insert(transaction_name(txn), content_hash(rows(count).as_bytes()));
        }
    }
    Ok(observation)
}

/// Checks what a restarted process finds against `model`.
fn check(fs: &SimFs, seed: u64, model: &Model) -> Vec<Violation> {
    let observation = match observe(fs, seed) {
        Ok(observation) => observation,
        Err(violation) => return vec![violation],
    };
    let mut violations = check_recovered(&observation, model, &Capabilities::default());
    if !observation.integrity_ok {
        // A malformed database's rows are not evidence of anything else.
        violations.retain(|v| v.invariant == Invariant::CompleteDatabase);
        return violations;
    }
    let acked = model.acknowledged().indexed.len();
    let found = observation.indexed.len();
    for violation in &mut violations {
        violation.evidence = format!(
            "{}; {acked} transactions were acknowledged (table creation included), {found} survived; integrity_check is ok",
            violation.evidence
        );
    }
    violations
}

impl Subject for SqliteSubject {
    fn name(&self) -> &str {
        &self.name
    }

    fn case(&self, seed: u64, injection: Injection) -> Case {
        Case {
            scenario: self.name().to_string(),
            seed,
            injection,
            scale: self.scale,
            store: stores::DEFAULT.to_string(),
        }
    }

    fn takes(&self, fault: Fault) -> bool {
        fault != Fault::ProcessCrash
    }

    fn probe(&self, seed: u64) -> Result<Probe, HarnessError> {
        let _serial = sqlite_serial();
        let workload = &self.workload;
        let harness = |e: io::Error| HarnessError(format!("{}: {e}", self.name()));
        let fs = machine(seed).map_err(harness)?;
        let recording = record(&fs, || run_workload(&fs, workload, seed));
        let (acks, start, end, snapshots, ops, trace) = (
            recording.value,
            recording.start,
            recording.end,
            recording.snapshots,
            recording.ops,
            recording.trace,
        );
        if acks.len() != workload.transactions as usize + 1 {
            return Err(harness(io::Error::other("the fault-free workload did not finish")));
        }
        // Step i runs from the previous acknowledgement to its own; the
        // close runs from the last one to the end.
        let mut marks = Vec::new();
        let mut owners = Vec::with_capacity(ops.len());
        let mut began = start;
        for (i, &acked_at) in acks.iter().enumerate() {
            let i = i as u32;
            marks.push(Mark {
                at: began,
                model: workload.model(i, true),
            });
            owners.extend((began..acked_at).map(|_| Some(i as usize)));
            marks.push(Mark {
                at: acked_at,
                model: workload.model(i + 1, false),
            });
            began = acked_at;
        }
        owners.extend((began..end).map(|_| Some(acks.len())));
        let repeated_reads = super::subject::repeated_reads(&trace, start, &owners);
        Ok(Probe {
            seed,
            start,
            end,
            snapshots,
            ops,
            owners,
            steps: workload.steps(),
            repeated_reads,
            marks,
            crash_seed: fs.crash_seed(),
            trace_hash: trace.hash(),
            trace,
            lock_broken_from: None,
            workload_pid: None,
            source_dir: None,
            // SQLite's checks open no store after a recovery.
            passes: Passes::off(),
            violations: Vec::new(),
            workload_violations: Vec::new(),
        })
    }

    fn check_power_cut(&self, probe: &Probe, at: u64, booted: &SimFs, _reader: bool) -> Vec<Violation> {
        let _serial = sqlite_serial();
        check(booted, probe.seed, &probe.model_at(at))
    }

    /// A fresh run with the fault injected (no snapshots); a power cut is
    /// replayed with the outcome the matrix derived from its snapshot, so a
    /// repro line reproduces exactly.
    fn replay(&self, probe: &Probe, seed: u64, injection: &Injection) -> Result<Replay, HarnessError> {
        self.run_case(probe, seed, Some(injection), None)?
            .ok_or_else(|| HarnessError(format!("{}: the replay struck no fault", self.name())))
    }

    fn replay_branching(&self, probe: &Probe, seed: u64, branches: &Arc<Branches>) -> Result<(), HarnessError> {
        self.run_case(probe, seed, None, Some(branches)).map(drop)
    }
}

impl SqliteSubject {
    /// [`Subject::replay`] (with `injection`) and
    /// [`Subject::replay_branching`] (with `branches`): `None` in a
    /// branching run's runner, once its workload has ended (a branch
    /// concludes and exits).
    fn run_case(
        &self,
        _probe: &Probe,
        seed: u64,
        injection: Option<&Injection>,
        branches: Option<&Arc<Branches>>,
    ) -> Result<Option<Replay>, HarnessError> {
        let _serial = sqlite_serial();
        let harness = |e: io::Error| HarnessError(format!("{}: {e}", self.name()));
        let fs = machine(seed).map_err(harness)?;
        let start = fs.syscall_count();
        if let Some(injection) = injection {
            fs.set_fault_plan(FaultPlan::none().at(injection.syscall, injection.fault));
        }
        if let Some(branches) = branches {
            branches.install(&fs, u64::MAX);
        }
        // The workload stops at the fault, or runs on past an error SQLite
        // tolerated: either way every ack it got came before the check.
        let acked = run_workload(&fs, &self.workload, seed).len() as u32;
        let Some(injection) = injection.cloned().or_else(|| branches.and_then(|b| b.struck())) else {
            return Ok(None);
        };
        let end = fs.syscall_count();
        // The plan is for the workload: a fault not reached (a power cut after
        // the last syscall) must not strike the recovery instead.
        fs.set_fault_plan(FaultPlan::none());
        let model = self.workload.model(acked, true);
        let mut violations = Vec::new();
        let mut states_checked = 0;
        match &injection.crash {
            Some((persistence, pick)) => {
                let rebooted = reboot_after_power_cut(&fs, injection.syscall, *persistence, *pick)?;
                states_checked += 1;
                violations.extend(check(&rebooted, seed, &model));
            }
            None => {
                // The process that saw the fault gives up; a new one looks.
                // (Opening a database is no recovery that makes what it
                // finds durable, so the transaction in flight stays
                // uncertain: it may still be lost by the power cut below.)
                if !fs.halted().is_some_and(|h| h.kind == HaltKind::PowerCut) {
                    let restarted = fs.spawn_process();
                    states_checked += 1;
                    violations.extend(check(&restarted, seed, &model));
                }
                // Then the power fails (if it has not), keeping nothing
                // unsynced but the sectors a torn write put on the disk.
                let persistence = PersistenceModel::NothingUnsynced;
                let rebooted = fs.reboot_with(persistence, &fs.crash_choice(persistence));
                states_checked += 1;
                violations.extend(check(&rebooted, seed, &model));
            }
        }
        let violations = first_of_each(violations);
        if let Some(branches) = branches {
            branches.conclude(&fs, violations, states_checked);
        }
        Ok(Some(Replay {
            violations,
            states_checked,
            trace: fs.trace(),
            workload: (start, end),
        }))
    }
}
