//! Certification: run the catalogue's store scenarios against any store and
//! get a [`Certificate`].
//!
//! A team implements the store contract ([`prelude::StoreFactory`] and
//! [`prelude::StoreUnderTest`], on top of [`prelude::Fs`] and
//! [`prelude::Clock`]) and declares its [`prelude::Capabilities`]; then, in
//! its own `cargo test`:
//!
//! ```no_run
//! # fn factory() -> Box<dyn tearline::certify::prelude::StoreFactory> { unimplemented!() }
//! use tearline::certify::{CertifyOptions, assert_certified, certify};
//!
//! let certificate = certify(factory().as_ref(), &CertifyOptions::default()).expect("the harness ran");
//! std::fs::write("certificate.md", certificate.to_markdown()).unwrap();
//! assert_certified(&certificate);
//! ```
//!
//! Every store scenario of the catalogue runs whose required capabilities
//! the store declares; the others are listed as not applicable, with the
//! capabilities they need. Every invariant of the catalogue is listed:
//! passed (checked in at least one scenario, never broken), failed (with one
//! shrunk repro line and its evidence per scenario), or not applicable (with
//! why) — never passed by default. SQLite's own atomic-commit matrices are
//! not part of a store's certificate: they test SQLite.
//!
//! A failure's repro line replays with [`reproduce`] (in-process stores) or
//! `tearline certify --exec CMD --repro LINE` (black-box stores).

pub mod certificate;

use tearline_model::{Invariant, StoreFactory};
use tearline_sim_fs::{Fault, PersistenceModel};

pub use crate::replay::Reproduction;
pub use certificate::{Certificate, FailingCase, FailureExample, InvariantLine, ScenarioLine, Verdict};

use crate::catalogue::{self, Entry};
use crate::engine::{self, EngineOptions, HarnessError};
use crate::report::{InvariantResult, InvariantStatus, ScenarioResult};
use crate::run::{self, RunOptions};

/// What a store implementation needs to plug into the harness, in one `use`.
pub mod prelude {
    pub use tearline_model::{
        Access, Capabilities, Env, Observation, Operation, RebuildKind, ReconcileKind, RemoteFault, SchemaObservation,
        SchemaStamp, StoreFactory, StoreFailure, StoreUnderTest, content_hash,
    };
    pub use tearline_sim_fs::{Clock, DirEntry, FileHandle, FileHandleExt, FileKind, Fs, FsExt, OpenOptions};
}

/// What a certification runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifyOptions {
    /// The seed. Default 0.
    pub seed: u64,
    /// The faults injected. Default: every fault the engine knows.
    pub faults: Vec<Fault>,
    /// Persistence models for power cuts. Default: all five.
    pub models: Vec<PersistenceModel>,
    /// Run the cases numbered `i` modulo `n` of each matrix: `(0, 1)` (the
    /// default) runs every case; `(0, 10)` a tenth, for a quick check.
    pub sample: (u64, u64),
    /// Only these scenarios (empty: the whole catalogue).
    pub scenarios: Vec<String>,
    /// Notes on what the store's driver cannot make deterministic, carried
    /// into the certificate (the black-box driver fills them in).
    pub nondeterminism: Vec<String>,
    /// How a repro line is replayed for this store, for the certificate.
    pub reproduce_with: String,
    /// How the store is driven, for the certificate (`in-process`, or
    /// `exec: CMD` for a black-box store).
    pub driver: String,
    /// Run each scenario's fault-free workload once more and compare its
    /// trace with the matrix's probe, reporting in the certificate whether the store's syscalls
    /// repeat (for drivers that cannot promise it, like a child process on
    /// a FUSE mount). Default false.
    pub measure_repeatability: bool,
    /// Replay every case that is not a power cut from scratch: no crash
    /// checked from the snapshot before it, no case branched off one run
    /// ([`EngineOptions::derive_crashes`], [`EngineOptions::branch_from`]).
    /// Slower, with the same verdicts. Default false.
    pub rerun_each_case: bool,
    /// Local worker processes each matrix is split over. Default 1.
    pub jobs: u64,
    /// How to start a worker (with `jobs` above 1); `None` runs every part
    /// in this process.
    pub worker: Option<engine::WorkerCommand>,
}

