//! Driving a store through the contract on one simulated machine: every
//! store call guarded (a panic or a blown syscall budget is a clean-error
//! violation, never a crash of the harness), the model kept in step, and the
//! writable reopen + observe + check that follows every fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tearline_model::guard::catch_store_panic;
use tearline_model::invariants::{
    check_read_only, check_recovered, clean_error, complete_database, failed_open_changes_nothing, filesystem_wins,
    model_comparison, no_destructive_without_force, no_orphan_vectors, no_wipe_without_lock, reader_consistent,
    rebuild_idempotent, rebuildable_from_source, recovery_idempotent, stays_serviceable,
};
use tearline_model::{
    Access, Capabilities, Env, FailureKind, Invariant, Model, Observation, Operation, RemoteFault, StoreFactory,
    StoreFailure, StoreUnderTest, Violation,
};
use tearline_sim_fs::{
    Fault, FaultPlan, FileHandleExt, Fs, FsExt, OpenOptions, Outcome, PersistenceModel, SimFs, SyscallArgs,
    SyscallFilter, SyscallKind, Trace, TraceEntry,
};

use super::HarnessError;
use super::branch::Branches;
use super::lock_attack;
use super::passes::PassedChecks;
use super::scenario::{Capacity, Damage, PersistentCause, Plant, Step, StoreScenario, store_root};
use super::subject::Mark;

/// Runs one store call: a panic, or more syscalls than the budget allows
/// (a hang), is a clean-error violation.
pub(crate) fn guarded<T>(fs: &SimFs, budget_end: u64, what: &str, call: impl FnOnce() -> T) -> Result<T, Violation> {
    let value = catch_store_panic(what, call)?;
    match clean_error::check_budget(what, fs.syscall_count(), budget_end) {
        Some(hang) => Err(hang),
        None => Ok(value),
    }
}

/// The environment a store sees in one simulated process, with its remote
/// dependency behaving as `remote` says.
pub(crate) fn env_for(fs: &SimFs, remote: RemoteFault) -> Env {
    Env {
        remote,
        ..Env::new(Arc::new(fs.clone()), Arc::new(fs.clock()), store_root())
    }
}

/// The fault plan of a case: the fault (if any) and the budget's guard.
pub(crate) fn plan(fault: Option<(u64, Fault)>, budget_end: u64) -> FaultPlan {
    let plan = match fault {
        Some((at, fault)) => FaultPlan::none().at(at, fault),
        None => FaultPlan::none(),
    };
    plan.at(budget_end, Fault::ProcessCrash)
}

/// Whether the workload goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// One process driving a store through steps, with the model.
pub(crate) struct Driver<'f> {
    pub factory: &'f dyn StoreFactory,
    pub caps: Capabilities,
    pub fs: SimFs,
    handle: Option<Box<dyn StoreUnderTest>>,
    pub model: Model,
    pub marks: Vec<Mark>,
    pub budget_end: u64,
    /// What the steps broke, each violation with the syscall count when it
    /// was found (see [`Driver::found`]).
    pub violations: Vec<(u64, Violation)>,
    /// `(first syscall, step index)` for each workload step, in order.
    pub step_starts: Vec<(u64, usize)>,
    /// The operation whose failure stopped the workload, described, with
    /// its failure.
    pub last_failure: Option<(Operation, StoreFailure)>,
    /// The last failure of a writable open outside a fault, for messages.
    pub open_failure: Option<StoreFailure>,
    /// What the last [`Step::LockFile`] did to the lock, for the evidence
    /// of a second writer let in after it.
    lock_attack: Option<String>,
    /// The syscall a fault at rest is planned at, until the workload has
    /// passed it and the model has been told what it struck
    /// ([`Driver::account_fault_at_rest`]).
    pub fault_at_rest: Option<u64>,
    /// How the store's remote dependency behaves for every open from now
    /// on (down from the first workload step in a scenario where it stays
    /// down).
    pub remote: RemoteFault,
    /// The branches of a run that branches cases off ([`super::branch`]):
    /// a branch whose fault strikes a file tells [`Driver::fault_at_rest`].
    pub branches: Option<Arc<Branches>>,
}

