//! Continue, don't re-run: the cases of a matrix that are not derived from
//! a snapshot (every fault but a power cut) share the workload up to their
//! fault, so the workload runs once and each case branches off it.
//!
//! The engine forks a **runner** process that boots the machine and runs
//! the fault-free workload with a syscall hook
//! ([`tearline_sim_fs::SimFs::set_syscall_hook`]). Before each syscall
//! where cases are planned, the runner forks once per case: the **branch**
//! plans the case's fault at that syscall, returns into the workload (the
//! syscall strikes), finishes it, recovers and checks exactly as a replay
//! from scratch does, writes its outcome as one JSON line to a pipe, and
//! exits; the runner waits for it, then goes on to the next case, and then
//! makes the syscall itself, fault-free. The engine reads the pipe as the
//! branches finish (so progress is live) and ends when the runner does. A
//! case costs the rest of the workload and its recovery, not the setup and
//! the workload before its fault.
//!
//! A branch's machine is the runner's at the fork, which is a replay's at
//! the same syscall: the same seed, the same syscalls in the same order,
//! SQLite's PRNG reseeded at the same point of the run. `tearline repro`,
//! `--check-determinism`'s second run and shrinking still replay from
//! scratch, and `tests/branch.rs` compares the two ways case by case.
//!
//! Only the cases at or after [`super::EngineOptions::branch_from`] are
//! branched: a branch costs the pages it copies from the runner, which a
//! short prefix does not pay for (the README's Speed section has the
//! figures).
//!
//! Forking is only safe in a process with one thread (another thread could
//! hold a lock the branch then waits on for ever), so [`can_branch`] says
//! whether this process may: `tearline run` (and `certify --jobs`) run
//! their matrices in single-threaded worker processes; elsewhere (the test
//! harness's threads, a store that starts a thread) the engine replays
//! each case from scratch, with the same results.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tearline_model::Violation;
use tearline_sim_fs::{Fault, SimFs, Trace};

use super::subject::{Probe, Subject};
use super::{HarnessError, driver};
use crate::case::Injection;

/// Whether this process may fork to branch cases: Linux, and one thread.
pub(crate) fn can_branch() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// The cases of one run to branch, by the syscall they strike, and which
/// of them (if any) this process is.
pub struct Branches {
    at: BTreeMap<u64, Vec<(u64, Injection)>>,
    /// Whether a branch hashes its whole trace (`--check-determinism`).
    hash_trace: bool,
    state: Mutex<BranchState>,
    /// The write end of the pipe to the engine, shared by the runner and
    /// its branches.
    pipe: Mutex<PipeWriter>,
}

#[derive(Default)]
struct BranchState {
    /// The last syscall the workload may reach (the budget's guard).
    budget_end: u64,
    /// The case this process branched off for, once it has.
    branch: Option<(u64, Injection)>,
    /// Whether the driver was told the branch's fault at rest.
    fault_at_rest_taken: bool,
}

impl Branches {
    /// The branches of `cases` (case number, injection), reporting to `pipe`.
    fn new(cases: &[(u64, Injection)], hash_trace: bool, pipe: PipeWriter) -> Branches {
        let mut at: BTreeMap<u64, Vec<(u64, Injection)>> = BTreeMap::new();
        for (case, injection) in cases {
            at.entry(injection.syscall)
                .or_default()
                .push((*case, injection.clone()));
        }
        Branches {
            at,
            hash_trace,
            state: Mutex::new(BranchState::default()),
            pipe: Mutex::new(pipe),
        }
    }

    /// Sends one report to the engine. A report is written whole by one
    /// process at a time (the runner waits for each branch), so lines
    /// never interleave.
    fn report(&self, report: &BranchReport) {
        let mut pipe = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(mut line) = serde_json::to_vec(report) {
            line.push(b'\n');
            // The engine notices a report missing: nothing to do about a failed write.
            let _ = pipe.write_all(&line);
        }
    }

    fn state(&self) -> MutexGuard<'_, BranchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms the runner's machine: a fault-free plan with the budget's
    /// guard, and the hook that branches each case off at its syscall.
    pub fn install(self: &Arc<Self>, fs: &SimFs, budget_end: u64) {
        self.state().budget_end = budget_end;
        fs.set_fault_plan(driver::plan(None, budget_end));
        let branches = Arc::clone(self);
        fs.set_syscall_hook(Some(Arc::new(move |fs: &SimFs, index: u64| {
            branches.branch_at(fs, index)
        })));
    }

    /// The injection this process branched off for: `None` in the runner.
    pub fn struck(&self) -> Option<Injection> {
        self.state().branch.as_ref().map(|(_, injection)| injection.clone())
    }

