//! The crash matrix over one [`Subject`]: the enumeration of cases from its
//! probe, and the check of each case (a power cut or a crash of the
//! workload's process derived from the probe's snapshot, or a branch off
//! one run of the workload, or a replay from scratch with the fault
//! injected).

use tearline_model::Violation;
use tearline_sim_fs::{CrashChoice, Fault, PageHashes, SimFs};

use std::collections::BTreeMap;

use super::branch::{self, Branched};
use super::driver::first_of_each;
use super::subject::{Probe, Subject};
use super::{EngineOptions, HarnessError, Part, steps_the_clock};
use crate::case::{Injection, crash_picks};

/// One case of the matrix, with what is needed to check it.
pub(crate) struct PlannedCase {
    /// Its ordinal in the enumeration (parts and shards split on it).
    pub index: u64,
    pub injection: Injection,
    /// For power cuts: the outcome.
    pub choice: Option<CrashChoice>,
    /// Whether it is the first case of its crash point (syscall, fault, model).
    pub first_of_point: bool,
    /// Whether it is the first case at its syscall (the concurrent reader
    /// there is checked with it).
    pub first_at_syscall: bool,
}

/// Every case of the matrix, in a fixed order: by syscall, then power cuts
/// (by model, then outcome), then the other faults in the options' order.
pub(crate) fn enumerate(subject: &dyn Subject, probe: &Probe, options: &EngineOptions) -> Vec<PlannedCase> {
    let mut cases = Vec::new();
    let mut push = |injection: Injection, choice: Option<CrashChoice>, first_of_point: bool| {
        let index = cases.len() as u64;
        let first_at_syscall = cases
            .last()
            .is_none_or(|last: &PlannedCase| last.injection.syscall != injection.syscall);
        cases.push(PlannedCase {
            index,
            injection,
            choice,
            first_of_point,
            first_at_syscall,
        });
    };
    let faults: Vec<Fault> = options.faults.iter().copied().filter(|f| subject.takes(*f)).collect();
    for syscall in probe.start..=probe.end {
        let op = probe.op_at(syscall);
        if op.is_some() && probe.step_at(syscall).is_none() {
            continue; // the harness's own syscalls (source edits)
        }
        // A power cut strikes any syscall but an unlock (a guard's drop,
        // which no fault plan reaches: a replay could not cut there), and
        // the workload's end.
        if faults.contains(&Fault::PowerCut) && op.is_none_or(|op| Fault::PowerCut.applies_to(op)) {
            let snapshot = &probe.snapshots[(syscall - probe.start) as usize];
            for &model in &options.models {
                for (n, (pick, choice)) in crash_picks(
                    snapshot,
                    model,
                    options.exhaustive_limit,
                    options.samples_per_point,
                    probe.crash_seed,
                )
                .into_iter()
                .enumerate()
                {
                    let injection = Injection {
                        syscall,
                        fault: Fault::PowerCut,
                        crash: Some((model, pick)),
                    };
                    push(injection, Some(choice), n == 0);
                }
            }
        }
        if op.is_some() {
            let first_of_step = syscall == probe.start || probe.step_at(syscall) != probe.step_at(syscall - 1);
            for &fault in &faults {
                if steps_the_clock(fault) && !first_of_step {
                    continue;
                }
                // Where a fault can strike is the probe's to say, for the
                // matrix, `tearline repro` and the fuzzer alike.
                let injection = Injection {
                    syscall,
                    fault,
                    crash: None,
                };
                if fault != Fault::PowerCut && probe.refuse(&injection).is_none() {
                    push(injection, None, true);
                }
            }
        }
    }
    cases
}

/// The states a crash case checks: the recovery of a process restarted
/// after it, then the recovery after a power cut that follows
/// ([`Subject::check_crash`]).
const STATES_AFTER_A_CRASH: u64 = 2;

/// What checking one case found.
pub(crate) struct CaseOutcome {
    /// The earlier case whose post-fault state this one shares (and so its
    /// verdict): it was not checked again.
    pub same_as: Option<u64>,
    pub violations: Vec<Violation>,
    pub states_checked: u64,
    /// Read-only opens checked (concurrent with the workload, and after the
    /// fault before recovery).
    pub readers: u64,
    pub trace_hash: u64,
    /// Whether it was branched off one run of the workload.
    pub branched: bool,
    /// Whether it was a crash derived from the probe's snapshot.
    pub derived_crash: bool,
}

