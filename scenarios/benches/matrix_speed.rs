//! The crash matrix two ways, measured in one run: deriving each power-cut
//! state from a snapshot taken during one probe run, versus re-running the
//! workload from the start to each crash point. Same workload, same
//! persistence model, same checks; prints states checked per second and the
//! ratio.
//!
//! Run with `cargo bench -p tearline --bench matrix_speed`.

use std::time::Instant;

use tearline::case::{CrashPick, Injection};
use tearline::engine::{
    self, AtomicCommitWorkload, EngineOptions, JournalMode, Part, SqliteSubject, Subject, Synchronous,
};
use tearline_sim_fs::{Fault, PersistenceModel};

/// How many crash points the re-run way samples (it is too slow to do them all).
const RERUN_SAMPLE: u64 = 150;

fn main() {
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
