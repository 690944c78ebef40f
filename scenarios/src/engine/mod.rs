//! The crash-matrix engine: one engine for every [`Subject`] — a store
//! scenario through the contract ([`StoreSubject`]) or SQLite's own
//! atomic-commit workload ([`SqliteSubject`]) — sharing the enumeration of
//! cases, the parts, the checks after a power cut, shrinking and the
//! failure records.
//!
//! Fault model (what a store under test must survive), per syscall of the
//! scenario's workload:
//! - a **power cut** before the syscall (and after the last one): the disk
//!   is derived from the probe's snapshot under each [`PersistenceModel`]
//!   (every distinct outcome where there are at most
//!   [`EngineOptions::exhaustive_limit`], seeded samples otherwise);
//! - **ENOSPC, EIO, EXDEV, a process crash, a torn write** wherever
//!   [`Fault::applies_to`] that syscall: replayed from scratch with the
//!   fault injected; the process gives up, a new process opens the store
//!   writable, then the power fails keeping nothing unsynced (but a torn
//!   write's sectors).
//!
//! After each fault: a writable open through the factory (recovery runs),
//! an observation, and [`tearline_model::invariants::check_recovered`]
//! against the [`tearline_model::Model`] as it stood at that syscall; the
//! lock invariant is read off every case's trace; the fault-free probe is
//! checked for filesystem-wins and rebuild-idempotent when the workload ends
//! with a full sync. Every store call is guarded: a panic, or more syscalls
//! than 50 times the probe's (a hang), is a clean-error violation.
//! Invariants whose capability the store lacks are not applicable.
//!
//! **Each distinct state once** ([`EngineOptions::dedup`]): a power cut at a
//! syscall that changed nothing on disk (a read, a `stat`, a lock) leaves
//! the disk one at the syscall before it left, and many outcomes of the
//! persistence models coincide. A power-cut case whose booted disk (names,
//! inodes, contents, times, bad sectors:
//! [`tearline_sim_fs::SimSnapshot::crash_state_key`]), model of what must
//! be there, reader flag, and lock verdict of what the machine did before
//! the cut ([`subject::Probe::lock_broken_from`]) equal an earlier case's of
//! the same CI shard
//! is not checked again: it gets that case's verdict
//! ([`PartResult::merge`]), and reports count it among the states but not
//! among the distinct states checked. Only the clock and the syscall
//! numbering of the two machines differ, and no check reads them. Other
//! faults are replays and always run; the concurrent reader at a syscall
//! runs with its first case either way.
//!
//! Cases are numbered in a fixed order; a [`Part`] (a CI shard, and within
//! it one of several local worker processes) owns the cases whose number it
//! selects, so any split gives the same merged results. SQLite's PRNG is
//! process-global, so parts run in separate processes ([`parallel`]), never
//! on threads of one.

pub mod branch;
pub mod driver;
pub mod lock_attack;
pub mod matrix;
pub mod parallel;
mod passes;
pub mod scenario;
pub mod shrink;
pub mod sqlite;
pub mod store;
pub mod subject;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tearline_sim_fs::{Fault, PersistenceModel};

pub use branch::Branches;
pub use parallel::{Part, WorkerCommand};
pub use scenario::{Capacity, Damage, LockAttack, MountUnderRoot, PersistentCause, Plant, Step, StoreScenario};
pub use sqlite::{AtomicCommitWorkload, JournalMode, SqliteSubject, Synchronous};
pub use store::StoreSubject;
pub use subject::{Probe, Replay, Subject};

use crate::case::Injection;
use crate::report::FailureRecord;
use passes::Passes;
use tearline_model::Violation;

/// The harness itself failed (not the store): bad setup, a fault-free
/// workload that does not finish, a worker that died.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HarnessError(pub String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

