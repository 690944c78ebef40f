//! The crash matrix over one store scenario: the probe, the enumeration of
//! cases, and the check of each case (a power cut derived from the probe's
//! snapshot, or a replay from scratch with the fault injected).

use tearline_model::{Model, StoreFactory, Violation};
use tearline_sim_fs::{
    CrashChoice, Fault, HaltKind, Mount, PersistenceModel, SimConfig, SimFs, SimSnapshot, SyscallKind, Trace,
};

use super::driver::{self, Driver, Mark};
use super::scenario::{StoreScenario, store_root};
use super::{EngineOptions, HarnessError, Part};
use crate::case::{Case, CrashPick, crash_picks};

/// The machine a scenario runs on, for a seed.
pub(crate) fn machine_config(scenario: &StoreScenario, seed: u64) -> SimConfig {
    let mut config = SimConfig::with_seed(seed);
    config.mounts = scenario
        .mounts
        .iter()
        .map(|m| Mount {
            path: store_root().join(&m.relative),
            capacity_bytes: m.capacity_bytes,
        })
        .collect();
    config
}

/// The fault-free run the matrix is built from.
pub(crate) struct Probe {
    /// The first workload syscall.
    pub start: u64,
    /// One past the last workload syscall.
    pub end: u64,
    /// A snapshot before each workload syscall, and one after the last.
    pub snapshots: Vec<SimSnapshot>,
    /// The syscall at each index in `start..end`.
    pub ops: Vec<SyscallKind>,
    /// The workload step that made each syscall in `start..end` (`None`: the harness).
    pub owners: Vec<Option<usize>>,
    pub marks: Vec<Mark>,
    pub crash_seed: u64,
    /// The hash of the probe's whole trace.
    pub trace_hash: u64,
    /// What the probe itself found: clean errors, destructive ops without
    /// force, admitted second writers, the lock invariant, the full-sync checks.
    pub violations: Vec<Violation>,
}

impl Probe {
    /// The budget: a case may make this many syscalls past its start.
    pub fn budget(&self) -> u64 {
        self.end.saturating_mul(50).max(10_000)
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

    /// The first syscall of the step that made syscall `at`.
    pub fn step_start(&self, at: u64) -> u64 {
        let step = self.step_at(at);
        (self.start..=at)
            .find(|&k| step.is_some() && self.step_at(k) == step)
            .unwrap_or(at)
    }
}

/// Runs the scenario fault-free, recording a snapshot before every workload
/// syscall.
pub(crate) fn probe(factory: &dyn StoreFactory, scenario: &StoreScenario, seed: u64) -> Result<Probe, HarnessError> {
    let config = machine_config(scenario, seed);
    let fs = SimFs::new(config.clone());
    let mut driver = Driver::boot(factory, scenario, fs.clone())?;
    let start = fs.syscall_count();
    driver.marks.clear();
    driver.marks.push(Mark {
        at: start,
        model: driver.model.clone(),
    });
    fs.record_snapshots(true);
    let finished = driver.workload(&scenario.workload)?;
    driver.close();
    let end = fs.syscall_count();
    let mut snapshots = fs.take_snapshots();
    snapshots.push(fs.snapshot());
    fs.record_snapshots(false);
    if !finished && !scenario.fault_free_failure_allowed {
        return Err(HarnessError(format!(
            "{}: the fault-free workload stopped (a step failed without a fault): {:?}",
            scenario.name, driver.violations
        )));
    }
    let trace = fs.trace();
    let ops: Vec<SyscallKind> = trace
        .entries()
        .iter()
        .filter(|e| e.index >= start && e.boot == 0)
        .map(|e| e.op)
        .collect();
    let mut owners = vec![None; (end - start) as usize];
    let starts = &driver.step_starts;
    for (n, &(first, step)) in starts.iter().enumerate() {
        let last = starts.get(n + 1).map_or(end, |next| next.0);
        if scenario.workload[step].is_store_call() {
            for owner in &mut owners[(first - start) as usize..(last - start) as usize] {
                *owner = Some(step);
            }
        }
    }
    let mut violations = std::mem::take(&mut driver.violations);
    violations.extend(driver::check_trace(factory, &fs, &trace));
    violations.extend(driver::full_sync_checks(factory, scenario, SimFs::new(config.clone()))?);
    if snapshots.len() as u64 != end - start + 1 || ops.len() as u64 != end - start {
        return Err(HarnessError(format!(
            "{}: the probe recorded {} snapshots and {} syscalls for {} workload syscalls",
            scenario.name,
            snapshots.len(),
            ops.len(),
            end - start
        )));
    }
    Ok(Probe {
        start,
        end,
        snapshots,
        ops,
        owners,
        marks: driver.marks,
        crash_seed: fs.crash_seed(),
        trace_hash: trace.hash(),
        violations,
    })
}

/// One case of the matrix, with what is needed to check it.
pub(crate) struct PlannedCase {
    /// Its ordinal in the enumeration (parts and shards split on it).
    pub index: u64,
    pub case: Case,
    /// For power cuts: the outcome.
    pub choice: Option<CrashChoice>,
    /// Whether it is the first case of its crash point (syscall, fault, model).
    pub first_of_point: bool,
}

/// Every case of the matrix, in a fixed order: by syscall, then power cuts
/// (by model, then outcome), then the other faults in the options' order.
pub(crate) fn enumerate(probe: &Probe, options: &EngineOptions) -> Vec<PlannedCase> {
    let mut cases = Vec::new();
    let mut push = |case: Case, choice: Option<CrashChoice>, first_of_point: bool| {
        let index = cases.len() as u64;
        cases.push(PlannedCase {
            index,
            case,
            choice,
            first_of_point,
        });
    };
    for syscall in probe.start..=probe.end {
        let op = probe.op_at(syscall);
        if op.is_some() && probe.step_at(syscall).is_none() {
            continue; // the harness's own syscalls (source edits)
        }
        if options.faults.contains(&Fault::PowerCut) {
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
                    let case = Case {
                        syscall,
                        fault: Fault::PowerCut,
                        crash: Some((model, pick)),
                    };
                    push(case, Some(choice), n == 0);
                }
            }
        }
        if let Some(op) = op {
            for &fault in &options.faults {
                if fault != Fault::PowerCut && fault.applies_to(op) {
                    let case = Case {
                        syscall,
                        fault,
                        crash: None,
                    };
                    push(case, None, true);
                }
            }
        }
    }
    cases
}

