//! SQLite's atomic-commit crash matrix: the first real use of the harness.
//!
//! Power cuts at every syscall under every persistence model, torn writes at
//! every write, EIO and ENOSPC at every syscall they apply to. The matrix must
//! reproduce the known findings, pass where SQLite is durable, catch a VFS
//! that skips fsync, and replay every case from its repro line.

use tearline::case::Injection;
use tearline::catalogue::{self, Scenario};
use tearline::engine::{
    self, AtomicCommitWorkload, EngineOptions, JournalMode, Part, PartResult, SqliteSubject, Synchronous,
};
use tearline_model::Invariant;
use tearline_sim_fs::{Fault, PersistenceModel};

fn scenario(name: &str) -> Scenario {
    catalogue::find(name, 1).unwrap_or_else(|| panic!("no scenario {name}"))
}

/// The matrix of `workload` (every case, or one in `every`), through the engine.
fn run_sampled(workload: &AtomicCommitWorkload, options: &EngineOptions, every: u64) -> PartResult {
    let subject = SqliteSubject::new(workload.clone(), 1);
    let part = Part {
        shard: 0,
        shards: every,
        job: 0,
        jobs: 1,
    };
    engine::run_part(&subject, options, part, &mut |_, _| {}).expect("the harness runs")
}

fn run(workload: &AtomicCommitWorkload, options: &EngineOptions) -> PartResult {
    run_sampled(workload, options, 1)
}

fn replay(workload: &AtomicCommitWorkload, seed: u64, injection: &Injection) -> engine::Replay {
    let subject = SqliteSubject::new(workload.clone(), 1);
    engine::replay(&subject, seed, injection).expect("replay").0
}

fn assert_meets_expectation(name: &str) {
    let scenario = scenario(name);
    let report = run(&scenario.workload, &EngineOptions::default());
    eprintln!(
        "{name}: {} syscalls, {} crash points, {} states checked, {} violations",
        report.workload_syscalls,
        report.crash_points,
        report.states_checked,
        report.failures.len()
    );
    assert!(
        report.crash_points > report.workload_syscalls,
        "every syscall is a crash point"
    );
    if let Err(why) = scenario.expect.judge(&report.failures) {
        panic!("{name}: {why}");
    }
}

#[test]
fn delete_full_meets_its_expectation() {
    assert_meets_expectation("sqlite-delete-full");
}

#[test]
fn delete_extra_meets_its_expectation() {
    assert_meets_expectation("sqlite-delete-extra");
}

#[test]
fn wal_full_meets_its_expectation() {
    assert_meets_expectation("sqlite-wal-full");
}

#[test]
fn skipping_fsync_meets_its_expectation() {
    assert_meets_expectation("sqlite-delete-full-nosync");
}

fn power_cuts_only(model: PersistenceModel) -> EngineOptions {
    EngineOptions {
        models: vec![model],
        faults: vec![Fault::PowerCut],
        ..EngineOptions::default()
    }
}

/// The finding in `shared/notes`: DELETE mode with synchronous=FULL loses the
/// last committed transaction under a POSIX-faithful model; atomicity and
/// integrity always hold.
#[test]
fn delete_full_loses_an_acknowledged_commit_under_a_posix_faithful_model() {
    let workload = AtomicCommitWorkload::new(JournalMode::Delete, Synchronous::Full);
    for model in [PersistenceModel::NothingUnsynced, PersistenceModel::AnySubset] {
        let report = run(&workload, &power_cuts_only(model));
        let lost: std::collections::BTreeSet<u64> = report.failures.iter().map(|f| f.case.injection.syscall).collect();
        eprintln!(
            "DELETE/FULL under {model}: the last acknowledged commit was lost at {} of {} crash points",
            lost.len(),
            report.crash_points
        );
        assert!(!lost.is_empty(), "{model}: the finding did not reproduce");
        for failure in &report.failures {
            assert_eq!(failure.invariant, Invariant::CommittedDurable, "{}", failure.evidence);
            assert!(failure.evidence.contains("integrity_check is ok"));
        }
    }
    // After the workload has finished, a power cut that keeps nothing
    // unsynced rolls back the last commit.
    let last = run(&workload, &power_cuts_only(PersistenceModel::NothingUnsynced));
    let final_point = last
        .failures
        .iter()
        .map(|f| f.case.injection.syscall)
        .max()
        .expect("failures");
    let failure = last
        .failures
        .iter()
        .find(|f| f.case.injection.syscall == final_point)
        .expect("found");
    assert!(
        failure.op.is_none(),
        "the last point is after the last syscall: {:?}",
        failure.op
    );
    assert!(
        failure.evidence.contains("7 transactions were acknowledged"),
        "{}",
        failure.evidence
    );
    assert!(failure.evidence.contains("6 survived"), "{}", failure.evidence);
    // The evidence names the lost transaction.
    assert!(failure.evidence.contains("transaction 006"), "{}", failure.evidence);
}