/// What the matrix tries. Every field has a documented default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// The run seed. Default 0.
    pub seed: u64,
    /// The faults injected (power cuts, process crashes, errnos, torn
    /// and misdirected writes, faults at rest, clock steps). Default:
    /// [`ALL_FAULTS`].
    pub faults: Vec<Fault>,
    /// Persistence models for power cuts. Default: all five.
    pub models: Vec<PersistenceModel>,
    /// Enumerate every distinct outcome of a power cut when there are at
    /// most this many; sample otherwise. Default 16.
    pub exhaustive_limit: usize,
    /// Samples per point and model when not enumerating. Default 3.
    pub samples_per_point: u64,
    /// Check every case twice and compare trace hashes. Default false.
    pub check_determinism: bool,
    /// Check each distinct post-fault state once: a power cut that leaves
    /// the same disk (names, inodes, contents, times, bad sectors) as an
    /// earlier case of the matrix, or a crash derived from its snapshot
    /// that leaves the same machine (the disk, the page cache, the writes
    /// not yet durable, the processes), with the same model of what must be
    /// there, gets that case's verdict without being checked again; and a
    /// check after a recovery (recovery-idempotent's second and third
    /// opens) that passed from an equal machine is not run again (see the
    /// `passes` module; the second open is always run with
    /// [`EngineOptions::check_determinism`], whose trace hash covers it).
    /// Default true.
    pub dedup: bool,
    /// Continue, don't re-run: branch each case that is not derived from a
    /// snapshot and strikes at or after this syscall off one run of the
    /// workload (a fork at its syscall: [`branch`]) instead of replaying
    /// the workload from scratch for it, where the process can fork. The
    /// results are the same either way; `None` replays every case. Default
    /// [`BRANCH_FROM`].
    pub branch_from: Option<u64>,
    /// Check a crash of the workload's process from the probe's snapshot
    /// before its syscall ([`tearline_sim_fs::SimSnapshot::resume_killed`]),
    /// as a power cut is: the workload stops there, so nothing before it
    /// needs to run again. With [`EngineOptions::dedup`], a crash that
    /// leaves the same machine as an earlier one shares its verdict. The
    /// results are the same as a replay's; false replays (or branches)
    /// them. Default true.
    pub derive_crashes: bool,
}

/// The default [`EngineOptions::branch_from`]: a branch costs its pages'
/// copies (about 500 copy-on-write faults, 1.5-2.5 ms on the 2-core
/// machine the figures come from), which the prefix it skips must pay for.
pub const BRANCH_FROM: u64 = 1500;

/// How far the clock faults step: past the reference store's default
/// backup retention (7 days), so a retention policy that trusts the clock
/// shows it.
pub const CLOCK_STEP: Duration = Duration::from_secs(8 * 24 * 3600);

/// Every fault the engine knows, in the order cases are enumerated. Clock
/// steps strike the first syscall of each workload step (a store reads its
/// clock, not a syscall, so one step per operation finds what any would).
pub const ALL_FAULTS: [Fault; 13] = [
    Fault::PowerCut,
    Fault::ProcessCrash,
    Fault::ENOSPC,
    Fault::EIO,
    Fault::EXDEV,
    Fault::TornWrite,
    Fault::MisdirectedWrite,
    Fault::LatentSector,
    Fault::BitRot,
    Fault::BitFlip,
    Fault::Vanish,
    Fault::ClockJumpBack(CLOCK_STEP),
    Fault::ClockJumpForward(CLOCK_STEP),
];

/// Whether a fault strikes a file behind the store's back (the medium, or
/// another process), so the model must be told what it struck
/// ([`driver::Driver::account_fault_at_rest`]).
pub(crate) fn strikes_a_file(fault: Fault) -> bool {
    fault.is_at_rest() || fault == Fault::Vanish
}

/// Whether a fault steps the clock (injected once per workload step).
pub(crate) fn steps_the_clock(fault: Fault) -> bool {
    matches!(fault, Fault::ClockJumpBack(_) | Fault::ClockJumpForward(_))
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            faults: ALL_FAULTS.to_vec(),
            models: PersistenceModel::ALL.to_vec(),
            exhaustive_limit: 16,
            samples_per_point: 3,
            check_determinism: false,
            dedup: true,
            branch_from: Some(BRANCH_FROM),
            derive_crashes: true,
        }
    }
}

/// A case whose post-fault state an earlier case of the matrix already
/// checked (see [`EngineOptions::dedup`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    /// The case's number in the enumeration.
    pub case_index: u64,
    /// The earlier case with the same state.
    pub same_as: u64,
    /// The case, for its failure records.
    pub case: crate::case::Case,
    /// The syscall at the case's index, by its trace name.
    pub op: Option<String>,
    /// The workload step in flight.
    pub step: Option<String>,
}

