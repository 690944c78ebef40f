//! A store scenario as a [`Subject`]: the workload driven through the
//! contract ([`StoreFactory`]), a writable reopen + observation + checks
//! after every fault, and the lock invariant read off every trace.

use std::sync::Arc;

use tearline_model::{Invariant, Model, Operation, StoreFactory, Violation};
use tearline_sim_fs::{CrashChoice, Fault, HaltKind, Mount, PersistenceModel, SimConfig, SimFs, SyscallKind};

use super::HarnessError;
use super::branch::Branches;
use super::driver::{self, Driver};
use super::passes::Passes;
use super::scenario::{PersistentCause, StoreScenario, store_root};
use super::subject::{Mark, Probe, Replay, Subject, reboot_after_power_cut, record};
use crate::case::{Case, DEFAULT_SCALE, Injection};

/// A store scenario run against one store.
pub struct StoreSubject<'a> {
    /// The store.
    pub factory: &'a dyn StoreFactory,
    /// The scenario.
    pub scenario: &'a StoreScenario,
}

/// The machine a scenario runs on, for a seed.
fn machine_config(scenario: &StoreScenario, seed: u64) -> SimConfig {
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

/// A workload stopped with no fault injected at a rebuild or a sync: it
/// failed on what the harness left in the sources (filesystem-wins), unless
/// the scenario allows a fault-free failure.
fn failed_fault_free(scenario: &StoreScenario, driver: &Driver<'_>) -> Option<Violation> {
    let (op, failure) = driver.last_failure.as_ref()?;
    let syncs = matches!(op, Operation::Rebuild { .. } | Operation::Reconcile { .. });
    (!scenario.fault_free_failure_allowed && syncs)
        .then(|| tearline_model::invariants::filesystem_wins::failed_fault_free(&op.describe(), failure))
}

/// A workload stopped by a rebuild or sync that failed after a source file
/// vanished at syscall `at` (filesystem-wins).
fn failed_on_vanished(driver: &Driver<'_>, at: u64) -> Option<Violation> {
    let (op, failure) = driver.last_failure.as_ref()?;
    let syncs = matches!(op, Operation::Rebuild { .. } | Operation::Reconcile { .. });
    let path = driver
        .fs
        .with_trace(|trace| trace.entries().iter().find(|e| e.index == at).map(|e| e.path.clone()))?;
    syncs.then(|| tearline_model::invariants::filesystem_wins::failed_on_vanished(&op.describe(), &path, failure))
}

/// Whether a syscall of this kind can change what a reader in another
/// process sees (names, contents, sizes, the locks it can take): every
/// kind that writes, creates, renames or removes. An open may create or
/// truncate. An unlock frees a lock; and no case strikes at one (so no
/// reader looked before it), so the reader after it must look.
fn changes_what_readers_see(op: SyscallKind) -> bool {
    op.writes() || matches!(op, SyscallKind::Open | SyscallKind::Lock | SyscallKind::Unlock)
}

impl StoreSubject<'_> {
    /// A case's last recovery, on the machine rebooted after it: the
    /// writable open and its checks (a reader first), then
    /// stays-serviceable where the scenario's device stays full.
    fn last_recovery(&self, probe: &Probe, rebooted: &SimFs, model: &Model) -> Vec<Violation> {
        let budget_end = rebooted.syscall_count() + probe.budget();
        rebooted.set_fault_plan(driver::plan(None, budget_end));
        let recovered = self.recover(probe, rebooted, model, budget_end, true, true);
        let serviceable = self.serviceable(
            rebooted,
            model,
            recovered.observation.as_ref(),
            &recovered.violations,
            budget_end,
        );
        let mut violations = recovered.violations;
        violations.extend(serviceable);
        violations
    }

    /// What follows a fault that is not a power cut, once the workload has
    /// stopped or ended on `fs`: unless the power is off, the process that
    /// saw the fault exits and a new one recovers (its observation settles
    /// what `model` left uncertain); then a power cut that keeps nothing
    /// unsynced, and the last recovery. The violations and the states
    /// checked.
    fn after_the_fault(&self, probe: &Probe, fs: &SimFs, model: &mut Model, budget_end: u64) -> (Vec<Violation>, u64) {
        let mut violations = Vec::new();
        let mut states_checked = 0;
        let power_off = fs.halted().is_some_and(|h| h.kind == HaltKind::PowerCut);
        if !power_off {
            // The process that saw the fault gives up and exits.
            fs.crash_process();
            let restarted = fs.spawn_process();
            states_checked += 1;
            let recovered = self.recover(probe, &restarted, model, budget_end, true, false);
            if let Some(observation) = &recovered.observation
                && recovered.violations.is_empty()
            {
                model.settle_to(observation, &self.factory.capabilities());
            }
            violations.extend(recovered.violations);
        }
        let persistence = PersistenceModel::NothingUnsynced;
        let rebooted = fs.reboot_with(persistence, &fs.crash_choice(persistence));
        states_checked += 1;
        violations.extend(self.last_recovery(probe, &rebooted, model));
        (violations, states_checked)
    }

    /// The writable open after a fault and its checks
    /// ([`driver::recover_and_check`]). Rebuilding from the sources needs
    /// room for a new generation: where the scenario keeps the device full
    /// and that repair is all that failed, the harness gives it room (as an
    /// operator would), and then the repair must succeed. The checks after
    /// the recovery reuse the passes of `probe`'s earlier cases
    /// ([`Probe::passes`]): the third opens always; the whole check if this
    /// is the `last` recovery on `machine` (its caller reads nothing more of
    /// the machine than the lock invariant over its trace) and
    /// stays-serviceable does not go on with it.
    fn recover(
        &self,
        probe: &Probe,
        machine: &SimFs,
        model: &Model,
        budget_end: u64,
        reader: bool,
        last: bool,
    ) -> driver::Recovered {
        let remote = PersistentCause::remote_after_fault(self.scenario.persists);
        let thrown_away = last && self.scenario.persists.is_none();
        let passes = driver::Reuse {
            reboots: Some(&probe.passes.reboots),
            reopens: thrown_away.then_some(&probe.passes.reopens),
        };
        let recovered = driver::recover_and_check(self.factory, machine, model, budget_end, remote, reader, passes);
        let repair_needs_room = self.scenario.persists == Some(PersistentCause::DeviceFull)
            && !recovered.violations.is_empty()
            && recovered
                .violations
                .iter()
                .all(|v| v.invariant == Invariant::RebuildableFromSource);
        if !repair_needs_room {
            return recovered;
        }
        machine.set_capacity(store_root(), u64::MAX);
        driver::recover_and_check(self.factory, machine, model, budget_end, remote, false, passes)
    }

    /// stays-serviceable after a case's last recovery, in a scenario whose
    /// cause of failure persists, if that recovery kept every invariant.
    fn serviceable(
        &self,
        machine: &SimFs,
        model: &Model,
        recovered: Option<&tearline_model::Observation>,
        violations: &[Violation],
        budget_end: u64,
    ) -> Vec<Violation> {
        match self.scenario.persists {
            Some(cause) if violations.is_empty() && machine.halted().is_none() => {
                driver::check_serviceable(self.factory, machine, model, recovered, budget_end, cause)
            }
            _ => Vec::new(),
        }
    }
}