impl Default for CertifyOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            faults: engine::ALL_FAULTS.to_vec(),
            models: PersistenceModel::ALL.to_vec(),
            sample: (0, 1),
            scenarios: Vec::new(),
            nondeterminism: Vec::new(),
            reproduce_with: "`tearline::certify::reproduce(&factory, LINE)`".to_string(),
            driver: "in-process".to_string(),
            measure_repeatability: false,
            rerun_each_case: false,
            jobs: 1,
            worker: None,
        }
    }
}

/// Certifies a store: [`certify_with_progress`] without progress reports.
pub fn certify(factory: &dyn StoreFactory, options: &CertifyOptions) -> Result<Certificate, HarnessError> {
    certify_with_progress(factory, options, &|_, _, _| {}, None)
}

/// Certifies a store, calling `progress(scenario, cases done, cases)` as
/// each matrix runs. `Err` only for bad options (a bad sample, an unknown
/// scenario); a store that breaks an invariant gets a failing certificate,
/// and so does one whose fault-free run of a scenario cannot finish (it
/// hangs, or its setup fails): that scenario breaks clean-error, with the
/// harness's error as evidence, and the others run. With `maps`, each
/// scenario that ran gets its crash map ([`crate::map`]) drawn there.
pub fn certify_with_progress(
    factory: &dyn StoreFactory,
    options: &CertifyOptions,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
    mut maps: Option<&mut Vec<crate::map::ScenarioMap>>,
) -> Result<Certificate, HarnessError> {
    let (entries, engine) = chosen(factory, options)?;
    let run_options = RunOptions {
        engine,
        shard: options.sample,
        jobs: options.jobs.max(1),
        worker: options.worker.clone(),
    };
    // The repeat runs with a new child for every open where the matrix
    // reuses them, so it also shows reuse changes no syscall.
    let fresh = factory.without_reuse();
    let repeat_on = fresh.as_deref().unwrap_or(factory);
    let how = if fresh.is_some() {
        " with a new process of the store for every open (the matrix reuses them after a reset)"
    } else {
        ""
    };
    let mut results = Vec::new();
    let mut differed = Vec::new();
    let mut compared = 0;
    for entry in &entries {
        let name = entry.name().to_string();
        let result = match run::run_entry(entry, factory, &run_options, &|done, total| {
            progress(&name, done, total)
        }) {
            Ok(result) => result,
            // A scenario whose fault-free run cannot finish (the store
            // hangs, or fails its setup) is that scenario's finding; the
            // others still run.
            Err(error) => {
                results.push(unfinished(entry, &error));
                continue;
            }
        };
        if let (Entry::Store { scenario, .. }, Some(first), true) =
            (entry, result.workload_trace_hash, options.measure_repeatability)
        {
            compared += 1;
            let subject = engine::StoreSubject {
                factory: repeat_on,
                scenario,
            };
            if engine::workload_trace_hash(&subject, options.seed)? != first {
                differed.push(name);
            }
        }
        if let Some(maps) = maps.as_deref_mut() {
            let subject = entry.subject(factory)?;
            maps.push(crate::map::scenario_map(
                subject.as_ref(),
                &run_options.engine,
                result.passed,
                &result.verdict,
                &result.failures,
            )?);
        }
        results.push(result);
    }
    let mut certificate = build(factory, options, &results);
    if options.measure_repeatability {
        certificate.nondeterminism.insert(
            0,
            if differed.is_empty() {
                format!(
                    "measured: the fault-free workload of each of the {compared} scenarios that ran made the same \
                     syscalls, byte for byte, when run again{how}"
                )
            } else {
                format!(
                    "measured: the fault-free workload made different syscalls when run again{how} in {} of \
                     {compared} scenarios ({}): fault points there may not strike the same syscall on replay",
                    differed.len(),
                    differed.join(", ")
                )
            },
        );
    }
    Ok(certificate)
}

/// One scenario of a certification's plan ([`plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLine {
    /// The scenario.
    pub scenario: String,
    /// Why it would not run (the capabilities the store lacks), if so.
    pub not_applicable_because: Option<String>,
    /// Why its fault-free run could not finish, if so (it would be a
    /// clean-error finding).
    pub error: Option<String>,
    /// What its matrix holds, within the sample.
    pub size: engine::MatrixSize,
    /// How long its one probe (the fault-free run) took, wall time: a case
    /// that replays the workload costs about as much.
    pub probe_time: std::time::Duration,
}