/// What one part of a scenario's matrix found (a worker's answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartResult {
    /// The scenario.
    pub scenario: String,
    /// Syscalls in the fault-free workload.
    pub workload_syscalls: u64,
    /// Cases in the whole matrix (every part).
    pub cases: u64,
    /// Crash points (syscall, fault, model) whose first case this part owns.
    pub crash_points: u64,
    /// Post-fault states of this part's cases (each has a verdict).
    pub states_checked: u64,
    /// Of those, the states this part checked: the others had the same
    /// post-fault state as an earlier case, whose verdict they share.
    #[serde(default)]
    pub distinct_states: u64,
    /// This part's cases that were branched off one run of the workload
    /// ([`EngineOptions::branch_from`]).
    #[serde(default)]
    pub branched_cases: u64,
    /// This part's crash cases checked from the probe's snapshot, not
    /// replayed ([`EngineOptions::derive_crashes`]).
    #[serde(default)]
    pub derived_crashes: u64,
    /// This part's cases that shared an earlier case's state, and so its
    /// verdict: [`PartResult::merge`] gives them its failures.
    #[serde(default)]
    pub duplicates: Vec<Duplicate>,
    /// Read-only opens this part checked: concurrent with the workload, and
    /// after a fault before recovery (reader-consistent).
    #[serde(default)]
    pub reader_observations: u64,
    /// Every violation found, by case number.
    pub failures: Vec<FailureRecord>,
    /// The hash of the fault-free probe's trace (store scenarios).
    pub workload_trace_hash: Option<u64>,
}

impl PartResult {
    /// Merges parts in a fixed order: the result does not depend on how the
    /// matrix was split.
    pub fn merge(parts: Vec<PartResult>) -> PartResult {
        let mut merged = PartResult::default();
        for part in parts {
            merged.scenario = part.scenario;
            merged.workload_syscalls = merged.workload_syscalls.max(part.workload_syscalls);
            merged.cases = merged.cases.max(part.cases);
            merged.crash_points += part.crash_points;
            merged.states_checked += part.states_checked;
            merged.distinct_states += part.distinct_states;
            merged.branched_cases += part.branched_cases;
            merged.derived_crashes += part.derived_crashes;
            merged.duplicates.extend(part.duplicates);
            merged.reader_observations += part.reader_observations;
            merged.workload_trace_hash = merged.workload_trace_hash.or(part.workload_trace_hash);
            merged.failures.extend(part.failures);
        }
        // A duplicate breaks what the case it repeats broke.
        let mut shared = Vec::new();
        for duplicate in &merged.duplicates {
            for failure in merged.failures.iter().filter(|f| f.case_index == duplicate.same_as) {
                shared.push(FailureRecord {
                    case_index: duplicate.case_index,
                    case: duplicate.case.clone(),
                    op: duplicate.op.as_deref().and_then(crate::report::syscall_kind),
                    step: duplicate.step.clone(),
                    invariant: failure.invariant,
                    evidence: failure.evidence.clone(),
                });
            }
        }
        merged.failures.extend(shared);
        merged.failures.sort_by_key(|f| f.case_index);
        merged.duplicates.sort_by_key(|d| d.case_index);
        // Shards merged together each carry the fault-free run's findings.
        let mut seen = std::collections::BTreeSet::new();
        merged.failures.retain(|f| seen.insert((f.case_index, f.invariant)));
        merged
    }
}

