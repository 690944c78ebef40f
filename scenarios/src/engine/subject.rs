//! What the engine runs a crash matrix over: a [`Subject`] (a store
//! scenario through the contract, or SQLite's own atomic-commit workload),
//! the fault-free [`Probe`] it gives, and the [`Replay`] of one case.
//!
//! The engine owns everything a subject shares: enumerating the cases,
//! splitting them over parts, checking power cuts from the probe's
//! snapshots, shrinking, the failure records and the repro lines. A
//! subject says only how to run its workload, how to check a machine after
//! a fault, and how to replay one case from scratch.

use std::path::{Path, PathBuf};

use tearline_model::{Model, Violation};
use tearline_sim_fs::{
    Fault, Outcome, PersistenceModel, SimFs, SimSnapshot, SyscallArgs, SyscallKind, Trace, TraceEntry,
};

use std::sync::Arc;

use super::HarnessError;
use super::branch::Branches;
use super::passes::Passes;
use crate::case::{Case, CrashPick, Injection, resolve_crash};

/// A workload the crash matrix can run, fault-free and with one fault.
pub trait Subject {
    /// The scenario's catalogue name.
    fn name(&self) -> &str;

    /// The repro line of an injection into this subject on `seed`.
    fn case(&self, seed: u64, injection: Injection) -> Case;

    /// Whether a fork of this process copies everything the workload runs
    /// on, so cases may branch off one run ([`super::branch`]). Default
    /// true.
    fn can_branch(&self) -> bool {
        true
    }

    /// Whether the matrix injects `fault` into this subject (default: every fault).
    fn takes(&self, fault: Fault) -> bool {
        let _ = fault;
        true
    }

    /// Runs the workload fault-free on a fresh machine for `seed`, with a
    /// snapshot before every workload syscall.
    fn probe(&self, seed: u64) -> Result<Probe, HarnessError>;

    /// Checks a machine booted after a power cut before syscall `at`
    /// (recovery, observation, every invariant it can show); with `reader`,
    /// a reader looks at it first (see [`Subject::readers_per_state`]).
    fn check_power_cut(&self, probe: &Probe, at: u64, booted: &SimFs, reader: bool) -> Vec<Violation>;

    /// Checks the machine a crash of the workload's process at syscall `at`
    /// (killed before the syscall completes) leaves ([`Probe::workload_pid`], derived from the probe's
    /// snapshot: [`tearline_sim_fs::SimSnapshot::resume_killed`]): what
    /// [`Subject::replay`] of that crash checks once its workload has
    /// stopped. Returns the violations and the states checked; `None` if
    /// the subject cannot (the default), and the case is replayed.
    fn check_crash(&self, probe: &Probe, at: u64, killed: &SimFs) -> Option<(Vec<Violation>, u64)> {
        let _ = (probe, at, killed);
        None
    }

    /// Replays one injection from scratch: a fresh machine, the workload
    /// with the fault, then the recovery and the checks.
    fn replay(&self, probe: &Probe, seed: u64, injection: &Injection) -> Result<Replay, HarnessError>;

    /// Runs the workload once on a fresh machine for `seed`, armed with
    /// `branches` ([`Branches::install`]): in the runner, returns once the
    /// workload has ended; in a branch (whose fault struck:
    /// [`Branches::struck`]), finishes as [`Subject::replay`] does and
    /// concludes ([`Branches::conclude`], which does not return).
    fn replay_branching(&self, probe: &Probe, seed: u64, branches: &Arc<Branches>) -> Result<(), HarnessError>;

    /// A reader concurrent with the workload before syscall `at`: what it
    /// broke, or `None` if the subject has no such reader there (the
    /// default). The matrix asks once per syscall, with the first case
    /// there; a replay of any case there asks again.
    fn check_reader(&self, probe: &Probe, at: u64) -> Option<Vec<Violation>> {
        let _ = (probe, at);
        None
    }

    /// How many readers look at each post-fault state before it is
    /// recovered (default none): every state a replay reaches, and after a
    /// power cut the first outcome of each crash point.
    fn readers_per_state(&self) -> u64 {
        0
    }
}

/// The model as it stood from syscall `at` on.
#[derive(Clone, Debug)]
pub struct Mark {
    /// The first syscall it holds for.
    pub at: u64,
    /// The model.
    pub model: Model,
}

