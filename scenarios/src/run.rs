//! Running catalogue entries: split into parts (in this process, or in
//! worker processes), merged, shrunk, and judged into a
//! [`ScenarioResult`].

use crate::catalogue::Entry;
use crate::engine::{self, EngineOptions, HarnessError, Part, PartResult, Step, StoreScenario, WorkerCommand};
use crate::report::{FailureRecord, InvariantResult, InvariantStatus, ScenarioResult};
use tearline_model::{Invariant, Operation, RebuildKind, StoreFactory};

/// How a run is split and what it injects.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The matrix options (seed, faults, models).
    pub engine: EngineOptions,
    /// The CI shard `(i, n)`. Default `(0, 1)`.
    pub shard: (u64, u64),
    /// Local worker processes. Default 1.
    pub jobs: u64,
    /// How to start a worker: every part then runs in a worker process (one
    /// with `jobs` 1), single-threaded, so cases can be branched off the
    /// workload ([`crate::engine::branch`]); `None` runs every part in this
    /// process.
    pub worker: Option<WorkerCommand>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            engine: EngineOptions::default(),
            shard: (0, 1),
            jobs: 1,
            worker: None,
        }
    }
}

/// Runs one part of an entry in this process (what a worker does).
pub fn run_part(
    entry: &Entry,
    factory: &dyn StoreFactory,
    options: &EngineOptions,
    part: Part,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PartResult, HarnessError> {
    if let Entry::Store { scenario, .. } = entry
        && !scenario.missing(&factory.capabilities()).is_empty()
    {
        return Ok(PartResult {
            scenario: scenario.name.clone(),
            ..PartResult::default()
        });
    }
    engine::run_part(entry.subject(factory)?.as_ref(), options, part, progress)
}

fn has_op(scenario: &StoreScenario, wanted: impl Fn(&Operation) -> bool) -> bool {
    scenario
        .setup
        .iter()
        .chain(&scenario.workload)
        .any(|s| matches!(s, Step::Op(op) if wanted(op)))
}

/// Whether an invariant is exercised by this entry for this store.
pub fn applicable(entry: &Entry, factory: &dyn StoreFactory, invariant: Invariant) -> bool {
    match entry {
        Entry::Sqlite(_) => matches!(
            invariant,
            Invariant::CompleteDatabase | Invariant::AtomicOp | Invariant::CommittedDurable
        ),
        Entry::Network(scenario) => crate::net::applies(scenario, invariant),
        Entry::Store { scenario, .. } => {
            let caps = factory.capabilities();
            if !invariant.applies_to(&caps) {
                return false;
            }
            match invariant {
                Invariant::FilesystemWins | Invariant::RebuildIdempotent => scenario.ends_with_full_sync(),
                Invariant::StaysServiceable => scenario.persists.is_some(),
                Invariant::BackupPresent => has_op(scenario, |op| {
                    matches!(
                        op,
                        Operation::Rebuild {
                            kind: RebuildKind::Full
                        }
                    )
                }),
                Invariant::NoDestructiveWithoutForce => has_op(
                    scenario,
                    |op| matches!(op, Operation::Reconcile { mode, force: false, dry_run: false, .. } if mode.is_destructive()),
                ),
                _ => true,
            }
        }
    }
}

/// Runs an entry's matrix (split as `options` says), merges, shrinks and
/// judges it.
pub fn run_entry(
    entry: &Entry,
    factory: &dyn StoreFactory,
    options: &RunOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ScenarioResult, HarnessError> {
    let seed = options.engine.seed;
    let (kind, missing) = match entry {
        Entry::Sqlite(_) => ("sqlite", Vec::new()),
        Entry::Store { scenario, .. } => ("store", scenario.missing(&factory.capabilities())),
        // Small matrices of whole runs: in this process, unsplit (a shard
        // other than the first skips them).
        Entry::Network(scenario) if options.shard.0 == 0 => {
            return crate::net::run_scenario(scenario, factory.name(), &options.engine, options.jobs, progress);
        }
        Entry::Network(scenario) => return Ok(crate::net::skipped_in_shard(scenario, options.shard)),
    };
    if !missing.is_empty() {
        let why = format!("{} lacks {}", factory.name(), missing.join(", "));
        return Ok(ScenarioResult::not_applicable(
            entry.name(),
            kind,
            entry.description(),
            why,
        ));
    }
    let mut result = ScenarioResult::empty(entry.name(), kind, entry.description());
    let parts = Part::split(options.shard.0, options.shard.1, options.jobs);
    let results = match &options.worker {
        Some(command) => {
            let mut command = command.clone();
            command.args.push("--scenario".to_string());
            command.args.push(entry.name().to_string());
            engine::parallel::run_parts(&command, &parts, progress)?
        }
        _ => {
            let mut results = Vec::new();
            for part in &parts {
                results.push(run_part(entry, factory, &options.engine, *part, &mut |d, t| {
                    progress(d, t)
                })?);
            }
            results
        }
    };
    let merged = PartResult::merge(results);
    let shrunk = engine::shrink::shrink(entry.subject(factory)?.as_ref(), seed, &merged)?;
    let verdict = entry.expect().judge(&merged.failures);
    for invariant in Invariant::ALL {
        let failing: Vec<&FailureRecord> = merged.failures.iter().filter(|f| f.invariant == invariant).collect();
        let status = if !applicable(entry, factory, invariant) && failing.is_empty() {
            InvariantStatus::NotApplicable
        } else if failing.is_empty() {
            InvariantStatus::Passed
        } else if failing
            .iter()
            .all(|f| entry.expect().findings.iter().any(|k| k.explains(f)))
        {
            InvariantStatus::KnownFinding
        } else {
            InvariantStatus::Failed
        };
        let reported = shrunk.iter().find(|s| s.invariant == invariant);
        let example = reported.map(|s| &s.failure).or(failing.first().copied());
        result.invariants.push(InvariantResult {
            invariant,
            status,
            failures: failing.len() as u64,
            repro: example.map(|f| f.case.clone()),
            evidence: example.map(|f| f.evidence.clone()),
            reproduces: reported.map(|s| s.reproduces),
            net_repro: None,
        });
    }
    result.workload_syscalls = merged.workload_syscalls;
    result.cases = merged.cases;
    result.crash_points = merged.crash_points;
    result.states_checked = merged.states_checked;
    result.distinct_states = merged.distinct_states;
    result.branched_cases = merged.branched_cases;
    result.derived_crashes = merged.derived_crashes;
    result.reader_observations = merged.reader_observations;
    result.workload_trace_hash = merged.workload_trace_hash;
    let unreproducible: Vec<&str> = shrunk
        .iter()
        .filter(|s| !s.reproduces)
        .map(|s| s.invariant.name())
        .collect();
    match verdict {
        Ok(()) if entry.expect().findings.is_empty() => result.verdict = "pass".to_string(),
        Ok(()) => {
            result.verdict = format!("pass ({} known findings reproduced)", entry.expect().findings.len());
        }
        Err(why) => {
            result.passed = false;
            result.verdict = format!("FAIL: {why}");
        }
    }
    if !unreproducible.is_empty() {
        result.verdict.push_str(&format!(
            " (replay from scratch did not break {} again: nondeterminism?)",
            unreproducible.join(", ")
        ));
    }
    result.failures = merged.failures;
    Ok(result)
}
