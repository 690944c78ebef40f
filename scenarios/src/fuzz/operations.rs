//! Operation sequences with the crash inside the input: arbitrary
//! operations, edits behind the store's back and damage at rest, and one
//! fault at an arbitrary syscall of them, run through the crash-matrix
//! engine on `SimFs` and checked against the model and every invariant.
//!
//! The store is the reference store, or the one `TEARLINE_FUZZ_STORE`
//! names (`refstore/<flaw>` for a known-bad variant, in a build with the
//! `flawed-variants` feature): how the fuzzer is shown to find a bug.

use arbitrary::{Arbitrary, Unstructured};
use tearline_model::{Capabilities, FileRole, Operation, RebuildKind, ReconcileKind};
use tearline_sim_fs::{Fault, PersistenceModel};

use crate::case::{CrashPick, Injection};
use crate::engine::{self, ALL_FAULTS, Capacity, Damage, MountUnderRoot, Step, StoreScenario, StoreSubject, Subject};
use crate::stores;

/// A step, as the fuzzer picks it: names and texts are small numbers.
#[derive(Arbitrary, Debug)]
enum FuzzStep {
    Add(u8, u8),
    Remove(u8),
    Import(Vec<(u8, u8)>),
    RebuildFull,
    RebuildIncremental,
    Reconcile { mode: u8, force: bool, dry_run: bool },
    Edit(u8, Option<u8>),
    Reopen,
    ReadOnly,
    SecondWriter,
    Damage { role: u8, how: u8 },
    StaleLock,
}

/// One run: a setup of adds, a workload, and where and how the fault strikes.
#[derive(Arbitrary, Debug)]
struct FuzzRun {
    setup: Vec<(u8, u8)>,
    workload: Vec<FuzzStep>,
    staging_device: bool,
    seed: u8,
    fault: u8,
    at: u32,
    model: u8,
    sample: u8,
}

fn name(n: u8) -> String {
    format!("{}.md", char::from(b'a' + n % 6))
}

fn text(n: u8) -> String {
    format!(
        "Document {n}\n\nAbout {} and crashes.",
        ["disks", "indexes", "vectors", "journals"][usize::from(n % 4)]
    )
}

impl FuzzStep {
    /// The steps this one becomes (damage is followed by the reopen that
    /// must repair it).
    fn steps(&self) -> Vec<Step> {
        let op = |op| vec![Step::Op(op)];
        match self {
            FuzzStep::Add(n, t) => op(Operation::Add {
                name: name(*n),
                content: text(*t),
            }),
            FuzzStep::Remove(n) => op(Operation::Remove { name: name(*n) }),
            FuzzStep::Import(docs) => op(Operation::Import {
                documents: docs.iter().take(4).map(|(n, t)| (name(*n), text(*t))).collect(),
            }),
            FuzzStep::RebuildFull => op(Operation::Rebuild {
                kind: RebuildKind::Full,
            }),
            FuzzStep::RebuildIncremental => op(Operation::Rebuild {
                kind: RebuildKind::Incremental,
            }),
            FuzzStep::Reconcile { mode, force, dry_run } => op(Operation::Reconcile {
                mode: [
                    ReconcileKind::Audit,
                    ReconcileKind::Sync,
                    ReconcileKind::Clean,
                    ReconcileKind::Full,
                ][usize::from(mode % 4)],
                force: *force,
                dry_run: *dry_run,
                owner: None,
            }),
            FuzzStep::Edit(n, t) => vec![Step::EditSource {
                name: name(*n),
                content: t.map(text),
            }],
            FuzzStep::Reopen => vec![Step::Reopen],
            FuzzStep::ReadOnly => vec![Step::OpenReadOnly],
            FuzzStep::SecondWriter => vec![Step::SecondWriter],
            FuzzStep::Damage { role, how } => {
                let role = [
                    FileRole::Index,
                    FileRole::Vectors,
                    FileRole::Pointer,
                    FileRole::CompletionMark,
                ][usize::from(role % 4)];
                let damage = [
                    Damage::Garbage,
                    Damage::FlipBit,
                    Damage::UnreadableSector,
                    Damage::Truncate,
                ][usize::from(how % 4)]
                .clone();
                vec![Step::Damage { role, damage }, Step::Reopen]
            }
            FuzzStep::StaleLock => vec![Step::StaleLock],
        }
    }
}

