//! The crash map: one self-contained HTML page (no network, no external
//! assets) drawing each scenario's matrix, the workload's syscalls along
//! the x-axis (with its steps marked and named) and the faults (a row per
//! persistence model for power cuts) down the y-axis, each cell coloured by
//! its verdict. Clicking a cell shows its cases: the repro line (copyable),
//! the invariant, the evidence and the trace around the fault.
//!
//! [`scenario_map`] builds one scenario's map from a probe of its workload
//! (which syscall is where, which faults apply there) and the run's
//! failures; [`render`] writes the page. The page's data is one JSON
//! document in a `<script type="application/json">` element; the script
//! draws each map on a canvas and records what it drew on the scenario's
//! element (`data-cells`, `data-failing`), which the tests read back from
//! a headless browser.

use std::collections::BTreeMap;

use serde::Serialize;
use tearline_sim_fs::{Fault, PersistenceModel};

use crate::case::{CrashPick, Injection};
use crate::engine::{self, EngineOptions, HarnessError, Subject};
use crate::replay::{Context, trace_around};
use crate::report::FailureRecord;

/// At most this many cells of a scenario get their trace in the page (a
/// replay each); the others say how to get it (`tearline repro`).
pub const TRACED_CELLS: usize = 12;

/// What the page says on top.
#[derive(Clone, Debug, Serialize)]
pub struct MapSummary {
    /// What was run (`tearline run`, `tearline certify`).
    pub title: String,
    /// The store under test.
    pub store: String,
    /// The run seed.
    pub seed: u64,
    /// Tearline's version.
    pub version: String,
    /// Post-fault states checked.
    pub states: u64,
    /// Failures (a case and an invariant it broke).
    pub failures: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// One failing case in a cell.
#[derive(Clone, Debug, Serialize)]
pub struct MapFailure {
    /// The repro line.
    pub line: String,
    /// The invariant it broke.
    pub invariant: String,
    /// The evidence.
    pub evidence: String,
}

/// A cell with failures.
#[derive(Clone, Debug, Serialize)]
pub struct FailingCell {
    /// The column: the syscall's offset from the workload's start.
    pub x: u64,
    /// The row (an index into [`ScenarioMap::rows`]).
    pub row: usize,
    /// Its failures, in case order.
    pub failures: Vec<MapFailure>,
    /// The trace around the fault of its first case, for the first
    /// [`TRACED_CELLS`] failing cells.
    pub trace: Option<String>,
}

/// One scenario's map.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioMap {
    /// The scenario.
    pub name: String,
    /// Whether it showed what it must.
    pub passed: bool,
    /// In words.
    pub verdict: String,
    /// The workload's first syscall index (column 0).
    pub start: u64,
    /// The syscall at each column, by its trace name (the last column is the
    /// workload's end, where only a power cut strikes).
    pub ops: Vec<String>,
    /// Where each workload step begins (a column) and its name.
    pub steps: Vec<(u64, String)>,
    /// Each row's fault (and persistence model).
    pub rows: Vec<String>,
    /// Per row, a character per column: `1` where the matrix injects the
    /// row's fault, `0` where it does not apply.
    pub tested: Vec<String>,
    /// The cells with failures.
    pub failing: Vec<FailingCell>,
}

/// The rows of a matrix with these faults and models: a power cut gets a
/// row per model.
fn rows(options: &EngineOptions) -> Vec<(Fault, Option<PersistenceModel>)> {
    options
        .faults
        .iter()
        .flat_map(|&fault| {
            if fault == Fault::PowerCut {
                options.models.iter().map(|&m| (fault, Some(m))).collect::<Vec<_>>()
            } else {
                vec![(fault, None)]
            }
        })
        .collect()
}

fn row_name(fault: Fault, model: Option<PersistenceModel>) -> String {
    match model {
        Some(model) => format!("{fault} ({model})"),
        None => fault.to_string(),
    }
}

/// Builds the map of `subject`'s matrix under `options`, from one probe of
/// its workload and `failures` (the run's, for this scenario); the first
/// [`TRACED_CELLS`] failing cells are replayed for their traces.
pub fn scenario_map(
    subject: &dyn Subject,
    options: &EngineOptions,
    passed: bool,
    verdict: &str,
    failures: &[FailureRecord],
) -> Result<ScenarioMap, HarnessError> {
    let probe = subject.probe(options.seed)?;
    let rows = rows(options);
    let columns = probe.end - probe.start + 1;
    let tested = rows
        .iter()
        .map(|&(fault, model)| {
            (probe.start..=probe.end)
                .map(|syscall| {
                    let injection = Injection {
                        syscall,
                        fault,
                        crash: model.map(|m| (m, CrashPick::Distinct(0))),
                    };
                    if probe.refuse(&injection).is_none() { '1' } else { '0' }
                })
                .collect()
        })
        .collect();
    let mut cells: BTreeMap<(u64, usize), Vec<&FailureRecord>> = BTreeMap::new();
    for failure in failures {
        let injection = &failure.case.injection;
        let model = injection.crash.as_ref().map(|(m, _)| *m);
        let Some(row) = rows.iter().position(|&r| r == (injection.fault, model)) else {
            continue;
        };
        let x = injection.syscall.saturating_sub(probe.start).min(columns - 1);
        cells.entry((x, row)).or_default().push(failure);
    }
    let mut failing = Vec::new();
    for (n, ((x, row), records)) in cells.into_iter().enumerate() {
        let trace = if n < TRACED_CELLS {
            let case = &records[0].case;
            engine::replay_case(subject, &probe, options.seed, &case.injection)
                .ok()
                .map(|replay| trace_around(&replay.trace, case.injection.syscall, Context::default()))
        } else {
            None
        };
        failing.push(FailingCell {
            x,
            row,
            failures: records
                .iter()
                .map(|f| MapFailure {
                    line: f.case.to_string(),
                    invariant: f.invariant.to_string(),
                    evidence: f.evidence.clone(),
                })
                .collect(),
            trace,
        });
    }
    let mut steps = Vec::new();
    for (column, syscall) in (probe.start..probe.end).enumerate() {
        let Some(step) = probe.step_name(syscall) else {
            continue;
        };
        if steps.last().is_none_or(|(_, last)| *last != step) {
            steps.push((column as u64, step));
        }
    }
    let mut ops: Vec<String> = probe.ops.iter().map(|op| op.name().to_string()).collect();
    ops.push("(the workload's end)".to_string());
    Ok(ScenarioMap {
        name: subject.name().to_string(),
        passed,
        verdict: verdict.to_string(),
        start: probe.start,
        ops,
        steps,
        rows: rows.iter().map(|&(f, m)| row_name(f, m)).collect(),
        tested,
        failing,
    })
}

/// The page: the summary, then every map.
pub fn render(summary: &MapSummary, maps: &[ScenarioMap]) -> String {
    let data = serde_json::json!({ "summary": summary, "maps": maps });
    // Inside a <script> element, "</" would end it.
    let data = data.to_string().replace("</", "<\\/");
    PAGE.replace("__DATA__", &data)
}

/// The JSON data of a page [`render`] wrote (the summary and the maps), as
/// the page holds it; `None` if `page` is not such a page.
pub fn page_data(page: &str) -> Option<&str> {
    page.split_once(DATA_OPEN)?.1.split("</script>").next()
}

/// Where the page's data begins.
const DATA_OPEN: &str = r#"<script type="application/json" id="data">"#;

/// The page's HTML, style and script; `__DATA__` is the JSON.
const PAGE: &str = include_str!("map.html");