impl<'f> Driver<'f> {
    /// A fresh machine with an empty store open writable and the setup run.
    pub fn boot(
        factory: &'f dyn StoreFactory,
        scenario: &StoreScenario,
        fs: SimFs,
    ) -> Result<Driver<'f>, HarnessError> {
        let mut driver = Driver {
            factory,
            caps: factory.capabilities(),
            fs,
            handle: None,
            model: Model::new(),
            marks: Vec::new(),
            budget_end: u64::MAX,
            violations: Vec::new(),
            step_starts: Vec::new(),
            last_failure: None,
            open_failure: None,
            lock_attack: None,
            fault_at_rest: None,
            remote: RemoteFault::Healthy,
            branches: None,
        };
        let env = driver.env();
        driver
            .fs
            .create_dir_all_durable(store_root())
            .map_err(|e| HarnessError(format!("creating {}: {e}", store_root().display())))?;
        match guarded(&driver.fs, u64::MAX, "init", || factory.init(&env)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(HarnessError(format!("{}: init failed: {e}", scenario.name))),
            Err(v) => return Err(HarnessError(format!("{}: init: {v}", scenario.name))),
        }
        if driver.reopen()? == Flow::Stop {
            return Err(HarnessError(format!(
                "{}: the first writable open failed: {}",
                scenario.name,
                driver.why_stopped()
            )));
        }
        for (i, step) in scenario.setup.iter().enumerate() {
            let flow = driver.step(step)?;
            if flow == Flow::Stop || !driver.violations.is_empty() {
                return Err(HarnessError(format!(
                    "{}: setup step {i} ({}) failed fault-free: {}",
                    scenario.name,
                    step.describe(),
                    driver.why_stopped()
                )));
            }
        }
        // A small device is sized from what the setup left, and only then
        // enforced: the setup's own transient files must not run it out.
        let used = driver.fs.used_bytes(store_root());
        match scenario.capacity {
            Capacity::Unlimited => {}
            Capacity::SetupSizePercent(percent) => {
                driver.fs.set_capacity(store_root(), used.saturating_mul(percent) / 100);
            }
            Capacity::SetupSizePlus(bytes) => driver.fs.set_capacity(store_root(), used.saturating_add(bytes)),
        }
        // A remote dependency that stays down goes down now, for the open
        // store and every later open.
        let remote = PersistentCause::remote_during_workload(scenario.persists);
        if remote != RemoteFault::Healthy {
            driver.remote = remote;
            if let Some(handle) = driver.handle.as_mut()
                && !handle.set_remote_fault(remote)
            {
                return Err(HarnessError(format!(
                    "{}: {} has no remote dependency to take down (StoreUnderTest::set_remote_fault)",
                    scenario.name,
                    factory.name()
                )));
            }
        }
        Ok(driver)
    }

    /// The environment of the driving process.
    fn env(&self) -> Env {
        self.env_on(&self.fs)
    }

    /// The environment of another process of the machine, as this driver
    /// sees the remote dependency.
    fn env_on(&self, fs: &SimFs) -> Env {
        env_for(fs, self.remote)
    }

    /// Why the store stopped, in words: the violations found, else the
    /// last failure the store answered.
    fn why_stopped(&self) -> String {
        if !self.violations.is_empty() {
            let found: Vec<String> = self
                .violations
                .iter()
                .map(|(_, v)| format!("{}: {}", v.invariant, v.evidence))
                .collect();
            return found.join("; ");
        }
        match (&self.last_failure, &self.open_failure) {
            (Some((op, failure)), _) => format!("{} failed: {}", op.describe(), failure.message),
            (None, Some(failure)) => format!("the open failed: {}", failure.message),
            (None, None) => "(the store gave no reason)".to_string(),
        }
    }

    /// Records a violation found now, stamped with the syscall count: a
    /// case whose fault strikes at syscall N, replayed, finds again what
    /// was found with a count of N or less (before syscall N was made).
    pub fn found(&mut self, violation: Violation) {
        let at = self.fs.syscall_count();
        self.violations.push((at, violation));
    }

    /// [`Driver::found`] for each of `violations`.
    pub fn found_all(&mut self, violations: impl IntoIterator<Item = Violation>) {
        for violation in violations {
            self.found(violation);
        }
    }

    /// The violations found, without their stamps.
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn mark(&mut self) {
        self.marks.push(Mark {
            at: self.fs.syscall_count(),
            model: self.model.clone(),
        });
    }

    fn halted(&self) -> bool {
        self.fs.halted().is_some()
    }

    /// Observes the store through the open handle, as it is (no recovery):
    /// `None` if there is no handle or the store could not say (a panic or
    /// a hang there is pushed onto `violations`).
    fn observe_handle(&mut self, violations: &mut Vec<Violation>) -> Option<Observation> {
        let handle = self.handle.take()?;
        let result = guarded(&self.fs, u64::MAX, "observe", || handle.observe());
        self.handle = Some(handle);
        match result {
            Ok(Ok(observation)) => Some(observation),
            Ok(Err(_)) => None,
            Err(v) => {
                violations.push(v);
                None
            }
        }
    }

    /// Runs the workload until it ends or stops; returns whether it ended.
    pub fn workload(&mut self, steps: &[Step]) -> Result<bool, HarnessError> {
        for (i, step) in steps.iter().enumerate() {
            self.step_starts.push((self.fs.syscall_count(), i));
            let flow = self.step(step)?;
            self.account_fault_at_rest();
            if flow == Flow::Stop {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Once the workload has passed [`Driver::fault_at_rest`], tells the
    /// model what the fault struck: a source file (the truth itself: the
    /// medium lost that document, so the store may serve it as it now reads,
    /// or skip it, but must not fail on it), or a file the store derives from
    /// its sources (damage: from now on a writable open must bring the store
    /// back, and a wrong answer is silent corruption).
    pub fn account_fault_at_rest(&mut self) {
        if let Some(at) = self.branches.as_ref().and_then(|b| b.take_fault_at_rest()) {
            self.fault_at_rest = Some(at);
        }
        let Some(at) = self.fault_at_rest.filter(|&at| self.fs.syscall_count() > at) else {
            return;
        };
        self.fault_at_rest = None;
        let Some(entry) = self.fs.with_trace(|trace| {
            trace
                .entries()
                .iter()
                .find(|e| e.index == at && e.fault.is_some_and(super::strikes_a_file))
                .cloned()
        }) else {
            return;
        };
        let sources = self.factory.source_dir(&self.env());
        let document = sources.as_deref().and_then(|dir| {
            let name = Path::new(&entry.path).strip_prefix(dir).ok()?.components().next()?;
            name.as_os_str().to_str().map(str::to_string)
        });
        match document {
            Some(name) => self.model.unspecify(&name),
            None => self.model.note_damage(format!(
                "{} at {} (syscall {at})",
                entry.fault.map(|f| f.to_string()).unwrap_or_default(),
                entry.path
            )),
        }
    }

    /// Drops the open store (the process closes it).
    pub fn close(&mut self) {
        if let Some(handle) = self.handle.take()
            && let Err(v) = guarded(&self.fs, self.budget_end, "closing the store", move || drop(handle))
        {
            self.found(v);
        }
    }

    fn reopen(&mut self) -> Result<Flow, HarnessError> {
        self.close();
        let env = self.env();
        let factory = self.factory;
        let start = self.fs.syscall_count();
        match guarded(&self.fs, self.budget_end, "a writable open", || {
            factory.open(&env, Access::Writable)
        }) {
            Ok(Ok(handle)) => {
                self.handle = Some(handle);
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                self.open_failure = Some(e.clone());
                if !self.halted() && !faulted_since(&self.fs, start) {
                    self.found_all(failed_open_check(factory, &self.fs, self.fs.pid(), start));
                    if let Some(damage) = self.model.damage().filter(|_| self.caps.derived_files) {
                        self.found(rebuildable_from_source::open_failed(damage, e));
                    }
                }
                Ok(Flow::Stop)
            }
            Err(v) => {
                self.found(v);
                Ok(Flow::Stop)
            }
        }
    }

    /// The harness, in a process of its own, changes `name` in the store's
    /// source directory behind the store's back (`edit` gets the process,
    /// the directory and the path), durably. Its syscalls are the
    /// harness's. `Stop` if the machine halted meanwhile.
    fn behind_the_store(
        &self,
        name: &str,
        edit: impl FnOnce(&SimFs, &Path, &Path) -> std::io::Result<()>,
    ) -> Result<Flow, HarnessError> {
        let env = self.env();
        let dir = self
            .factory
            .source_dir(&env)
            .ok_or_else(|| HarnessError("a source edit, but the store has no source directory".into()))?;
        let harness = self.fs.spawn_process();
        let path = dir.join(name);
        let result = harness
            .create_dir_all_durable(&dir)
            .and_then(|()| edit(&harness, &dir, &path));
        harness.crash_process();
        match result {
            Ok(()) => Ok(Flow::Continue),
            Err(_) if self.halted() => Ok(Flow::Stop),
            Err(e) => Err(HarnessError(format!("editing source {}: {e}", path.display()))),
        }
    }

    /// Runs one step.
    pub fn step(&mut self, step: &Step) -> Result<Flow, HarnessError> {
        match step {
            Step::Op(op) => {
                let Some(mut handle) = self.handle.take() else {
                    return Ok(Flow::Stop);
                };
                let expected = self.model.expect(op);
                self.model.begin(op);
                self.mark();
                let what = format!("`{}`", op.describe());
                let result = guarded(&self.fs, self.budget_end, &what, || handle.apply(op));
                self.handle = Some(handle);
                match result {
                    Err(v) => {
                        self.found(v);
                        Ok(Flow::Stop)
                    }
                    Ok(Ok(())) => {
                        self.model.acknowledge();
                        self.mark();
                        self.found_all(no_destructive_without_force::check_acknowledged(op, expected.must_fail));
                        Ok(Flow::Continue)
                    }
                    Ok(Err(_)) if self.halted() => Ok(Flow::Stop),
                    Ok(Err(_)) if expected.must_fail => {
                        self.model.settle(false);
                        self.mark();
                        Ok(Flow::Continue)
                    }
                    // The store says nothing was applied: the model holds it
                    // to that from now on, and the workload goes on.
                    Ok(Err(failure)) if failure.kind == FailureKind::NotApplied && self.caps.definite_failures => {
                        self.model.reject();
                        self.mark();
                        Ok(Flow::Continue)
                    }
                    // A failed operation may or may not have taken effect:
                    // the model keeps it uncertain until a check settles it.
                    Ok(Err(failure)) => {
                        self.last_failure = Some((op.clone(), failure));
                        Ok(Flow::Stop)
                    }
                }
            }
            Step::EditSource { name, content } => {
                let edited = self.behind_the_store(name, |harness, dir, path| match content {
                    Some(content) => harness.write_file_atomic(path, content.as_bytes()),
                    None => harness.remove_file(path).and_then(|()| harness.sync_dir(dir)),
                })?;
                if edited == Flow::Continue {
                    self.model.edit_source(name, content.as_deref());
                    self.mark();
                }
                Ok(edited)
            }
            Step::PlantSource { name, plant } => {
                let planted = self.behind_the_store(name, |harness, dir, path| match plant {
                    Plant::NotText => harness.write_file_atomic(path, &[0xff, 0xfe, 0x00, 0x9f, b'\n']),
                    Plant::Directory => harness
                        .create_dir_all_durable(path)
                        .and_then(|()| harness.write_file_atomic(&path.join("inner.md"), b"# inside a directory\n")),
                    Plant::NameNotUtf8 => {
                        use std::os::unix::ffi::OsStrExt;
                        let raw = dir.join(std::ffi::OsStr::from_bytes(&plant.file_name(name)));
                        harness.write_file_atomic(&raw, format!("# {name}\nnamed in Latin-1\n").as_bytes())
                    }
                    Plant::SymlinkOut => {
                        let outside = Path::new("/outside").join(name);
                        harness
                            .create_dir_all_durable(Path::new("/outside"))
                            .and_then(|()| harness.write_file_atomic(&outside, b"# outside\nnot the store's\n"))
                            .and_then(|()| harness.plant_symlink(path, &outside))
                            .and_then(|()| harness.sync_dir(dir))
                    }
                    Plant::SymlinkLoop => harness
                        .plant_symlink(path, Path::new(name))
                        .and_then(|()| harness.sync_dir(dir)),
                    Plant::Empty | Plant::Large(_) => {
                        harness.write_file_atomic(path, plant.text().unwrap_or_default().as_bytes())
                    }
                })?;
                if planted == Flow::Continue {
                    // A document is the store's to index; what is not text,
                    // or not a file, or cannot be opened by the name it is
                    // listed under, it may index or skip, but not fail on.
                    match plant.text() {
                        Some(text) => self.model.edit_source(name, Some(&text)),
                        None => self.model.unspecify(&plant.listed_name(name)),
                    }
                    self.mark();
                }
                Ok(planted)
            }
            Step::Reopen => {
                self.mark();
                self.reopen()
            }
            Step::RemoteFault(fault) => {
                let Some(handle) = self.handle.as_mut() else {
                    return Ok(Flow::Stop);
                };
                if !handle.set_remote_fault(*fault) {
                    return Err(HarnessError(format!(
                        "{} has no remote dependency to fail (StoreUnderTest::set_remote_fault)",
                        self.factory.name()
                    )));
                }
                Ok(Flow::Continue)
            }
            Step::StampSchema(stamp) => {
                if let Some(handle) = self.handle.take()
                    && let Err(v) = guarded(&self.fs, self.budget_end, "closing the store", move || drop(handle))
                {
                    self.found(v);
                    return Ok(Flow::Stop);
                }
                // The harness plays the other build's writer: it holds the
                // store's lock while it rewrites the index, as that build would.
                let harness = self.fs.spawn_process();
                let env = self.env_on(&harness);
                let factory = self.factory;
                let lock =
                    match factory.lock_file(&env) {
                        Some(path) => Some(harness.try_lock(&path).map_err(|e| {
                            HarnessError(format!("taking {} to stamp the schema: {e}", path.display()))
                        })?),
                        None => None,
                    };
                let stamped = guarded(&harness, u64::MAX, "stamping the schema", || {
                    factory.stamp_schema(&env, *stamp)
                });
                drop(lock);
                harness.crash_process();
                match stamped {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        return Err(HarnessError(format!(
                            "{} cannot stamp its schema as another build's (StoreFactory::stamp_schema)",
                            factory.name()
                        )));
                    }
                    Ok(Err(e)) if !self.halted() => return Err(HarnessError(format!("stamping the schema: {e}"))),
                    Ok(Err(_)) => return Ok(Flow::Stop),
                    Err(v) => {
                        self.found(v);
                        return Ok(Flow::Stop);
                    }
                }
                self.mark();
                Ok(Flow::Continue)
            }
            Step::OpenReadOnly => {
                self.mark();
                let other = self.fs.spawn_process();
                let env = self.env_on(&other);
                let factory = self.factory;
                let opened = guarded(&other, self.budget_end, "a read-only open", || {
                    factory.open(&env, Access::ReadOnly)
                });
                match opened {
                    Err(v) => self.found(v),
                    Ok(Err(_)) => {}
                    Ok(Ok(handle)) => {
                        match guarded(&other, self.budget_end, "observe (read-only)", || handle.observe()) {
                            Err(v) => self.found(v),
                            Ok(Err(_)) => {}
                            Ok(Ok(observation)) => {
                                self.account_fault_at_rest();
                                self.found_all(check_read_only(&observation, &self.model, &self.caps));
                            }
                        }
                        if let Err(v) = guarded(&other, self.budget_end, "closing a read-only open", move || {
                            drop(handle)
                        }) {
                            self.found(v);
                        }
                    }
                }
                other.crash_process();
                Ok(if self.halted() { Flow::Stop } else { Flow::Continue })
            }
            Step::SecondWriter => {
                self.mark();
                let other = self.fs.spawn_process();
                let env = self.env_on(&other);
                let factory = self.factory;
                let opened = guarded(&other, self.budget_end, "a second writable open", || {
                    factory.open(&env, Access::Writable)
                });
                match opened {
                    Err(v) => self.found(v),
                    Ok(Err(_)) => {}
                    Ok(Ok(handle)) => {
                        if !self.halted() {
                            self.found_all(no_wipe_without_lock::check_second_writer(
                                &self.caps,
                                other.pid(),
                                self.fs.pid(),
                                self.lock_attack.as_deref(),
                            ));
                        }
                        if let Err(v) =
                            guarded(&other, self.budget_end, "closing a second writer", move || drop(handle))
                        {
                            self.found(v);
                        }
                    }
                }
                other.crash_process();
                Ok(if self.halted() { Flow::Stop } else { Flow::Continue })
            }
            Step::LockFile(attack) => {
                let lock = self.factory.lock_file(&self.env()).ok_or_else(|| {
                    HarnessError(format!(
                        "a lock attack, but {} names no lock (StoreFactory::lock_file)",
                        self.factory.name()
                    ))
                })?;
                let harness = self.fs.spawn_process();
                let tampered = lock_attack::tamper(&harness, &lock, *attack);
                harness.crash_process();
                match tampered {
                    Ok(what) => self.lock_attack = Some(what),
                    Err(_) if self.halted() => return Ok(Flow::Stop),
                    Err(e) => return Err(HarnessError(format!("attacking the lock {}: {e}", lock.display()))),
                }
                self.mark();
                Ok(Flow::Continue)
            }
            Step::StaleLock => self.stale_lock(),
            Step::Damage { role, damage } => self.damage(*role, damage),
            Step::KilledMidway { op, at_source_change } => self.killed_midway(op, *at_source_change),
        }
    }

    /// Drops the store handle of `killed`, a process already killed (its
    /// handles are gone: the drop must not panic or hang).
    fn drop_killed(&mut self, killed: &SimFs, handle: Box<dyn StoreUnderTest>) {
        if let Err(v) = guarded(
            killed,
            self.budget_end,
            "dropping a killed process's store",
            move || drop(handle),
        ) {
            self.found(v);
        }
    }

    /// [`Step::KilledMidway`]: closes the store; another process opens it
    /// writable and runs `op` until it dies at its `n`-th change of the
    /// source directory.
    fn killed_midway(&mut self, op: &Operation, n: u64) -> Result<Flow, HarnessError> {
        if self.budget_end != u64::MAX {
            // Its fault plan would replace the case's.
            return Err(HarnessError(
                "a process killed midway belongs in a setup, not a workload".into(),
            ));
        }
        self.mark();
        self.close();
        if self.halted() {
            return Ok(Flow::Stop);
        }
        let dir = self.factory.source_dir(&self.env()).ok_or_else(|| {
            HarnessError("a process killed at a source change, but the store has no source directory".into())
        })?;
        let filter = SyscallFilter::ops(&[SyscallKind::Rename, SyscallKind::HardLink, SyscallKind::RemoveFile])
            .path(&format!("{}/*", glob::Pattern::escape(&dir.to_string_lossy())))
            .map_err(|e| HarnessError(format!("a filter on {}: {e}", dir.display())))?;
        let killed = self.fs.spawn_process();
        let env = self.env_on(&killed);
        let factory = self.factory;
        self.fs
            .set_fault_plan(plan(None, self.budget_end).nth(filter, n, Fault::ProcessCrash));
        self.model.begin(op);
        let what = format!("`{}` in a process killed midway", op.describe());
        let ran = guarded(&killed, self.budget_end, &what, || {
            let mut handle = factory.open(&env, Access::Writable)?;
            let applied = handle.apply(op);
            Ok::<_, StoreFailure>((handle, applied))
        });
        // kill -9, if the fault has not: its handles and locks vanish.
        killed.crash_process();
        self.fs.set_fault_plan(plan(None, self.budget_end));
        match ran {
            Err(v) => {
                self.found(v);
                return Ok(Flow::Stop);
            }
            Ok(Ok((handle, applied))) => {
                if applied.is_ok() {
                    self.model.acknowledge();
                }
                self.drop_killed(&killed, handle);
            }
            Ok(Err(_)) => {}
        }
        self.mark();
        Ok(if self.halted() { Flow::Stop } else { Flow::Continue })
    }

    /// [`Step::Damage`]: closes the store, and the harness damages the first
    /// derived file of `role` at rest.
    fn damage(&mut self, role: tearline_model::FileRole, damage: &Damage) -> Result<Flow, HarnessError> {
        self.mark();
        self.close();
        if self.halted() {
            return Ok(Flow::Stop);
        }
        let harness = self.fs.spawn_process();
        let env = self.env_on(&harness);
        let factory = self.factory;
        let files = guarded(&harness, u64::MAX, "listing the derived files", || {
            factory.derived_files(&env)
        })
        .map_err(|v| HarnessError(format!("listing the derived files: {v}")))?
        .map_err(|e| HarnessError(format!("listing the derived files: {e}")))?;
        let mut paths: Vec<_> = files.into_iter().filter(|f| f.role == role).map(|f| f.path).collect();
        paths.sort();
        let path = paths.into_iter().next().ok_or_else(|| {
            HarnessError(format!(
                "{} names no {} file to damage (StoreFactory::derived_files)",
                factory.name(),
                role.name()
            ))
        })?;
        // Damage at rest, not a writer: the harness holds the store's lock
        // (free: the store is closed) so the damage is nobody's wipe.
        let lock = factory.lock_file(&env).and_then(|lock| harness.try_lock(&lock).ok());
        let done = damage_file(&harness, &path, damage);
        drop(lock);
        harness.crash_process();
        match done {
            Ok(()) => {}
            Err(_) if self.halted() => return Ok(Flow::Stop),
            Err(e) => return Err(HarnessError(format!("damaging {}: {e}", path.display()))),
        }
        self.model
            .note_damage(format!("{} of {}", damage.describe(), path.display()));
        if role == tearline_model::FileRole::Journal {
            // The record that would finish or undo the operation in flight is
            // gone: what it touched may be left either way, or between.
            let touched = self.model.allowed().touched.clone();
            for name in touched {
                self.model.unspecify(&name);
            }
        }
        self.mark();
        Ok(Flow::Continue)
    }

    /// [`Step::StaleLock`]: another process opens the store writable and is
    /// killed holding it; then this one must open it writable.
    fn stale_lock(&mut self) -> Result<Flow, HarnessError> {
        self.mark();
        self.close();
        if self.halted() {
            return Ok(Flow::Stop);
        }
        let start = self.fs.syscall_count();
        let killed = self.fs.spawn_process();
        let env = self.env_on(&killed);
        let factory = self.factory;
        let opened = guarded(
            &killed,
            self.budget_end,
            "a writable open in a process killed holding it",
            || factory.open(&env, Access::Writable),
        );
        // kill -9: its handles and locks vanish; whatever it left on disk stays.
        killed.crash_process();
        match opened {
            Err(v) => self.found(v),
            Ok(Err(_)) => {}
            Ok(Ok(handle)) => {
                self.drop_killed(&killed, handle);
            }
        }
        if self.halted() {
            return Ok(Flow::Stop);
        }
        let env = self.env();
        match guarded(&self.fs, self.budget_end, "a writable open after a stale lock", || {
            factory.open(&env, Access::Writable)
        }) {
            Ok(Ok(handle)) => {
                self.handle = Some(handle);
                Ok(Flow::Continue)
            }
            // Refused with no fault to blame: the dead process's lock keeps
            // the store shut.
            Ok(Err(e)) if !self.halted() && !faulted_since(&self.fs, start) => {
                self.found(complete_database::stale_lock_refused(killed.pid(), e));
                Ok(Flow::Stop)
            }
            Ok(Err(_)) => Ok(Flow::Stop),
            Err(v) => {
                self.found(v);
                Ok(Flow::Stop)
            }
        }
    }
}

/// Damages the file at `path` as `damage` says, durably, from the harness's
/// process `harness`.
pub(crate) fn damage_file(harness: &SimFs, path: &Path, damage: &Damage) -> std::io::Result<()> {
    let file = harness.open(path, &OpenOptions::read_write())?;
    let len = file.len()?;
    let middle = len / 2;
    match damage {
        Damage::Garbage => {
            let garbage: Vec<u8> = (0..16u8).map(|i| 0xA5 ^ i.wrapping_mul(37)).collect();
            file.write_all_at(&garbage, middle.saturating_sub(8))?;
        }
        Damage::FlipBit => {
            let mut byte = [0u8];
            file.read_exact_at_most(&mut byte, middle)?;
            file.write_all_at(&[byte[0] ^ 0x10], middle)?;
        }
        Damage::UnreadableSector => {
            drop(file);
            return harness.damage_sector(path, middle);
        }
        Damage::Truncate => file.set_len(0)?,
        Damage::Text(text) => {
            file.set_len(0)?;
            file.write_all_at(text.as_bytes(), 0)?;
        }
    }
    file.sync_all()
}

/// failed-open-changes-nothing: the trace of the writable open that
/// process `pid` began at syscall `start` and that failed.
fn failed_open_check(factory: &dyn StoreFactory, fs: &SimFs, pid: u32, start: u64) -> Option<Violation> {
    let env = env_for(fs, RemoteFault::Healthy);
    let (protected, sources) = (factory.protected_paths(&env), factory.source_dir(&env));
    fs.with_trace(|trace| {
        let entries = trace.entries().iter().filter(|e| e.index >= start && e.pid == pid);
        failed_open_changes_nothing::check(entries, &protected, sources.as_deref())
    })
}

/// Whether a fault struck any syscall from `start` on.
fn faulted_since(fs: &SimFs, start: u64) -> bool {
    fs.with_trace(|trace| trace.entries().iter().any(|e| e.index >= start && e.fault.is_some()))
}

/// What a writable reopen after a fault showed.
pub(crate) struct Recovered {
    pub violations: Vec<Violation>,
    pub observation: Option<Observation>,
}

/// Whether a syscall changed what is on disk (or in the page cache).
fn changes_disk(entry: &TraceEntry) -> bool {
    let succeeded = matches!(entry.outcome, Outcome::Ok | Outcome::Count(_));
    let creates = matches!(
        &entry.args,
        SyscallArgs::Open { options, existing_len: None } if options.create || options.create_new
    );
    succeeded && (creates || entry.args.truncates() || entry.op.writes())
}

/// reader-consistent: opens the store read-only in a new process of
/// `machine`, observes it and closes it, and checks what it saw against
/// `model`, that a failure said recovery is pending, and that the reader
/// changed nothing on disk. `when` says which reader it was, for the
/// evidence; `remote`, how the remote dependency behaves. Nothing if the
/// store does not declare concurrent readers.
pub(crate) fn check_reader(
    factory: &dyn StoreFactory,
    machine: &SimFs,
    model: &Model,
    budget_end: u64,
    remote: RemoteFault,
    when: &str,
) -> Vec<Violation> {
    let caps = factory.capabilities();
    if !caps.concurrent_readers {
        return Vec::new();
    }
    read_only_look(factory, machine, budget_end, remote, when, |seen| match seen {
        Err(failure) => reader_consistent::refused(&failure, when).into_iter().collect(),
        Ok(observation) => {
            let mut violations: Vec<Violation> = claimed_unreachable(&observation, remote).into_iter().collect();
            violations.extend(reader_consistent::check(&observation, model, &caps, when));
            violations
        }
    })
}

/// Opens the store read-only in a new process of `machine`, observes it and
/// closes it; `judge` says what is wrong with what it saw (the observation,
/// or the store's refusal to open or to observe). A panic or a hang is a
/// violation of its own, and so is any change the reader made on disk.
fn read_only_look(
    factory: &dyn StoreFactory,
    machine: &SimFs,
    budget_end: u64,
    remote: RemoteFault,
    when: &str,
    judge: impl FnOnce(Result<Observation, StoreFailure>) -> Vec<Violation>,
) -> Vec<Violation> {
    let reader = machine.spawn_process();
    let env = env_for(&reader, remote);
    let mut violations = Vec::new();
    let opened = guarded(&reader, budget_end, &format!("{when}: a read-only open"), || {
        factory.open(&env, Access::ReadOnly)
    });
    match opened {
        Err(v) => violations.push(v),
        Ok(Err(failure)) => violations.extend(judge(Err(failure))),
        Ok(Ok(handle)) => {
            match guarded(&reader, budget_end, &format!("{when}: observe"), || handle.observe()) {
                Err(v) => violations.push(v),
                Ok(seen) => violations.extend(judge(seen)),
            }
            if let Err(v) = guarded(&reader, budget_end, &format!("{when}: closing it"), move || {
                drop(handle)
            }) {
                violations.push(v);
            }
        }
    }
    reader.crash_process();
    let pid = reader.pid();
    violations.extend(machine.with_trace(|trace| {
        let entries = trace.entries();
        // The reader's calls are the last ones.
        let first = entries.iter().rposition(|e| e.pid != pid).map_or(0, |i| i + 1);
        entries[first..]
            .iter()
            .find(|e| changes_disk(e))
            .map(|change| reader_consistent::changed_disk(change, when))
    }));
    violations
}

/// The passes of earlier cases a check after a recovery may take
/// ([`super::passes`]); none by default.
#[derive(Clone, Copy, Default)]
pub(crate) struct Reuse<'a> {
    /// Third opens, each on a rebooted machine thrown away after it.
    pub reboots: Option<&'a PassedChecks>,
    /// Whole checks after a recovery: only where the caller throws the
    /// machine away after it, reading nothing of it but the lock invariant
    /// over its trace, and hashes no trace.
    pub reopens: Option<&'a PassedChecks>,
}