impl FuzzRun {
    fn scenario(&self) -> StoreScenario {
        StoreScenario {
            name: "fuzz".to_string(),
            description: "an operation sequence from the fuzzer".to_string(),
            setup: self
                .setup
                .iter()
                .take(4)
                .map(|(n, t)| {
                    Step::Op(Operation::Add {
                        name: name(*n),
                        content: text(*t),
                    })
                })
                .collect(),
            workload: self.workload.iter().take(8).flat_map(FuzzStep::steps).collect(),
            capacity: Capacity::Unlimited,
            mounts: if self.staging_device {
                vec![MountUnderRoot {
                    relative: "staging".to_string(),
                    capacity_bytes: 1 << 30,
                }]
            } else {
                Vec::new()
            },
            requires: Capabilities::default(),
            fault_free_failure_allowed: true,
            persists: None,
            spared: Vec::new(),
        }
    }
}

/// Runs the input's operations on the store under test, with its fault at
/// its syscall, and panics with the scenario, the injection and the broken
/// invariant if any breaks (a saved input is the repro). Inputs whose
/// scenario the harness cannot run (damage to a file the store does not
/// have yet) or whose injection cannot strike are skipped.
pub fn operations(data: &[u8]) {
    let Ok(run) = Unstructured::new(data).arbitrary::<FuzzRun>() else {
        return;
    };
    let store = std::env::var("TEARLINE_FUZZ_STORE").unwrap_or_else(|_| stores::DEFAULT.to_string());
    let factory = stores::by_name(&store).unwrap_or_else(|| panic!("TEARLINE_FUZZ_STORE: no store named {store:?}"));
    let scenario = run.scenario();
    let subject = StoreSubject {
        factory: factory.as_ref(),
        scenario: &scenario,
    };
    let seed = u64::from(run.seed);
    let Ok(probe) = subject.probe(seed) else {
        return;
    };
    let found = |what: &str, evidence: &str| -> ! {
        let steps = serde_json::to_string(&scenario.workload).unwrap_or_default();
        let setup = serde_json::to_string(&scenario.setup).unwrap_or_default();
        panic!(
            "{what}\nstore: {store}\nseed: {seed}\nsetup: {setup}\nworkload: {steps}\nstaging on its own device: {}\n{evidence}",
            run.staging_device
        )
    };
    if let Some(v) = probe.violations.first() {
        found(
            "the fault-free run broke an invariant",
            &format!("{}: {}", v.invariant, v.evidence),
        );
    }
    let fault = ALL_FAULTS[usize::from(run.fault) % ALL_FAULTS.len()];
    let extent = probe.end - probe.start + 1;
    let injection = Injection {
        syscall: probe.start + u64::from(run.at) % extent,
        fault,
        crash: (fault == Fault::PowerCut).then(|| {
            (
                PersistenceModel::ALL[usize::from(run.model) % PersistenceModel::ALL.len()],
                CrashPick::Sample(u64::from(run.sample % 4)),
            )
        }),
    };
    if probe.refuse(&injection).is_some() {
        return;
    }
    let Ok(replay) = engine::replay_case(&subject, &probe, seed, &injection) else {
        return;
    };
    if let Some(v) = replay.violations.first() {
        let trace = crate::replay::trace_around(&replay.trace, injection.syscall, crate::replay::Context::default());
        found(
            &format!("{} broke at {injection}", v.invariant),
            &format!("evidence: {}\n{trace}", v.evidence),
        );
    }
}
