//! The crash map (`tearline run --html`): the page's data says where each
//! fault struck and what broke, and a real browser (headless Chromium,
//! where installed) draws exactly those cells.

use std::path::{Path, PathBuf};
use std::process::Command;

use tearline::case::Case;
use tearline::catalogue;
use tearline::engine::EngineOptions;
use tearline::map::{self, MapSummary, ScenarioMap};
use tearline::run::{self, RunOptions};
use tearline::stores;
use tearline_sim_fs::{Fault, PersistenceModel};

/// Runs `scenario` against `store` with a few faults and draws its map.
fn map_of(scenario: &str, store: &str) -> ScenarioMap {
    let factory = stores::by_name(store).expect("a store");
    let entry = catalogue::find_entry(factory.as_ref(), scenario, 1).expect("a scenario");
    let options = RunOptions {
        engine: EngineOptions {
            faults: vec![Fault::PowerCut, Fault::ProcessCrash, Fault::EIO],
            models: vec![PersistenceModel::NothingUnsynced, PersistenceModel::Prefix],
            samples_per_point: 1,
            ..EngineOptions::default()
        },
        ..RunOptions::default()
    };
    let result = run::run_entry(&entry, factory.as_ref(), &options, &|_, _| {}).expect("the run");
    let subject = entry.subject(factory.as_ref()).expect("a syscall scenario");
    map::scenario_map(
        subject.as_ref(),
        &options.engine,
        result.passed,
        &result.verdict,
        &result.failures,
    )
    .expect("the map")
}

fn page(maps: &[ScenarioMap]) -> String {
    let summary = MapSummary {
        title: "crash_map test".to_string(),
        store: "refstore".to_string(),
        seed: 0,
        version: "test".to_string(),
        states: 1,
        failures: maps.iter().map(|m| m.failing.len() as u64).sum(),
        seconds: 0.5,
    };
    map::render(&summary, maps)
}

/// The cells the matrix injected into, per the page's data.
fn tested_cells(map: &ScenarioMap) -> usize {
    map.tested
        .iter()
        .map(|row| row.chars().filter(|&c| c == '1').count())
        .sum()
}

#[test]
fn the_map_marks_where_each_fault_struck_and_what_broke() {
    let bad = map_of("reconcile-clean", "refstore/clean-without-force");
    assert_eq!(
        bad.rows,
        ["power-cut (nothing)", "power-cut (prefix)", "crash", "EIO"],
        "a row per fault, a power cut's per model"
    );
    let columns = bad.ops.len();
    assert!(bad.tested.iter().all(|row| row.len() == columns));
    // A power cut strikes at every syscall of the store's (the workload's
    // end included); EIO only where it applies.
    let struck = |row: usize| bad.tested[row].chars().filter(|&c| c == '1').count();
    assert!(bad.tested[0].ends_with('1'), "{}", bad.tested[0]);
    assert!(struck(0) >= struck(2) && struck(2) > struck(3), "{:?}", bad.tested);
    assert!(
        bad.tested[3].contains('0') && bad.tested[3].contains('1'),
        "{}",
        bad.tested[3]
    );
    assert!(!bad.passed);
    assert!(!bad.failing.is_empty(), "the flawed variant's failures are on the map");
    for cell in &bad.failing {
        assert_eq!(
            bad.tested[cell.row].as_bytes()[cell.x as usize],
            b'1',
            "a failure where nothing struck"
        );
        for failure in &cell.failures {
            let case: Case = failure.line.parse().expect("a repro line");
            assert_eq!(case.injection.syscall, bad.start + cell.x);
        }
    }
    assert!(
        bad.failing
            .iter()
            .flat_map(|c| &c.failures)
            .any(|f| f.invariant == "no-destructive-without-force"),
        "the flaw's own invariant is on the map"
    );
    assert!(
        bad.failing[0].trace.as_deref().is_some_and(|t| t.contains(">>")),
        "the first cell has its trace"
    );
    assert!(
        bad.steps.iter().any(|(_, name)| name.contains("reconcile clean")),
        "{:?}",
        bad.steps
    );

    let good = map_of("reconcile-clean", stores::DEFAULT);
    assert!(good.passed && good.failing.is_empty());
    assert_eq!(good.rows, bad.rows);
    assert!(tested_cells(&good) > 0);

    let html = page(&[bad.clone(), good.clone()]);
    assert!(!html.contains("http://") && !html.contains("https://"), "no network");
    let data = tearline::map::page_data(&html).expect("the data element");
    let parsed: serde_json::Value = serde_json::from_str(data).expect("the data is JSON");
    assert_eq!(parsed["maps"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        parsed["maps"][0]["failing"].as_array().map(Vec::len),
        Some(bad.failing.len())
    );

    browser_draws(&html, &[(&bad, bad.failing.len()), (&good, 0)]);
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Headless Chromium loads the page, runs its script, and the DOM it
/// leaves says how many cells each map drew and how many of them failed;
/// a screenshot is written beside the test's target directory.
fn browser_draws(html: &str, expected: &[(&ScenarioMap, usize)]) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("TEARLINE_REQUIRE_CHROMIUM").is_none(),
            "TEARLINE_REQUIRE_CHROMIUM is set, but Chromium is not installed"
        );
        eprintln!("SKIPPED: the browser half of the crash-map test needs Chromium (apt-get install chromium)");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let page = dir.join("crash-map.html");
    std::fs::write(&page, html).expect("writing the page");
    let run = |extra: &[&str]| {
        let profile = tempfile::tempdir().expect("a profile directory");
        let output = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("running Chromium");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dom = run(&["--dump-dom"]);
    assert!(
        dom.contains(&format!(r#"data-rendered="{}""#, expected.len())),
        "the script did not run"
    );
    for (map, failing) in expected {
        let section = format!(
            r#"data-name="{}" data-cells="{}" data-failing="{failing}""#,
            map.name,
            tested_cells(map)
        );
        assert!(dom.contains(&section), "expected {section} in the drawn page");
    }
    let shot = dir.join("crash-map.png");
    run(&[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}