/// What [`certify`] would run, scenario by scenario, without running a
/// case: each applicable scenario's fault-free run once (its probe), and
/// its matrix enumerated within the sample. `Err` only for bad options.
pub fn plan(factory: &dyn StoreFactory, options: &CertifyOptions) -> Result<Vec<PlanLine>, HarnessError> {
    let (entries, engine_options) = chosen(factory, options)?;
    let part = crate::engine::Part::split(options.sample.0, options.sample.1, 1)
        .into_iter()
        .next()
        .ok_or_else(|| HarnessError("an empty sample".to_string()))?;
    let mut lines = Vec::new();
    for entry in &entries {
        let mut line = PlanLine {
            scenario: entry.name().to_string(),
            not_applicable_because: None,
            error: None,
            size: engine::MatrixSize::default(),
            probe_time: std::time::Duration::ZERO,
        };
        if let Entry::Store { scenario, .. } = entry {
            let missing = scenario.missing(&factory.capabilities());
            if !missing.is_empty() {
                line.not_applicable_because = Some(format!("{} lacks {}", factory.name(), missing.join(", ")));
                lines.push(line);
                continue;
            }
        }
        let started = std::time::Instant::now();
        match entry
            .subject(factory)
            .and_then(|subject| engine::matrix_size(subject.as_ref(), &engine_options, part))
        {
            Ok(size) => line.size = size,
            Err(error) => line.error = Some(error.0),
        }
        line.probe_time = started.elapsed();
        lines.push(line);
    }
    Ok(lines)
}

/// The store scenarios a certification runs (checked against the
/// catalogue) and its engine options.
fn chosen(factory: &dyn StoreFactory, options: &CertifyOptions) -> Result<(Vec<Entry>, EngineOptions), HarnessError> {
    let (sample_i, sample_n) = options.sample;
    if sample_n == 0 || sample_i >= sample_n {
        return Err(HarnessError(format!("bad sample {sample_i}/{sample_n}: need i < n")));
    }
    let entries: Vec<Entry> = catalogue::entries(factory, 2)
        .into_iter()
        .filter(|e| matches!(e, Entry::Store { .. }))
        .collect();
    for name in &options.scenarios {
        if !entries.iter().any(|e| e.name() == name) {
            return Err(HarnessError(format!("no store scenario named {name:?}")));
        }
    }
    let entries = entries
        .into_iter()
        .filter(|e| options.scenarios.is_empty() || options.scenarios.iter().any(|n| n == e.name()))
        .collect();
    let defaults = EngineOptions::default();
    let engine = EngineOptions {
        seed: options.seed,
        faults: options.faults.clone(),
        models: options.models.clone(),
        derive_crashes: !options.rerun_each_case,
        branch_from: defaults.branch_from.filter(|_| !options.rerun_each_case),
        ..defaults
    };
    Ok((entries, engine))
}

/// The result of a scenario whose fault-free run could not finish: it
/// breaks clean-error, with the harness's account of what the store did
/// (for a black-box store: what it was asked, how long the harness waited,
/// the tail of its stderr). Nothing else was checked in it.
fn unfinished(entry: &Entry, error: &HarnessError) -> ScenarioResult {
    let evidence = format!(
        "the fault-free run could not finish, so no fault was injected in this scenario: {}",
        error.0
    );
    ScenarioResult {
        invariants: Invariant::ALL
            .iter()
            .map(|&invariant| {
                let broken = invariant == Invariant::CleanError;
                InvariantResult {
                    invariant,
                    status: if broken {
                        InvariantStatus::Failed
                    } else {
                        InvariantStatus::NotApplicable
                    },
                    failures: u64::from(broken),
                    repro: None,
                    evidence: broken.then(|| evidence.clone()),
                    reproduces: None,
                    net_repro: None,
                }
            })
            .collect(),
        passed: false,
        verdict: format!("FAIL: {evidence}"),
        ..ScenarioResult::empty(entry.name(), "store", entry.description())
    }
}

