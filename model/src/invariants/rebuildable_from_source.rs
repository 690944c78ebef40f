//! rebuildable-from-source: a store whose source files are the truth can
//! always be brought back from them.
//!
//! After damage to a file the store derives from its sources (its index,
//! vectors, the pointer to the live generation, a completion mark, a
//! journal: a [`crate::model::Model::note_damage`] by the harness's damage
//! step, or a fault at rest that struck one), a writable open, which holds
//! the lock, must bring back a complete store that serves every source
//! document, without the operator editing a file. A writable open that then
//! fails with no fault of its own breaks it ([`open_failed`]); one that
//! succeeds is held to the model like any recovery, and a wrong answer
//! there is silent corruption.

use std::fmt;

use super::{Invariant, InvariantSpec, Violation};

/// rebuildable-from-source in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "rebuildable-from-source",
    explanation: "A store whose source files are the truth can always be brought back from them: after \
                  damage to any file it derives from them (index, vectors, CURRENT, CREATED, journals: \
                  garbage, a flipped bit, an unreadable sector, a truncation, a pointer to a generation \
                  that does not exist), a writable open under the lock restores a complete, verified store \
                  with every source document, unchanged, and without the operator editing files. Needs a \
                  store that names its derived files.",
    usually: "A damaged derived file (index, vectors, pointer, journal) wedged the store although its sources are the truth: the repair path needed the damaged file to open first. Usually fixed by checking derived files before use and rebuilding them from the sources when damaged.",
    example: "after 16 bytes of garbage in the middle of /store/generations/gen-000002/index.db, the writable open failed: file is not a database",
    needs: Some("derived files the harness can damage (capability `derived_files`)"),
    applies_to: |caps| caps.derived_files && caps.source_files,
};

/// After `damage`, the writable open that must repair the store failed.
pub fn open_failed(damage: &str, error: impl fmt::Display) -> Violation {
    Violation::new(
        Invariant::RebuildableFromSource,
        format!("after {damage}, the writable open failed instead of rebuilding from the source files: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Capabilities;

    #[test]
    fn a_failed_repair_names_the_damage_and_the_error() {
        let violation = open_failed(
            "garbage in the middle of /store/generations/gen-000002/index.db",
            "file is not a database",
        );
        assert_eq!(violation.invariant, Invariant::RebuildableFromSource);
        assert_eq!(
            violation.evidence,
            "after garbage in the middle of /store/generations/gen-000002/index.db, the writable open failed \
             instead of rebuilding from the source files: file is not a database"
        );
    }

    #[test]
    fn it_needs_sources_and_named_derived_files() {
        let both = Capabilities {
            derived_files: true,
            source_files: true,
            ..Capabilities::default()
        };
        assert!((SPEC.applies_to)(&both));
        assert!(!(SPEC.applies_to)(&Capabilities {
            source_files: false,
            ..both
        }));
    }
}
