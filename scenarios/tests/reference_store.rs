//! The reference store through the harness: a smoke matrix over every store
//! scenario of the catalogue (a deterministic tenth of each matrix: shard 0
//! of 10), and the known-bad variants — the origin documents' designs —
//! each caught by its scenario with the invariant it breaks, and a repro
//! line that reproduces it. The full matrix is `tearline run`.

use tearline::catalogue::{self, Entry};
use tearline::engine::{self, EngineOptions};
use tearline::replay::reproduce_line;
use tearline::run::{RunOptions, run_entry};
use tearline_model::{Invariant, StoreFactory};
use tearline_refstore::Flaw;
use tearline_refstore::under_test::RefStoreFactory;
use tearline_sim_fs::Fault;

fn options(faults: Vec<Fault>, shard: (u64, u64)) -> RunOptions {
    RunOptions {
        engine: EngineOptions {
            faults,
            samples_per_point: 1,
            ..EngineOptions::default()
        },
        shard,
        jobs: 1,
        worker: None,
    }
}

#[test]
fn the_reference_store_passes_a_smoke_matrix_of_every_store_scenario() {
    let factory = RefStoreFactory::correct();
    let mut scenarios = 0;
    for entry in catalogue::entries(&factory, 1) {
        if !matches!(entry, Entry::Store { .. }) {
            continue;
        }
        let result = run_entry(
            &entry,
            &factory,
            &options(engine::ALL_FAULTS.to_vec(), (0, 10)),
            &|_, _| {},
        )
        .unwrap_or_else(|e| panic!("{}: {e}", entry.name()));
        assert!(
            result.not_applicable.is_none(),
            "{}: the reference store supports everything",
            entry.name()
        );
        assert!(result.states_checked > 0, "{}: nothing was checked", entry.name());
        let failures: Vec<String> = result
            .failures
            .iter()
            .take(3)
            .map(|f| format!("{} {}: {}", f.case, f.invariant, f.evidence))
            .collect();
        assert!(
            result.passed,
            "{}: {}\n{}",
            entry.name(),
            result.verdict,
            failures.join("\n")
        );
        scenarios += 1;
    }
    assert!(scenarios >= 15, "only {scenarios} store scenarios");
}

