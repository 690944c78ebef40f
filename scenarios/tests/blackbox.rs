//! Black-box certification: the example Python stores
//! (`examples/python-store/`) run as child processes on a FUSE mount served
//! by the simulator and speak `blackbox/PROTOCOL.md`. The corrected store
//! certifies; the origin documents' designs fail on the invariants they
//! break. Where FUSE is missing the tests say so and skip (unless
//! `TEARLINE_REQUIRE_FUSE` is set, as CI does); Python is required.
//!
//! Each case starts Python processes, so these run a sample of a few
//! scenarios' matrices (`tearline certify --exec` runs them all).

use std::path::{Path, PathBuf};
use std::process::Command;

use tearline::certify::{Certificate, CertifyOptions, Verdict, certify, reproduce};
use tearline_blackbox::{ExecOptions, ExecStoreFactory, NONDETERMINISM, fuse_or_skip};
use tearline_model::Invariant;
use tearline_sim_fs::Fault;

/// The interpreter itself (`sys.executable`), not a version manager's shim:
/// every case starts it several times.
fn python() -> Result<String, String> {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("python3 is not installed: {e}"))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && !path.is_empty() {
        Ok(path)
    } else {
        Err("python3 does not run".to_string())
    }
}

/// The command for an example store, or `None` (said on stderr) where the
/// test cannot run here (see `fuse_or_skip`: CI requires FUSE).
fn store_command(test: &str, script: &str, env: &str) -> Option<String> {
    if !fuse_or_skip(test) {
        return None;
    }
    let python = python().unwrap_or_else(|why| panic!("{test}: {why}"));
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python-store")
        .join(script);
    Some(format!("{env}{python} {}", script.display()))
}

fn certify_exec(command: &str, scenarios: &[&str], sample: u64) -> (ExecStoreFactory, Certificate) {
    certify_exec_with(command, scenarios, sample, CertifyOptions::default().faults)
}

fn certify_exec_with(
    command: &str,
    scenarios: &[&str],
    sample: u64,
    faults: Vec<tearline_sim_fs::Fault>,
) -> (ExecStoreFactory, Certificate) {
    let factory = ExecStoreFactory::new(command, ExecOptions::default()).expect("the store says hello");
    let options = CertifyOptions {
        faults,
        sample: (0, sample),
        scenarios: scenarios.iter().map(|s| s.to_string()).collect(),
        nondeterminism: NONDETERMINISM.iter().map(|n| n.to_string()).collect(),
        measure_repeatability: true,
        driver: format!("black box: `{command}`"),
        ..CertifyOptions::default()
    };
    let certificate = certify(&factory, &options).expect("the harness ran");
    (factory, certificate)
}

fn verdict(certificate: &Certificate, invariant: Invariant) -> Verdict {
    certificate
        .invariants
        .iter()
        .find(|l| l.invariant == invariant)
        .map(|l| l.verdict)
        .expect("every invariant is listed")
}

