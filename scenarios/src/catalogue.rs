//! The scenario catalogue: every scenario by name, with what it must show.
//!
//! A scenario either must pass every invariant, or is a documented finding or
//! a deliberately broken setup that must break a named invariant. A "must
//! break" scenario that passes is a failure of the harness: it has lost its
//! teeth.

use std::collections::BTreeSet;

use tearline_sim_fs::{Fault, SyscallKind};

use crate::sqlite_atomic_commit::{AtomicCommitWorkload, Failure, Invariant, JournalMode, MatrixReport, Synchronous};

/// A known way a scenario breaks an invariant: a documented finding, or the
/// point of a deliberately broken setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which invariants it breaks.
    pub invariants: BTreeSet<Invariant>,
    /// Under which faults (empty: any).
    pub faults: Vec<Fault>,
    /// At which syscall the fault strikes (`None`: any).
    pub at: Option<SyscallKind>,
    /// What it is, in a sentence.
    pub summary: &'static str,
}

impl Finding {
    /// Whether a failed case is an instance of this finding.
    pub fn explains(&self, failure: &Failure) -> bool {
        self.invariants.contains(&failure.violation.invariant)
            && (self.faults.is_empty() || self.faults.contains(&failure.case.fault))
            && self.at.is_none_or(|op| failure.op == Some(op))
    }
}

/// What a scenario must show: the known findings it reproduces. No findings
/// means every invariant must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectation {
    /// The findings; each must be reproduced, and nothing else may break.
    pub findings: Vec<Finding>,
}

impl Expectation {
    /// Every invariant must hold.
    pub fn pass() -> Self {
        Self::default()
    }

    /// Whether a report meets the expectation, and if not, why.
    pub fn judge(&self, report: &MatrixReport) -> Result<(), String> {
        if let Some(unexplained) = report
            .failures
            .iter()
            .find(|f| !self.findings.iter().any(|finding| finding.explains(f)))
        {
            return Err(format!(
                "{} broke unexpectedly at {} ({}): {}",
                unexplained.violation.invariant,
                unexplained.case,
                unexplained
                    .op
                    .map_or("after the last syscall".to_string(), |op| op.to_string()),
                unexplained.violation.evidence
            ));
        }
        if let Some(lost) = self
            .findings
            .iter()
            .find(|finding| !report.failures.iter().any(|f| finding.explains(f)))
        {
            return Err(format!(
                "a known finding no longer reproduces (the checks may have lost their teeth): {}",
                lost.summary
            ));
        }
        Ok(())
    }
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
    let ignored_dir_sync_error = |invariant, summary| Finding {
        invariants: [invariant].into(),
        faults: vec![Fault::EIO, Fault::ENOSPC],
        at: Some(SyscallKind::SyncDir),
        summary,
    };
    vec![
        scenario(
            sized(JournalMode::Delete, Synchronous::Full),
            Expectation {
                findings: vec![
                    Finding {
                        invariants: [Invariant::CommittedDurable].into(),
                        faults: Vec::new(),
                        at: None,
                        summary: "the journal's unlink is never made durable, so a power cut after COMMIT \
                                  returned can bring the journal back and roll the commit back",
                    },
                    ignored_dir_sync_error(
                        Invariant::CompleteDatabase,
                        "an error from the directory fsync that makes a new journal's name durable is \
                         ignored; after a power cut a stale journal of an earlier transaction is played back \
                         over newer pages and the database is malformed",
                    ),
                ],
            },
            "SQLite rollback journal with synchronous=FULL. A finding: SQLite commits by unlinking the \
             journal and does not fsync the directory, so a power cut can bring the journal back and roll \
             back a transaction SQLite reported committed. Atomicity and integrity hold; durability of the \
             last commit does not. Second finding: SQLite ignores an error from its directory fsync.",
        ),
        scenario(
            sized(JournalMode::Delete, Synchronous::Extra),
            Expectation::pass(),
            "SQLite rollback journal with synchronous=EXTRA, which fsyncs the directory after deleting the \
             journal: every acknowledged commit survives every fault.",
        ),
        scenario(
            sized(JournalMode::Wal, Synchronous::Full),
            Expectation {
                findings: vec![ignored_dir_sync_error(
                    Invariant::CommittedDurable,
                    "an error from the directory fsync that makes the new WAL's name durable is ignored; \
                     commits are acknowledged, and a power cut loses the WAL and the database file's name",
                )],
            },
            "SQLite write-ahead log with synchronous=FULL and a checkpoint every 4 pages: every acknowledged \
             commit survives power cuts, torn writes and errors, except an error from the one directory \
             fsync SQLite makes, which it ignores.",
        ),
        scenario(
            no_sync,
            Expectation {
                findings: vec![Finding {
                    invariants: [
                        Invariant::CompleteDatabase,
                        Invariant::AtomicOp,
                        Invariant::CommittedDurable,
                    ]
                    .into(),
                    faults: Vec::new(),
                    at: None,
                    summary: "without fsync nothing is durable: power cuts lose and corrupt data",
                }],
            },
            "A broken setup: the VFS drops every fsync. The matrix must catch it — proof the checks have teeth.",
        ),
    ]
}

/// The scenario with this name, at the given scale.
pub fn find(name: &str, scale: u32) -> Option<Scenario> {
    catalogue(scale).into_iter().find(|s| s.name == name)
}
