//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) and every
//! input that ever found a bug (`fuzz/regressions/<target>/`) through the
//! same functions the cargo-fuzz binaries call, on the stable toolchain.

use std::path::{Path, PathBuf};

use tearline::fuzz::{TARGETS, Target};

/// `fuzz/<kind>/<target>/`: `corpus` (the fuzzer's minimised corpus, which
/// every target keeps) or `regressions` (every input that ever found a
/// bug, kept apart so a corpus minimisation cannot drop one).
fn dir(kind: &str, target: &Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target.name)
}

fn inputs(target: &Target) -> Vec<PathBuf> {
    let corpus = dir("corpus", target);
    assert!(corpus.is_dir(), "{}: every target keeps a corpus", corpus.display());
    let mut files: Vec<PathBuf> = [corpus, dir("regressions", target)]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(name: &str) {
    let target = tearline::fuzz::target(name).expect("a registered target");
    let files = inputs(&target);
    assert!(!files.is_empty(), "the corpus of {name} is empty");
    for file in &files {
        let data = std::fs::read(file).expect("reading a corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| (target.run)(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: {} fails: {why}", file.display());
        }
    }
}

#[test]
fn every_target_has_a_test_here() {
    let tested = [
        "journal_record",
        "vector_segments",
        "store_at_rest",
        "repro_line",
        "blackbox_answer",
        "blackbox_child",
        "operations",
    ];
    let registered: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(registered, tested);
}

#[test]
fn journal_record_corpus() {
    replay("journal_record");
}

#[test]
fn vector_segments_corpus() {
    replay("vector_segments");
}

#[test]
fn store_at_rest_corpus() {
    replay("store_at_rest");
}

#[test]
fn repro_line_corpus() {
    replay("repro_line");
}

#[test]
fn blackbox_answer_corpus() {
    replay("blackbox_answer");
}

#[test]
fn blackbox_child_corpus() {
    replay("blackbox_child");
}

#[test]
fn operations_corpus() {
    replay("operations");
}