    /// The syscall of this branch's fault, once, if it strikes a file behind
    /// the store's back (for [`driver::Driver::fault_at_rest`]).
    pub fn take_fault_at_rest(&self) -> Option<u64> {
        let mut state = self.state();
        let at = state
            .branch
            .as_ref()
            .filter(|(_, injection)| super::strikes_a_file(injection.fault))
            .map(|(_, injection)| injection.syscall)?;
        (!std::mem::replace(&mut state.fault_at_rest_taken, true)).then_some(at)
    }

    /// Ends a branch: reports what its case found (and, if asked, the hash
    /// of its machine's whole trace, read in place) and exits at once,
    /// dropping nothing: freeing what the runner allocated would copy its
    /// pages for nothing. (Only a branch concludes: the runner's run ends
    /// where [`Branches::struck`] is `None`.)
    pub fn conclude(&self, fs: &SimFs, violations: Vec<Violation>, states_checked: u64) -> ! {
        let report = match self.case() {
            Some(case) => BranchReport {
                case: Some(case),
                violations,
                states_checked,
                trace_hash: if self.hash_trace { fs.with_trace(Trace::hash) } else { 0 },
                error: None,
                skipped: false,
            },
            None => BranchReport::failed(None, "the fault-free run concluded as a branch".to_string()),
        };
        self.report(&report);
        // SAFETY: ends this forked process at once, running no destructor
        // and flushing no buffer it shares with the engine.
        unsafe { libc::_exit(0) }
    }

    fn case(&self) -> Option<u64> {
        self.state().branch.as_ref().map(|(case, _)| *case)
    }

    /// The hook: before syscall `index`, one branch per case planned there.
    /// A branch plans its fault and returns into the workload; the runner
    /// waits for each branch before the next.
    fn branch_at(&self, fs: &SimFs, index: u64) {
        if self.case().is_some() {
            return;
        }
        let Some(cases) = self.at.get(&index) else {
            return;
        };
        // A store may have started a thread since the engine looked: a
        // branch would not have it, nor any lock it held. Those cases are
        // replayed from scratch instead.
        if !can_branch() {
            for (case, _) in cases {
                self.report(&BranchReport::skipped(*case));
            }
            return;
        }
        for (case, injection) in cases {
            // SAFETY: the runner has one thread (just checked), so the
            // branch has every lock it could need.
            match unsafe { libc::fork() } {
                0 => {
                    let budget_end = {
                        let mut state = self.state();
                        state.branch = Some((*case, injection.clone()));
                        state.budget_end
                    };
                    fs.set_fault_plan(driver::plan(Some((index, injection.fault)), budget_end));
                    return;
                }
                pid if pid > 0 => {
                    if let Some(died) = wait_for(pid, Some(BRANCH_TIMEOUT)) {
                        self.report(&BranchReport::failed(Some(*case), format!("the case's process {died}")));
                    }
                }
                _ => self.report(&BranchReport::failed(
                    Some(*case),
                    format!("forking for the case: {}", std::io::Error::last_os_error()),
                )),
            }
        }
    }
}

