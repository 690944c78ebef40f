//! complete-database: after any fault and a writable reopen, the store
//! opens, and its index passes its own integrity check.
//!
//! [`check`] reads the integrity check off an observation; a writable open
//! or an observation that fails after the fault is a violation too
//! ([`open_failed`], [`observe_failed`]), and so is a writable open refused
//! because of a lock left by a killed process ([`stale_lock_refused`]), and
//! so is an open that had to rebuild a live index no fault at rest damaged
//! ([`repaired_without_damage`]).

use std::fmt;

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;
use crate::model::Model;

/// complete-database in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "complete-database",
    explanation: "After any fault and a writable reopen, the store opens, and its index passes its own \
                  integrity check (SQLite's integrity_check for SQLite stores), without having to rebuild \
                  it from the source files when nothing damaged it at rest (a store that says it repaired \
                  itself). Checked after every injected fault.",
    usually: "After recovery the store has no complete, sound index: a file replaced in place, a pointer switched before its target was durable, or a torn page nothing detects. Usually fixed with write-new-then-rename, a durable directory before the switch, and checksums or an integrity check at open.",
    example: "the database does not open: file is not a database (after a power cut at syscall 1432, fsync of index.db)",
    needs: None,
    applies_to: |_| true,
};

/// The index must pass its integrity check.
pub fn check(observation: &Observation) -> Option<Violation> {
    (!observation.integrity_ok).then(|| {
        Violation::new(
            Invariant::CompleteDatabase,
            format!("the index fails its integrity check: {}", observation.integrity_detail),
        )
    })
}

/// The open that recovered the store repaired a live index that no fault
/// at rest damaged ([`Observation::repaired`]): the index a crash left was
/// not complete, and the repair from the source files hid it.
pub fn repaired_without_damage(observation: &Observation, model: &Model) -> Option<Violation> {
    let found = observation.repaired.as_ref()?;
    model.damage().is_none().then(|| {
        Violation::new(
            Invariant::CompleteDatabase,
            format!(
                "the open after the fault found the live index damaged ({found}) though nothing damaged it at \
                 rest, and rebuilt it from the source files: the crash left no complete index"
            ),
        )
    })
}

/// The writable open after the fault returned this error.
pub fn open_failed(error: impl fmt::Display) -> Violation {
    Violation::new(
        Invariant::CompleteDatabase,
        format!("the writable open after the fault failed: {error}"),
    )
}

/// A writable open returned this error after process `killed`, which held
/// the store writable, was killed (`kill -9`): a lock left by a dead process,
/// held by nobody, must not keep the store shut.
pub fn stale_lock_refused(killed: u32, error: impl fmt::Display) -> Violation {
    Violation::new(
        Invariant::CompleteDatabase,
        format!(
            "the writable open after process {killed} was killed holding the store (its lock left behind, \
             held by nobody) failed: {error}"
        ),
    )
}

/// Observing the store after its writable open returned this error.
pub fn observe_failed(error: impl fmt::Display) -> Violation {
    Violation::new(
        Invariant::CompleteDatabase,
        format!("observing the recovered store failed: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_failed_integrity_check_breaks_it_and_a_passing_one_keeps_it() {
        let mut found = observation(&[("a", "1")]);
        assert_eq!(check(&found), None);
        found.integrity_ok = false;
        found.integrity_detail = "page 3 is never used".into();
        let violation = check(&found).expect("caught");
        assert_eq!(violation.invariant, Invariant::CompleteDatabase);
        assert_eq!(
            violation.evidence,
            "the index fails its integrity check: page 3 is never used"
        );
    }

    #[test]
    fn a_repair_nothing_at_rest_called_for_breaks_it() {
        let mut found = observation(&[("a", "1")]);
        let mut model = model_with(&[add("a", "1")], None);
        assert_eq!(repaired_without_damage(&found, &model), None);
        found.repaired = Some("/s/CURRENT: it names gen-000003, which does not exist".into());
        let violation = repaired_without_damage(&found, &model).expect("caught");
        assert_eq!(violation.invariant, Invariant::CompleteDatabase);
        assert!(violation.evidence.contains("gen-000003"), "{violation}");
        assert!(
            violation.evidence.contains("though nothing damaged it at rest"),
            "{violation}"
        );
        // After damage at rest, a repair is what the store must do.
        model.note_damage("garbage in the middle of /s/generations/gen-000001/index.db");
        assert_eq!(repaired_without_damage(&found, &model), None);
    }

    #[test]
    fn a_store_that_does_not_open_or_observe_after_the_fault_breaks_it() {
        assert_eq!(
            open_failed("database disk image is malformed"),
            Violation::new(
                Invariant::CompleteDatabase,
                "the writable open after the fault failed: database disk image is malformed"
            )
        );
        assert_eq!(
            observe_failed("no such table").evidence,
            "observing the recovered store failed: no such table"
        );
    }
}
