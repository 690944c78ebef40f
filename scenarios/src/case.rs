//! One case of a crash matrix, and the repro line that names it: the one
//! grammar every failure is printed in and `tearline repro` reads.
//!
//! ```text
//! LINE      := SCENARIO ":" SEED ":" INJECTION [ "@" SCALE ] [ " --store " STORE ]
//! INJECTION := SYSCALL ":" FAULT [ ":" MODEL ":" PICK ]     (MODEL and PICK for power cuts only)
//! PICK      := "d" N      the N-th distinct outcome of the power cut
//!            | "s" N      the outcome drawn from the run's crash seed plus N
//! ```
//!
//! - `SCENARIO` is a catalogue name (no `:`, `@` or white space); `SEED`
//!   and `SYSCALL` are decimal `u64`s; `FAULT` is what [`Fault`]'s
//!   `Display` writes (`power-cut`, `crash`, `ENOSPC`, `torn-write`, …);
//!   `MODEL` is what [`PersistenceModel`]'s `Display` writes (`nothing`,
//!   `prefix`, `subset`, `torn`, `torn-4096`).
//! - `@SCALE` (1 to 20) is written only when the run's scale is not
//!   [`DEFAULT_SCALE`]; `--store STORE` only when the store is not
//!   [`crate::stores::DEFAULT`]. The store name runs to the end of the line.
//!
//! `Display` writes the line and `FromStr` reads it back: `parse(display(c))
//! == c` for every case (a property test checks it), and any other string
//! is a [`CaseParseError`] saying what is wrong, never a panic.

use std::fmt;
use std::str::FromStr;

use tearline_sim_fs::{CrashChoice, Fault, PersistenceModel, SimSnapshot};

use crate::stores;

/// The SQLite matrices' size multiplier when a line names none.
pub const DEFAULT_SCALE: u32 = 2;

/// The largest scale a line or a run may name.
pub const MAX_SCALE: u32 = 20;

/// Where and how one case injects its fault: the part of a case the matrix
/// enumerates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Injection {
    /// The syscall index the fault strikes (for a power cut: the syscall
    /// before which the power goes; the workload's end means "after the
    /// last syscall").
    pub syscall: u64,
    /// The fault.
    pub fault: Fault,
    /// For power cuts: the persistence model and which outcome.
    pub crash: Option<(PersistenceModel, CrashPick)>,
}

/// Which outcome of a power cut a case checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPick {
    /// The i-th distinct outcome (exhaustive enumeration).
    Distinct(usize),
    /// The outcome drawn from the run's crash seed plus this sample number.
    Sample(u64),
}

/// One case: which scenario, seed, store and scale, and the injection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Case {
    /// The scenario's catalogue name.
    pub scenario: String,
    /// The run seed.
    pub seed: u64,
    /// Where and how the fault strikes.
    pub injection: Injection,
    /// The SQLite matrices' size multiplier the run used.
    pub scale: u32,
    /// The store under test (its `--store` name).
    pub store: String,
}

/// Why a string is not a repro line: what is wrong, and the grammar
/// expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseParseError(String, &'static str);

/// The syscall grammar, as an error message shows it.
const EXPECTED: &str = "<scenario>:<seed>:<syscall>:<fault>[:<model>:<d|s><n>][@<scale>][ --store <name>]";

impl fmt::Display for CaseParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (expected {})", self.0, self.1)
    }
}

impl std::error::Error for CaseParseError {}

impl CaseParseError {
    /// An error saying `why`, for a line of the grammar `expected` (one
    /// beside this one).
    pub(crate) fn new(why: impl Into<String>, expected: &'static str) -> Self {
        CaseParseError(why.into(), expected)
    }
}

fn bad(why: impl Into<String>) -> CaseParseError {
    CaseParseError(why.into(), EXPECTED)
}

/// Reads a power cut's `PICK` (`d<n>` or `s<n>`).
pub(crate) fn parse_pick(pick: &str) -> Result<CrashPick, CaseParseError> {
    let number = |digits: &str| {
        (!digits.starts_with('+'))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| bad(format!("outcome {pick:?} is not d<n> or s<n>")))
    };
    if let Some(i) = pick.strip_prefix('d') {
        let i = usize::try_from(number(i)?).map_err(|_| bad(format!("outcome {pick:?} is too large")))?;
        Ok(CrashPick::Distinct(i))
    } else if let Some(i) = pick.strip_prefix('s') {
        Ok(CrashPick::Sample(number(i)?))
    } else {
        Err(bad(format!("outcome {pick:?} is not d<n> or s<n>")))
    }
}

