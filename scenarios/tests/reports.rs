//! The JSON and JUnit reports, snapshot-tested (wall times redacted).

use tearline::catalogue;
use tearline::engine::{self, EngineOptions};
use tearline::report::{REPORT_SCHEMA_VERSION, RunReport};
use tearline::run::{self, RunOptions};
use tearline::stores::file_per_doc::FilePerDocFactory;
use tearline_model::StoreFactory;

fn report(factory: &dyn StoreFactory, names: &[&str]) -> RunReport {
    // The faults of a syscall: the tiny store keeps one copy of each
    // document and does not survive faults at rest.
    let options = RunOptions {
        engine: EngineOptions {
            faults: engine::ALL_FAULTS.into_iter().filter(|f| !f.is_at_rest()).collect(),
            ..EngineOptions::default()
        },
        ..RunOptions::default()
    };
    let scenarios = names
        .iter()
        .map(|name| {
            let entry = catalogue::find_entry(factory, name, 1).expect("scenario");
            run::run_entry(&entry, factory, &options, &|_, _| {}).expect("runs")
        })
        .collect();
    RunReport {
        schema_version: REPORT_SCHEMA_VERSION,
        store: factory.name().to_string(),
        seed: options.engine.seed,
        shard: "0/1".to_string(),
        faults: options.engine.faults.iter().map(|f| f.to_string()).collect(),
        scenarios,
    }
}

/// Replaces every `time="…"` figure.
fn redact_times(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(at) = rest.find("time=\"") {
        out.push_str(&rest[..at + 6]);
        rest = &rest[at + 6..];
        let end = rest.find('"').unwrap_or(0);
        out.push_str("[time]");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn json_report_of_the_broken_store() {
    let mut report = report(
        &FilePerDocFactory::without_fsync(),
        &["add-interrupted", "import-interrupted"],
    );
    // Keep the snapshot readable: the first few failures stand for the rest.
    for scenario in &mut report.scenarios {
        scenario.failures.truncate(3);
    }
    insta::assert_snapshot!(report.to_json());
}

#[test]
fn junit_report_of_the_broken_store() {
    let report = report(
        &FilePerDocFactory::without_fsync(),
        &["add-interrupted", "import-interrupted"],
    );
    insta::assert_snapshot!(redact_times(&report.to_junit(&[1.25, 0.5])));
}

#[test]
fn junit_report_of_the_correct_store() {
    let report = report(&FilePerDocFactory::correct(), &["add-interrupted"]);
    let xml = report.to_junit(&[0.125]);
    assert!(xml.contains("failures=\"0\""), "{xml}");
    insta::assert_snapshot!(redact_times(&xml));
}
