//! Reports: the run as a serialisable [`RunReport`] (JSON, byte-identical
//! for the same seed and options however the work was split) and as JUnit
//! XML for CI (one testsuite per scenario, one testcase per invariant).
//!
//! Wall time is not part of the JSON report (it would break byte-identity);
//! JUnit carries it in its `time` attributes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tearline_model::Invariant;
use tearline_sim_fs::SyscallKind;

use crate::case::Case;

/// The version of the JSON report's shape: bumped whenever a field is
/// added, removed or changes meaning.
pub const REPORT_SCHEMA_VERSION: u32 = 3;

/// One violation found at one case.
///
/// In JSON it keeps the shape readers know (`case_index`, `repro`,
/// `syscall`, `fault`, `op`, `step`, `invariant`, `evidence`); the case
/// travels as its repro line and is read back through the same grammar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FailureJson", try_from = "FailureJson")]
pub struct FailureRecord {
    /// The case's number in the matrix's enumeration.
    pub case_index: u64,
    /// The case (its `Display` is the line `tearline repro` takes).
    pub case: Case,
    /// The syscall at the case's index (`None`: after the last one).
    pub op: Option<SyscallKind>,
    /// The workload step in flight (`None`: between steps or after the last).
    pub step: Option<String>,
    /// The invariant broken.
    pub invariant: Invariant,
    /// What was found.
    pub evidence: String,
}

/// [`FailureRecord`] as JSON: the case spelled out, for readers.
#[derive(Serialize, Deserialize)]
struct FailureJson {
    case_index: u64,
    repro: Case,
    syscall: u64,
    fault: String,
    op: Option<String>,
    step: Option<String>,
    invariant: Invariant,
    evidence: String,
}

impl From<FailureRecord> for FailureJson {
    fn from(record: FailureRecord) -> Self {
        FailureJson {
            case_index: record.case_index,
            repro: record.case.clone(),
            syscall: record.case.injection.syscall,
            fault: record.case.injection.fault.to_string(),
            op: record.op.map(|op| op.to_string()),
            step: record.step,
            invariant: record.invariant,
            evidence: record.evidence,
        }
    }
}

impl TryFrom<FailureJson> for FailureRecord {
    type Error = String;

    fn try_from(json: FailureJson) -> Result<Self, Self::Error> {
        let case = json.repro;
        if case.injection.syscall != json.syscall || case.injection.fault.to_string() != json.fault {
            return Err(format!(
                "repro {case} disagrees with syscall {} and fault {}",
                json.syscall, json.fault
            ));
        }
        let op = match json.op {
            None => None,
            Some(name) => Some(syscall_kind(&name).ok_or_else(|| format!("unknown syscall {name:?}"))?),
        };
        Ok(FailureRecord {
            case_index: json.case_index,
            case,
            op,
            step: json.step,
            invariant: json.invariant,
            evidence: json.evidence,
        })
    }
}

/// The syscall kind a trace calls `name`.
pub(crate) fn syscall_kind(name: &str) -> Option<SyscallKind> {
    SyscallKind::SYSCALLS
        .into_iter()
        .chain([SyscallKind::Reboot, SyscallKind::Unlock])
        .find(|kind| kind.name() == name)
}

/// How one invariant fared in one scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvariantStatus {
    /// Checked at every case and never broken.
    Passed,
    /// Broken.
    Failed,
    /// Broken exactly as a documented finding says (the scenario expects it).
    KnownFinding,
    /// The store lacks the capability, or the scenario does not exercise it.
    NotApplicable,
}

/// One invariant's result in one scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantResult {
    /// The invariant.
    pub invariant: Invariant,
    /// Its status.
    pub status: InvariantStatus,
    /// Cases that broke it.
    pub failures: u64,
    /// The shrunk repro line of its first failure.
    pub repro: Option<Case>,
    /// That failure's evidence.
    pub evidence: Option<String>,
    /// Whether replaying that line from scratch broke it again (`None`: not
    /// re-checked, as for SQLite's own matrix whose replay is tested apart).
    pub reproduces: Option<bool>,
    /// A network scenario's repro line of its first failure (its grammar:
    /// [`crate::net::case`]); `repro` is for the syscall grammar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_repro: Option<String>,
}