/// How long a branch may run. Its syscalls are budgeted, so only a lock
/// it can never take (held at the fork by a thread the branch does not
/// have) makes it run on: it is killed, and the run fails saying so.
const BRANCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits for process `pid` (for at most `timeout`, then kills it): `None`
/// if it exited 0, else how it ended.
fn wait_for(pid: libc::pid_t, timeout: Option<Duration>) -> Option<String> {
    if let Some(timeout) = timeout
        && !exits_within(pid, timeout)
    {
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for(pid, None);
        return Some(format!(
            "did not finish in {} s and was killed (a lock it needed was held at the fork by a thread it does \
             not have?): `--rerun-each-case` replays each case from scratch instead",
            timeout.as_secs()
        ));
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        if waited == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Some(format!("could not be waited for: {error}"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        None
    } else if libc::WIFSIGNALED(status) {
        Some(format!("was killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some(format!("exited with status {}", libc::WEXITSTATUS(status)))
    }
}

/// Whether child `pid` exits within `timeout` (without reaping it). Where
/// the kernel cannot say (no `pidfd_open`), it waits as long as it takes.
fn exits_within(pid: libc::pid_t, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(fd) = libc::c_int::try_from(fd) else {
        return true;
    };
    if fd < 0 {
        return true;
    }
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ready = loop {
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break ready;
        }
    };
    // SAFETY: closes the fd pidfd_open gave us.
    unsafe { libc::close(fd) };
    ready != 0
}

/// What one branch found, as it sends it to the engine (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct BranchReport {
    /// The case; `None` for the runner's own failure.
    case: Option<u64>,
    violations: Vec<Violation>,
    states_checked: u64,
    trace_hash: u64,
    /// The harness failed in the branch (or the branch died).
    error: Option<String>,
    /// The case was not branched (the runner had started a thread): the
    /// engine replays it.
    #[serde(default)]
    skipped: bool,
}

impl BranchReport {
    fn failed(case: Option<u64>, error: String) -> BranchReport {
        BranchReport {
            case,
            violations: Vec::new(),
            states_checked: 0,
            trace_hash: 0,
            error: Some(error),
            skipped: false,
        }
    }

    fn skipped(case: u64) -> BranchReport {
        BranchReport {
            case: Some(case),
            violations: Vec::new(),
            states_checked: 0,
            trace_hash: 0,
            error: None,
            skipped: true,
        }
    }
}

/// What a case found when it was branched off the workload.
pub(crate) struct Branched {
    pub violations: Vec<Violation>,
    pub states_checked: u64,
    pub trace_hash: u64,
}

/// Runs every case of `cases` (case number, injection; none a power cut)
/// by branching it off one run of the workload, calling `done` as each
/// finishes. With `hash_trace`, each branch hashes its whole trace. A case
/// whose syscall the runner reached with a second thread (a store's) is
/// not branched and not in the result: the engine replays it.
pub(crate) fn run_branched(
    subject: &dyn Subject,
    probe: &Probe,
    cases: &[(u64, Injection)],
    hash_trace: bool,
    done: &mut dyn FnMut(u64),
) -> Result<BTreeMap<u64, Branched>, HarnessError> {
    if let Some((_, injection)) = cases.iter().find(|(_, i)| i.fault == Fault::PowerCut) {
        return Err(HarnessError(format!(
            "power cuts are derived from snapshots, not branched (syscall {})",
            injection.syscall
        )));
    }
    let (reader, writer) = std::io::pipe().map_err(|e| HarnessError(format!("a pipe for the branches: {e}")))?;
    // SAFETY: the caller checked `can_branch` (one thread).
    let runner = unsafe { libc::fork() };
    if runner == 0 {
        drop(reader);
        run_runner(subject, probe, Branches::new(cases, hash_trace, writer));
    }
    drop(writer);
    if runner < 0 {
        return Err(HarnessError(format!(
            "forking the runner: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut results = BTreeMap::new();
    let mut skipped = std::collections::BTreeSet::new();
    let mut failure = None;
    for line in BufReader::new(reader).lines() {
        let line = line.map_err(|e| HarnessError(format!("reading the branches' reports: {e}")))?;
        let report: BranchReport = serde_json::from_str(&line)
            .map_err(|e| HarnessError(format!("a branch's report is unreadable ({e}): {line}")))?;
        let case = report.case.and_then(|case| cases.iter().find(|(c, _)| *c == case));
        if let Some(error) = report.error {
            let name = case.map_or_else(
                || subject.name().to_string(),
                |(_, injection)| subject.case(probe.seed, injection.clone()).to_string(),
            );
            failure.get_or_insert(HarnessError(format!("{name}: {error}")));
            continue;
        }
        let Some(&(case, _)) = case else {
            failure.get_or_insert(HarnessError(format!(
                "{}: a branch reported a case it was not given: {line}",
                subject.name()
            )));
            continue;
        };
        if report.skipped {
            skipped.insert(case);
            continue;
        }
        done(case);
        results.insert(
            case,
            Branched {
                violations: report.violations,
                states_checked: report.states_checked,
                trace_hash: report.trace_hash,
            },
        );
    }
    if let Some(died) = wait_for(runner, None) {
        failure.get_or_insert(HarnessError(format!(
            "{}: the process running the workload {died}",
            subject.name()
        )));
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if let Some((_, injection)) = cases
        .iter()
        .find(|(case, _)| !results.contains_key(case) && !skipped.contains(case))
    {
        return Err(HarnessError(format!(
            "{}: its branch reported nothing",
            subject.case(probe.seed, injection.clone())
        )));
    }
    Ok(results)
}

/// The runner (and, returning from its hook, each branch): runs the
/// workload, reports a failure, and exits without returning to the engine.
fn run_runner(subject: &dyn Subject, probe: &Probe, branches: Branches) -> ! {
    let branches = Arc::new(branches);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        subject.replay_branching(probe, probe.seed, &branches)
    }));
    let outcome = ran.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(HarnessError(format!("the harness panicked: {message}")))
    });
    let failure = match (branches.case(), outcome) {
        (Some(case), Ok(())) => Some(BranchReport::failed(
            Some(case),
            "the branch did not conclude".to_string(),
        )),
        (Some(case), Err(e)) => Some(BranchReport::failed(Some(case), e.0)),
        (None, Ok(())) => None,
        (None, Err(e)) => Some(BranchReport::failed(None, format!("the fault-free run: {e}"))),
    };
    if let Some(failure) = failure {
        branches.report(&failure);
    }
    // SAFETY: ends this forked process at once, running no destructor and
    // flushing no buffer it shares with the engine.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_a_second_thread_does_not_branch() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || stopped.recv());
        assert!(!can_branch(), "two threads at least");
        drop(stop);
        let _ = thread.join();
    }
}
