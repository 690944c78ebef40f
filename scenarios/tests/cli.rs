//! The `tearline` binary: list, explain, run, repro, exit codes.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tearline");

fn tearline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs tearline")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn list_names_scenarios_and_invariants() {
    let output = tearline(&["list", "--store", "file-per-doc"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for name in [
        "sqlite-delete-full",
        "add-interrupted",
        "rebuild-crash-midway",
        "committed-durable",
        "reader-consistent",
        "failed-means-not-applied",
        "stays-serviceable",
        "device-stays-full",
        "hostile-sources",
        "torn-write",
        "lock file removed",
        "no-silent-corruption",
        "rebuildable-from-source",
        "failed-open-changes-nothing",
        "index-page-damaged",
        "pointer-to-missing-generation",
        "misdirected-write",
        "latent-sector",
        "bit-rot",
        "clock-forward-691200000ms",
        "zeroed",
        "damage at rest",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("not applicable to file-per-doc"), "{text}");
}

#[test]
fn explain_an_invariant() {
    let output = tearline(&["explain", "committed-durable"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("Every operation that returned Ok"));
    assert_eq!(tearline(&["explain", "no-such-thing"]).status.code(), Some(2));
    // The definition, what a violation usually means and its fix, an
    // example of evidence, and the scenarios that check it.
    let text = stdout(&tearline(&["explain", "stays-serviceable"]));
    for part in [
        "What a violation usually means",
        "An example of its evidence",
        "Checked after every fault by 4 scenarios",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert!(
        text.contains("device-stays-full")
            && text.contains("vector-store-down-after-fault")
            && !text.contains("reconcile-audit"),
        "{text}"
    );
}

/// Arguments that cannot be right are refused with exit 2 and a reason,
/// before any work (never silently corrected, never "every invariant held").
#[test]
fn bad_arguments_are_refused_saying_why() {
    for (args, says) in [
        (&["run", "--jobs", "0"][..], "0 is not in 1..=256"),
        (&["repro", "sqlite-delete-full:0:99999:EIO"][..], "outside the workload"),
        (
            &["repro", "sqlite-delete-full:0:37:EXDEV"][..],
            "does not apply to syscall 37",
        ),
        (
            &["repro", "sqlite-delete-full:0:37:power-cut"][..],
            "needs :<model>:<pick>",
        ),
        (&["repro", "no-such-scenario:0:37:EIO"][..], "no scenario named"),
        (
            &["repro", "add-interrupted:0:40:EIO --store no-such-store"][..],
            "no store named",
        ),
        (&["explain", "no-such-thing"][..], "no invariant named"),
        // Reuse is a black-box store's: without --exec it means nothing.
        (&["certify", "--no-reuse"][..], "--exec <CMD>"),
    ] {
        let output = tearline(args);
        let errors = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {errors}");
        assert!(errors.contains(says), "{args:?}: {errors}");
    }
    // Names of invariants are case-insensitive.
    let output = tearline(&["explain", "Committed-Durable"]);
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn run_passes_on_the_correct_store_and_fails_on_the_broken_one() {
    let output = tearline(&["run", "add-interrupted", "--jobs", "2", "--seed", "3"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.starts_with("SEED=3 "), "the seed is printed first: {text}");
    assert!(text.contains("states/s"), "{text}");
    let broken = tearline(&[
        "run",
        "add-interrupted",
        "--store",
        "file-per-doc-nosync",
        "--jobs",
        "1",
    ]);
    assert_eq!(broken.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&broken.stderr).into_owned();
    let line = errors
        .lines()
        .find_map(|l| l.trim().strip_prefix("reproduce: tearline repro "))
        .expect("a repro line")
        .to_string();
    let mut args: Vec<&str> = vec!["repro"];
    args.extend(line.split_whitespace());
    let repro = tearline(&args);
    let text = stdout(&repro);
    assert_eq!(repro.status.code(), Some(1), "{text}");
    assert!(text.contains(">> #"), "the trace marks the fault: {text}");
    assert!(text.contains("committed-durable broke"), "{text}");
    // --context N shows N syscalls on either side of the fault.
    let shown = |text: &str| text.lines().filter(|l| l.starts_with("   #")).count();
    args.extend(["--context", "2"]);
    let narrow = stdout(&tearline(&args));
    assert!(narrow.contains(">> #"), "{narrow}");
    assert!(shown(&narrow) < shown(&text), "{narrow}\n---\n{text}");
    assert!(shown(&narrow) <= 2 + 2 + 2, "{narrow}");
}

#[test]
fn bad_arguments_are_harness_errors() {
    assert_eq!(tearline(&["run", "no-such-scenario"]).status.code(), Some(2));
    assert_eq!(
        tearline(&["run", "add-interrupted", "--faults", "bogus"]).status.code(),
        Some(2)
    );
    assert_eq!(
        tearline(&["run", "add-interrupted", "--shard", "2/2"]).status.code(),
        Some(2)
    );
    assert_eq!(tearline(&["repro", "nonsense"]).status.code(), Some(2));
}

#[test]
fn a_report_that_cannot_be_written_is_refused_before_the_run() {
    let missing = std::env::temp_dir().join("tearline-no-such-dir").join("report.json");
    for flag in ["--json", "--junit", "--html"] {
        let output = tearline(&["run", "long-mixed", flag, missing.to_str().expect("utf-8")]);
        let errors = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{errors}");
        assert!(errors.contains("cannot write a report to"), "{errors}");
        assert!(
            !stdout(&output).contains("states/s"),
            "refused before the matrix ran: {}",
            stdout(&output)
        );
    }
}

#[test]
fn off_a_terminal_run_prints_a_line_per_scenario_as_it_ends() {
    let output = tearline(&["run", "reconcile-audit", "--jobs", "1"]);
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{errors}");
    let line = errors
        .lines()
        .find(|l| l.starts_with("[1/1] reconcile-audit: "))
        .unwrap_or_else(|| panic!("no progress line: {errors}"));
    assert!(line.ends_with(": pass") && line.contains(" states, "), "{line}");
    // A heartbeat as often as asked: a line before the scenario's end.
    let output = tearline(&["run", "reconcile-audit", "--jobs", "1", "--heartbeat", "0"]);
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    let beats: Vec<&str> = errors.lines().filter(|l| l.contains(" cases, ")).collect();
    assert!(
        beats
            .first()
            .is_some_and(|l| l.starts_with("[1/1] reconcile-audit: ") && l.contains(" s so far")),
        "{errors}"
    );
    // Once cases are done, each beat estimates the time left.
    assert!(
        beats.len() > 1 && beats.iter().skip(1).all(|l| l.ends_with(" s left in it")),
        "{errors}"
    );
}

/// The faults of a syscall, none at rest: the tiny store keeps one copy of
/// each document and cannot survive a sector that goes bad under it.
const SYSCALL_FAULTS: &str = "power-cut,crash,ENOSPC,EIO,EXDEV,torn-write";

#[test]
fn a_shard_runs_part_of_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let states = |shard: &str| -> u64 {
        let json = dir.path().join(format!("{}.json", shard.replace('/', "-")));
        let args = [
            "run",
            "add-interrupted",
            "--store",
            "file-per-doc",
            "--faults",
            SYSCALL_FAULTS,
            "--jobs",
            "1",
            "--shard",
            shard,
        ];
        let output = tearline(&[&args[..], &["--json", json.to_str().unwrap()]].concat());
        assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        report["scenarios"][0]["states_checked"]
            .as_u64()
            .expect("states_checked")
    };
    let whole = states("0/1");
    let parts: Vec<u64> = ["0/3", "1/3", "2/3"].iter().map(|s| states(s)).collect();
    assert!(parts.iter().all(|&p| p > 0 && p < whole), "{parts:?} of {whole}");
    assert_eq!(
        parts.iter().sum::<u64>(),
        whole,
        "the three shards together are the whole matrix"
    );
}

#[test]
fn certify_writes_certificates_and_exits_by_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("cert.md");
    let json = dir.path().join("cert.json");
    let output = tearline(&[
        "certify",
        "--store",
        "file-per-doc",
        "--faults",
        SYSCALL_FAULTS,
        "--report",
        md.to_str().unwrap(),
        "--report",
        json.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(markdown.contains("**PASSED**") && markdown.contains("| committed-durable | passed |"));
    assert!(
        markdown.contains("- no-orphan-vectors: needs a vector store"),
        "{markdown}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(parsed["passed"], true);
    assert_eq!(
        parsed["invariants"].as_array().unwrap().len(),
        tearline_model::Invariant::ALL.len()
    );

    let output = tearline(&[
        "certify",
        "--store",
        "file-per-doc-nosync",
        "--report",
        md.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(
        markdown.contains("**FAILED**") && markdown.contains("### committed-durable"),
        "{markdown}"
    );
    let line = markdown
        .lines()
        .find_map(|l| l.strip_prefix("  - reproduce: `")?.strip_suffix('`'))
        .expect("a repro line");
    let output = tearline(&["certify", "--store", "file-per-doc-nosync", "--repro", line]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("broke"));

    let output = tearline(&["certify", "--store", "file-per-doc", "--report", "cert.txt"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn certify_over_worker_processes_writes_the_same_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = |jobs: &str| {
        let json = dir.path().join(format!("cert-{jobs}.json"));
        let output = tearline(&[
            "certify",
            "--store",
            "file-per-doc-nosync",
            "--faults",
            SYSCALL_FAULTS,
            "--jobs",
            jobs,
            "--report",
            json.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(1), "it fails: {}", stdout(&output));
        std::fs::read_to_string(&json).unwrap()
    };
    let one = certificate("1");
    assert!(one.contains("\"failing_cases\""), "{one}");
    assert_eq!(certificate("3"), one, "three workers, the same certificate");
}

#[test]
fn certify_plan_gives_the_figures_the_run_finds_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cert.json");
    let common = [
        "certify",
        "--store",
        "file-per-doc",
        "--faults",
        SYSCALL_FAULTS,
        "--sample",
        "1/3",
        "--scenario",
        "add-interrupted",
    ];
    let plan = tearline(&[&common[..], &["--plan"]].concat());
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    let text = stdout(&plan);
    let row: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("| add-interrupted | "))
        .expect("a row for the scenario")
        .split(" | ")
        .take(3)
        .map(|n| n.trim().parse().expect("a number"))
        .collect();
    let (syscalls, cases, crash_points) = (row[0], row[1], row[2]);
    assert!(cases > 0, "{text}");
    let run = tearline(&[&common[..], &["--report", json.to_str().unwrap()]].concat());
    assert_eq!(run.status.code(), Some(0), "{}", stdout(&run));
    let parsed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scenario = &parsed["scenarios"][0];
    assert_eq!(scenario["name"], "add-interrupted");
    assert_eq!(scenario["workload_syscalls"], syscalls, "{text}");
    assert_eq!(scenario["crash_points"], crash_points, "{text}");
}

#[test]
fn run_and_certify_write_the_crash_map() {
    let dir = tempfile::tempdir().unwrap();
    let run_map = dir.path().join("run.html");
    let output = tearline(&[
        "run",
        "add-interrupted",
        "--store",
        "file-per-doc-nosync",
        "--faults",
        "power-cut",
        "--html",
        run_map.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let cert_map = dir.path().join("cert.html");
    let output = tearline(&[
        "certify",
        "--store",
        "file-per-doc-nosync",
        "--scenario",
        "add-interrupted",
        "--report",
        cert_map.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    for page in [run_map, cert_map] {
        let html = std::fs::read_to_string(&page).expect("the map is written");
        assert!(html.starts_with("<!DOCTYPE html>"), "{}", page.display());
        let data = tearline::map::page_data(&html).expect("its data");
        let data: serde_json::Value = serde_json::from_str(data).expect("JSON data");
        let map = &data["maps"][0];
        assert_eq!(map["name"], "add-interrupted", "{}", page.display());
        assert!(
            map["failing"].as_array().is_some_and(|cells| !cells.is_empty()),
            "the store without fsync fails on its map: {}",
            page.display()
        );
    }
}