/// The scenario and faults that expose each known-bad variant, and how many
/// power-cut outcomes per point it takes (one unless said).
fn exposed_by(variant: Flaw) -> (&'static str, Vec<Fault>, u64) {
    let (scenario, faults) = match variant {
        Flaw::DropAndReindex => ("rebuild-crash-midway", vec![Fault::PowerCut]),
        Flaw::TwoRenameSwap => ("rebuild-swap-interrupted", vec![Fault::PowerCut]),
        Flaw::NoIntents => ("vector-write-failing", vec![Fault::EIO]),
        Flaw::PublishWithoutFsync => ("import-interrupted", vec![Fault::PowerCut]),
        Flaw::CopyWithoutFsync => ("staging-across-devices", vec![Fault::PowerCut]),
        Flaw::CleanWithoutForce => ("reconcile-clean", vec![Fault::PowerCut]),
        Flaw::CleanDeletesShared | Flaw::ShareWithoutFsync => ("shared-record-kept", vec![Fault::PowerCut]),
        Flaw::ReconcileIgnoresOwner => ("owner-scoped-reconcile", vec![Fault::PowerCut]),
        Flaw::SyncCleans => ("reconcile-sync", vec![Fault::PowerCut]),
        Flaw::KeepsFinishedJournal => ("add-interrupted", vec![Fault::PowerCut]),
        Flaw::WipeWithoutLock => ("index-from-newer-build", vec![Fault::PowerCut]),
        Flaw::StampWithoutMigration => ("schema-upgrade-interrupted", vec![Fault::PowerCut]),
        Flaw::SkipRollback => ("import-interrupted", vec![Fault::EIO]),
        Flaw::ReaderIgnoresJournal => ("import-interrupted", vec![Fault::PowerCut]),
        Flaw::FailAfterCommit => ("import-interrupted", vec![Fault::ENOSPC]),
        Flaw::NoReserve => ("device-stays-full", vec![Fault::PowerCut]),
        Flaw::TruncateWithoutLock => ("index-from-newer-build", vec![Fault::PowerCut]),
        Flaw::RepairOneByteShort => ("two-processes-open", vec![Fault::PowerCut]),
        Flaw::LockTrustsPath => ("lock-file-removed", vec![Fault::PowerCut]),
        Flaw::StrictSources => ("hostile-sources", vec![Fault::PowerCut]),
        Flaw::RetriesFsync => ("add-interrupted", vec![Fault::EIO]),
        Flaw::TrustsIndex => ("vector-segment-damaged", vec![Fault::PowerCut]),
        Flaw::RebuildNeedsLive => ("index-page-damaged", vec![Fault::PowerCut]),
        Flaw::CleansBeforeCheck => ("pointer-to-missing-generation", vec![Fault::PowerCut]),
        Flaw::IgnoresOutage => ("vector-store-stays-down", vec![Fault::PowerCut]),
        Flaw::StrictJournals => ("journal-damaged", vec![Fault::PowerCut]),
        Flaw::ListedMeansThere => ("hostile-sources", vec![Fault::Vanish]),
        Flaw::ReadsInputOnce => ("import-interrupted", vec![Fault::BitFlip]),
        Flaw::RecoveryNeedsVectors => ("vector-store-down-after-fault", vec![Fault::PowerCut]),
        Flaw::StrictNames | Flaw::ReadsEveryEntry => ("hostile-sources", vec![Fault::PowerCut]),
        Flaw::SegmentNameReused => ("long-mixed", vec![Fault::PowerCut]),
    };
    // The torn tail it mis-repairs is one outcome of a few.
    let samples = if variant == Flaw::RepairOneByteShort { 3 } else { 1 };
    (scenario, faults, samples)
}

