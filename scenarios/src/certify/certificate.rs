//! The certificate: what a certification run checked and found, as JSON
//! (for machines) and Markdown (for people).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tearline_model::{Capabilities, Invariant};

/// Failures shown per invariant in the Markdown (the JSON has them all).
const MARKDOWN_EXAMPLES: usize = 3;

/// How an invariant fared over the whole certification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Checked in at least one scenario and never broken.
    Passed,
    /// Broken at least once.
    Failed,
    /// Not checked: the store lacks what it needs, or no applicable scenario
    /// exercises it. Never counted as passed.
    NotApplicable,
}

impl Verdict {
    fn label(&self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "**FAILED**",
            Verdict::NotApplicable => "not applicable",
        }
    }
}

/// One failure, with what reproduces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureExample {
    /// The scenario it was found in.
    pub scenario: String,
    /// Cases of that scenario that broke the invariant.
    pub cases: u64,
    /// The (shrunk) repro line of one of them.
    pub repro: String,
    /// What was found.
    pub evidence: String,
    /// Whether replaying the line from scratch broke the invariant again
    /// (`None`: not re-checked).
    pub reproduces: Option<bool>,
    /// Every case of that scenario that broke the invariant, in the
    /// matrix's order (`cases` of them).
    pub failing_cases: Vec<FailingCase>,
}

/// One case that broke an invariant: its repro line and what it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingCase {
    /// The line `--repro` takes (not shrunk).
    pub repro: String,
    /// The workload step in flight at the fault (`None`: between steps or
    /// after the last).
    pub step: Option<String>,
    /// What was found.
    pub evidence: String,
}

/// One invariant's line in the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantLine {
    /// The invariant.
    pub invariant: Invariant,
    /// What it means, in one sentence.
    pub summary: String,
    /// Passed, failed or not applicable.
    pub verdict: Verdict,
    /// Why it was not applicable.
    pub not_applicable_because: Option<String>,
    /// The scenarios it was checked in.
    pub scenarios: Vec<String>,
    /// Crash points of those scenarios (syscall, fault, persistence model).
    pub crash_points: u64,
    /// Post-fault states of those scenarios checked against it.
    pub states_checked: u64,
    /// Its failures, one example per scenario.
    pub failures: Vec<FailureExample>,
}

/// One scenario's line in the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioLine {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Why it did not run (the capabilities the store lacks).
    pub not_applicable_because: Option<String>,
    /// Syscalls in its fault-free workload.
    pub workload_syscalls: u64,
    /// Crash points tried.
    pub crash_points: u64,
    /// Post-fault states checked (each has a verdict).
    pub states_checked: u64,
    /// Of those, the distinct states: the others left the same disk (after
    /// a crash, the same machine), under the same model, as an earlier
    /// case, and share its verdict.
    pub distinct_states: u64,
    /// Violations found (cases × invariants).
    pub violations: u64,
    /// The invariants it broke.
    pub broke: Vec<Invariant>,
}

/// The version of the certificate's JSON schema
/// (`schemas/certificate.schema.json`).
pub const CERTIFICATE_SCHEMA_VERSION: u32 = 3;

/// A certification's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// [`CERTIFICATE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The harness and its version (`tearline 0.1.0`).
    pub harness: String,
    /// The store's name.
    pub store: String,
    /// How the store was driven: `in-process` (Rust) or `exec: CMD` (black box).
    pub driver: String,
    /// The capabilities the store declared.
    pub capabilities: Capabilities,
    /// The run seed: everything the harness chose derives from it.
    pub seed: u64,
    /// The faults injected.
    pub faults: Vec<String>,
    /// The persistence models power cuts were derived under.
    pub persistence_models: Vec<String>,
    /// Which cases of each matrix ran (`every case`, or a sample).
    pub coverage: String,
    /// Whether every applicable invariant passed.
    pub passed: bool,
    /// Each invariant of the catalogue, in catalogue order.
    pub invariants: Vec<InvariantLine>,
    /// Each store scenario of the catalogue, in catalogue order.
    pub scenarios: Vec<ScenarioLine>,
    /// What could not be made deterministic (empty: nothing; the same seed
    /// gives the same certificate, byte for byte).
    pub nondeterminism: Vec<String>,
    /// How to replay a repro line for this store.
    pub reproduce_with: String,
}

impl Certificate {
    /// The invariants that failed.
    pub fn failed(&self) -> Vec<&InvariantLine> {
        self.invariants
            .iter()
            .filter(|i| i.verdict == Verdict::Failed)
            .collect()
    }

    /// The JSON form (pretty, with a final newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    }

