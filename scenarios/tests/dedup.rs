//! Checking each distinct post-fault state once (`EngineOptions::dedup`),
//! after power cuts and after crashes derived from the probe's snapshots:
//! the same verdict for every case as checking every state, on matrices
//! that fail at many cases (stores without fsync, known-bad designs of the
//! reference store, SQLite's own findings) and on one that passes, for any
//! split of the matrix over jobs; and fewer states checked.

use std::collections::BTreeSet;

use tearline::catalogue;
use tearline::engine::EngineOptions;
use tearline::run::{RunOptions, run_entry};
use tearline::stores::file_per_doc::FilePerDocFactory;
use tearline_model::{Invariant, StoreFactory};
use tearline_refstore::Flaw;
use tearline_refstore::under_test::RefStoreFactory;
use tearline_sim_fs::{Fault, PersistenceModel};

/// Every (case, invariant) broken, and (states, distinct states checked).
fn verdicts(
    factory: &dyn StoreFactory,
    scenario: &str,
    faults: &[Fault],
    dedup: bool,
    jobs: u64,
) -> (BTreeSet<(u64, Invariant)>, (u64, u64)) {
    let entry = catalogue::find_entry(factory, scenario, 1).unwrap_or_else(|| panic!("no scenario {scenario}"));
    let options = RunOptions {
        engine: EngineOptions {
            faults: faults.to_vec(),
            models: PersistenceModel::ALL.to_vec(),
            samples_per_point: 2,
            dedup,
            ..EngineOptions::default()
        },
        // A quarter of the matrix: deduplication works within a CI shard.
        shard: (1, 4),
        jobs,
        worker: None,
    };
    let result = run_entry(&entry, factory, &options, &|_, _| {}).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    let broken = result.failures.iter().map(|f| (f.case_index, f.invariant)).collect();
    (broken, (result.states_checked, result.distinct_states))
}

fn assert_same_verdicts(factory: &dyn StoreFactory, scenario: &str, must_fail: bool) {
    assert_same_verdicts_with(factory, scenario, &[Fault::PowerCut, Fault::ProcessCrash], must_fail);
}

fn assert_same_verdicts_with(factory: &dyn StoreFactory, scenario: &str, faults: &[Fault], must_fail: bool) {
    let (every, (states, checked)) = verdicts(factory, scenario, faults, false, 1);
    assert_eq!(checked, states, "{scenario}: without dedup every state is checked");
    assert_eq!(
        !every.is_empty(),
        must_fail,
        "{} on {scenario}: {every:?}",
        factory.name()
    );
    for jobs in [1, 3] {
        let (once, (deduped_states, distinct)) = verdicts(factory, scenario, faults, true, jobs);
        assert_eq!(deduped_states, states, "{scenario}: every case still has a verdict");
        assert!(
            distinct < states,
            "{} on {scenario} with {jobs} jobs: no state repeated ({distinct} of {states})",
            factory.name()
        );
        let gained: Vec<_> = once.difference(&every).collect();
        let lost: Vec<_> = every.difference(&once).collect();
        assert!(
            gained.is_empty() && lost.is_empty(),
            "{} on {scenario} with {jobs} jobs: deduplication changed verdicts: broken only once deduplicated {gained:?}, \
             only when every state is checked {lost:?}",
            factory.name()
        );
    }
}

#[test]
fn dedup_gives_every_case_the_verdict_checking_it_gives() {
    assert_same_verdicts(&FilePerDocFactory::without_fsync(), "add-interrupted", true);
    assert_same_verdicts(
        &RefStoreFactory::with_flaw(Flaw::PublishWithoutFsync),
        "import-interrupted",
        true,
    );
    assert_same_verdicts(
        &RefStoreFactory::with_flaw(Flaw::DropAndReindex),
        "rebuild-crash-midway",
        true,
    );
    assert_same_verdicts(
        &RefStoreFactory::with_flaw(Flaw::WipeWithoutLock),
        "index-from-newer-build",
        true,
    );
    assert_same_verdicts(
        &RefStoreFactory::with_flaw(Flaw::LockTrustsPath),
        "lock-file-removed",
        true,
    );
    assert_same_verdicts(&RefStoreFactory::correct(), "add-interrupted", false);
}

#[test]
fn a_crash_that_leaves_the_state_an_earlier_one_left_shares_its_verdict() {
    // Crashes only: each derived from the probe's snapshot, and where the
    // process was killed at a read, the machine is the one a kill at the
    // syscall before leaves.
    let crashes = [Fault::ProcessCrash];
    assert_same_verdicts_with(
        &RefStoreFactory::with_flaw(Flaw::RecoveryNeedsVectors),
        "vector-store-down-after-fault",
        &crashes,
        true,
    );
    assert_same_verdicts_with(&RefStoreFactory::correct(), "long-mixed", &crashes, false);
}

#[test]
fn dedup_keeps_sqlite_findings_at_the_same_cases() {
    let factory = RefStoreFactory::correct();
    assert_same_verdicts(&factory, "sqlite-delete-full", true);
}
