//! Same seed, same report, byte for byte; however the matrix is split
//! (jobs, shards), the merged result is the same.

use std::process::Command;

use tearline::catalogue;
use tearline::engine::{self, EngineOptions, Part, PartResult};
use tearline::run::{self, RunOptions};
use tearline::stores::file_per_doc::FilePerDocFactory;

const BIN: &str = env!("CARGO_BIN_EXE_tearline");

fn run_json(args: &[&str], json: &std::path::Path) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .expect("runs tearline");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(json).expect("the report")
}

#[test]
fn the_same_seed_twice_and_one_job_or_two_give_identical_json() {
    let dir = std::env::temp_dir().join(format!("tearline-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let args = [
        "run",
        "add-interrupted",
        "long-mixed",
        "--store",
        "file-per-doc-nosync",
        "--seed",
        "7",
    ];
    let with = |jobs: &str, file: &str| {
        let mut all = args.to_vec();
        all.extend(["--jobs", jobs]);
        run_json(&all, &dir.join(file))
    };
    let first = with("1", "a.json");
    let second = with("1", "b.json");
    let parallel = with("2", "c.json");
    let three = with("3", "d.json");
    assert!(first.contains("\"committed-durable\""), "the broken store failed");
    assert_eq!(first, second, "same seed, same report");
    assert_eq!(first, parallel, "--jobs 1 and --jobs 2 agree");
    assert_eq!(first, three, "--jobs 1 and --jobs 3 agree");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_union_of_the_shards_is_the_whole() {
    let factory = FilePerDocFactory::without_fsync();
    let Some(catalogue::Entry::Store { scenario, .. }) = catalogue::find_entry(&factory, "long-mixed", 1) else {
        panic!("scenario");
    };
    let options = EngineOptions::default();
    let subject = engine::StoreSubject {
        factory: &factory,
        scenario: &scenario,
    };
    let whole = PartResult::merge(vec![
        engine::run_part(&subject, &options, Part::WHOLE, &mut |_, _| {}).expect("whole"),
    ]);
    for shards in [2, 3] {
        let mut parts = Vec::new();
        for shard in 0..shards {
            for part in Part::split(shard, shards, 2) {
                parts.push(engine::run_part(&subject, &options, part, &mut |_, _| {}).expect("part"));
            }
        }
        let merged = PartResult::merge(parts);
        // Each CI shard checks its own distinct states: more of them in
        // all, and the same verdict for every case.
        assert!(merged.distinct_states >= whole.distinct_states);
        let verdicts = |r: &PartResult| PartResult {
            distinct_states: 0,
            duplicates: Vec::new(),
            ..r.clone()
        };
        assert_eq!(verdicts(&merged), verdicts(&whole), "{shards} shards x 2 jobs");
    }
    assert!(whole.distinct_states < whole.states_checked, "no state repeated");
    assert!(!whole.failures.is_empty());
}

#[test]
fn check_determinism_passes_on_the_tiny_store() {
    let factory = FilePerDocFactory::correct();
    let entry = catalogue::find_entry(&factory, "add-interrupted", 1).expect("scenario");
    let options = RunOptions {
        engine: EngineOptions {
            check_determinism: true,
            // Faults at rest too: the tiny store does not survive them (one
            // copy of each document), but what it does is deterministic.
            ..EngineOptions::default()
        },
        ..RunOptions::default()
    };
    let result = run::run_entry(&entry, &factory, &options, &|_, _| {}).expect("deterministic");
    assert!(result.states_checked > 0);
}
