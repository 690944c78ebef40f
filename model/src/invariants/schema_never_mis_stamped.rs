//! schema-never-mis-stamped: the schema version on disk is this build's, and
//! the stored schema is really that version's.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// schema-never-mis-stamped in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "schema-never-mis-stamped",
    explanation: "The schema version on disk is this build's, and the stored schema is really that \
                  version's (no version stamped without its migration). Needs a versioned schema.",
    usually: "An index claims a schema version its tables do not have: the version was stamped before (or without) the migration it names. Usually fixed by running a migration and its stamp in one transaction.",
    example: "the index says schema version 3 but its files table lacks column content_hash",
    needs: Some("a versioned schema (capability `schema_version`)"),
    applies_to: |caps| caps.schema_version,
};

/// The stored schema matches its stamp, the stamp is the version this build
/// expects, and a store that declares a versioned schema reports one.
pub fn check(observation: &Observation) -> Option<Violation> {
    match &observation.schema {
        Some(schema) if !schema.matches_stamp => Some(Violation::new(
            Invariant::SchemaNeverMisStamped,
            format!(
                "the schema is stamped version {} but is not that version's schema",
                schema.version
            ),
        )),
        Some(schema) if schema.version != schema.expected => Some(Violation::new(
            Invariant::SchemaNeverMisStamped,
            format!(
                "a writable open left version {}, not {}",
                schema.version, schema.expected
            ),
        )),
        Some(_) => None,
        None => Some(Violation::new(
            Invariant::SchemaNeverMisStamped,
            "the store declares a versioned schema but reports none",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract::SchemaObservation;

    #[test]
    fn a_wrong_or_missing_stamp_breaks_it_and_the_expected_one_keeps_it() {
        let with = |version, expected, matches_stamp| {
            let mut found = observation(&[]);
            found.schema = Some(SchemaObservation {
                version,
                expected,
                matches_stamp,
            });
            check(&found).map(|v| v.evidence)
        };
        assert_eq!(with(3, 3, true), None);
        assert_eq!(
            with(3, 3, false).as_deref(),
            Some("the schema is stamped version 3 but is not that version's schema")
        );
        assert_eq!(
            with(2, 3, true).as_deref(),
            Some("a writable open left version 2, not 3")
        );
        let none = check(&observation(&[])).expect("caught");
        assert_eq!(none.invariant, Invariant::SchemaNeverMisStamped);
        assert_eq!(none.evidence, "the store declares a versioned schema but reports none");
    }
}