impl Subject for StoreSubject<'_> {
    fn name(&self) -> &str {
        &self.scenario.name
    }

    fn can_branch(&self) -> bool {
        self.factory.forks_with_this_process()
    }

    fn takes(&self, fault: Fault) -> bool {
        !self.scenario.spared.contains(&fault)
    }

    fn case(&self, seed: u64, injection: Injection) -> Case {
        Case {
            scenario: self.scenario.name.clone(),
            seed,
            injection,
            scale: DEFAULT_SCALE,
            store: self.factory.name().to_string(),
        }
    }

    fn probe(&self, seed: u64) -> Result<Probe, HarnessError> {
        let (factory, scenario) = (self.factory, self.scenario);
        let config = machine_config(scenario, seed);
        let fs = SimFs::new(config.clone());
        let mut driver = Driver::boot(factory, scenario, fs.clone())?;
        driver.marks.clear();
        driver.marks.push(Mark {
            at: fs.syscall_count(),
            model: driver.model.clone(),
        });
        let recording = record(&fs, || {
            let finished = driver.workload(&scenario.workload);
            let stopped_at = fs.syscall_count();
            driver.close();
            finished.map(|finished| (finished, stopped_at))
        });
        let (finished, stopped_at) = recording.value?;
        let (start, end, snapshots, ops, trace) = (
            recording.start,
            recording.end,
            recording.snapshots,
            recording.ops,
            recording.trace,
        );
        if !finished && let Some(violation) = failed_fault_free(scenario, &driver) {
            // Found as the workload stopped, as a replay finds it then.
            driver.violations.push((stopped_at, violation));
        }
        // A stop that broke an invariant is reported as that violation.
        if !finished && !scenario.fault_free_failure_allowed && driver.violations.is_empty() {
            return Err(HarnessError(format!(
                "{}: the fault-free workload stopped (a step failed without a fault): {:?}",
                scenario.name, driver.violations
            )));
        }
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
        let workload_violations = std::mem::take(&mut driver.violations);
        let mut violations: Vec<Violation> = workload_violations.iter().map(|(_, v)| v.clone()).collect();
        violations.extend(driver::check_trace(factory, &fs, &trace));
        violations.extend(driver::full_sync_checks(factory, scenario, SimFs::new(config.clone()))?);
        violations.extend(driver::exact_state_checks(factory, scenario, SimFs::new(config))?);
        if snapshots.len() as u64 != end - start + 1 || ops.len() as u64 != end - start {
            return Err(HarnessError(format!(
                "{}: the probe recorded {} snapshots and {} syscalls for {} workload syscalls",
                scenario.name,
                snapshots.len(),
                ops.len(),
                end - start
            )));
        }
        let repeated_reads = super::subject::repeated_reads(&trace, start, &owners);
        let lock_broken_from = driver::lock_broken_from(factory, &fs, trace.entries());
        Ok(Probe {
            seed,
            start,
            end,
            snapshots,
            ops,
            owners,
            steps: scenario.workload.iter().map(|s| s.describe()).collect(),
            repeated_reads,
            marks: driver.marks,
            crash_seed: fs.crash_seed(),
            trace_hash: trace.hash(),
            trace,
            lock_broken_from,
            workload_violations,
            // Off but in the matrix ([`super::run_part`]): a replay for
            // `repro` runs every check.
            passes: Passes::off(),
            workload_pid: Some(fs.pid()),
            source_dir: factory.source_dir(&driver::env_for(&fs, tearline_model::RemoteFault::Healthy)),
            violations,
        })
    }

    /// The machine as a reader in another process would find it before
    /// syscall `at` of an operation: every write so far, synced or not (the
    /// page cache), booted from the probe's snapshot there, so the reader
    /// runs beside the workload without touching it. A reader sees the same
    /// before `at` as before `at - 1` when syscall `at - 1` of the same step
    /// changed nothing a reader can see (a read, a stat, an fsync, a lock):
    /// that reader is not run again.
    fn check_reader(&self, probe: &Probe, at: u64) -> Option<Vec<Violation>> {
        if !self.factory.capabilities().concurrent_readers {
            return None;
        }
        let step = probe.step_name(at)?;
        let previous = at.checked_sub(1).filter(|&p| probe.step_at(p) == probe.step_at(at));
        if previous
            .and_then(|p| probe.op_at(p))
            .is_some_and(|op| !changes_what_readers_see(op))
        {
            return None;
        }
        let snapshot = probe.snapshot_at(at)?;
        let live = snapshot.boot(
            PersistenceModel::NothingUnsynced,
            &CrashChoice::everything(snapshot.pending_ops()),
        );
        let budget_end = live.syscall_count() + probe.budget();
        live.set_fault_plan(driver::plan(None, budget_end));
        let when = format!("a reader while `{step}` ran, before syscall {at},");
        Some(driver::check_reader(
            self.factory,
            &live,
            &probe.model_at(at),
            budget_end,
            PersistentCause::remote_during_workload(self.scenario.persists),
            &when,
        ))
    }

    fn readers_per_state(&self) -> u64 {
        u64::from(self.factory.capabilities().concurrent_readers)
    }

    fn check_power_cut(&self, probe: &Probe, at: u64, booted: &SimFs, reader: bool) -> Vec<Violation> {
        let budget_end = booted.syscall_count() + probe.budget();
        booted.set_fault_plan(driver::plan(None, budget_end));
        let model = probe.model_at(at);
        let recovered = self.recover(probe, booted, &model, budget_end, reader, true);
        // stays-serviceable is judged on what the recovery broke, as in a
        // replay; what the workload broke before is reported beside it.
        let serviceable = self.serviceable(
            booted,
            &model,
            recovered.observation.as_ref(),
            &recovered.violations,
            budget_end,
        );
        let mut violations: Vec<Violation> = probe.found_before(at).cloned().collect();
        violations.extend(recovered.violations);
        violations.extend(serviceable);
        violations.extend(driver::check_machine_trace_after(
            self.factory,
            booted,
            probe.trace_before(at).iter(),
        ));
        violations
    }

    /// As [`StoreSubject::run_case`] goes on once a crash has stopped the
    /// workload: a restart in a new process and its recovery, then a power
    /// cut that keeps nothing unsynced and the last recovery.
    fn check_crash(&self, probe: &Probe, at: u64, killed: &SimFs) -> Option<(Vec<Violation>, u64)> {
        let budget_end = probe.start + probe.budget();
        killed.set_fault_plan(driver::plan(None, budget_end));
        let mut model = probe.model_at(at);
        let mut violations: Vec<Violation> = probe.found_before(at).cloned().collect();
        let (after, states_checked) = self.after_the_fault(probe, killed, &mut model, budget_end);
        violations.extend(after);
        let crash = probe.crash_entry(at);
        let before = probe.trace_before(at).iter().chain(crash.as_ref());
        violations.extend(driver::check_machine_trace_after(self.factory, killed, before));
        Some((driver::first_of_each(violations), states_checked))
    }

    /// A fresh machine, the setup, the workload with the fault injected at
    /// the case's syscall; then, for a power cut, the reboot under the
    /// case's outcome; otherwise a restart in a new process and then a power
    /// cut that keeps nothing unsynced (but a torn write's sectors). After
    /// each, a writable open, an observation and the checks.
    fn replay(&self, probe: &Probe, seed: u64, injection: &Injection) -> Result<Replay, HarnessError> {
        self.run_case(probe, seed, Arm::Fault(injection))?
            .ok_or_else(|| HarnessError(format!("{}: the replay struck no fault", self.scenario.name)))
    }

    fn replay_branching(&self, probe: &Probe, seed: u64, branches: &Arc<Branches>) -> Result<(), HarnessError> {
        self.run_case(probe, seed, Arm::Branches(branches)).map(drop)
    }
}

