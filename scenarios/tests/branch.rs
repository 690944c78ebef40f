//! Continue, don't re-run (`tearline::engine::branch`): every case that is
//! not a power cut, branched off one run of the workload, or (a crash of
//! the workload's process) checked from the snapshot before its syscall,
//! finds exactly what replaying the workload from scratch for it finds,
//! on every scenario of the catalogue and on known-bad stores that fail
//! at many cases; and `--check-determinism` compares each branch's whole
//! trace with its replay's.
//!
//! Branching forks, which the engine does only in a single-threaded
//! process, so these tests run `tearline run` (its worker processes are
//! single-threaded) rather than the engine on the test harness's threads.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tearline");

/// The faults a matrix replays (every fault but a power cut, which is
/// derived from the probe's snapshots either way).
const REPLAYED: &str = "crash,ENOSPC,EIO,EXDEV,torn-write,misdirected-write,latent-sector,bit-rot,bit-flip,vanish,\
                        clock-back-691200000ms,clock-forward-691200000ms";

/// `tearline run` with `args`: its JSON report (which holds no time) and
/// its exit code.
fn run(args: &[&str]) -> (Value, Option<i32>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let output = Command::new(BIN)
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("tearline runs");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no report from {args:?} ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    (report, output.status.code())
}

/// The failures of every scenario in a report.
fn failures(report: &Value) -> usize {
    report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| s["failures"].as_array().map_or(0, Vec::len))
        .sum()
}

/// Cases branched and crashes derived over every scenario of a report,
/// and the report without those counts (the one thing the ways report
/// differently).
fn branched_cases(mut report: Value) -> ((u64, u64), Value) {
    let (mut branched, mut derived) = (0, 0);
    for scenario in report["scenarios"].as_array_mut().expect("scenarios") {
        let fields = scenario.as_object_mut().expect("a scenario");
        let mut take = |field: &str| fields.remove(field).and_then(|n| n.as_u64()).expect(field);
        branched += take("branched_cases");
        derived += take("derived_crashes");
    }
    ((branched, derived), report)
}

/// States checked over every scenario of a report.
fn states(report: &Value) -> u64 {
    report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| s["states_checked"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn every_scenario_finds_the_same_branched_as_replayed() {
    // A sample of every scenario's replayed cases (a CI shard), in one job;
    // every state checked, so a derived crash is compared with its replay
    // even where it shares an earlier crash's state.
    let common = [
        "run",
        "--shard",
        "7/60",
        "--jobs",
        "1",
        "--every-state",
        "--faults",
        REPLAYED,
    ];
    let (branched, branched_code) = run(&[&common[..], &["--branch-from", "0"]].concat());
    let (replayed, replayed_code) = run(&[&common[..], &["--rerun-each-case"]].concat());
    assert!(
        states(&replayed) > 1_000,
        "the sample checks states: {}",
        states(&replayed)
    );
    let ((forks, derived), branched) = branched_cases(branched);
    let (none, replayed) = branched_cases(replayed);
    assert!(
        forks > 300 && derived > 50 && none == (0, 0),
        "{forks} cases branched and {derived} crashes derived, {none:?} with --rerun-each-case"
    );
    assert_eq!(branched_code, replayed_code);
    assert_eq!(branched, replayed, "the same report, case by case");
}

#[test]
fn a_known_bad_store_fails_the_same_cases_branched_as_replayed() {
    for (store, scenario, faults) in [
        // Caught by a bit flip at an import's one read of a user's file.
        ("refstore/reads-input-once", "import-interrupted", "bit-flip"),
        // Caught by faults before an outage of the vector store.
        (
            "refstore/recovery-needs-vectors",
            "vector-store-down-after-fault",
            "crash,EIO",
        ),
    ] {
        let common = [
            "run",
            scenario,
            "--store",
            store,
            "--faults",
            faults,
            "--jobs",
            "2",
            "--shard",
            "0/2",
            "--every-state",
        ];
        let (branched, _) = run(&[&common[..], &["--branch-from", "0"]].concat());
        let (replayed, code) = run(&[&common[..], &["--rerun-each-case"]].concat());
        let ((forks, derived), branched) = branched_cases(branched);
        let (_, replayed) = branched_cases(replayed);
        let crashes = faults.contains("crash");
        assert!(
            forks > 0 && (derived > 0) == crashes,
            "{store}: {forks} cases branched, {derived} crashes derived"
        );
        assert_eq!(code, Some(1), "{store} fails {scenario}");
        assert!(failures(&replayed) > 0, "{store}: failures listed");
        assert_eq!(branched, replayed, "{store}: the same failing cases and evidence");
    }
}

#[test]
fn check_determinism_compares_every_branched_trace_with_its_replay() {
    // --check-determinism runs each case twice: the first run is the
    // branch, the second a replay from scratch, and their whole traces
    // must hash the same (a derived crash is derived again).
    let (report, code) = run(&[
        "run",
        "add-interrupted",
        "--faults",
        "crash,EIO,torn-write,bit-flip",
        "--branch-from",
        "0",
        "--check-determinism",
        "--shard",
        "1/3",
    ]);
    assert_eq!(code, Some(0), "{report}");
    let ((forks, derived), report) = branched_cases(report);
    assert!(
        forks > 100 && derived > 30 && states(&report) > 100,
        "{forks} cases branched, {derived} crashes derived"
    );
}