#[test]
fn delete_extra_and_wal_survive_every_power_cut_under_every_model() {
    for (journal, sync) in [
        (JournalMode::Delete, Synchronous::Extra),
        (JournalMode::Wal, Synchronous::Full),
    ] {
        let workload = AtomicCommitWorkload::new(journal, sync);
        let report = run(
            &workload,
            &EngineOptions {
                faults: vec![Fault::PowerCut, Fault::TornWrite],
                ..EngineOptions::default()
            },
        );
        eprintln!(
            "{}: {} crash points, {} states, {} violations",
            workload.name(),
            report.crash_points,
            report.states_checked,
            report.failures.len()
        );
        // Every point checks at least one state, and the sampled models several.
        assert!(report.states_checked > report.crash_points);
        let failures: Vec<String> = report.failures.iter().map(|f| f.case.to_string()).collect();
        assert!(failures.is_empty(), "{}: {failures:?}", workload.name());
    }
}

#[test]
fn a_vfs_that_skips_fsync_fails_the_matrix() {
    let mut workload = AtomicCommitWorkload::new(JournalMode::Wal, Synchronous::Full);
    workload.skip_sync = true;
    let report = run(&workload, &power_cuts_only(PersistenceModel::NothingUnsynced));
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.invariant == Invariant::CommittedDurable),
        "WAL without fsync must lose acknowledged commits"
    );
}

/// Every case the matrix reports replays to the same verdict from its line,
/// and cases it passed replay to a pass.
#[test]
fn every_repro_line_reproduces_its_case() {
    let scenario = scenario("sqlite-delete-full");
    let options = EngineOptions::default();
    let report = run_sampled(&scenario.workload, &options, 3);
    assert!(!report.failures.is_empty());
    let step = (report.failures.len() / 25).max(1);
    for failure in report.failures.iter().step_by(step) {
        let line = failure.case.to_string();
        let case: tearline::case::Case = line.parse().expect("the printed case parses");
        assert_eq!(case, failure.case);
        let outcome = replay(&scenario.workload, options.seed, &case.injection);
        let violation = outcome
            .violations
            .iter()
            .find(|v| v.invariant == failure.invariant)
            .unwrap_or_else(|| {
                panic!(
                    "{line} did not break {} on replay: {:?}",
                    failure.invariant, outcome.violations
                )
            });
        assert_eq!(violation.evidence, failure.evidence, "{line}");
    }
    let extra = catalogue::find("sqlite-delete-extra", 1).expect("scenario");
    for syscall in (0..200).step_by(37) {
        for model in PersistenceModel::ALL {
            let line = format!("{syscall}:power-cut:{model}:s0");
            let injection: Injection = line.parse().expect("parses");
            // Syscalls before the workload's first are refused, not replayed.
            let subject = SqliteSubject::new(extra.workload.clone(), 1);
            match engine::replay(&subject, 0, &injection) {
                Ok((outcome, _)) => assert!(outcome.violations.is_empty(), "{line}: {:?}", outcome.violations),
                Err(e) => assert!(
                    syscall < 5 && e.to_string().contains("outside the workload"),
                    "{line}: {e}"
                ),
            }
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_report_and_trace() {
    let workload = AtomicCommitWorkload::new(JournalMode::Wal, Synchronous::Full);
    let options = EngineOptions {
        seed: 5,
        ..EngineOptions::default()
    };
    let summary = |r: &PartResult| {
        let failures: Vec<String> = r
            .failures
            .iter()
            .map(|f| format!("{} {} {}", f.case, f.invariant, f.evidence))
            .collect();
        (r.workload_syscalls, r.crash_points, r.states_checked, failures)
    };
    assert_eq!(
        summary(&run_sampled(&workload, &options, 7)),
        summary(&run_sampled(&workload, &options, 7))
    );
    let injection: Injection = "120:power-cut:torn:s1".parse().expect("parses");
    let first = replay(&workload, 5, &injection);
    let second = replay(&workload, 5, &injection);
    assert_eq!(first.trace.to_text(), second.trace.to_text());
    assert_eq!(first.trace.hash(), second.trace.hash());
}

#[test]
fn a_different_seed_gives_different_crash_states() {
    let workload = AtomicCommitWorkload::new(JournalMode::Delete, Synchronous::Full);
    let lost_at = |seed| {
        let options = EngineOptions {
            seed,
            ..power_cuts_only(PersistenceModel::AnySubset)
        };
        run(&workload, &options)
            .failures
            .iter()
            .map(|f| f.case.to_string())
            .collect::<Vec<_>>()
    };
    assert_ne!(
        lost_at(0),
        lost_at(1),
        "two seeds drew the same post-crash states everywhere"
    );
}

#[test]
fn injected_errors_are_checked_at_every_applicable_syscall() {
    let workload = AtomicCommitWorkload::new(JournalMode::Delete, Synchronous::Extra);
    let report = run(
        &workload,
        &EngineOptions {
            faults: vec![Fault::EIO, Fault::ENOSPC],
            ..EngineOptions::default()
        },
    );
    // EIO applies to nearly every syscall, ENOSPC to writes, creates and syncs.
    assert!(report.crash_points > report.workload_syscalls);
    assert!(report.failures.is_empty(), "{:?}", report.failures.first());
}