impl InvariantResult {
    /// Not exercised: no case, no failure.
    pub fn not_applicable(invariant: Invariant) -> InvariantResult {
        InvariantResult {
            invariant,
            status: InvariantStatus::NotApplicable,
            failures: 0,
            repro: None,
            evidence: None,
            reproduces: None,
            net_repro: None,
        }
    }

    /// The repro line of its first failure, in whichever grammar.
    pub fn repro_line(&self) -> Option<String> {
        self.repro
            .as_ref()
            .map(|c| c.to_string())
            .or_else(|| self.net_repro.clone())
    }
}

/// One violation found at one case of a network matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetFailure {
    /// The case's number in the matrix's enumeration.
    pub case_index: u64,
    /// Its repro line ([`crate::net::case::NetCase`]).
    pub repro: String,
    /// The invariant broken.
    pub invariant: Invariant,
    /// What was found.
    pub evidence: String,
}

/// One scenario's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: String,
    /// `sqlite` (SQLite's own matrix), `store` (the store under test) or
    /// `network` (the store served over a simulated network).
    pub kind: String,
    /// What it does.
    pub description: String,
    /// Why it was not run, if the store lacks a capability it requires.
    pub not_applicable: Option<String>,
    /// Syscalls in the fault-free workload.
    pub workload_syscalls: u64,
    /// Cases in the matrix.
    pub cases: u64,
    /// Crash points tried (syscall, fault, model).
    pub crash_points: u64,
    /// Post-fault states, each with a verdict.
    pub states_checked: u64,
    /// Of those, the distinct states checked: the others left the same
    /// disk (after a crash, the same machine), under the same model, as an
    /// earlier case, and share its verdict
    /// ([`crate::engine::EngineOptions::dedup`]).
    #[serde(default)]
    pub distinct_states: u64,
    /// Cases branched off one run of the workload instead of replayed from
    /// scratch ([`crate::engine::EngineOptions::branch_from`]); the
    /// results are the same either way.
    #[serde(default)]
    pub branched_cases: u64,
    /// Crash cases checked from the probe's snapshot before their syscall
    /// instead of replayed ([`crate::engine::EngineOptions::derive_crashes`]);
    /// the results are the same either way.
    #[serde(default)]
    pub derived_crashes: u64,
    /// Read-only opens checked for reader-consistent: concurrent with the
    /// workload (one per workload syscall), and one per post-fault state
    /// before its recovery. 0 for a store without concurrent readers.
    #[serde(default)]
    pub reader_observations: u64,
    /// The hash of the fault-free workload's trace (store scenarios): the
    /// same seed must give the same hash on any machine.
    pub workload_trace_hash: Option<u64>,
    /// Each invariant, in catalogue order.
    pub invariants: Vec<InvariantResult>,
    /// Whether it met its expectation.
    pub passed: bool,
    /// In words.
    pub verdict: String,
    /// Every violation found, by case.
    pub failures: Vec<FailureRecord>,
    /// A network scenario's failing cases (its `failures` stay empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_failures: Vec<NetFailure>,
}

impl ScenarioResult {
    /// A scenario's result before its matrix runs: nothing counted, no
    /// invariant judged, passing, with an empty verdict.
    pub fn empty(scenario: &str, kind: &str, description: &str) -> ScenarioResult {
        ScenarioResult {
            scenario: scenario.to_string(),
            kind: kind.to_string(),
            description: description.to_string(),
            not_applicable: None,
            workload_syscalls: 0,
            cases: 0,
            crash_points: 0,
            states_checked: 0,
            distinct_states: 0,
            branched_cases: 0,
            derived_crashes: 0,
            reader_observations: 0,
            workload_trace_hash: None,
            invariants: Vec::new(),
            passed: true,
            verdict: String::new(),
            failures: Vec::new(),
            net_failures: Vec::new(),
        }
    }