#[test]
fn the_corrected_python_store_is_certified() {
    let Some(command) = store_command("the_corrected_python_store_is_certified", "corrected_store.py", "") else {
        return;
    };
    // The faults the corrected store is built to survive: the origin
    // documents' power cuts, crashes, full disks, cross-device renames and
    // torn writes. Linux's failed fsync (EIO) and the faults at rest find
    // more in it (a latent sector in the live index read for a rebuild's
    // backup copy fails the rebuild while the damaged index keeps serving;
    // an EIO in rebuild-swap-interrupted leaves a recovery that a power cut
    // in the next open undoes): `tearline certify --exec` with every fault
    // shows them.
    let faults = vec![
        Fault::PowerCut,
        Fault::ProcessCrash,
        Fault::ENOSPC,
        Fault::EXDEV,
        Fault::TornWrite,
    ];
    let (_, certificate) = certify_exec_with(
        &command,
        &["add-interrupted", "vector-write-failing", "rebuild-swap-interrupted"],
        SAMPLE,
        faults,
    );
    println!("{}", certificate.to_markdown());
    let unexplained: Vec<String> = certificate
        .failed()
        .iter()
        .flat_map(|line| line.failures.iter().map(move |f| (line.invariant, f)))
        .map(|(invariant, f)| format!("{invariant} in {}: {} ({})", f.scenario, f.evidence, f.repro))
        .collect();
    assert!(unexplained.is_empty(), "{}", unexplained.join("\n"));
    for invariant in [
        Invariant::CompleteDatabase,
        Invariant::CommittedDurable,
        Invariant::AtomicOp,
        Invariant::NoOrphanVectors,
        Invariant::NoWipeWithoutLock,
        Invariant::BackupPresent,
    ] {
        let line = certificate
            .invariants
            .iter()
            .find(|l| l.invariant == invariant)
            .expect("listed");
        assert_eq!(line.verdict, Verdict::Passed, "{invariant}");
    }
    // The repeat starts a new child for every open where the matrix
    // reused one after a `reset`: reuse changed no syscall either.
    assert!(
        certificate.nondeterminism[0].starts_with("measured: the fault-free workload of each")
            && certificate.nondeterminism[0].contains("a new process of the store for every open"),
        "the Python store's syscalls did not repeat: {:?}",
        certificate.nondeterminism[0]
    );
}

#[test]
fn the_origins_designs_fail_black_box_certification() {
    let test = "the_origins_designs_fail_black_box_certification";
    let Some(command) = store_command(test, "origins_store.py", "") else {
        return;
    };
    // origins/1's two-rename swap without a directory fsync, and origins/2's
    // dual write where a failed vector write is "acceptable".
    let (factory, certificate) = certify_exec(&command, &["rebuild-swap-interrupted", "vector-write-failing"], SAMPLE);
    println!("{}", certificate.to_markdown());
    assert!(!certificate.passed);
    assert_eq!(verdict(&certificate, Invariant::CompleteDatabase), Verdict::Failed);
    assert_eq!(verdict(&certificate, Invariant::NoOrphanVectors), Verdict::Failed);
    // A failure's line replays from scratch through a new child.
    let line = &certificate.failed()[0].failures[0].repro;
    let replayed = reproduce(&factory, line).expect("the line replays");
    assert!(!replayed.violations.is_empty(), "{}", replayed.report);
    // The JSON lists every failing case, each with its own line.
    for failure in certificate.failed().iter().flat_map(|l| &l.failures) {
        assert_eq!(failure.failing_cases.len() as u64, failure.cases, "{failure:?}");
        let lines: std::collections::BTreeSet<&str> = failure.failing_cases.iter().map(|c| c.repro.as_str()).collect();
        assert_eq!(lines.len(), failure.failing_cases.len(), "one line per case");
        assert!(lines.contains(failure.repro.as_str()), "the example is one of them");
    }
    // `certify --repro` shows what each child wrote to stderr: the origins
    // store's observation says so when it finds orphan or missing vectors.
    let orphans = certificate
        .invariants
        .iter()
        .find(|l| l.invariant == Invariant::NoOrphanVectors)
        .and_then(|l| l.failures.first())
        .expect("no-orphan-vectors failed");
    let line = orphans.repro.split(" --store").next().expect("a line");
    let output = Command::new(env!("CARGO_BIN_EXE_tearline"))
        .args(["certify", "--exec", &command, "--repro", line])
        .output()
        .expect("tearline runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "the line breaks again:\n{stdout}");
    let children = stdout
        .split("the store's children")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        children.lines().any(|l| l.contains("asked open, observe")),
        "each child with its requests:\n{children}"
    );
    assert!(
        children
            .lines()
            .any(|l| l.starts_with("    | observe: ") && l.contains("vectors")),
        "the observing child's stderr:\n{children}"
    );
}