/// What checking one case found.
pub(crate) struct CaseOutcome {
    pub violations: Vec<Violation>,
    pub states_checked: u64,
    pub trace_hash: u64,
}

/// Runs one case: a power cut from the probe's snapshot, any other fault by
/// replaying the workload with it.
fn run_case(
    factory: &dyn StoreFactory,
    scenario: &StoreScenario,
    probe: &Probe,
    planned: &PlannedCase,
    seed: u64,
) -> Result<CaseOutcome, HarnessError> {
    if planned.case.fault == Fault::PowerCut {
        return check_power_cut(factory, probe, planned);
    }
    let replay = replay_case(factory, scenario, seed, probe.budget(), probe.end, &planned.case)?;
    Ok(CaseOutcome {
        violations: replay.violations,
        states_checked: replay.states_checked,
        trace_hash: replay.trace.hash(),
    })
}

/// Checks a power cut from the probe's snapshot.
pub(crate) fn check_power_cut(
    factory: &dyn StoreFactory,
    probe: &Probe,
    planned: &PlannedCase,
) -> Result<CaseOutcome, HarnessError> {
    let (Some((model, _)), Some(choice)) = (&planned.case.crash, &planned.choice) else {
        return Err(HarnessError(format!("{} is not a power cut", planned.case)));
    };
    let snapshot = &probe.snapshots[(planned.case.syscall - probe.start) as usize];
    let booted = snapshot.boot(*model, choice);
    let budget_end = booted.syscall_count() + probe.budget();
    booted.set_fault_plan(driver::plan(None, budget_end));
    let recovered = driver::recover_and_check(factory, &booted, &probe.model_at(planned.case.syscall), budget_end);
    let mut violations = recovered.violations;
    let trace = booted.trace();
    violations.extend(driver::check_trace(factory, &booted, &trace));
    Ok(CaseOutcome {
        violations,
        states_checked: 1,
        trace_hash: trace.hash(),
    })
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

/// Replays one case from scratch: a fresh machine, the setup, the workload
/// with the fault injected at the case's syscall; then, for a power cut, the
/// reboot under the case's outcome; otherwise a restart in a new process and
/// then a power cut that keeps nothing unsynced (but a torn write's sectors).
/// After each, a writable open, an observation and the checks.
pub(crate) fn replay_case(
    factory: &dyn StoreFactory,
    scenario: &StoreScenario,
    seed: u64,
    probe_budget: u64,
    probe_end: u64,
    case: &Case,
) -> Result<Replay, HarnessError> {
    let config = machine_config(scenario, seed);
    let fs = SimFs::new(config);
    let mut driver = Driver::boot(factory, scenario, fs.clone())?;
    let start = fs.syscall_count();
    let budget_end = start + probe_budget;
    driver.budget_end = budget_end;
    fs.set_fault_plan(driver::plan(Some((case.syscall, case.fault)), budget_end));
    let finished = driver.workload(&scenario.workload)?;
    if fs.halted().is_none() {
        driver.close();
    }
    let end = fs.syscall_count();
    // The plan was for the workload: a fault it did not reach must not
    // strike the recovery instead.
    fs.set_fault_plan(driver::plan(None, budget_end));
    let mut violations = std::mem::take(&mut driver.violations);
    let mut model = driver.model.clone();
    let mut states_checked = 0;
    match (case.fault, &case.crash) {
        (Fault::PowerCut, Some((persistence, pick))) => {
            if finished && case.syscall == probe_end {
                violations.extend(driver::full_sync_checks(
                    factory,
                    scenario,
                    SimFs::new(machine_config(scenario, seed)),
                )?);
            }
            let snapshot = fs.snapshot();
            let choice = match pick {
                CrashPick::Distinct(i) => snapshot
                    .distinct_crashes(*persistence, usize::MAX >> 1)
                    .and_then(|all| all.get(*i).cloned())
                    .ok_or_else(|| HarnessError(format!("no distinct outcome {i} at syscall {}", case.syscall)))?,
                CrashPick::Sample(i) => snapshot.sample_crash(*persistence, fs.crash_seed().wrapping_add(*i)),
            };
            fs.power_cut();
            let rebooted = fs.reboot_with(*persistence, &choice);
            rebooted.set_fault_plan(driver::plan(None, rebooted.syscall_count() + probe_budget));
            states_checked += 1;
            let recovered =
                driver::recover_and_check(factory, &rebooted, &model, rebooted.syscall_count() + probe_budget);
            violations.extend(recovered.violations);
        }
        _ => {
            let power_off = fs.halted().is_some_and(|h| h.kind == HaltKind::PowerCut);
            if !power_off {
                // The process that saw the fault gives up and exits.
                fs.crash_process();
                let restarted = fs.spawn_process();
                states_checked += 1;
                let recovered = driver::recover_and_check(factory, &restarted, &model, budget_end);
                if let Some(observation) = &recovered.observation
                    && recovered.violations.is_empty()
                {
                    driver::settle(&mut model, observation, &driver.caps);
                }
                violations.extend(recovered.violations);
            }
            let persistence = PersistenceModel::NothingUnsynced;
            let rebooted = fs.reboot_with(persistence, &fs.crash_choice(persistence));
            let reboot_budget = rebooted.syscall_count() + probe_budget;
            rebooted.set_fault_plan(driver::plan(None, reboot_budget));
            states_checked += 1;
            let recovered = driver::recover_and_check(factory, &rebooted, &model, reboot_budget);
            violations.extend(recovered.violations);
        }
    }
    let trace = fs.trace();
    violations.extend(driver::check_trace(factory, &fs, &trace));
    Ok(Replay {
        violations: driver::first_of_each(violations),
        states_checked,
        trace,
        workload: (start, end),
    })
}

/// The cases a part owns, checked; with what the part reports.
pub(crate) fn run_cases(
    factory: &dyn StoreFactory,
    scenario: &StoreScenario,
    probe: &Probe,
    cases: &[PlannedCase],
    options: &EngineOptions,
    part: Part,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<(u64, CaseOutcome)>, HarnessError> {
    let anchor = cases
        .iter()
        .find(|c| c.case.syscall == probe.end && c.case.fault == Fault::PowerCut)
        .or_else(|| cases.iter().find(|c| c.case.syscall == probe.end))
        .map(|c| c.index);
    let total = cases.len() as u64;
    let mut results = Vec::new();
    for planned in cases {
        if part.owns(planned.index) {
            let mut outcome = run_case(factory, scenario, probe, planned, options.seed)?;
            if Some(planned.index) == anchor {
                // The probe's own findings belong to the case that replays
                // the whole fault-free workload.
                let mut all = probe.violations.clone();
                all.append(&mut outcome.violations);
                outcome.violations = all;
            }
            outcome.violations = driver::first_of_each(std::mem::take(&mut outcome.violations));
            if options.check_determinism {
                let again = run_case(factory, scenario, probe, planned, options.seed)?.trace_hash;
                if again != outcome.trace_hash {
                    return Err(HarnessError(format!(
                        "{}:{}:{} is not deterministic: trace hashes {:016x} and {:016x}",
                        scenario.name, options.seed, planned.case, outcome.trace_hash, again
                    )));
                }
            }
            results.push((planned.index, outcome));
        }
        progress(planned.index + 1, total);
    }
    Ok(results)
}
