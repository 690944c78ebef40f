//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through
//! the same functions the cargo-fuzz binaries call, on the stable
//! toolchain: every input that ever found a bug stays fixed.

use std::path::{Path, PathBuf};

use tearline::fuzz::{TARGETS, Target};

fn corpus_dir(target: &Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target.name)
}

fn inputs(target: &Target) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every target keeps a corpus)", dir.display()))
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