/// Opens the store writable in process `fs` (recovery runs), observes it,
/// and checks the observation against `model`. First, with `reader`, for a
/// store with concurrent readers, a reader in another process looks at what
/// the fault left ([`check_reader`]). While the remote dependency is down
/// (`remote`), a writable open may refuse naming it
/// ([`FailureKind::Unavailable`]), and so may the observation. The checks
/// after the recovery take what `passes` allows from earlier cases.
pub(crate) fn recover_and_check(
    factory: &dyn StoreFactory,
    fs: &SimFs,
    model: &Model,
    budget_end: u64,
    remote: RemoteFault,
    reader: bool,
    passes: Reuse<'_>,
) -> Recovered {
    let caps = factory.capabilities();
    let env = env_for(fs, remote);
    let remote_down = remote != RemoteFault::Healthy;
    let mut violations = Vec::new();
    if reader {
        let when = "a reader after the fault, before recovery";
        violations = check_reader(factory, fs, model, budget_end, remote, when);
    }
    if fs.halted().is_some() {
        return Recovered {
            violations,
            observation: None,
        };
    }
    let start = fs.syscall_count();
    let handle = match guarded(fs, budget_end, "the writable open after the fault", || {
        factory.open(&env, Access::Writable)
    }) {
        Err(v) => {
            violations.push(v);
            return Recovered {
                violations,
                observation: None,
            };
        }
        Ok(Err(e)) => {
            if fs.halted().is_none() && !faulted_since(fs, start) {
                violations.extend(failed_open_check(factory, fs, fs.pid(), start));
            }
            // Refusing while the remote dependency is down, naming it, is
            // what a store should do (stays-serviceable checks the reads).
            let refused_for_remote = remote_down && e.kind == FailureKind::Unavailable;
            if !refused_for_remote {
                violations.push(match model.damage() {
                    _ if remote_down => stays_serviceable::cause_unnamed("the writable open after the fault", e),
                    Some(damage) if caps.derived_files => rebuildable_from_source::open_failed(damage, e),
                    _ => complete_database::open_failed(e),
                });
            }
            return Recovered {
                violations,
                observation: None,
            };
        }
        Ok(Ok(handle)) => handle,
    };
    let observation = match guarded(fs, budget_end, "observe after recovery", || handle.observe()) {
        Err(v) => {
            violations.push(v);
            None
        }
        Ok(Err(e)) if remote_down && e.kind == FailureKind::Unavailable => None,
        Ok(Err(e)) => {
            violations.push(complete_database::observe_failed(e));
            None
        }
        Ok(Ok(observation)) => Some(observation),
    };
    if let Some(observation) = &observation {
        violations.extend(claimed_unreachable(observation, remote));
        violations.extend(check_recovered(observation, model, &caps));
    }
    if let Err(v) = guarded(fs, budget_end, "closing the recovered store", move || drop(handle)) {
        violations.push(v);
    }
    if let Some(recovered) = &observation
        && violations.is_empty()
        && fs.halted().is_none()
    {
        violations.extend(reopen_and_compare(factory, fs, recovered, budget_end, remote, passes));
    }
    Recovered {
        violations,
        observation,
    }
}