#[test]
fn reused_children_give_the_certificate_a_new_child_per_open_gives() {
    let test = "reused_children_give_the_certificate_a_new_child_per_open_gives";
    let Some(command) = store_command(test, "origins_store.py", "") else {
        return;
    };
    // A store that fails at many cases, so the verdicts compared are not
    // all "passed".
    let reusing = ExecStoreFactory::new(&command, ExecOptions::default()).expect("the store says hello");
    let fresh = reusing.fresh_children();
    let options = CertifyOptions {
        sample: (0, 80),
        scenarios: vec!["rebuild-swap-interrupted".to_string(), "add-interrupted".to_string()],
        ..CertifyOptions::default()
    };
    let started = std::time::Instant::now();
    let reused = certify(&reusing, &options).expect("the harness ran");
    let reused_took = started.elapsed();
    let started = std::time::Instant::now();
    let one_each = certify(&fresh, &options).expect("the harness ran");
    let one_each_took = started.elapsed();
    assert!(!reused.passed, "{}", reused.to_markdown());
    assert_eq!(reused.to_json(), one_each.to_json(), "the same certificate both ways");
    println!(
        "measured: {:.1} s reusing children, {:.1} s with a new child per open ({:.1}x)",
        reused_took.as_secs_f64(),
        one_each_took.as_secs_f64(),
        one_each_took.as_secs_f64() / reused_took.as_secs_f64()
    );
}

/// A certificate's JSON without its counts of distinct states (checking
/// a crash from its snapshot also finds where two crashes leave the same
/// machine, so the way that replays them counts more).
fn without_distinct_counts(certificate: &Certificate) -> serde_json::Value {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                fields.remove("distinct_states");
                fields.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut json: serde_json::Value = serde_json::from_str(&certificate.to_json()).expect("the certificate is JSON");
    strip(&mut json);
    json
}

#[test]
fn crashes_checked_from_snapshots_give_the_certificate_replays_give() {
    let test = "crashes_checked_from_snapshots_give_the_certificate_replays_give";
    let Some(command) = store_command(test, "origins_store.py", "") else {
        return;
    };
    // A store that fails at many cases, crashes among them.
    let factory = ExecStoreFactory::new(&command, ExecOptions::default()).expect("the store says hello");
    let options = CertifyOptions {
        sample: (0, 10),
        faults: vec![Fault::ProcessCrash, Fault::PowerCut],
        scenarios: vec!["rebuild-swap-interrupted".to_string(), "add-interrupted".to_string()],
        ..CertifyOptions::default()
    };
    let derived = certify(&factory, &options).expect("the harness ran");
    let replayed = certify(
        &factory,
        &CertifyOptions {
            rerun_each_case: true,
            ..options
        },
    )
    .expect("the harness ran");
    assert!(!derived.passed, "{}", derived.to_markdown());
    let crash_failures = derived.to_json().matches(":crash").count();
    assert!(crash_failures > 0, "crash cases fail: {}", derived.to_markdown());
    let distinct = |c: &Certificate| c.scenarios.iter().map(|s| s.distinct_states).sum::<u64>();
    assert!(
        distinct(&derived) < distinct(&replayed),
        "crashes that leave the same machine are checked once: {} and {} distinct states",
        distinct(&derived),
        distinct(&replayed)
    );
    assert_eq!(
        without_distinct_counts(&derived),
        without_distinct_counts(&replayed),
        "the same certificate both ways"
    );
}

#[test]
fn the_origins_drop_and_reindex_rebuild_fails_atomic_op() {
    let test = "the_origins_drop_and_reindex_rebuild_fails_atomic_op";
    // origins/1's drop-and-reindex rebuild: a crash midway leaves part of the index.
    let Some(command) = store_command(test, "origins_store.py", "ORIGINS_REBUILD=drop ") else {
        return;
    };
    let (_, certificate) = certify_exec(&command, &["rebuild-crash-midway"], SAMPLE);
    println!("{}", certificate.to_markdown());
    assert_eq!(verdict(&certificate, Invariant::AtomicOp), Verdict::Failed);
    assert_eq!(verdict(&certificate, Invariant::CommittedDurable), Verdict::Failed);
}

