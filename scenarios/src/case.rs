//! Where and how one case of a crash matrix injects its fault, and the repro
//! line that names it: `<scenario>:<seed>:<syscall>:<fault>[:<model>:<pick>]`.
//!
//! Shared by SQLite's own matrix ([`crate::sqlite_atomic_commit`]) and the
//! store engine ([`crate::engine`]), so every failure anywhere prints a line
//! `tearline repro` understands.

use std::fmt;

use tearline_sim_fs::{CrashChoice, Fault, PersistenceModel, SimSnapshot};

/// Where and how one case injects its fault.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Case {
    /// The syscall index the fault strikes (for a power cut: the syscall
    /// before which the power goes; the workload's end means "after the
    /// last syscall").
    pub syscall: u64,
    /// The fault.
    pub fault: Fault,
    /// For power cuts: the persistence model and which outcome (an index into
    /// the distinct outcomes, or a sample number).
    pub crash: Option<(PersistenceModel, CrashPick)>,
}

/// Which outcome of a power cut a case checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPick {
    /// The i-th distinct outcome (exhaustive enumeration).
    Distinct(usize),
    /// The outcome drawn from the run seed plus this sample number.
    Sample(u64),
}

impl fmt::Display for Case {
    /// `<syscall>:<fault>[:<model>:<d3|s1>]`, the tail of a repro line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.syscall, self.fault)?;
        if let Some((model, pick)) = &self.crash {
            match pick {
                CrashPick::Distinct(i) => write!(f, ":{model}:d{i}")?,
                CrashPick::Sample(i) => write!(f, ":{model}:s{i}")?,
            }
        }
        Ok(())
    }
}

impl Case {
    /// Parses what `Display` prints.
    pub fn parse(text: &str) -> Option<Case> {
        let mut parts = text.split(':');
        let syscall = parts.next()?.parse().ok()?;
        let fault = Fault::parse(parts.next()?)?;
        let crash = match (parts.next(), parts.next()) {
            (None, None) => None,
            (Some(model), Some(pick)) => {
                let model = PersistenceModel::parse(model)?;
                let pick = if let Some(i) = pick.strip_prefix('d') {
                    CrashPick::Distinct(i.parse().ok()?)
                } else {
                    CrashPick::Sample(pick.strip_prefix('s')?.parse().ok()?)
                };
                Some((model, pick))
            }
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        if (fault == Fault::PowerCut) != crash.is_some() {
            return None;
        }
        Some(Case { syscall, fault, crash })
    }
}

/// A whole repro line: which scenario, which seed, which case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReproLine {
    /// The scenario's name.
    pub scenario: String,
    /// The run seed.
    pub seed: u64,
    /// The case.
    pub case: Case,
}

impl fmt::Display for ReproLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.scenario, self.seed, self.case)
    }
}

impl ReproLine {
    /// Parses `<scenario>:<seed>:<syscall>:<fault>[:<model>:<pick>]`.
    pub fn parse(line: &str) -> Option<ReproLine> {
        let mut parts = line.trim().splitn(3, ':');
        let scenario = parts.next()?.to_string();
        let seed = parts.next()?.parse().ok()?;
        let case = Case::parse(parts.next()?)?;
        (!scenario.is_empty()).then_some(ReproLine { scenario, seed, case })
    }
}

/// The outcomes a power cut at `snapshot` is checked under for `model`:
/// every distinct one if there are at most `exhaustive_limit`, else
/// `samples` drawn from `crash_seed` (sample i from `crash_seed + i`).
pub fn crash_picks(
    snapshot: &SimSnapshot,
    model: PersistenceModel,
    exhaustive_limit: usize,
    samples: u64,
    crash_seed: u64,
) -> Vec<(CrashPick, CrashChoice)> {
    match snapshot.distinct_crashes(model, exhaustive_limit) {
        Some(choices) => choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| (CrashPick::Distinct(i), c))
            .collect(),
        None => (0..samples)
            .map(|i| {
                (
                    CrashPick::Sample(i),
                    snapshot.sample_crash(model, crash_seed.wrapping_add(i)),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repro_lines_round_trip() {
        for text in [
            "add-interrupted:7:123:power-cut:subset:d3",
            "add-interrupted:7:123:power-cut:torn:s1",
            "sqlite-wal-full:0:55:ENOSPC",
            "x:1:2:torn-write",
            "x:1:2:crash",
        ] {
            let line = ReproLine::parse(text).expect(text);
            assert_eq!(line.to_string(), text);
        }
        assert_eq!(ReproLine::parse("x:1:2:power-cut"), None);
        assert_eq!(ReproLine::parse("x:1:2:EIO:subset:d1"), None);
        assert_eq!(ReproLine::parse("x:y:2:EIO"), None);
    }
}