/// stays-serviceable, on the machine `fs` where `cause` persists, after a
/// recovery that kept every invariant and showed `recovered` (none if it
/// refused because the remote dependency is down). While the cause
/// persists: a read-only open serves what the model says, and on a full
/// device a writable open removes the first acknowledged document. Then,
/// with the cause cleared, a writable open adds one, and a last writable
/// open shows what the model (settled by what the store showed, with the
/// removal and the add) says.
pub(crate) fn check_serviceable(
    factory: &dyn StoreFactory,
    fs: &SimFs,
    model: &Model,
    recovered: Option<&Observation>,
    budget_end: u64,
    cause: PersistentCause,
) -> Vec<Violation> {
    let caps = factory.capabilities();
    let mut model = model.clone();
    let mut env = env_for(fs, PersistentCause::remote_after_fault(Some(cause)));
    let reading = format!("a read-only open while {}", cause.describe());
    let read = guarded(fs, budget_end, &reading, || {
        factory.open(&env, Access::ReadOnly).and_then(|handle| handle.observe())
    });
    let read = match read {
        Err(v) => return vec![v],
        Ok(Err(e)) => return vec![stays_serviceable::failed(&reading, e)],
        Ok(Ok(read)) => read,
    };
    model.settle_to(recovered.unwrap_or(&read), &caps);
    if model.allowed().op.is_some() || !caps.remove {
        return Vec::new();
    }
    let seen = check_read_only(&read, &model, &caps);
    if !seen.is_empty() {
        return seen;
    }
    let removal = (cause == PersistentCause::DeviceFull)
        .then(|| {
            // One the model is sure of (a document a fault struck may be gone).
            let acknowledged = model.acknowledged().indexed.keys();
            acknowledged.clone().find(|name| !model.is_unspecified(name)).cloned()
        })
        .flatten()
        .map(|name| Operation::Remove { name });
    let addition = Operation::Add {
        name: "serviceable.md".to_string(),
        content: "added once the cause was cleared\n".to_string(),
    };
    for (op, cleared) in removal.iter().map(|op| (op, false)).chain([(&addition, true)]) {
        if cleared {
            match cause {
                PersistentCause::DeviceFull => fs.set_capacity(store_root(), u64::MAX),
                PersistentCause::RemoteDown | PersistentCause::RemoteDownAtFault => env.remote = RemoteFault::Healthy,
            }
        }
        let what = format!(
            "`{}` {}",
            op.describe(),
            if cleared {
                format!("once {} no longer", cause.describe())
            } else {
                format!("while {}", cause.describe())
            }
        );
        let applied = guarded(fs, budget_end, &what, || {
            let mut handle = factory.open(&env, Access::Writable)?;
            handle.apply(op)
        });
        match applied {
            Err(v) => return vec![v],
            Ok(Err(e)) => return vec![stays_serviceable::failed(&what, e)],
            Ok(Ok(())) => {
                model.begin(op);
                model.acknowledge();
            }
        }
    }
    let observed = guarded(fs, budget_end, "observing the store once the cause was cleared", || {
        factory.open(&env, Access::Writable).and_then(|handle| handle.observe())
    });
    match observed {
        Err(v) => vec![v],
        Ok(Err(e)) => vec![stays_serviceable::failed(
            "a writable open once the cause was cleared",
            e,
        )],
        Ok(Ok(observation)) => check_recovered(&observation, &model, &caps)
            .into_iter()
            .map(|v| {
                Violation::new(
                    v.invariant,
                    format!(
                        "after {} and an add once it no longer was: {}",
                        match cause {
                            PersistentCause::DeviceFull => "a removal while the device was full",
                            PersistentCause::RemoteDown | PersistentCause::RemoteDownAtFault => {
                                "recovery while the vector store was down"
                            }
                        },
                        v.evidence
                    ),
                )
            })
            .collect(),
    }
}