impl fmt::Display for Injection {
    /// `<syscall>:<fault>[:<model>:<d3|s1>]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.syscall, self.fault)?;
        match &self.crash {
            Some((model, CrashPick::Distinct(i))) => write!(f, ":{model}:d{i}"),
            Some((model, CrashPick::Sample(i))) => write!(f, ":{model}:s{i}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Injection {
    type Err = CaseParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        let (syscall, fault, crash) = match parts[..] {
            [syscall, fault] => (syscall, fault, None),
            [syscall, fault, model, pick] => (syscall, fault, Some((model, pick))),
            _ => return Err(bad(format!("{text:?} is not <syscall>:<fault>[:<model>:<pick>]"))),
        };
        let syscall = syscall
            .parse()
            .map_err(|_| bad(format!("syscall {syscall:?} is not a number")))?;
        let fault = Fault::parse(fault).ok_or_else(|| bad(format!("unknown fault {fault:?}")))?;
        let crash = match crash {
            None => None,
            Some((model, pick)) => {
                let model = PersistenceModel::parse(model)
                    .ok_or_else(|| bad(format!("unknown persistence model {model:?}")))?;
                let pick = parse_pick(pick)?;
                Some((model, pick))
            }
        };
        match (fault == Fault::PowerCut, crash.is_some()) {
            (true, false) => Err(bad("a power cut needs :<model>:<pick>")),
            (false, true) => Err(bad(format!("{fault} takes no persistence model"))),
            _ => Ok(Injection { syscall, fault, crash }),
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.scenario, self.seed, self.injection)?;
        if self.scale != DEFAULT_SCALE {
            write!(f, "@{}", self.scale)?;
        }
        if self.store != stores::DEFAULT {
            write!(f, " --store {}", self.store)?;
        }
        Ok(())
    }
}

impl FromStr for Case {
    type Err = CaseParseError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = line.trim();
        let (body, store) = match line.split_once(" --store") {
            Some((body, store)) if store.starts_with(char::is_whitespace) && !store.trim().is_empty() => {
                (body.trim_end(), store.trim().to_string())
            }
            Some((_, store)) if store.trim().is_empty() => return Err(bad("--store needs a name")),
            Some(_) | None => (line, stores::DEFAULT.to_string()),
        };
        let (body, scale) = match body.rsplit_once('@') {
            Some((body, scale)) => {
                let scale: u32 = scale
                    .parse()
                    .map_err(|_| bad(format!("scale {scale:?} is not a number")))?;
                if !(1..=MAX_SCALE).contains(&scale) {
                    return Err(bad(format!("scale {scale} is outside 1..={MAX_SCALE}")));
                }
                (body, scale)
            }
            None => (body, DEFAULT_SCALE),
        };
        let mut parts = body.splitn(3, ':');
        let scenario = parts.next().unwrap_or_default();
        if scenario.is_empty() || scenario.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad(format!("{scenario:?} is not a scenario name")));
        }
        let seed = parts.next().ok_or_else(|| bad("no seed"))?;
        let seed = seed
            .parse()
            .map_err(|_| bad(format!("seed {seed:?} is not a number")))?;
        let injection = parts.next().ok_or_else(|| bad("no syscall and fault"))?.parse()?;
        Ok(Case {
            scenario: scenario.to_string(),
            seed,
            injection,
            scale,
            store,
        })
    }
}

impl serde::Serialize for Case {
    /// As its repro line.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Case {
    /// From its repro line.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let line = String::deserialize(deserializer)?;
        line.parse().map_err(serde::de::Error::custom)
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
            .map(|i| (CrashPick::Sample(i), resolve_sample(snapshot, model, crash_seed, i)))
            .collect(),
    }
}

/// The outcome `pick` names for a power cut at `snapshot` under `model`
/// (what [`crash_picks`] gave it), or `None` if there is no such distinct
/// outcome. The one place a pick becomes a disk state.
pub fn resolve_crash(
    snapshot: &SimSnapshot,
    model: PersistenceModel,
    pick: CrashPick,
    crash_seed: u64,
) -> Option<CrashChoice> {
    match pick {
        CrashPick::Distinct(i) => snapshot
            .distinct_crashes(model, usize::MAX >> 1)
            .and_then(|all| all.into_iter().nth(i)),
        CrashPick::Sample(i) => Some(resolve_sample(snapshot, model, crash_seed, i)),
    }
}

fn resolve_sample(snapshot: &SimSnapshot, model: PersistenceModel, crash_seed: u64, sample: u64) -> CrashChoice {
    snapshot.sample_crash(model, crash_seed.wrapping_add(sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str) -> Result<Case, CaseParseError> {
        text.parse()
    }

    #[test]
    fn todays_lines_read_and_write_back_unchanged() {
        for text in [
            "add-interrupted:7:123:power-cut:subset:d3",
            "add-interrupted:7:123:power-cut:torn:s1",
            "sqlite-wal-full:0:55:ENOSPC",
            "sqlite-wal-full:0:55:ENOSPC@4",
            "x:1:2:torn-write",
            "x:1:2:crash",
            "rebuild-swap-interrupted:0:1313:power-cut:prefix:d1 --store refstore/two-rename-swap",
        ] {
            let parsed = case(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.to_string(), text);
        }
        let parsed = case("s:3:9:EIO@5 --store notes").expect("parses");
        assert_eq!((parsed.scale, parsed.store.as_str(), parsed.seed), (5, "notes", 3));
        assert_eq!(case("s:3:9:EIO@2").expect("parses").to_string(), "s:3:9:EIO");
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        for (text, says) in [
            ("x:1:2:power-cut", "needs :<model>"),
            ("x:1:2:EIO:subset:d1", "takes no persistence model"),
            ("x:y:2:EIO", "seed"),
            ("x:1:two:EIO", "syscall"),
            ("x:1:2:EBOGUS", "unknown fault"),
            ("x:1:2:power-cut:sideways:d1", "persistence model"),
            ("x:1:2:power-cut:subset:q1", "d<n> or s<n>"),
            ("x:1:2:EIO@0", "outside"),
            ("x:1:2:EIO@99", "outside"),
            ("x:1:2:EIO --store ", "needs a name"),
            (":1:2:EIO", "scenario name"),
            ("x:1", "no syscall"),
            ("", "scenario name"),
        ] {
            let error = case(text).expect_err(text).to_string();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