/// A store over real ChromaDB (`examples/chroma-store/`), built to origins/2's
/// recommended two-phase commit, certified on the mount. Runs where
/// `TEARLINE_CHROMA_PYTHON` names a Python with `chromadb` installed (`.ci/run`
/// makes one); says SKIPPED otherwise.
#[test]
fn a_store_over_real_chromadb_leaves_the_orphans_origins_2_predicts_and_runs_cleanly_on_the_mount() {
    let test = "a_store_over_real_chromadb_leaves_the_orphans_origins_2_predicts_and_runs_cleanly_on_the_mount";
    let Ok(python) = std::env::var("TEARLINE_CHROMA_PYTHON") else {
        eprintln!("SKIPPED {test}: TEARLINE_CHROMA_PYTHON is not set (a Python with chromadb: see .ci/run)");
        return;
    };
    if !fuse_or_skip(test) {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chroma-store/chroma_store.py");
    let command = format!("{python} {}", script.display());
    let (factory, certificate) =
        certify_exec_with(&command, &["add-interrupted"], CHROMA_SAMPLE, vec![Fault::PowerCut]);
    println!("{}", certificate.to_markdown());
    // The design's flaw: the tracking row is in the same uncommitted
    // transaction as what it tracks, so a power cut after ChromaDB's write
    // rolls all of it back and leaves a vector nothing names.
    assert_eq!(verdict(&certificate, Invariant::NoOrphanVectors), Verdict::Failed);
    let orphans = &certificate
        .invariants
        .iter()
        .find(|l| l.invariant == Invariant::NoOrphanVectors)
        .expect("listed")
        .failures[0];
    assert!(
        orphans
            .failing_cases
            .iter()
            .any(|c| c.evidence.contains("vectors no entry refers to")),
        "{orphans:?}"
    );
    // ChromaDB's own threads open its SQLite connections in a varying
    // order, so its setup makes a few syscalls more or fewer from run to
    // run (the certificate says so) and a line can miss its syscall on
    // replay (it has drifted by 50 to 65 syscalls, enough to move a line
    // into the setup). Some failing line must break it again; they are tried
    // in turn until one does.
    let mut tried = Vec::new();
    let reproduced = orphans.failing_cases.iter().any(|case| {
        let found = reproduce(&factory, &case.repro)
            .map(|r| r.violations.iter().any(|v| v.invariant == Invariant::NoOrphanVectors));
        tried.push(format!("{}: {found:?}", case.repro));
        found.unwrap_or(false)
    });
    assert!(
        reproduced,
        "no line broke no-orphan-vectors again:\n{}",
        tried.join("\n")
    );
    assert!(
        certificate.nondeterminism.iter().any(|n| n.starts_with("measured: ")),
        "the certificate says whether the workload repeated"
    );
    // The mount is faithful enough for a real vector database: ChromaDB
    // (its own SQLite, its threads, its locks) never breaks the protocol,
    // hangs or fails outside a fault, and what the store does not get
    // wrong passes.
    for invariant in [
        Invariant::CleanError,
        Invariant::NoWipeWithoutLock,
        Invariant::NoLeakedTempFiles,
        Invariant::RecoveryIdempotent,
    ] {
        assert_eq!(verdict(&certificate, invariant), Verdict::Passed, "{invariant}");
    }
}

/// One case in this many of the ChromaDB store's matrix: a ChromaDB child
/// costs about 2 s (importing chromadb), so this is about 40 states.
const CHROMA_SAMPLE: u64 = 400;

/// One case in this many of each matrix: about a minute a test on 2 cores
/// (a tenth took about eight).
const SAMPLE: u64 = 40;

/// A store of one file per document that never answers an `add` of
/// `d2.md` (the third document of some scenarios' setups), saying so on
/// stderr first.
const STUCK_STORE: &str = r#"
import hashlib, json, os, sys, time
def say(answer):
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
caps = ["remove", "import", "full_rebuild", "incremental_rebuild", "reconcile", "vectors",
        "schema_version", "exclusive_lock", "source_files"]
say({"hello": "tearline/1", "name": "stuck", "capabilities": {c: False for c in caps},
     "source_dir": None, "lock_file": None, "protected": []})
for line in sys.stdin:
    request = json.loads(line)
    kind = request["request"]
    try:
        if kind == "init":
            os.mkdir("docs")
            fsync_dir(".")
            say({"ok": True})
        elif kind == "apply":
            op = request["operation"]
            if op["name"] == "d2.md":
                sys.stderr.write("stuck adding d2.md\n")
                sys.stderr.flush()
                time.sleep(3600)
            fd = os.open("docs/tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, op["content"].encode())
            os.fsync(fd)
            os.close(fd)
            os.rename("docs/tmp", "docs/" + op["name"])
            fsync_dir("docs")
            say({"ok": True})
        elif kind == "observe":
            names = sorted(n for n in os.listdir("docs") if n != "tmp")
            indexed = {n: hashlib.sha256(open("docs/" + n, "rb").read()).hexdigest() for n in names}
            say({"ok": True, "observation": {"indexed": indexed, "sources": {}, "integrity_ok": True,
                 "integrity_detail": "", "orphan_vectors": 0, "missing_vectors": 0, "pending_work": 0,
                 "leftover_files": [], "backups": 0, "schema": None}})
        elif kind in ("remote-fault", "stamp-schema"):
            say({"ok": True, "supported": False})
        else:
            say({"ok": True})
            if kind == "close":
                break
    except OSError as e:
        say({"ok": False, "error": str(e)})
"#;

#[test]
fn a_scenario_whose_fault_free_run_hangs_is_a_finding_and_the_certificate_is_written() {
    let test = "a_scenario_whose_fault_free_run_hangs_is_a_finding_and_the_certificate_is_written";
    if !fuse_or_skip(test) {
        return;
    }
    let python = python().unwrap_or_else(|why| panic!("{test}: {why}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("stuck.py");
    std::fs::write(&script, STUCK_STORE).expect("write the store");
    let command = format!("PYTHONSAFEPATH=1 exec {python} {}", script.display());
    let factory = ExecStoreFactory::new(
        &command,
        ExecOptions::with_timeout(std::time::Duration::from_millis(1500)),
    )
    .expect("hello");
    let options = CertifyOptions {
        sample: (0, 40),
        // add-interrupted adds d0 and d1 in its setup; sqlite-write-failing
        // adds d2 too, and hangs there.
        scenarios: vec!["add-interrupted".to_string(), "sqlite-write-failing".to_string()],
        ..CertifyOptions::default()
    };
    let certificate = certify(&factory, &options).expect("a certificate, not an abort");
    println!("{}", certificate.to_markdown());
    assert!(!certificate.passed);
    let clean_error = certificate
        .invariants
        .iter()
        .find(|l| l.invariant == Invariant::CleanError)
        .expect("listed");
    assert_eq!(clean_error.verdict, Verdict::Failed);
    let finding = clean_error
        .failures
        .iter()
        .find(|f| f.scenario == "sqlite-write-failing")
        .expect("the hanging scenario's finding");
    for said in ["setup step", "add d2.md", "within 1.5 s", "stuck adding d2.md"] {
        assert!(finding.evidence.contains(said), "{said:?} not in {}", finding.evidence);
    }
    let ran = certificate
        .scenarios
        .iter()
        .find(|s| s.name == "add-interrupted")
        .expect("listed");
    assert!(ran.states_checked > 0, "the other scenario ran: {ran:?}");
    assert!(!ran.broke.contains(&Invariant::CleanError), "{ran:?}");
}