/// no-orphan-vectors: a store that said its remote dependency was
/// unreachable while the harness had it up left its vectors unchecked.
fn claimed_unreachable(observation: &Observation, remote: RemoteFault) -> Option<Violation> {
    (observation.remote_unavailable && remote == RemoteFault::Healthy).then(no_orphan_vectors::claimed_unreachable)
}

/// recovery-idempotent: opens the recovered store writable once more in
/// `fs`, and compares what it shows with what the recovery showed; then, from
/// the middle of that second open, cuts the power (nothing unsynced
/// survives), opens it a third time on the rebooted machine, and compares
/// again; and, if the recovery left anything unsynced, cuts the power right
/// after it too (what a recovery showed must survive a power cut: a pointer
/// it read but never made durable would not). A check that `passes` holds
/// a pass of (the whole check, or a third open) is not run again.
fn reopen_and_compare(
    factory: &dyn StoreFactory,
    fs: &SimFs,
    recovered: &Observation,
    budget_end: u64,
    remote: RemoteFault,
    passes: Reuse<'_>,
) -> Option<Violation> {
    let budget = budget_end.saturating_sub(fs.syscall_count());
    let known = passes.reopens.and_then(|reopens| Some((reopens, reopens.key(fs)?)));
    if known.is_some_and(|(reopens, key)| reopens.passed(key, recovered, remote, budget).is_some()) {
        return None;
    }
    let start = fs.syscall_count();
    fs.record_snapshots(true);
    let second = open_observe_close(factory, fs, budget_end, remote, "second");
    let snapshots = fs.take_snapshots();
    fs.record_snapshots(false);
    if let Some(broken) = compare(recovered, second) {
        return Some(broken);
    }
    // The most syscalls any of the opens took.
    let mut most = fs.syscall_count() - start;
    let model = PersistenceModel::NothingUnsynced;
    let mut after_a_power_cut = |at: &tearline_sim_fs::SimSnapshot, when: &str| {
        let rebooted = at.boot(model, &at.sample_crash(model, 0));
        let known = passes
            .reboots
            .and_then(|reboots| Some((reboots, reboots.key(&rebooted)?)));
        if let Some(took) = known.and_then(|(reboots, key)| reboots.passed(key, recovered, remote, budget)) {
            most = most.max(took);
            return None;
        }
        let start = rebooted.syscall_count();
        let third_end = start.saturating_add(budget);
        rebooted.set_fault_plan(plan(None, third_end));
        let broken = compare(
            recovered,
            open_observe_close(factory, &rebooted, third_end, remote, "third"),
        );
        let took = rebooted.syscall_count() - start;
        most = most.max(took);
        if broken.is_none()
            && let Some((reboots, key)) = known
        {
            reboots.remember(key, recovered, remote, took);
        }
        broken.map(|v| Violation::new(v.invariant, format!("after a power cut {when}: {}", v.evidence)))
    };
    if let Some(first) = snapshots.first().filter(|first| first.pending_ops() > 0)
        && let Some(broken) = after_a_power_cut(first, "right after the recovery")
    {
        return Some(broken);
    }
    if let Some(middle) = snapshots.get(snapshots.len() / 2)
        && let Some(broken) = after_a_power_cut(middle, "in the middle of the second open")
    {
        return Some(broken);
    }
    if let Some((reopens, key)) = known
        && lock_kept_since(factory, fs, start)
    {
        reopens.remember(key, recovered, remote, most);
    }
    None
}