    /// The Markdown form: verdict, the invariants table, each failure with
    /// its repro line and evidence, what was not applicable and why, the
    /// scenarios, and what could not be made deterministic.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(md, "# Tearline certificate: {}\n", self.store);
        let _ = writeln!(md, "**{verdict}**: {}\n", self.headline());
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| harness | {} |", self.harness);
        let _ = writeln!(md, "| store | {} ({}) |", self.store, self.driver);
        let _ = writeln!(md, "| seed | {} |", self.seed);
        let _ = writeln!(md, "| faults | {} |", self.faults.join(", "));
        let _ = writeln!(md, "| persistence models | {} |", self.persistence_models.join(", "));
        let _ = writeln!(md, "| coverage | {} |", self.coverage);
        let _ = writeln!(md, "| capabilities | {} |", capability_list(&self.capabilities));
        let _ = writeln!(md, "\n## Invariants\n");
        let _ = writeln!(
            md,
            "| invariant | verdict | scenarios | crash points | states | failures |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
        for line in &self.invariants {
            let failures: u64 = line.failures.iter().map(|f| f.cases).sum();
            let figures = if line.verdict == Verdict::NotApplicable {
                "— | — | — | —".to_string()
            } else {
                format!(
                    "{} | {} | {} | {failures}",
                    line.scenarios.len(),
                    line.crash_points,
                    line.states_checked
                )
            };
            let _ = writeln!(md, "| {} | {} | {figures} |", line.invariant, line.verdict.label());
        }
        let failed = self.failed();
        if !failed.is_empty() {
            let _ = writeln!(md, "\n## Failures\n");
            for line in failed {
                let _ = writeln!(md, "### {}\n\n{}\n", line.invariant, line.summary);
                for example in line.failures.iter().take(MARKDOWN_EXAMPLES) {
                    let _ = writeln!(
                        md,
                        "- in `{}` ({} cases){}:\n  - evidence: {}\n  - reproduce: {}",
                        example.scenario,
                        example.cases,
                        match example.reproduces {
                            Some(false) => ", did NOT break again when replayed from scratch",
                            _ => "",
                        },
                        example.evidence.replace('\n', " "),
                        if example.repro.is_empty() {
                            "(no case: rerun the certification of this scenario)".to_string()
                        } else {
                            format!("`{}`", example.repro)
                        }
                    );
                }
                if line.failures.len() > MARKDOWN_EXAMPLES {
                    let _ = writeln!(
                        md,
                        "- and in {} more scenarios (every one is in the JSON certificate)",
                        line.failures.len() - MARKDOWN_EXAMPLES
                    );
                }
                md.push('\n');
            }
            let _ = writeln!(md, "Replay a line with {}.", self.reproduce_with);
        }
        let not_applicable: Vec<&InvariantLine> = self
            .invariants
            .iter()
            .filter(|i| i.verdict == Verdict::NotApplicable)
            .collect();
        if !not_applicable.is_empty() {
            let _ = writeln!(md, "\n## Not applicable (not checked, not passed)\n");
            for line in not_applicable {
                let _ = writeln!(
                    md,
                    "- {}: {}",
                    line.invariant,
                    line.not_applicable_because.as_deref().unwrap_or("not exercised")
                );
            }
        }
        let _ = writeln!(md, "\n## Scenarios\n");
        let _ = writeln!(
            md,
            "| scenario | syscalls | crash points | states | distinct | result |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
        for scenario in &self.scenarios {
            let result = match &scenario.not_applicable_because {
                Some(why) => format!("not applicable: {why}"),
                None if scenario.broke.is_empty() => "passed".to_string(),
                None => format!(
                    "**broke** {}",
                    scenario.broke.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
                ),
            };
            let figures = if scenario.not_applicable_because.is_some() {
                "— | — | — | —".to_string()
            } else {
                format!(
                    "{} | {} | {} | {}",
                    scenario.workload_syscalls,
                    scenario.crash_points,
                    scenario.states_checked,
                    scenario.distinct_states
                )
            };
            let _ = writeln!(md, "| {} | {figures} | {result} |", scenario.name);
        }
        let _ = writeln!(md, "\n## Determinism\n");
        if self.nondeterminism.is_empty() {
            let _ = writeln!(
                md,
                "Everything derives from the seed: the same seed gives the same certificate, byte for byte."
            );
        } else {
            let _ = writeln!(md, "What could not be made deterministic:\n");
            for note in &self.nondeterminism {
                let _ = writeln!(md, "- {note}");
            }
        }
        md
    }

    fn headline(&self) -> String {
        let count = |v: Verdict| self.invariants.iter().filter(|i| i.verdict == v).count();
        let ran = self
            .scenarios
            .iter()
            .filter(|s| s.not_applicable_because.is_none())
            .count();
        let states: u64 = self.scenarios.iter().map(|s| s.states_checked).sum();
        let distinct: u64 = self.scenarios.iter().map(|s| s.distinct_states).sum();
        format!(
            "{} invariants passed, {} failed, {} not applicable; {ran} of {} scenarios ran, {states} post-fault states \
             checked ({distinct} distinct).",
            count(Verdict::Passed),
            count(Verdict::Failed),
            count(Verdict::NotApplicable),
            self.scenarios.len()
        )
    }
}

fn capability_list(caps: &Capabilities) -> String {
    let has: Vec<&str> = caps
        .flags()
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name)
        .collect();
    if has.is_empty() {
        "none (add only)".to_string()
    } else {
        has.join(", ")
    }
}