    /// The result of a scenario that was not run, saying `why`: every
    /// invariant not applicable.
    pub fn not_applicable(scenario: &str, kind: &str, description: &str, why: String) -> ScenarioResult {
        ScenarioResult {
            invariants: Invariant::ALL
                .iter()
                .map(|&i| InvariantResult::not_applicable(i))
                .collect(),
            verdict: format!("not applicable: {why}"),
            not_applicable: Some(why),
            ..ScenarioResult::empty(scenario, kind, description)
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The version of this report's shape ([`REPORT_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The store under test.
    pub store: String,
    /// The run seed.
    pub seed: u64,
    /// The CI shard, `i/n`.
    pub shard: String,
    /// The faults injected.
    pub faults: Vec<String>,
    /// Each scenario, in the order run.
    pub scenarios: Vec<ScenarioResult>,
}

impl RunReport {
    /// Whether every scenario met its expectation.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.passed)
    }

    /// The JSON form (pretty, with a final newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    }

    /// The JUnit XML form; `seconds[i]` is scenario `i`'s wall time.
    pub fn to_junit(&self, seconds: &[f64]) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let failures: usize = self
            .scenarios
            .iter()
            .flat_map(|s| &s.invariants)
            .filter(|i| i.status == InvariantStatus::Failed)
            .count();
        let tests: usize = self.scenarios.iter().map(|s| s.invariants.len()).sum();
        let _ = writeln!(
            xml,
            "<testsuites name=\"tearline {}\" tests=\"{tests}\" failures=\"{failures}\">",
            escape(&self.store)
        );
        for (n, scenario) in self.scenarios.iter().enumerate() {
            let time = seconds.get(n).copied().unwrap_or(0.0);
            let failed = scenario
                .invariants
                .iter()
                .filter(|i| i.status == InvariantStatus::Failed)
                .count();
            let skipped = scenario
                .invariants
                .iter()
                .filter(|i| i.status == InvariantStatus::NotApplicable)
                .count();
            let _ = writeln!(
                xml,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
                escape(&scenario.scenario),
                scenario.invariants.len()
            );
            let _ = writeln!(
                xml,
                "    <properties><property name=\"seed\" value=\"{}\"/><property name=\"states_checked\" value=\"{}\"/></properties>",
                self.seed, scenario.states_checked
            );
            for result in &scenario.invariants {
                let _ = write!(
                    xml,
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    escape(&scenario.scenario),
                    result.invariant
                );
                match result.status {
                    InvariantStatus::Passed => xml.push_str("/>\n"),
                    InvariantStatus::NotApplicable => {
                        let why = scenario
                            .not_applicable
                            .clone()
                            .unwrap_or_else(|| "not exercised by this scenario or store".to_string());
                        let _ = writeln!(xml, ">\n      <skipped message=\"{}\"/>\n    </testcase>", escape(&why));
                    }
                    InvariantStatus::KnownFinding | InvariantStatus::Failed => {
                        let repro = result.repro_line().unwrap_or_default();
                        let evidence = result.evidence.clone().unwrap_or_default();
                        let body = format!(
                            "tearline repro {repro}\n{evidence}\n({} failing cases)",
                            result.failures
                        );
                        if result.status == InvariantStatus::Failed {
                            let _ = writeln!(
                                xml,
                                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                                escape(&evidence),
                                result.invariant,
                                escape(&body)
                            );
                        } else {
                            let _ = writeln!(
                                xml,
                                ">\n      <system-out>known finding: {}</system-out>\n    </testcase>",
                                escape(&body)
                            );
                        }
                    }
                }
            }
            xml.push_str("  </testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        xml
    }
}

/// Escapes text for an XML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