#[test]
fn every_known_bad_variant_is_caught_with_a_repro_line_that_reproduces() {
    let mut caught = Vec::new();
    for variant in Flaw::ALL {
        let (scenario, faults, samples) = exposed_by(variant);
        let factory = RefStoreFactory::with_flaw(variant);
        let entry = catalogue::find_entry(&factory, scenario, 1).expect("scenario exists");
        let mut options = options(faults, (0, 1));
        options.engine.samples_per_point = samples;
        let result =
            run_entry(&entry, &factory, &options, &|_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", factory.name()));
        assert!(
            !result.passed,
            "{} passed {scenario}: the matrix missed it",
            factory.name()
        );
        let hit = result
            .failures
            .iter()
            .find(|f| variant.breaks().contains(&f.invariant))
            .unwrap_or_else(|| {
                panic!(
                    "{} broke {:?}, not the expected {:?}",
                    factory.name(),
                    result.failures.iter().map(|f| f.invariant).collect::<Vec<_>>(),
                    variant.breaks()
                )
            });
        let line: tearline::case::Case = hit.case.to_string().parse().expect("the repro line parses");
        assert_eq!(line, hit.case);
        let Entry::Store {
            scenario: store_scenario,
            ..
        } = &entry
        else {
            panic!("{scenario} is a store scenario");
        };
        let subject = engine::StoreSubject {
            factory: &factory,
            scenario: store_scenario,
        };
        let (replay, _) = engine::replay(&subject, line.seed, &line.injection).expect("replay");
        assert!(
            replay.violations.iter().any(|v| v.invariant == hit.invariant),
            "{}: `tearline repro {}` did not reproduce {}: {:?}",
            factory.name(),
            hit.case,
            hit.invariant,
            replay.violations
        );
        caught.push(format!("{} -> {} ({})", factory.name(), hit.invariant, hit.case));
    }
    eprintln!("{}", caught.join("\n"));
    assert_eq!(caught.len(), Flaw::ALL.len(), "every known-bad variant: {caught:?}");
}

/// The lock that trusts its path (a `flock` of `store.lock`): when another
/// process removes or replaces the file, the next writer is let in beside
/// the first. Both lock attacks catch it on no-wipe-without-lock, with
/// evidence that says what was done to the lock file, and a repro line that
/// `tearline repro` replays to the same failure; the reference store, which
/// locks its root directory, passes the same matrices.
#[test]
fn a_lock_that_trusts_its_path_is_caught_by_both_lock_attacks() {
    let flawed = RefStoreFactory::with_flaw(Flaw::LockTrustsPath);
    for (scenario, done) in [("lock-file-removed", "removed"), ("lock-file-replaced", "replaced")] {
        let entry = catalogue::find_entry(&flawed, scenario, 1).expect("scenario exists");
        let result = run_entry(&entry, &flawed, &options(vec![Fault::PowerCut], (0, 1)), &|_, _| {})
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
        assert!(!result.passed, "{scenario}: the lock that trusts its path passed");
        let hits: Vec<_> = result
            .failures
            .iter()
            .filter(|f| f.invariant == Invariant::NoWipeWithoutLock)
            .collect();
        assert!(!hits.is_empty(), "{scenario}: {:?}", result.failures);
        assert!(
            hits.iter().all(
                |f| f.evidence.contains(&format!("{done} the lock file /store/store.lock"))
                    || f.evidence.contains(&format!("{done} /store/store.lock (syscall"))
            ),
            "{scenario}: the evidence must say the lock file was {done}: {:?}",
            hits.iter().map(|f| &f.evidence).collect::<Vec<_>>()
        );
        let second_writer = hits
            .iter()
            .find(|f| f.evidence.contains("was let open the store writable"))
            .unwrap_or_else(|| panic!("{scenario}: no second writer reported: {hits:?}"));
        let line = second_writer.case.to_string();
        assert!(line.ends_with("--store refstore/lock-trusts-path"), "{line}");
        let replayed = reproduce_line(&flawed, &line).expect("the line replays");
        assert!(
            replayed
                .violations
                .iter()
                .any(|v| v.invariant == Invariant::NoWipeWithoutLock && v.evidence == second_writer.evidence),
            "`tearline repro {line}` did not reproduce it:\n{}",
            replayed.report
        );
        let correct = RefStoreFactory::correct();
        let entry = catalogue::find_entry(&correct, scenario, 1).expect("scenario exists");
        let result = run_entry(&entry, &correct, &options(vec![Fault::PowerCut], (0, 1)), &|_, _| {})
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
        assert!(result.passed, "{scenario}: {}", result.verdict);
    }
}

/// A store that says its vector store could not be reached while the
/// harness has it up (so that no vector of its is checked) breaks
/// no-orphan-vectors, with evidence that says so; the same claim while the
/// vector store is really down passes (vector-store-stays-down).
#[test]
fn a_store_that_says_its_vector_store_is_down_while_it_is_up_is_caught() {
    use tearline_model::{Access, Capabilities, Env, Observation, Operation, StoreFailure, StoreUnderTest};
    struct Claims(RefStoreFactory);
    struct Handle(Box<dyn StoreUnderTest>);
    impl StoreUnderTest for Handle {
        fn apply(&mut self, op: &Operation) -> Result<(), StoreFailure> {
            self.0.apply(op)
        }
        fn observe(&self) -> Result<Observation, StoreFailure> {
            Ok(Observation {
                remote_unavailable: true,
                ..self.0.observe()?
            })
        }
        fn set_remote_fault(&mut self, fault: tearline_model::RemoteFault) -> bool {
            self.0.set_remote_fault(fault)
        }
    }
    impl StoreFactory for Claims {
        fn name(&self) -> &str {
            "claims-vectors-down"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        fn init(&self, env: &Env) -> Result<(), StoreFailure> {
            self.0.init(env)
        }
        fn open(&self, env: &Env, access: Access) -> Result<Box<dyn StoreUnderTest>, StoreFailure> {
            Ok(Box::new(Handle(self.0.open(env, access)?)))
        }
        fn source_dir(&self, env: &Env) -> Option<std::path::PathBuf> {
            self.0.source_dir(env)
        }
        fn protected_paths(&self, env: &Env) -> Vec<String> {
            self.0.protected_paths(env)
        }
        fn lock_file(&self, env: &Env) -> Option<std::path::PathBuf> {
            self.0.lock_file(env)
        }
    }
    let factory = Claims(RefStoreFactory::correct());
    for (scenario, caught) in [("add-interrupted", true), ("vector-store-stays-down", false)] {
        let entry = catalogue::find_entry(&factory, scenario, 1).expect("scenario exists");
        let result = run_entry(&entry, &factory, &options(vec![Fault::PowerCut], (0, 4)), &|_, _| {})
            .unwrap_or_else(|e| panic!("{scenario}: {e}"));
        let claims: Vec<_> = result
            .failures
            .iter()
            .filter(|f| f.invariant == Invariant::NoOrphanVectors && f.evidence.contains("while it was up"))
            .collect();
        assert_eq!(!claims.is_empty(), caught, "{scenario}: {:?}", result.failures);
        if !caught {
            assert!(result.passed, "{scenario}: {:?}", result.failures);
        }
    }
}

/// What the fault-free run itself breaks belongs to every sample of the
/// matrix: a shard that does not own the case it is attached to still
/// reports it (StrictSources fails its fault-free rebuild on a file that is
/// not text, which only the probe sees).
#[test]
fn sampling_never_drops_what_the_fault_free_run_broke() {
    let factory = RefStoreFactory::with_flaw(Flaw::StrictSources);
    let entry = catalogue::find_entry(&factory, "hostile-sources", 1).expect("scenario exists");
    let shards = 4;
    for shard in 0..shards {
        let result = run_entry(
            &entry,
            &factory,
            &options(vec![Fault::PowerCut], (shard, shards)),
            &|_, _| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let broke: Vec<Invariant> = result.failures.iter().map(|f| f.invariant).collect();
        assert!(
            Flaw::StrictSources.breaks().iter().any(|i| broke.contains(i)),
            "shard {shard}/{shards} lost the fault-free finding: {broke:?}"
        );
    }
}

/// A power-cut case derived from the probe's snapshot reads the lock
/// invariant off the same trace as a replay of its line: what the machine
/// did before the power cut, then the recovery. A store that truncates its
/// index without the lock in a read-only open of the workload breaks it in
/// every power-cut case after the truncation, whether or not the case's
/// recovery opens a reader first (only the first outcome of a point does).
#[test]
fn a_derived_power_cut_case_reads_the_lock_invariant_off_the_whole_trace() {
    let factory = RefStoreFactory::with_flaw(Flaw::TruncateWithoutLock);
    let entry = catalogue::find_entry(&factory, "index-from-newer-build", 1).expect("scenario exists");
    let mut options = options(vec![Fault::PowerCut], (0, 1));
    options.engine.samples_per_point = 3;
    let result = run_entry(&entry, &factory, &options, &|_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    // Outcomes after the first of a point recover without a reader: only
    // the trace before the power cut holds the truncation.
    let later = result
        .failures
        .iter()
        .filter(|f| f.invariant == Invariant::NoWipeWithoutLock)
        .find(|f| {
            let line = f.case.to_string();
            !line.contains(":d0 ") && !line.contains(":s0 ")
        })
        .expect("a later outcome of a point broke it too");
    let Entry::Store { scenario, .. } = &entry else {
        panic!("a store scenario");
    };
    let subject = engine::StoreSubject {
        factory: &factory,
        scenario,
    };
    let (replay, _) = engine::replay(&subject, later.case.seed, &later.case.injection).expect("replay");
    assert!(
        replay
            .violations
            .iter()
            .any(|v| v.invariant == Invariant::NoWipeWithoutLock),
        "{} broke it derived, not replayed",
        later.case
    );
}