/// The fault-free run a matrix is built from.
pub struct Probe {
    /// The run seed.
    pub seed: u64,
    /// The first workload syscall.
    pub start: u64,
    /// One past the last workload syscall.
    pub end: u64,
    /// A snapshot before each workload syscall, and one after the last.
    pub snapshots: Vec<SimSnapshot>,
    /// The syscall at each index in `start..end`.
    pub ops: Vec<SyscallKind>,
    /// The workload step that made each syscall in `start..end` (`None`:
    /// the harness, never a fault point).
    pub owners: Vec<Option<usize>>,
    /// Each workload step, described.
    pub steps: Vec<String>,
    /// For each syscall in `start..end`: whether it is a read of exactly
    /// what an earlier read of the same step read ([`repeated_reads`]).
    pub repeated_reads: Vec<bool>,
    /// The model as the workload went.
    pub marks: Vec<Mark>,
    /// The machine's crash seed (sampled power-cut outcomes derive from it).
    pub crash_seed: u64,
    /// The hash of the probe's whole trace.
    pub trace_hash: u64,
    /// The probe's whole trace (setup and workload).
    pub trace: Trace,
    /// The first power-cut point whose prefix of the probe's trace (what
    /// the machine did before the power went, [`Probe::trace_before`])
    /// already breaks the lock invariant: from there on every power cut
    /// does, whatever the disk. `None` if none does (or the subject has no
    /// lock).
    pub lock_broken_from: Option<u64>,
    /// The simulated process the workload runs in, if a crash of it can be
    /// checked without a replay ([`Subject::check_crash`]): the workload
    /// stops there, so the machine it leaves is the snapshot's with that
    /// process killed. A crash of any other process (a workload step's own
    /// helper) lets the workload go on, and is replayed.
    pub workload_pid: Option<u32>,
    /// The store's source directory, if it has one (a file there can
    /// vanish: [`tearline_sim_fs::Fault::Vanish`]).
    pub source_dir: Option<PathBuf>,
    /// What the fault-free run itself broke.
    pub violations: Vec<Violation>,
    /// The checks after a recovery that passed, remembered for the cases
    /// of this probe's matrix ([`Passes`]): the matrix turns them on.
    pub(crate) passes: Passes,
    /// What the workload broke as it ran, each violation with the syscall
    /// count when it was found: a case whose fault strikes at syscall N
    /// finds again those found at N or before ([`Probe::found_before`]).
    pub workload_violations: Vec<(u64, Violation)>,
}

impl Probe {
    /// The probe's trace before syscall `at`: what a machine that loses
    /// power at `at` had done.
    pub fn trace_before(&self, at: u64) -> &[TraceEntry] {
        let entries = self.trace.entries();
        &entries[..entries.partition_point(|e| e.index < at)]
    }

    /// What the workload had broken before syscall `at` was made: what a
    /// case whose fault strikes there finds before its fault, as a replay
    /// of it finds it.
    pub fn found_before(&self, at: u64) -> impl Iterator<Item = &Violation> {
        self.workload_violations
            .iter()
            .filter(move |(found, _)| *found <= at)
            .map(|(_, violation)| violation)
    }

    /// The probe's trace entry of syscall `at`.
    pub fn entry_at(&self, at: u64) -> Option<&TraceEntry> {
        let entries = self.trace.entries();
        entries
            .get(entries.partition_point(|e| e.index < at))
            .filter(|e| e.index == at)
    }

    /// The entry a replay's trace records for a crash of the process that
    /// made syscall `at`, there: what follows [`Probe::trace_before`] in it.
    pub fn crash_entry(&self, at: u64) -> Option<TraceEntry> {
        self.entry_at(at).map(|entry| TraceEntry {
            outcome: Outcome::ProcessCrash,
            fault: Some(Fault::ProcessCrash),
            ..entry.clone()
        })
    }

    /// The budget: a case may make this many syscalls past its start.
    pub fn budget(&self) -> u64 {
        self.end.saturating_mul(50).max(10_000)
    }

    /// Whether syscall `at` opens a file in the store's source directory.
    pub fn opens_a_source(&self, at: u64) -> bool {
        let Some(dir) = &self.source_dir else {
            return false;
        };
        let entries = self.trace.entries();
        let first = entries.partition_point(|e| e.index < at);
        entries[first..]
            .iter()
            .take_while(|e| e.index == at)
            .any(|e| e.op == SyscallKind::Open && Path::new(&e.path).starts_with(dir))
    }

    /// Which model [`Probe::model_at`] gives for `at` (the number of marks
    /// up to it): equal for two syscalls, the model is the same.
    pub fn mark_index(&self, at: u64) -> usize {
        self.marks.iter().take_while(|m| m.at <= at).count()
    }

    /// The model as it stood before syscall `at`.
    pub fn model_at(&self, at: u64) -> Model {
        self.marks
            .iter()
            .rev()
            .find(|m| m.at <= at)
            .map(|m| m.model.clone())
            .unwrap_or_default()
    }

    /// The syscall at index `at`, if it is a workload syscall.
    pub fn op_at(&self, at: u64) -> Option<SyscallKind> {
        at.checked_sub(self.start)
            .and_then(|i| self.ops.get(i as usize).copied())
    }

    /// The workload step that made syscall `at`.
    pub fn step_at(&self, at: u64) -> Option<usize> {
        at.checked_sub(self.start)
            .and_then(|i| self.owners.get(i as usize).copied().flatten())
    }

    /// The description of the step that made syscall `at`.
    pub fn step_name(&self, at: u64) -> Option<String> {
        self.step_at(at).and_then(|i| self.steps.get(i).cloned())
    }

    /// The first syscall of the step that made syscall `at`.
    pub fn step_start(&self, at: u64) -> u64 {
        let step = self.step_at(at);
        (self.start..=at)
            .find(|&k| step.is_some() && self.step_at(k) == step)
            .unwrap_or(at)
    }

