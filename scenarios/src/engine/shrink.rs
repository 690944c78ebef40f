//! Shrinking: before a failure is reported, re-check that its case fails
//! the same way when replayed from scratch, and, for a power cut, find the
//! earliest syscall of the same in-flight step that fails the same way.

use tearline_model::{Invariant, StoreFactory};
use tearline_sim_fs::Fault;

use super::scenario::StoreScenario;
use super::{HarnessError, PartResult, matrix};
use crate::case::ReproLine;
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
pub fn shrink(
    factory: &dyn StoreFactory,
    scenario: &StoreScenario,
    seed: u64,
    merged: &PartResult,
) -> Result<Vec<Shrunk>, HarnessError> {
    let mut shrunk = Vec::new();
    if merged.failures.is_empty() {
        return Ok(shrunk);
    }
    let probe = matrix::probe(factory, scenario, seed)?;
    for invariant in Invariant::ALL {
        let Some(first) = merged.failures.iter().find(|f| f.invariant == invariant) else {
            continue;
        };
        let mut chosen = first;
        let first_line = ReproLine::parse(&first.repro)
            .ok_or_else(|| HarnessError(format!("unparsable repro line {}", first.repro)))?;
        if first_line.case.fault == Fault::PowerCut {
            let from = probe.step_start(first.syscall);
            let model = first_line.case.crash.map(|(m, _)| m);
            if let Some(earlier) = merged
                .failures
                .iter()
                .filter(|f| f.invariant == invariant && f.fault == first.fault)
                .filter(|f| f.syscall >= from && f.syscall <= first.syscall && f.step == first.step)
                .filter(|f| ReproLine::parse(&f.repro).and_then(|l| l.case.crash.map(|(m, _)| m)) == model)
                .min_by_key(|f| (f.syscall, f.case_index))
            {
                chosen = earlier;
            }
        }
        let line = ReproLine::parse(&chosen.repro)
            .ok_or_else(|| HarnessError(format!("unparsable repro line {}", chosen.repro)))?;
        let replay = matrix::replay_case(factory, scenario, seed, probe.budget(), probe.end, &line.case)?;
        let reproduces = replay.violations.iter().any(|v| v.invariant == invariant);
        shrunk.push(Shrunk {
            invariant,
            failure: chosen.clone(),
            reproduces,
        });
    }
    Ok(shrunk)
}
