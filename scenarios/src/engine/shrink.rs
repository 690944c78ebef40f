//! Shrinking: before a failure is reported, re-check that its case fails
//! the same way when replayed from scratch, and, for a power cut, find the
//! earliest syscall of the same in-flight step that fails the same way.

use tearline_model::Invariant;
use tearline_sim_fs::Fault;

use super::subject::Subject;
use super::{HarnessError, PartResult};
use crate::report::FailureRecord;

/// The failure reported for one invariant, shrunk and re-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The invariant.
    pub invariant: Invariant,
    /// The (shrunk) failure.
    pub failure: FailureRecord,
    /// Whether replaying its line from scratch breaks the same invariant.
    pub reproduces: bool,
}

/// For each broken invariant, in catalogue order: its first failure,
/// shrunk to the earliest power cut of the same step and persistence model
/// that breaks it (the matrix already tried every one), and re-checked by a
/// replay from scratch.
pub fn shrink(subject: &dyn Subject, seed: u64, merged: &PartResult) -> Result<Vec<Shrunk>, HarnessError> {
    let mut shrunk = Vec::new();
    if merged.failures.is_empty() {
        return Ok(shrunk);
    }
    let probe = subject.probe(seed)?;
    for invariant in Invariant::ALL {
        let Some(first) = merged.failures.iter().find(|f| f.invariant == invariant) else {
            continue;
        };
        let mut chosen = first;
        let injection = &first.case.injection;
        if injection.fault == Fault::PowerCut {
            let from = probe.step_start(injection.syscall);
            let model = injection.crash.map(|(m, _)| m);
            if let Some(earlier) = merged
                .failures
                .iter()
                .filter(|f| f.invariant == invariant && f.case.injection.fault == injection.fault)
                .filter(|f| {
                    let at = f.case.injection.syscall;
                    at >= from && at <= injection.syscall && f.step == first.step
                })
                .filter(|f| f.case.injection.crash.map(|(m, _)| m) == model)
                .min_by_key(|f| (f.case.injection.syscall, f.case_index))
            {
                chosen = earlier;
            }
        }
        let replay = super::replay_case(subject, &probe, seed, &chosen.case.injection)?;
        let reproduces = replay.violations.iter().any(|v| v.invariant == invariant);
        shrunk.push(Shrunk {
            invariant,
            failure: chosen.clone(),
            reproduces,
        });
    }
    Ok(shrunk)
}