/// Whether nobody held the lock before syscall `start` of `fs` (in this
/// boot, all of which `fs`'s trace holds), and what `fs` did from there on
/// keeps the lock invariant read on its own: then it keeps it after
/// anything before it, which can only have made a file a process's own.
/// (A holder before it would make what the process creates the store's,
/// and its removal after an unlock a violation the piece alone misses.)
fn lock_kept_since(factory: &dyn StoreFactory, fs: &SimFs, start: u64) -> bool {
    let Some((lock, protected)) = lock_and_protected(factory, fs) else {
        return true;
    };
    fs.with_trace(|trace| {
        let entries = trace.entries();
        let (before, since) = entries.split_at(entries.partition_point(|e| e.index < start));
        no_wipe_without_lock::lock_holder(before, &lock).is_none()
            && no_wipe_without_lock::check_entries(since, &lock, &protected).is_none()
    })
}

/// One writable open of a recovered store, observed and closed: the
/// observation, or the violation that stopped it.
fn open_observe_close(
    factory: &dyn StoreFactory,
    fs: &SimFs,
    budget_end: u64,
    remote: RemoteFault,
    which: &str,
) -> Result<Observation, Violation> {
    let env = env_for(fs, remote);
    let handle = match guarded(
        fs,
        budget_end,
        &format!("the {which} writable open after recovery"),
        || factory.open(&env, Access::Writable),
    )? {
        Ok(handle) => handle,
        Err(e) => return Err(recovery_idempotent::reopen_failed(e)),
    };
    let observed = guarded(fs, budget_end, &format!("observe after the {which} open"), || {
        handle.observe()
    });
    guarded(
        fs,
        budget_end,
        &format!("closing the store after the {which} open"),
        move || drop(handle),
    )?;
    observed?.map_err(|e| recovery_idempotent::reopen_failed(format!("observing it: {e}")))
}