/// Runs one case: a power cut (and, with `derive_crashes`, a crash of the
/// workload's process) from the probe's snapshot, any other fault from its
/// branch off the workload (if it was branched) or by replaying the
/// workload with it; with the first case at a syscall, the reader
/// concurrent with the workload there.
fn run_case(
    subject: &dyn Subject,
    probe: &Probe,
    planned: &PlannedCase,
    same_as: Option<u64>,
    branched: Option<Branched>,
    derive_crashes: bool,
    hash_trace: bool,
) -> Result<CaseOutcome, HarnessError> {
    let mut outcome = match (same_as, branched) {
        (Some(_), _) => CaseOutcome {
            same_as,
            violations: Vec::new(),
            // As many as the case it shares them with checked.
            states_checked: if planned.choice.is_some() {
                1
            } else {
                STATES_AFTER_A_CRASH
            },
            readers: 0,
            trace_hash: 0,
            branched: false,
            derived_crash: false,
        },
        (None, Some(branched)) => CaseOutcome {
            same_as: None,
            violations: branched.violations,
            states_checked: branched.states_checked,
            readers: 0,
            trace_hash: branched.trace_hash,
            branched: true,
            derived_crash: false,
        },
        (None, None) => run_fault(subject, probe, planned, derive_crashes, hash_trace)?,
    };
    // Each state checked was read first; after a power cut, only the first
    // outcome of a point is.
    if same_as.is_none() && (planned.choice.is_none() || planned.first_of_point) {
        outcome.readers = outcome.states_checked * subject.readers_per_state();
    }
    if planned.first_at_syscall
        && let Some(violations) = subject.check_reader(probe, planned.injection.syscall)
    {
        outcome.readers += 1;
        outcome.violations.extend(violations);
    }
    Ok(outcome)
}

/// The fault of one case, injected and checked: a power cut or (with
/// `derive_crashes`) a crash of the workload's process from the probe's
/// snapshot, anything else by a replay.
/// The trace is hashed only with `hash_trace` (for the determinism check).
fn run_fault(
    subject: &dyn Subject,
    probe: &Probe,
    planned: &PlannedCase,
    derive_crashes: bool,
    hash_trace: bool,
) -> Result<CaseOutcome, HarnessError> {
    let injection = &planned.injection;
    if let (Some((model, _)), Some(choice)) = (&injection.crash, &planned.choice) {
        let snapshot = probe
            .snapshot_at(injection.syscall)
            .ok_or_else(|| HarnessError(format!("no snapshot before syscall {}", injection.syscall)))?;
        let booted = snapshot.boot(*model, choice);
        let violations = subject.check_power_cut(probe, injection.syscall, &booted, planned.first_of_point);
        return Ok(CaseOutcome {
            same_as: None,
            violations,
            states_checked: 1,
            readers: 0,
            trace_hash: if hash_trace { booted.trace().hash() } else { 0 },
            branched: false,
            derived_crash: false,
        });
    }
    if let Some(killed) = derive_crashes.then(|| killed_machine(probe, injection)).flatten()
        && let Some((violations, states_checked)) = subject.check_crash(probe, injection.syscall, &killed)
    {
        debug_assert_eq!(states_checked, STATES_AFTER_A_CRASH);
        return Ok(CaseOutcome {
            same_as: None,
            violations,
            states_checked,
            readers: 0,
            trace_hash: if hash_trace { killed.trace().hash() } else { 0 },
            branched: false,
            derived_crash: true,
        });
    }
    let replay = subject.replay(probe, probe.seed, injection)?;
    Ok(CaseOutcome {
        same_as: None,
        violations: replay.violations,
        states_checked: replay.states_checked,
        readers: 0,
        trace_hash: if hash_trace { replay.trace.hash() } else { 0 },
        branched: false,
        derived_crash: false,
    })
}

/// The process a crash case kills, if the case can be derived from the
/// probe's snapshot: the fault is a crash of the process the workload runs
/// in ([`Probe::workload_pid`]), which stops the workload there.
fn killed_pid(probe: &Probe, injection: &Injection) -> Option<u32> {
    let pid = probe.workload_pid?;
    let by_workload = probe.entry_at(injection.syscall).is_some_and(|entry| entry.pid == pid);
    (injection.fault == Fault::ProcessCrash && injection.crash.is_none() && by_workload).then_some(pid)
}

/// The machine a crash case leaves, derived from the probe's snapshot
/// before its syscall ([`killed_pid`]).
fn killed_machine(probe: &Probe, injection: &Injection) -> Option<SimFs> {
    let pid = killed_pid(probe, injection)?;
    Some(probe.snapshot_at(injection.syscall)?.resume_killed(pid))
}

/// The case the probe's own findings are reported with: the one that
/// replays the whole fault-free workload (a power cut after it, else any
/// fault there).
pub(crate) fn anchor(probe: &Probe, cases: &[PlannedCase]) -> Option<u64> {
    cases
        .iter()
        .find(|c| c.injection.syscall == probe.end && c.injection.fault == Fault::PowerCut)
        .or_else(|| cases.iter().find(|c| c.injection.syscall == probe.end))
        .map(|c| c.index)
}