    /// The snapshot before syscall `at` (`at` in `start..=end`).
    pub fn snapshot_at(&self, at: u64) -> Option<&SimSnapshot> {
        at.checked_sub(self.start).and_then(|i| self.snapshots.get(i as usize))
    }

    /// Why `injection` cannot strike this workload, if it cannot: a syscall
    /// outside it, one the harness made, or a fault that does not apply there.
    pub fn refuse(&self, injection: &Injection) -> Option<String> {
        let at = injection.syscall;
        if at < self.start || at > self.end {
            return Some(format!(
                "syscall {at} is outside the workload (syscalls {}..={})",
                self.start, self.end
            ));
        }
        match self.op_at(at) {
            Some(op) if self.step_at(at).is_none() => {
                Some(format!("syscall {at} ({op}) is the harness's own, not a fault point"))
            }
            Some(op) if !injection.fault.applies_to(op) => {
                Some(format!("{} does not apply to syscall {at} ({op})", injection.fault))
            }
            Some(_) if injection.fault == Fault::Vanish && !self.opens_a_source(at) => Some(format!(
                "vanish strikes only opens of source files, and syscall {at} is not one"
            )),
            Some(SyscallKind::Read)
                if injection.fault.strikes_the_medium() && self.repeated_reads[(at - self.start) as usize] =>
            {
                Some(format!(
                    "syscall {at} reads again what its step already read, from the same medium: the matrix injects \
                     {} at the first read of a place only (a bit flip, one transfer's error, strikes every read)",
                    injection.fault
                ))
            }
            None if injection.fault != Fault::PowerCut => Some(format!(
                "syscall {at} is the workload's end: only a power cut strikes there"
            )),
            _ => None,
        }
    }
}

/// What replaying one case from scratch found, with its whole trace.
#[derive(Debug)]
pub struct Replay {
    /// Every invariant broken (the first violation of each).
    pub violations: Vec<Violation>,
    /// Post-fault states checked.
    pub states_checked: u64,
    /// The whole trace: setup, workload, fault, restart, reboot, recovery.
    pub trace: Trace,
    /// The workload syscalls' range in the trace: `(start, end)`.
    pub workload: (u64, u64),
}

/// Cuts the power of a replayed machine where it stands and boots it with
/// the outcome `pick` names under `persistence` (the outcome the matrix
/// derived from its snapshot, so a replay reproduces the case exactly).
pub(crate) fn reboot_after_power_cut(
    fs: &SimFs,
    syscall: u64,
    persistence: PersistenceModel,
    pick: CrashPick,
) -> Result<SimFs, HarnessError> {
    let choice = resolve_crash(&fs.snapshot(), persistence, pick, fs.crash_seed())
        .ok_or_else(|| HarnessError(format!("no outcome {pick:?} of a power cut at syscall {syscall}")))?;
    fs.power_cut();
    Ok(fs.reboot_with(persistence, &choice))
}

/// A fault-free run recorded for a probe.
pub(crate) struct Recording<T> {
    /// What the run returned.
    pub value: T,
    /// The first syscall it made.
    pub start: u64,
    /// One past its last syscall.
    pub end: u64,
    /// A snapshot before each of its syscalls, and one after the last.
    pub snapshots: Vec<SimSnapshot>,
    /// Its syscalls, in order.
    pub ops: Vec<SyscallKind>,
    /// The machine's whole trace afterwards.
    pub trace: Trace,
}

/// For each syscall of `trace` in `start..start + owners.len()`: whether it
/// reads exactly what an earlier read of the same step (`owners`) read (the
/// same path, offset and length). A latent sector error or bit rot strikes
/// the medium, and a second read of the same place in the same step meets
/// the same medium: the matrix injects those at the first read only (a bit
/// flip, one transfer's error, at every read).
pub(crate) fn repeated_reads(trace: &Trace, start: u64, owners: &[Option<usize>]) -> Vec<bool> {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = vec![false; owners.len()];
    for entry in trace.entries().iter().filter(|e| e.index >= start && e.boot == 0) {
        let Some(i) = usize::try_from(entry.index - start).ok().filter(|&i| i < owners.len()) else {
            continue;
        };
        if let (SyscallKind::Read, SyscallArgs::Read { offset, len }) = (entry.op, &entry.args) {
            repeated[i] = !seen.insert((owners[i], entry.path.as_str(), *offset, *len));
        }
    }
    repeated
}

/// Runs `run` on `fs` with a snapshot recorded before every syscall it
/// makes: what both subjects' probes are built from.
pub(crate) fn record<T>(fs: &SimFs, run: impl FnOnce() -> T) -> Recording<T> {
    let start = fs.syscall_count();
    fs.record_snapshots(true);
    let value = run();
    let end = fs.syscall_count();
    let mut snapshots = fs.take_snapshots();
    snapshots.push(fs.snapshot());
    fs.record_snapshots(false);
    let trace = fs.trace();
    let ops = trace
        .entries()
        .iter()
        .filter(|e| e.index >= start && e.boot == 0)
        .map(|e| e.op)
        .collect();
    Recording {
        value,
        start,
        end,
        snapshots,
        ops,
        trace,
    }
}