/// How a run of the workload injects its fault: one fault planned from
/// the start (a replay), or a branch per case off a fault-free run.
enum Arm<'a> {
    Fault(&'a Injection),
    Branches(&'a Arc<Branches>),
}

impl StoreSubject<'_> {
    /// [`Subject::replay`] and [`Subject::replay_branching`]: `None` in a
    /// branching run's runner, once its workload has ended (a branch
    /// concludes and exits).
    fn run_case(&self, probe: &Probe, seed: u64, arm: Arm<'_>) -> Result<Option<Replay>, HarnessError> {
        let (factory, scenario) = (self.factory, self.scenario);
        let fs = SimFs::new(machine_config(scenario, seed));
        let mut driver = Driver::boot(factory, scenario, fs.clone())?;
        let start = fs.syscall_count();
        let budget_end = start + probe.budget();
        driver.budget_end = budget_end;
        match arm {
            Arm::Fault(injection) => {
                fs.set_fault_plan(driver::plan(Some((injection.syscall, injection.fault)), budget_end));
                if super::strikes_a_file(injection.fault) {
                    driver.fault_at_rest = Some(injection.syscall);
                }
            }
            Arm::Branches(branches) => {
                branches.install(&fs, budget_end);
                driver.branches = Some(Arc::clone(branches));
            }
        }
        let finished = driver.workload(&scenario.workload)?;
        let injection = match arm {
            Arm::Fault(injection) => injection.clone(),
            Arm::Branches(branches) => match branches.struck() {
                Some(injection) => injection,
                None => return Ok(None),
            },
        };
        driver.account_fault_at_rest();
        // Stopped before the fault struck: what the probe found, again.
        let fault_free = (!finished && fs.syscall_count() <= injection.syscall)
            .then(|| failed_fault_free(scenario, &driver))
            .flatten();
        let at = fs.syscall_count();
        driver.violations.extend(fault_free.map(|v| (at, v)));
        // A file that vanished from the sources is the sources changing:
        // a rebuild or sync must take it as gone, not fail on it.
        if !finished && injection.fault == Fault::Vanish && fs.syscall_count() > injection.syscall {
            let at = fs.syscall_count();
            driver
                .violations
                .extend(failed_on_vanished(&driver, injection.syscall).map(|v| (at, v)));
        }
        if fs.halted().is_none() {
            driver.close();
        }
        let end = fs.syscall_count();
        // The plan was for the workload: a fault it did not reach must not
        // strike the recovery instead.
        fs.set_fault_plan(driver::plan(None, budget_end));
        let mut violations = driver.take_violations();
        let mut model: Model = driver.model.clone();
        let mut states_checked = 0;
        match &injection.crash {
            Some((persistence, pick)) => {
                if finished && injection.syscall == probe.end {
                    violations.extend(driver::full_sync_checks(
                        factory,
                        scenario,
                        SimFs::new(machine_config(scenario, seed)),
                    )?);
                    violations.extend(driver::exact_state_checks(
                        factory,
                        scenario,
                        SimFs::new(machine_config(scenario, seed)),
                    )?);
                }
                let rebooted = reboot_after_power_cut(&fs, injection.syscall, *persistence, *pick)?;
                states_checked += 1;
                violations.extend(self.last_recovery(probe, &rebooted, &model));
            }
            None => {
                let (after, states) = self.after_the_fault(probe, &fs, &mut model, budget_end);
                violations.extend(after);
                states_checked += states;
            }
        }
        violations.extend(driver::check_machine_trace(factory, &fs));
        let violations = driver::first_of_each(violations);
        if let Arm::Branches(branches) = arm {
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
