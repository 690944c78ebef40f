//! Replaying one case from its repro line, and the one trace printer:
//! what `tearline repro`, `tearline certify --repro`, certification's
//! [`crate::certify::reproduce`] and the tests all use.
//!
//! A line is parsed once ([`Case`]'s grammar), the scenario is found in the
//! catalogue at the line's scale, the workload is probed once (for its
//! extent, the step in flight and the budget; an injection that cannot
//! strike the workload is refused), and the case is replayed from scratch.

use tearline_model::{StoreFactory, Violation};
use tearline_sim_fs::{SyscallKind, Trace};

use crate::case::Case;
use crate::catalogue::{self, Entry};
use crate::engine::{self, HarnessError};
use crate::stores;

/// How much of a replay's trace a report shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Syscalls shown before the fault.
    pub before: u64,
    /// Syscalls shown after it (the workload's rest, restart, reboot,
    /// recovery).
    pub after: usize,
}

impl Context {
    /// `n` syscalls before the fault and `n` after.
    pub fn around(n: usize) -> Context {
        Context {
            before: n as u64,
            after: n,
        }
    }
}

impl Default for Context {
    /// 8 syscalls before the fault, 40 after.
    fn default() -> Context {
        Context { before: 8, after: 40 }
    }
}

/// What replaying one case found.
#[derive(Debug)]
pub struct Reproduction {
    /// The case replayed.
    pub case: Case,
    /// The invariants broken (empty: every invariant held).
    pub violations: Vec<Violation>,
    /// The replay, in words: the step in flight, the trace around the
    /// fault, the recovery, the verdict.
    pub report: String,
}

/// Parses `line` and replays it against `factory` ([`reproduce`]).
pub fn reproduce_line(factory: &dyn StoreFactory, line: &str) -> Result<Reproduction, HarnessError> {
    reproduce_line_with(factory, line, Context::default())
}

/// [`reproduce_line`], showing `context` of the trace.
pub fn reproduce_line_with(
    factory: &dyn StoreFactory,
    line: &str,
    context: Context,
) -> Result<Reproduction, HarnessError> {
    let case: Case = line.parse().map_err(|e| HarnessError(format!("{line:?}: {e}")))?;
    reproduce_with(factory, &case, context)
}

/// A replay's verdict, in words: every invariant held, or each broken
/// with its evidence.
fn verdict(violations: &[Violation]) -> String {
    if violations.is_empty() {
        return "\nresult: every invariant held\n".to_string();
    }
    violations
        .iter()
        .map(|v| format!("\nresult: {} broke\nevidence: {}\n", v.invariant, v.evidence))
        .collect()
}

/// Replays a network case from its line (`SCENARIO:SEED:rpcN:FAULT`),
/// with `store` in place of the line's if given, and describes it: the
/// network log (requests, answers, the fault, host failures, the client's
/// attempts) and what the check after it found.
pub fn reproduce_net_line(line: &str, store: Option<&str>) -> Result<NetReproduction, HarnessError> {
    let mut case: crate::net::case::NetCase = line.parse().map_err(|e| HarnessError(format!("{line:?}: {e}")))?;
    if let Some(store) = store {
        case.store = store.to_string();
    }
    let scenario = crate::net::find(&case.scenario)
        .ok_or_else(|| HarnessError(format!("no network scenario named {:?}", case.scenario)))?;
    let checked = crate::net::check_case(&scenario, &case)?.map_err(|why| {
        HarnessError(format!(
            "{case}: no such case: {why} (the matrix lists the cases that exist)"
        ))
    })?;
    let mut report = format!(
        "SEED={} scenario={} case={} store={}\n",
        case.seed, case.scenario, case.injection, case.store
    );
    for entry in &checked.log {
        report.push_str(&format!("  {entry}\n"));
    }
    report.push_str(&verdict(&checked.violations));
    Ok(NetReproduction {
        case,
        violations: checked.violations,
        report,
    })
}

/// What replaying a network case found, and the replay in words.
#[derive(Debug)]
pub struct NetReproduction {
    /// The case replayed.
    pub case: crate::net::case::NetCase,
    /// The invariants broken (empty: every invariant held).
    pub violations: Vec<Violation>,
    /// The network log and the verdict.
    pub report: String,
}

/// Replays `case` from scratch against `factory` and describes what
/// happened, with the default [`Context`]. A line that names a store must
/// name this one (SQLite's own matrices run on no store and take any).
pub fn reproduce(factory: &dyn StoreFactory, case: &Case) -> Result<Reproduction, HarnessError> {
    reproduce_with(factory, case, Context::default())
}

/// [`reproduce`], showing `context` of the trace.
pub fn reproduce_with(factory: &dyn StoreFactory, case: &Case, context: Context) -> Result<Reproduction, HarnessError> {
    let entry = catalogue::find_entry(factory, &case.scenario, case.scale)
        .ok_or_else(|| HarnessError(format!("no scenario named {:?} (see `tearline list`)", case.scenario)))?;
    if let Entry::Store { scenario, .. } = &entry {
        if case.store != stores::DEFAULT && case.store != factory.name() {
            return Err(HarnessError(format!(
                "the line is for store {:?}, but the store under test is {:?}",
                case.store,
                factory.name()
            )));
        }
        let missing = scenario.missing(&factory.capabilities());
        if !missing.is_empty() {
            return Err(HarnessError(format!(
                "{} is not applicable to {}: lacks {}",
                scenario.name,
                factory.name(),
                missing.join(", ")
            )));
        }
    }
    let subject = entry.subject(factory)?;
    let (replay, probe) = engine::replay(subject.as_ref(), case.seed, &case.injection)?;
    let at = case.injection.syscall;
    let mut report = format!(
        "SEED={} scenario={} case={} store={}\nworkload: syscalls {}..{}; in flight at {at}: {}\n",
        case.seed,
        case.scenario,
        case.injection,
        subject.case(case.seed, case.injection.clone()).store,
        replay.workload.0,
        replay.workload.1,
        probe
            .step_name(at)
            .as_deref()
            .unwrap_or("nothing (between steps or after the last)")
    );
    report.push_str(&trace_around(&replay.trace, at, context));
    report.push_str(&verdict(&replay.violations));
    Ok(Reproduction {
        case: case.clone(),
        violations: replay.violations,
        report,
    })
}

/// The trace around a fault at syscall `at`: the syscalls of the first boot
/// before it (the fault marked `>>`), then the restart, reboot and
/// recovery that followed, as much as `context` asks for.
pub fn trace_around(trace: &Trace, at: u64, context: Context) -> String {
    let mut text = format!("\ntrace around syscall {at} (boot 0):\n");
    for entry in trace.around(at, context.before).filter(|e| e.boot == 0) {
        let marker = if entry.index == at { ">>" } else { "  " };
        text.push_str(&format!("{marker} {entry}\n"));
    }
    let entries = trace.entries();
    let first_after = entries
        .iter()
        .position(|e| e.op == SyscallKind::Reboot || e.fault.is_some())
        .unwrap_or(entries.len());
    let tail = &entries[first_after..];
    text.push_str(&format!(
        "\nafter the fault ({} syscalls of restart, reboot and recovery):\n",
        tail.len()
    ));
    for entry in tail.iter().take(context.after) {
        text.push_str(&format!("   {entry}\n"));
    }
    if tail.len() > context.after {
        text.push_str(&format!(
            "   ... {} more (--context N shows more)\n",
            tail.len() - context.after
        ));
    }
    text
}