fn compare(recovered: &Observation, reopened: Result<Observation, Violation>) -> Option<Violation> {
    match reopened {
        Err(v) => Some(v),
        Ok(reopened) => recovery_idempotent::check(recovered, &reopened),
    }
}

/// The store's lock file and protected paths, if it has a lock: what the
/// lock invariant reads a trace against.
fn lock_and_protected(factory: &dyn StoreFactory, fs: &SimFs) -> Option<(PathBuf, Vec<String>)> {
    if !factory.capabilities().exclusive_lock {
        return None;
    }
    let env = env_for(fs, RemoteFault::Healthy);
    Some((factory.lock_file(&env)?, factory.protected_paths(&env)))
}

/// The lock invariant read off a trace, if the store has a lock.
pub(crate) fn check_trace(factory: &dyn StoreFactory, fs: &SimFs, trace: &Trace) -> Option<Violation> {
    let (lock, protected) = lock_and_protected(factory, fs)?;
    no_wipe_without_lock::check_entries(trace.entries(), &lock, &protected)
}

/// [`check_trace`] of `machine`'s own trace, read in place.
pub(crate) fn check_machine_trace(factory: &dyn StoreFactory, machine: &SimFs) -> Option<Violation> {
    check_machine_trace_after(factory, machine, std::iter::empty())
}

