//! SQLite's atomic-commit crash matrix: the first real use of the harness.
//!
//! Power cuts at every syscall under every persistence model, torn writes at
//! every write, EIO and ENOSPC at every syscall they apply to. The matrix must
//! reproduce the known findings, pass where SQLite is durable, catch a VFS
//! that skips fsync, and replay every case from its repro line.

use tearline::catalogue::{self, Scenario};
use tearline::sqlite_atomic_commit::{
    self, AtomicCommitWorkload, Case, Invariant, JournalMode, MatrixOptions, MatrixReport, Synchronous,
};
use tearline_sim_fs::{Fault, PersistenceModel};

fn scenario(name: &str) -> Scenario {
    catalogue::find(name, 1).unwrap_or_else(|| panic!("no scenario {name}"))
}

fn run(workload: &AtomicCommitWorkload, options: &MatrixOptions) -> MatrixReport {
    sqlite_atomic_commit::run_matrix(workload, options, &mut |_, _| {}).expect("the harness runs")
}

fn assert_meets_expectation(name: &str) {
    let scenario = scenario(name);
    let report = run(&scenario.workload, &MatrixOptions::default());
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
    if let Err(why) = scenario.expect.judge(&report) {
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

fn power_cuts_only(model: PersistenceModel) -> MatrixOptions {
    MatrixOptions {
        models: vec![model],
        errno_faults: Vec::new(),
        torn_writes: false,
        ..MatrixOptions::default()
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
        let lost: std::collections::BTreeSet<u64> = report.failures.iter().map(|f| f.case.syscall).collect();
        eprintln!(
            "DELETE/FULL under {model}: the last acknowledged commit was lost at {} of {} crash points",
            lost.len(),
            report.crash_points
        );
        assert!(!lost.is_empty(), "{model}: the finding did not reproduce");
        for failure in &report.failures {
            assert_eq!(
                failure.violation.invariant,
                Invariant::CommittedDurable,
                "{}",
                failure.violation.evidence
            );
            assert!(failure.violation.evidence.contains("integrity_check is ok"));
        }
    }
    // After the workload has finished, a power cut that keeps nothing
    // unsynced rolls back the last commit.
    let last = run(&workload, &power_cuts_only(PersistenceModel::NothingUnsynced));
    let final_point = last.failures.iter().map(|f| f.case.syscall).max().expect("failures");
    let failure = last
        .failures
        .iter()
        .find(|f| f.case.syscall == final_point)
        .expect("found");
    assert!(
        failure.op.is_none(),
        "the last point is after the last syscall: {:?}",
        failure.op
    );
    assert!(
        failure
            .violation
            .evidence
            .starts_with("7 transactions were acknowledged")
    );
    assert!(failure.violation.evidence.contains("6 survived"));
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
            &MatrixOptions {
                errno_faults: Vec::new(),
                ..MatrixOptions::default()
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
            .any(|f| f.violation.invariant == Invariant::CommittedDurable),
        "WAL without fsync must lose acknowledged commits"
    );
}

/// Every case the matrix reports replays to the same verdict from its line,
/// and cases it passed replay to a pass.
#[test]
fn every_repro_line_reproduces_its_case() {
    let scenario = scenario("sqlite-delete-full");
    let options = MatrixOptions {
        stride: 3,
        ..MatrixOptions::default()
    };
    let report = run(&scenario.workload, &options);
    assert!(!report.failures.is_empty());
    let step = (report.failures.len() / 25).max(1);
    for failure in report.failures.iter().step_by(step) {
        let line = failure.case.to_string();
        let case = Case::parse(&line).expect("the printed case parses");
        assert_eq!(case, failure.case);
        let outcome = sqlite_atomic_commit::replay(&scenario.workload, options.seed, &case).expect("replay");
        let violation = outcome.verdict.expect_err(&format!("{line} passed on replay"));
        assert_eq!(violation, failure.violation, "{line}");
    }
    let extra = catalogue::find("sqlite-delete-extra", 1).expect("scenario");
    for syscall in (0..200).step_by(37) {
        for model in PersistenceModel::ALL {
            let line = format!("{syscall}:power-cut:{model}:s0");
            let case = Case::parse(&line).expect("parses");
            let outcome = sqlite_atomic_commit::replay(&extra.workload, 0, &case).expect("replay");
            assert!(outcome.verdict.is_ok(), "{line}: {:?}", outcome.verdict);
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_report_and_trace() {
    let workload = AtomicCommitWorkload::new(JournalMode::Wal, Synchronous::Full);
    let options = MatrixOptions {
        stride: 7,
        seed: 5,
        ..MatrixOptions::default()
    };
    let summary = |r: &MatrixReport| {
        let failures: Vec<String> = r
            .failures
            .iter()
            .map(|f| format!("{} {} {}", f.case, f.violation.invariant, f.violation.evidence))
            .collect();
        (r.workload_syscalls, r.crash_points, r.states_checked, failures)
    };
    assert_eq!(summary(&run(&workload, &options)), summary(&run(&workload, &options)));
    let case = Case::parse("120:power-cut:torn:s1").expect("parses");
    let first = sqlite_atomic_commit::replay(&workload, 5, &case).expect("replay");
    let second = sqlite_atomic_commit::replay(&workload, 5, &case).expect("replay");
    assert_eq!(first.trace.to_text(), second.trace.to_text());
    assert_eq!(first.trace.hash(), second.trace.hash());
}

#[test]
fn a_different_seed_gives_different_crash_states() {
    let workload = AtomicCommitWorkload::new(JournalMode::Delete, Synchronous::Full);
    let lost_at = |seed| {
        let options = MatrixOptions {
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
        &MatrixOptions {
            models: Vec::new(),
            torn_writes: false,
            errno_faults: vec![Fault::EIO, Fault::ENOSPC],
            ..MatrixOptions::default()
        },
    );
    // EIO applies to nearly every syscall, ENOSPC to writes, creates and syncs.
    assert!(report.crash_points > report.workload_syscalls);
    assert!(report.failures.is_empty(), "{:?}", report.failures.first());
}