/// Assembles the certificate from the scenarios' results.
fn build(factory: &dyn StoreFactory, options: &CertifyOptions, results: &[ScenarioResult]) -> Certificate {
    let caps = factory.capabilities();
    let invariants: Vec<InvariantLine> = Invariant::ALL
        .iter()
        .map(|&invariant| {
            let mut line = InvariantLine {
                invariant,
                summary: invariant
                    .explanation()
                    .split_once(". ")
                    .map_or(invariant.explanation(), |(first, _)| first)
                    .trim_end_matches('.')
                    .to_string()
                    + ".",
                verdict: Verdict::NotApplicable,
                not_applicable_because: None,
                scenarios: Vec::new(),
                crash_points: 0,
                states_checked: 0,
                failures: Vec::new(),
            };
            for result in results.iter().filter(|r| r.not_applicable.is_none()) {
                let Some(found) = result.invariants.iter().find(|i| i.invariant == invariant) else {
                    continue;
                };
                if found.status == InvariantStatus::NotApplicable {
                    continue;
                }
                line.scenarios.push(result.scenario.clone());
                line.crash_points += result.crash_points;
                line.states_checked += result.states_checked;
                if found.status == InvariantStatus::Failed {
                    line.failures.push(FailureExample {
                        scenario: result.scenario.clone(),
                        cases: found.failures,
                        repro: found.repro.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                        evidence: found.evidence.clone().unwrap_or_default(),
                        reproduces: found.reproduces,
                        failing_cases: result
                            .failures
                            .iter()
                            .filter(|f| f.invariant == invariant)
                            .map(|f| FailingCase {
                                repro: f.case.to_string(),
                                step: f.step.clone(),
                                evidence: f.evidence.clone(),
                            })
                            .collect(),
                    });
                }
            }
            line.verdict = if !line.failures.is_empty() {
                Verdict::Failed
            } else if line.scenarios.is_empty() {
                line.not_applicable_because = Some(match invariant.needs() {
                    Some(needs) if !invariant.applies_to(&caps) => format!("needs {needs}; the store declares none"),
                    _ => "no scenario that ran exercises it (see the scenarios not applicable below)".to_string(),
                });
                Verdict::NotApplicable
            } else {
                Verdict::Passed
            };
            line
        })
        .collect();
    let scenarios = results
        .iter()
        .map(|r| ScenarioLine {
            name: r.scenario.clone(),
            description: r.description.clone(),
            not_applicable_because: r.not_applicable.clone(),
            workload_syscalls: r.workload_syscalls,
            crash_points: r.crash_points,
            states_checked: r.states_checked,
            distinct_states: r.distinct_states,
            violations: (r.failures.len() as u64).max(
                r.invariants
                    .iter()
                    .filter(|i| i.status == InvariantStatus::Failed)
                    .map(|i| i.failures)
                    .sum(),
            ),
            broke: r
                .invariants
                .iter()
                .filter(|i| i.status == InvariantStatus::Failed)
                .map(|i| i.invariant)
                .collect(),
        })
        .collect();
    let (i, n) = options.sample;
    Certificate {
        schema_version: certificate::CERTIFICATE_SCHEMA_VERSION,
        harness: format!("tearline {}", env!("CARGO_PKG_VERSION")),
        store: factory.name().to_string(),
        driver: options.driver.clone(),
        capabilities: caps,
        seed: options.seed,
        faults: options.faults.iter().map(|f| f.to_string()).collect(),
        persistence_models: options.models.iter().map(|m| m.to_string()).collect(),
        coverage: if n == 1 {
            "every case".to_string()
        } else {
            format!("the cases numbered {i} modulo {n} of each matrix (1 in {n})")
        },
        passed: invariants.iter().all(|l| l.verdict != Verdict::Failed),
        invariants,
        scenarios,
        nondeterminism: options.nondeterminism.clone(),
        reproduce_with: options.reproduce_with.clone(),
    }
}

/// Panics unless the certificate passed, printing each failure with its
/// evidence and repro line (for a team's `cargo test`).
#[track_caller]
pub fn assert_certified(certificate: &Certificate) {
    if certificate.passed {
        return;
    }
    let mut message = format!("{} is not certified:\n", certificate.store);
    for line in certificate.failed() {
        message.push_str(&format!("\n{} — {}\n", line.invariant, line.summary));
        for example in &line.failures {
            message.push_str(&format!(
                "  in {} ({} cases): {}\n    reproduce: {}\n",
                example.scenario,
                example.cases,
                example.evidence.replace('\n', " "),
                example.repro
            ));
        }
    }
    message.push_str(&format!("\nreplay a line with {}\n", certificate.reproduce_with));
    panic!("{message}");
}

/// Replays one repro line of a certificate against `factory`, from
/// scratch, and describes what happened ([`crate::replay::reproduce_line`]).
pub fn reproduce(factory: &dyn StoreFactory, line: &str) -> Result<Reproduction, HarnessError> {
    crate::replay::reproduce_line(factory, line)
}
