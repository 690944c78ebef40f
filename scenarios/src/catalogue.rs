//! The scenario catalogue: every scenario by name, with what it must show.
//!
//! A scenario either must pass every invariant, or is a documented finding or
//! a deliberately broken setup that must break a named invariant. A "must
//! break" scenario that passes is a failure of the harness: it has lost its
//! teeth.

use std::collections::BTreeSet;

use crate::sqlite_atomic_commit::{AtomicCommitWorkload, Invariant, JournalMode, MatrixReport, Synchronous};

/// What a scenario must show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// No invariant may break.
    Pass,
    /// At least one violation, and only of these invariants.
    Breaks(BTreeSet<Invariant>),
}

impl Expectation {
    /// Whether a report meets the expectation, and if not, why.
    pub fn judge(&self, report: &MatrixReport) -> Result<(), String> {
        match self {
            Expectation::Pass if report.failures.is_empty() => Ok(()),
            Expectation::Pass => Err(format!("{} cases broke an invariant", report.failures.len())),
            Expectation::Breaks(_) if report.failures.is_empty() => {
                Err("expected a violation, but every case passed: the check has no teeth".to_string())
            }
            Expectation::Breaks(allowed) => match report
                .failures
                .iter()
                .find(|f| !allowed.contains(&f.violation.invariant))
            {
                Some(other) => Err(format!(
                    "expected only {} to break, but {} broke at {}",
                    names(allowed),
                    other.violation.invariant,
                    other.case
                )),
                None => Ok(()),
            },
        }
    }
}

fn names(set: &BTreeSet<Invariant>) -> String {
    set.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
}

/// One scenario of the catalogue.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name, used on the command line and in repro lines.
    pub name: String,
    /// What it does and why, in a sentence or two.
    pub description: &'static str,
    /// The workload.
    pub workload: AtomicCommitWorkload,
    /// What it must show.
    pub expect: Expectation,
}

fn scenario(workload: AtomicCommitWorkload, expect: Expectation, description: &'static str) -> Scenario {
    Scenario {
        name: workload.name(),
        description,
        workload,
        expect,
    }
}

/// Every scenario, sized for the full run (`scale` multiplies the number of
/// transactions; 1 is the size `cargo test` uses).
pub fn catalogue(scale: u32) -> Vec<Scenario> {
    let sized = |journal, sync| {
        let mut workload = AtomicCommitWorkload::new(journal, sync);
        workload.transactions *= scale.max(1);
        workload
    };
    let mut no_sync = sized(JournalMode::Delete, Synchronous::Full);
    no_sync.skip_sync = true;
    vec![
        scenario(
            sized(JournalMode::Delete, Synchronous::Full),
            Expectation::Breaks([Invariant::CommittedDurable].into()),
            "SQLite rollback journal with synchronous=FULL. A finding: SQLite commits by unlinking the \
             journal and does not fsync the directory, so a power cut can bring the journal back and roll \
             back a transaction SQLite reported committed. Atomicity and integrity hold; durability of the \
             last commit does not.",
        ),
        scenario(
            sized(JournalMode::Delete, Synchronous::Extra),
            Expectation::Pass,
            "SQLite rollback journal with synchronous=EXTRA, which fsyncs the directory after deleting the \
             journal: every acknowledged commit survives every fault.",
        ),
        scenario(
            sized(JournalMode::Wal, Synchronous::Full),
            Expectation::Pass,
            "SQLite write-ahead log with synchronous=FULL and a checkpoint every 4 pages: every acknowledged \
             commit survives every fault.",
        ),
        scenario(
            no_sync,
            Expectation::Breaks(
                [
                    Invariant::CompleteDatabase,
                    Invariant::AtomicOp,
                    Invariant::CommittedDurable,
                ]
                .into(),
            ),
            "A broken setup: the VFS drops every fsync. The matrix must catch it — proof the checks have teeth.",
        ),
    ]
}

/// The scenario with this name, at the given scale.
pub fn find(name: &str, scale: u32) -> Option<Scenario> {
    catalogue(scale).into_iter().find(|s| s.name == name)
}
