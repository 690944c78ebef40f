//! The crash matrix measured several ways in one run, on the same machine:
//!
//! 1. SQLite's matrix: deriving each power-cut state from a snapshot taken
//!    during one probe run, versus re-running the workload from the start to
//!    each crash point (states checked per second, and the ratio).
//! 2. Store scenarios of the reference store, every fault: checking every
//!    post-fault state, versus each distinct state once
//!    ([`EngineOptions::dedup`]): states, distinct states, seconds, ratio;
//!    and beside them every state with every case that is not a power cut
//!    replayed from scratch (no branches, no crash from a snapshot: the
//!    engine before this structural changes), and its ratio.
//! 3. Growth: SQLite's matrix as its workload doubles (1x, 2x, 4x the
//!    transactions), both ways, to show the time per transaction.
//! 4. Continue, don't re-run: the faults that are not power cuts, each
//!    case replayed from scratch, versus branched off one run of the
//!    workload (a fork at its syscall) for every case, versus the default
//!    (a crash of the workload's process checked from the snapshot before
//!    it, as a power cut is, and the rest branched where the prefix is at
//!    least [`engine::BRANCH_FROM`] syscalls), as the workload doubles:
//!    SQLite's (transactions; it takes no crash) and the reference
//!    store's (adds). The verdicts are asserted equal.
//! 5. Black box: the corrected Python store (`examples/python-store`) on a
//!    FUSE mount, a twentieth of two scenarios' matrices, every fault, one
//!    job: a new child for every open on any CPU (the old way), children
//!    reused after a `reset`, and children reused on one CPU with their
//!    mount's thread (the default). The certificates are asserted equal.
//!    Skipped, saying why, without FUSE or `python3`.
//!
//! Run with `cargo bench -p tearline --bench matrix_speed`; a word after
//! `--` (`snapshot`, `dedup`, `growth`, `replayed` or `blackbox`) runs that
//! table only.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tearline::case::{CrashPick, Injection};
use tearline::catalogue;
use tearline::certify::{CertifyOptions, certify};
use tearline::engine::{
    self, AtomicCommitWorkload, EngineOptions, JournalMode, Part, SqliteSubject, Step, StoreScenario, StoreSubject,
    Subject, Synchronous,
};
use tearline::run::{RunOptions, run_entry};
use tearline_blackbox::{CpuPlacement, ExecOptions, ExecStoreFactory};
use tearline_model::Operation;
use tearline_refstore::under_test::RefStoreFactory;
use tearline_sim_fs::{Fault, PersistenceModel};

/// How many crash points the re-run way samples (it is too slow to do them all).
const RERUN_SAMPLE: u64 = 150;

fn main() {
    // `cargo bench` passes `--bench`; a plain word picks one table.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |table: &str| only.as_deref().is_none_or(|o| o == table);
    if wanted("snapshot") {
        println!(
            "{:<26} {:>8} {:>10} {:>12} {:>14} {:>8}",
            "workload", "points", "snapshot s", "snapshot st/s", "re-run st/s", "ratio"
        );
        let setups = [
            (JournalMode::Wal, Synchronous::Full, "WAL/FULL"),
            (JournalMode::Delete, Synchronous::Extra, "DELETE/EXTRA"),
        ];
        for (journal, sync, label) in setups {
            for (transactions, rows) in [(12, 100), (20, 150)] {
                measure(journal, sync, label, transactions, rows);
            }
        }
        println!();
    }
    if wanted("dedup") {
        println!(
            "{:<26} {:>8} {:>9} {:>9} {:>13} {:>11} {:>7} {:>7}",
            "store scenario (1/4)",
            "states",
            "distinct",
            "re-run s",
            "every state s",
            "distinct s",
            "ratio",
            "vs re-run"
        );
        for scenario in [
            "add-interrupted",
            "import-interrupted",
            "rebuild-crash-midway",
            "long-mixed",
        ] {
            store_scenario(scenario);
        }
        println!();
    }
    if wanted("growth") {
        println!(
            "{:<26} {:>8} {:>9} {:>13} {:>11} {:>7}",
            "growth: WAL/FULL x 50 rows", "states", "distinct", "every state s", "distinct s", "ratio"
        );
        for transactions in [8, 16, 32] {
            growth(transactions);
        }
        println!();
    }
    if wanted("replayed") {
        println!(
            "{:<30} {:>7} {:>9} {:>10} {:>10} {:>10} {:>8}",
            "replayed faults, growing", "cases", "syscalls", "re-run s", "branch s", "default s", "ratio"
        );
        for transactions in [8, 16, 32, 64] {
            replayed_sqlite(transactions);
        }
        for adds in [2, 4, 8] {
            replayed_store(adds);
        }
        println!();
    }
    if wanted("blackbox") {
        blackbox();
    }
}