/// The cases a part owns, checked; with what the part reports. The cases
/// that are not derived from a snapshot are branched off one run of the
/// workload where [`EngineOptions::branch_from`] asks and this process can
/// ([`super::branch`]), else each replayed from scratch.
pub(crate) fn run_cases(
    subject: &dyn Subject,
    probe: &Probe,
    cases: &[PlannedCase],
    options: &EngineOptions,
    part: Part,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<(u64, CaseOutcome)>, HarnessError> {
    let anchor = anchor(probe, cases);
    let total = cases.len() as u64;
    let mut done = 0;
    let branch_from = options.branch_from.unwrap_or(u64::MAX);
    let derived = |c: &PlannedCase| options.derive_crashes && killed_pid(probe, &c.injection).is_some();
    let to_branch: Vec<(u64, Injection)> = cases
        .iter()
        .filter(|c| c.choice.is_none() && c.injection.syscall >= branch_from && part.owns(c.index) && !derived(c))
        .map(|c| (c.index, c.injection.clone()))
        .collect();
    let mut branched = if !to_branch.is_empty() && subject.can_branch() && branch::can_branch() {
        branch::run_branched(subject, probe, &to_branch, options.check_determinism, &mut |_| {
            done += 1;
            progress(done, total);
        })?
    } else {
        BTreeMap::new()
    };
    let mut results = Vec::new();
    // Each distinct post-fault state of the shard, by its key: the first
    // case that reached it. Every job of the shard computes the same map.
    let mut first_with_state = BTreeMap::new();
    let mut pages = PageHashes::default();
    for planned in cases {
        // Keyed only if this shard checks it: a crash's key builds its machine.
        let owned = part.shard_owns(planned.index);
        let key = owned
            .then(|| state_key(probe, planned, anchor, options, &mut pages))
            .flatten();
        let same_as = key.and_then(|key| {
            let first = *first_with_state.entry(key).or_insert(planned.index);
            (first != planned.index).then_some(first)
        });
        let was_branched = branched.remove(&planned.index);
        let counted = was_branched.is_some();
        if part.owns(planned.index) {
            let mut outcome = run_case(
                subject,
                probe,
                planned,
                same_as,
                was_branched,
                options.derive_crashes,
                options.check_determinism,
            )?;
            if Some(planned.index) == anchor {
                // The probe's own findings belong to the case that replays
                // the whole fault-free workload.
                let mut all = probe.violations.clone();
                all.append(&mut outcome.violations);
                outcome.violations = all;
            }
            outcome.violations = first_of_each(std::mem::take(&mut outcome.violations));
            if options.check_determinism && same_as.is_none() {
                // The second run replays a branched case from scratch (and
                // so compares it with its replay); a power cut or a crash
                // is derived from its snapshot again.
                let again = run_case(subject, probe, planned, None, None, options.derive_crashes, true)?.trace_hash;
                if again != outcome.trace_hash {
                    return Err(HarnessError(format!(
                        "{} is not deterministic: trace hashes {:016x} and {:016x}",
                        subject.case(options.seed, planned.injection.clone()),
                        outcome.trace_hash,
                        again
                    )));
                }
            }
            results.push((planned.index, outcome));
        }
        if !counted {
            done += 1;
            progress(done, total);
        }
    }
    Ok(results)
}

/// The key of the state a case checks, for deduplication. For a power
/// cut: the disk it boots (see
/// [`tearline_sim_fs::SimSnapshot::crash_state_key`]), and whether a reader
/// looks first. For a crash derived from the probe's snapshot: the whole
/// machine it leaves ([`SimFs::state_key`]: page cache, disk, writes not
/// yet durable, processes). With either, the model of what must be there
/// before its syscall, whether what the machine did before the fault
/// already broke the lock invariant ([`Probe::lock_broken_from`]), and
/// how many violations the workload had found by then
/// ([`Probe::found_before`]). A
/// case's verdict depends on nothing else but the clock and the syscall
/// numbering, which no check reads. `None` for a case that is always
/// checked: any other fault (each is a replay or a branch), and the anchor,
/// which carries the probe's own findings.
fn state_key(
    probe: &Probe,
    planned: &PlannedCase,
    anchor: Option<u64>,
    options: &EngineOptions,
    pages: &mut PageHashes,
) -> Option<u64> {
    if !options.dedup || Some(planned.index) == anchor {
        return None;
    }
    let at = planned.injection.syscall;
    let state = match (&planned.injection.crash, &planned.choice) {
        (Some((model, _)), Some(choice)) => {
            let disk = probe.snapshot_at(at)?.crash_state_key(*model, choice, pages);
            let reader = u64::from(planned.first_of_point);
            disk ^ reader.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        }
        _ if options.derive_crashes => {
            // Kept apart from a power cut's (the checks that follow
            // differ) by a constant of its own.
            killed_machine(probe, &planned.injection)?.state_key(pages) ^ 0x5851_F42D_4C95_7F2D
        }
        _ => return None,
    };
    let mark = probe.mark_index(at) as u64;
    // The lock invariant also reads what the machine did before the fault,
    // and a case reports what the workload broke before it.
    let lock_broken = u64::from(probe.lock_broken_from.is_some_and(|from| at >= from));
    let found = probe.found_before(at).count() as u64;
    Some(
        state
            ^ mark.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ lock_broken.wrapping_mul(0x1656_67B1_9E37_79F9)
            ^ found.wrapping_mul(0x27D4_EB2F_1656_67C5),
    )
}
