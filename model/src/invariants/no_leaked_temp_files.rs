//! no-leaked-temp-files: after a writable open no temporary, staging or
//! snapshot file of an interrupted operation is left under the store's
//! root.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// no-leaked-temp-files in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "no-leaked-temp-files",
    explanation: "After a writable open, no temporary, staging or snapshot file of an interrupted \
                  operation is left under the store's root.",
    usually: "Temporary files of an interrupted write outlive recovery and accumulate. Usually fixed by naming temporaries recognisably and removing them during recovery, under the lock.",
    example: "after recovery source/.a.md.journal.tmp is still on disk",
    needs: None,
    applies_to: |_| true,
};

/// The store reports no leftover file.
pub fn check(observation: &Observation) -> Option<Violation> {
    (!observation.leftover_files.is_empty()).then(|| {
        Violation::new(
            Invariant::NoLeakedTempFiles,
            format!("left behind: {}", observation.leftover_files.join(", ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_leftover_file_breaks_it_and_none_keeps_it() {
        let mut found = observation(&[("a", "1")]);
        assert_eq!(check(&found), None);
        found.leftover_files = vec!["source/.a.tmp".into(), "staging/b".into()];
        let violation = check(&found).expect("caught");
        assert_eq!(violation.invariant, Invariant::NoLeakedTempFiles);
        assert_eq!(violation.evidence, "left behind: source/.a.tmp, staging/b");
    }
}