/// The lock invariant read off what a machine did before (`before`, the
/// probe's trace up to a power cut or a crash) and then its own trace
/// since, read in place: the same trace a replay of the case reads.
pub(crate) fn check_machine_trace_after<'a>(
    factory: &dyn StoreFactory,
    machine: &SimFs,
    before: impl Iterator<Item = &'a TraceEntry>,
) -> Option<Violation> {
    let (lock, protected) = lock_and_protected(factory, machine)?;
    machine.with_trace(|trace| {
        let before = before.map(|entry| -> &TraceEntry { entry });
        no_wipe_without_lock::check_entries(before.chain(trace.entries()), &lock, &protected)
    })
}

/// The first power-cut point `at` whose prefix of `entries` (those before
/// syscall `at`) breaks the lock invariant, if any: a broken prefix stays
/// broken, so it is found by bisection.
pub(crate) fn lock_broken_from(factory: &dyn StoreFactory, fs: &SimFs, entries: &[TraceEntry]) -> Option<u64> {
    let (lock, protected) = lock_and_protected(factory, fs)?;
    let broken = |n: usize| no_wipe_without_lock::check_entries(&entries[..n], &lock, &protected).is_some();
    if !broken(entries.len()) {
        return None;
    }
    // The fewest entries that break it: the last of them is the culprit.
    let (mut low, mut high) = (0, entries.len());
    while low < high {
        let middle = (low + high) / 2;
        if broken(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    entries.get(low.checked_sub(1)?).map(|culprit| culprit.index + 1)
}

/// Keeps the first violation of each invariant, in order.
pub(crate) fn first_of_each(violations: Vec<Violation>) -> Vec<Violation> {
    let mut seen = std::collections::BTreeSet::new();
    violations.into_iter().filter(|v| seen.insert(v.invariant)).collect()
}

/// Fault-free: does the store serve exactly its source files after the
/// workload's closing full sync, and does a second full rebuild change
/// nothing?
/// A fault-free run of `scenario` on `fs` that observes the store through
/// its own handle right after every operation that returned (no recovery,
/// no reopen) and holds it to the acknowledged state exactly
/// ([`model_comparison::exact`]): what the comparisons after a fault
/// forgive (an entry that caught up with its file) is an operation doing
/// other than it said when nothing failed. Stops at the first difference.
pub(crate) fn exact_state_checks(
    factory: &dyn StoreFactory,
    scenario: &StoreScenario,
    fs: SimFs,
) -> Result<Vec<Violation>, HarnessError> {
    let caps = factory.capabilities();
    let mut driver = Driver::boot(factory, scenario, fs)?;
    let mut violations = Vec::new();
    for step in &scenario.workload {
        let flow = driver.step(step)?;
        driver.account_fault_at_rest();
        if flow == Flow::Stop {
            break;
        }
        let Step::Op(op) = step else { continue };
        if driver.model.allowed().op.is_some() || driver.model.damage().is_some() {
            continue;
        }
        if driver.handle.is_none() {
            break;
        }
        let Some(observation) = driver.observe_handle(&mut violations) else {
            if violations.is_empty() {
                continue;
            }
            break;
        };
        violations.extend(model_comparison::exact(
            &observation,
            &driver.model,
            &caps,
            &op.describe(),
        ));
        if caps.concurrent_readers {
            violations.extend(idle_reader(factory, &driver, &op.describe()));
        }
        if !violations.is_empty() {
            break;
        }
    }
    driver.close();
    violations.extend(driver.take_violations());
    Ok(violations)
}

/// A read-only open in another process while the writer is idle, right
/// after `op` returned with no fault anywhere: it must open, without even
/// saying recovery is pending (nothing is unfinished: a store that leaves
/// work behind a finished operation keeps every reader out until the next
/// writable open), and show exactly the acknowledged state.
fn idle_reader(factory: &dyn StoreFactory, driver: &Driver<'_>, op: &str) -> Vec<Violation> {
    let caps = factory.capabilities();
    let when = format!("right after `{op}` returned, with no fault anywhere and the writer idle");
    read_only_look(factory, &driver.fs, u64::MAX, driver.remote, &when, |seen| match seen {
        Err(failure) => vec![Violation::new(
            Invariant::ReaderConsistent,
            format!(
                "{when}, a read-only open was refused ({}): {}",
                failure.kind.name(),
                failure.message
            ),
        )],
        Ok(observation) => model_comparison::exact(&observation, &driver.model, &caps, op)
            .into_iter()
            .map(|v| {
                Violation::new(
                    Invariant::ReaderConsistent,
                    format!("seen by a read-only open: {}", v.evidence),
                )
            })
            .collect(),
    })
}

pub(crate) fn full_sync_checks(
    factory: &dyn StoreFactory,
    scenario: &StoreScenario,
    fs: SimFs,
) -> Result<Vec<Violation>, HarnessError> {
    let caps = factory.capabilities();
    if !scenario.ends_with_full_sync() || !caps.source_files {
        return Ok(Vec::new());
    }
    let mut driver = Driver::boot(factory, scenario, fs)?;
    if !driver.workload(&scenario.workload)? {
        return Ok(driver.take_violations());
    }
    let mut violations = driver.take_violations();
    let Some(first) = driver.observe_handle(&mut violations) else {
        return Ok(violations);
    };
    violations.extend(filesystem_wins::check(&first));
    if caps.full_rebuild {
        let rebuild = Step::Op(tearline_model::Operation::Rebuild {
            kind: tearline_model::RebuildKind::Full,
        });
        if driver.step(&rebuild)? == Flow::Continue
            && let Some(second) = driver.observe_handle(&mut violations)
        {
            violations.extend(rebuild_idempotent::check(&first, &second));
        }
    }
    driver.close();
    violations.extend(driver.take_violations());
    Ok(violations)
}