/// Table 5 (see the crate docs).
fn blackbox() {
    if let Err(why) = tearline_blackbox::fuse_available() {
        println!("black box: skipped: {why}");
        return;
    }
    // The interpreter's real path: a version manager's shim would start a
    // process more for every child.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    let Some(python) = python else {
        println!("black box: skipped: python3 does not run");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python-store/corrected_store.py");
    let command = format!("{python} {}", script.display());
    println!(
        "{:<30} {:>7} {:>12} {:>10} {:>10} {:>8}",
        "black box (1/20, 1 job)", "states", "new child s", "reused s", "one CPU s", "ratio"
    );
    for scenario in ["add-interrupted", "vector-write-failing"] {
        let options = CertifyOptions {
            sample: (0, 20),
            scenarios: vec![scenario.to_string()],
            ..CertifyOptions::default()
        };
        let way = |reuse: bool, cpu: CpuPlacement| {
            let exec = ExecOptions::default().with_reuse_children(reuse).with_cpu(cpu);
            let factory = ExecStoreFactory::new(&command, exec).expect("the store says hello");
            let started = Instant::now();
            let certificate = certify(&factory, &options).expect("the harness ran");
            (certificate, started.elapsed().as_secs_f64())
        };
        let (old, old_s) = way(false, CpuPlacement::Anywhere);
        let (reused, reused_s) = way(true, CpuPlacement::Anywhere);
        let (placed, placed_s) = way(true, CpuPlacement::Current);
        assert_eq!(
            old.to_json(),
            reused.to_json(),
            "{scenario}: reuse changed the certificate"
        );
        assert_eq!(
            old.to_json(),
            placed.to_json(),
            "{scenario}: placement changed the certificate"
        );
        let states: u64 = placed.scenarios.iter().map(|s| s.states_checked).sum();
        println!(
            "{scenario:<30} {states:>7} {old_s:>12.2} {reused_s:>10.2} {placed_s:>10.2} {:>7.1}x",
            old_s / placed_s
        );
    }
}

/// SQLite's WAL/FULL workload of `transactions` transactions of 50 rows.
fn wal_full(transactions: u32) -> SqliteSubject {
    let workload = AtomicCommitWorkload {
        transactions,
        rows_per_transaction: 50,
        ..AtomicCommitWorkload::new(JournalMode::Wal, Synchronous::Full)
    };
    SqliteSubject::new(workload, 1)
}

/// Runs `part` of a subject's matrix, timed.
fn timed(subject: &dyn Subject, options: &EngineOptions, part: Part) -> (engine::PartResult, f64) {
    let started = Instant::now();
    let result = engine::run_part(subject, options, part, &mut |_, _| {}).expect("matrix");
    (engine::PartResult::merge(vec![result]), started.elapsed().as_secs_f64())
}

/// The faults a matrix replays (all but the power cut).
fn replayed_faults() -> Vec<Fault> {
    engine::ALL_FAULTS
        .iter()
        .copied()
        .filter(|f| *f != Fault::PowerCut)
        .collect()
}

/// One row of the fourth table: the same matrix three ways
/// ([`EngineOptions::branch_from`], [`EngineOptions::derive_crashes`]),
/// their failures asserted equal.
fn replayed_row(label: &str, run: &dyn Fn(Option<u64>, bool) -> (engine::PartResult, f64)) {
    let (rerun, rerun_secs) = run(None, false);
    let (branched, branch_secs) = run(Some(0), false);
    let (default, default_secs) = run(Some(engine::BRANCH_FROM), true);
    assert_eq!(rerun.failures, branched.failures, "{label}: the same verdicts branched");
    assert_eq!(
        rerun.failures, default.failures,
        "{label}: the same verdicts by default"
    );
    assert!(branched.branched_cases > 0, "{label}: this process could branch");
    println!(
        "{:<30} {:>7} {:>9} {:>10.2} {:>10.2} {:>10.2} {:>7.1}x",
        label,
        rerun.cases,
        rerun.workload_syscalls,
        rerun_secs,
        branch_secs,
        default_secs,
        rerun_secs / default_secs
    );
}

/// SQLite's WAL/FULL workload of `transactions` transactions of 50 rows,
/// the replayed faults.
fn replayed_sqlite(transactions: u32) {
    let subject = wal_full(transactions);
    replayed_row(
        &format!("WAL/FULL {transactions} transactions"),
        &|branch_from, derive_crashes| {
            let options = EngineOptions {
                faults: replayed_faults(),
                branch_from,
                derive_crashes,
                ..EngineOptions::default()
            };
            timed(&subject, &options, Part::WHOLE)
        },
    );
}