/// Runs the cases of `part` of a subject's matrix in this process.
pub fn run_part(
    subject: &dyn Subject,
    options: &EngineOptions,
    part: Part,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PartResult, HarnessError> {
    let mut probe = subject.probe(options.seed)?;
    // A whole check skipped leaves out syscalls a trace hash covers.
    probe.passes = Passes::new(options.dedup, options.dedup && !options.check_determinism);
    let cases = matrix::enumerate(subject, &probe, options);
    let outcomes = matrix::run_cases(subject, &probe, &cases, options, part, progress)?;
    let mut result = PartResult {
        scenario: subject.name().to_string(),
        workload_syscalls: probe.end - probe.start,
        cases: cases.len() as u64,
        workload_trace_hash: Some(probe.trace_hash),
        ..PartResult::default()
    };
    // What case `index` broke, as a record.
    let record = |index: u64, violation: Violation| {
        let planned = &cases[index as usize];
        FailureRecord {
            case_index: index,
            case: subject.case(options.seed, planned.injection.clone()),
            op: probe.op_at(planned.injection.syscall),
            step: probe.step_name(planned.injection.syscall),
            invariant: violation.invariant,
            evidence: violation.evidence,
        }
    };
    // A shard that does not own the anchor case still reports what the
    // fault-free run broke (its first job does), so no sample drops it.
    if let Some(anchor) = matrix::anchor(&probe, &cases)
        && anchor % part.shards.max(1) != part.shard
        && part.job == 0
    {
        for violation in driver::first_of_each(probe.violations.clone()) {
            result.failures.push(record(anchor, violation));
        }
    }
    for (index, outcome) in outcomes {
        let planned = &cases[index as usize];
        if planned.first_of_point {
            result.crash_points += 1;
        }
        result.states_checked += outcome.states_checked;
        result.branched_cases += u64::from(outcome.branched);
        result.derived_crashes += u64::from(outcome.derived_crash);
        result.reader_observations += outcome.readers;
        match outcome.same_as {
            Some(same_as) => result.duplicates.push(Duplicate {
                case_index: index,
                same_as,
                case: subject.case(options.seed, planned.injection.clone()),
                op: probe.op_at(planned.injection.syscall).map(|op| op.name().to_string()),
                step: probe.step_name(planned.injection.syscall),
            }),
            None => result.distinct_states += outcome.states_checked,
        }
        for violation in outcome.violations {
            result.failures.push(record(index, violation));
        }
    }
    Ok(result)
}

/// What a part of a subject's matrix would run, read off one probe and the
/// enumeration, without running a case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatrixSize {
    /// Syscalls in the fault-free workload.
    pub workload_syscalls: u64,
    /// Cases in the whole matrix (every part).
    pub cases: u64,
    /// Cases this part owns.
    pub owned_cases: u64,
    /// Crash points whose first case this part owns (as
    /// [`PartResult::crash_points`] counts them).
    pub crash_points: u64,
    /// Power-cut cases this part owns, each derived from the probe's
    /// snapshot (one post-fault state each).
    pub derived_cases: u64,
}

/// The size of `part` of a subject's matrix ([`MatrixSize`]): one probe.
pub fn matrix_size(subject: &dyn Subject, options: &EngineOptions, part: Part) -> Result<MatrixSize, HarnessError> {
    let probe = subject.probe(options.seed)?;
    let cases = matrix::enumerate(subject, &probe, options);
    let owned: Vec<&matrix::PlannedCase> = cases.iter().filter(|c| part.owns(c.index)).collect();
    Ok(MatrixSize {
        workload_syscalls: probe.end - probe.start,
        cases: cases.len() as u64,
        owned_cases: owned.len() as u64,
        crash_points: owned.iter().filter(|c| c.first_of_point).count() as u64,
        derived_cases: owned
            .iter()
            .filter(|c| c.injection.crash.is_some() && c.choice.is_some())
            .count() as u64,
    })
}

/// The hash of a fresh fault-free probe's trace, to compare with a
/// [`PartResult::workload_trace_hash`]: do the subject's syscalls repeat?
pub fn workload_trace_hash(subject: &dyn Subject, seed: u64) -> Result<u64, HarnessError> {
    subject.probe(seed).map(|probe| probe.trace_hash)
}

/// Replays one injection from scratch, after one probe (which gives the
/// workload's extent, the step in flight, and the budget), refusing an
/// injection that cannot strike the workload.
pub fn replay(subject: &dyn Subject, seed: u64, injection: &Injection) -> Result<(Replay, Probe), HarnessError> {
    let probe = subject.probe(seed)?;
    if let Some(why) = probe.refuse(injection) {
        return Err(HarnessError(format!("{}: {why}", subject.name())));
    }
    let replay = replay_case(subject, &probe, seed, injection)?;
    Ok((replay, probe))
}

/// One case as the matrix checked it: the injection replayed from scratch,
/// and the reader concurrent with the workload at its syscall.
pub(crate) fn replay_case(
    subject: &dyn Subject,
    probe: &Probe,
    seed: u64,
    injection: &Injection,
) -> Result<Replay, HarnessError> {
    let mut replay = subject.replay(probe, seed, injection)?;
    if let Some(violations) = subject.check_reader(probe, injection.syscall) {
        replay.violations.extend(violations);
        replay.violations = driver::first_of_each(std::mem::take(&mut replay.violations));
    }
    Ok(replay)
}
