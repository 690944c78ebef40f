//! The JSON documents the harness writes validate against the schemas
//! committed in `schemas/` (the run report and the certificate), and the
//! schemas have teeth: a document with a field missing or misspelled fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tearline");

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn validator(name: &str) -> jsonschema::Validator {
    let path = schema_dir().join(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

/// The schema's complaints about `document` (empty: it validates).
fn complaints(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn written(args: &[&str], file: &Path) -> Value {
    let output = Command::new(BIN).args(args).output().expect("tearline runs");
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(file).expect("the report")).expect("JSON")
}

/// A document must validate, and stop validating with a field removed or
/// one added.
fn validates_with_teeth(validator: &jsonschema::Validator, document: &Value, what: &str) {
    let found = complaints(validator, document);
    assert!(found.is_empty(), "{what} does not match its schema: {found:#?}");
    let mut missing = document.clone();
    missing.as_object_mut().expect("an object").remove("seed");
    assert!(!validator.is_valid(&missing), "{what} without its seed still validates");
    let mut extra = document.clone();
    extra
        .as_object_mut()
        .expect("an object")
        .insert("seeed".to_string(), 1.into());
    assert!(
        !validator.is_valid(&extra),
        "{what} with an unknown field still validates"
    );
}

#[test]
fn the_run_report_and_the_certificate_match_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("run.json");
    let path = report.to_str().unwrap();
    let failing = written(
        &[
            "run",
            "add-interrupted",
            "--store",
            "file-per-doc-nosync",
            "--faults",
            "power-cut,EIO",
            "--json",
            path,
        ],
        &report,
    );
    assert!(
        failing["scenarios"][0]["failures"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );
    let run = validator("run-report.schema.json");
    validates_with_teeth(&run, &failing, "a failing run's report");
    let passing = written(
        &["run", "reconcile-audit", "--faults", "crash", "--json", path],
        &report,
    );
    validates_with_teeth(&run, &passing, "a passing run's report");

    let certificate = dir.path().join("cert.json");
    let failing = written(
        &[
            "certify",
            "--store",
            "file-per-doc-nosync",
            "--scenario",
            "add-interrupted",
            "--report",
            certificate.to_str().unwrap(),
        ],
        &certificate,
    );
    assert_eq!(failing["passed"], false);
    validates_with_teeth(&validator("certificate.schema.json"), &failing, "a failing certificate");
}

#[test]
fn every_schema_is_a_valid_schema_with_a_version() {
    let mut names = Vec::new();
    for dir in [schema_dir(), schema_dir().join("refstore")] {
        for entry in std::fs::read_dir(&dir).expect("schemas/") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    schema["required"]
                        .as_array()
                        .is_some_and(|r| r.contains(&"schema_version".into())),
                    "{} does not require schema_version",
                    path.display()
                );
                names.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    assert_eq!(
        names.len(),
        15,
        "the run report, the certificate, and refstore's 13: {names:?}"
    );
}