/// add-interrupted's setup with a workload of `adds` adds of new
/// documents, the replayed faults, a quarter of the matrix (CI shard 1 of
/// 4).
fn replayed_store(adds: usize) {
    let factory = RefStoreFactory::correct();
    let Some(catalogue::Entry::Store { scenario, .. }) = catalogue::find_entry(&factory, "add-interrupted", 1) else {
        panic!("add-interrupted is a store scenario");
    };
    let scenario = StoreScenario {
        workload: (0..adds)
            .map(|n| {
                Step::Op(Operation::Add {
                    name: format!("g{n}.md"),
                    content: format!("# g{n}\n"),
                })
            })
            .collect(),
        ..scenario
    };
    let subject = StoreSubject {
        factory: &factory,
        scenario: &scenario,
    };
    replayed_row(&format!("{adds} adds (1/4)"), &|branch_from, derive_crashes| {
        let options = EngineOptions {
            faults: replayed_faults(),
            branch_from,
            derive_crashes,
            ..EngineOptions::default()
        };
        let part = Part {
            shard: 1,
            shards: 4,
            job: 0,
            jobs: 1,
        };
        timed(&subject, &options, part)
    });
}

/// One store scenario's matrix (a quarter of it: CI shard 1 of 4), every
/// fault, both ways.
fn store_scenario(name: &str) {
    let factory = RefStoreFactory::correct();
    let entry = catalogue::find_entry(&factory, name, 1).expect("scenario");
    // `dedup: false` checks every state; `rerun` also replays every case
    // that is not a power cut from scratch (the engine as issue 14 found
    // it, but for the hot paths mended since).
    let run = |dedup: bool, rerun: bool| {
        let defaults = EngineOptions::default();
        let options = RunOptions {
            engine: EngineOptions {
                dedup,
                branch_from: if rerun { None } else { defaults.branch_from },
                derive_crashes: !rerun,
                ..defaults
            },
            shard: (1, 4),
            jobs: 1,
            worker: None,
        };
        let started = Instant::now();
        let result = run_entry(&entry, &factory, &options, &|_, _| {}).expect("matrix");
        assert!(result.passed, "{name}: {}", result.verdict);
        (result, started.elapsed().as_secs_f64())
    };
    let (rerun, rerun_secs) = run(false, true);
    let (every, every_secs) = run(false, false);
    let (once, once_secs) = run(true, false);
    assert_eq!(rerun.failures, once.failures, "{name}: the same verdicts");
    assert_eq!(every.failures, once.failures, "{name}: the same verdicts");
    println!(
        "{:<26} {:>8} {:>9} {:>9.1} {:>13.1} {:>11.1} {:>6.1}x {:>6.1}x",
        name,
        once.states_checked,
        once.distinct_states,
        rerun_secs,
        every_secs,
        once_secs,
        every_secs / once_secs,
        rerun_secs / once_secs
    );
}

/// SQLite's WAL/FULL matrix of `transactions` transactions, every
/// persistence model, both ways.
fn growth(transactions: u32) {
    let subject = wal_full(transactions);
    let run = |dedup: bool| {
        let options = EngineOptions {
            faults: vec![Fault::PowerCut],
            dedup,
            ..EngineOptions::default()
        };
        timed(&subject, &options, Part::WHOLE)
    };
    let (_, every_secs) = run(false);
    let (once, once_secs) = run(true);
    println!(
        "{:<26} {:>8} {:>9} {:>13.2} {:>11.2} {:>6.1}x",
        format!("{transactions} transactions"),
        once.states_checked,
        once.distinct_states,
        every_secs,
        once_secs,
        every_secs / once_secs
    );
}

fn measure(journal: JournalMode, sync: Synchronous, label: &str, transactions: u32, rows: u32) {
    {
        let workload = AtomicCommitWorkload {
            transactions,
            rows_per_transaction: rows,
            ..AtomicCommitWorkload::new(journal, sync)
        };
        let model = PersistenceModel::NothingUnsynced;
        let options = EngineOptions {
            models: vec![model],
            faults: vec![Fault::PowerCut],
            ..EngineOptions::default()
        };
        let subject = SqliteSubject::new(workload, 1);
        let started = Instant::now();
        let report = engine::run_part(&subject, &options, Part::WHOLE, &mut |_, _| {}).expect("matrix");
        let snapshot_secs = started.elapsed().as_secs_f64();
        assert!(report.failures.is_empty(), "{label} must pass power cuts");
        let snapshot_rate = report.states_checked as f64 / snapshot_secs;

        let points = report.crash_points;
        let probe = subject.probe(options.seed).expect("probe");
        let step = (points / RERUN_SAMPLE).max(1);
        let started = Instant::now();
        let mut rerun_states = 0u64;
        for syscall in (probe.start..=probe.end).step_by(step as usize) {
            let injection = Injection {
                syscall,
                fault: Fault::PowerCut,
                crash: Some((model, CrashPick::Distinct(0))),
            };
            let outcome = subject.replay(&probe, options.seed, &injection).expect("replay");
            rerun_states += outcome.states_checked;
        }
        let rerun_rate = rerun_states as f64 / started.elapsed().as_secs_f64();
        println!(
            "{:<26} {:>8} {:>10.2} {:>12.0} {:>14.1} {:>7.0}x",
            format!("{label} {transactions} x {rows}"),
            points,
            snapshot_secs,
            snapshot_rate,
            rerun_rate,
            snapshot_rate / rerun_rate
        );
    }
}
