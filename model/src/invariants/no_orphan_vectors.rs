//! no-orphan-vectors: after recovery the index and the vector store agree
//! both ways.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// no-orphan-vectors in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "no-orphan-vectors",
    explanation: "After recovery, no vector is stored that no index entry refers to, and no index entry \
                  refers to a missing vector. Needs a vector store.",
    usually: "A vector store and an index written without a shared transaction: a crash between the two writes leaves a vector no document names (or a document whose vector is missing). Usually fixed with a durable intent before the first write and a recovery that completes or undoes it, plus a sweep of unclaimed ids.",
    example: "vector 17 is in the vector store but no index entry names it (orphan)",
    needs: Some("a vector store (capability `vectors`)"),
    applies_to: |caps| caps.vectors,
};

/// No vector without an entry, no entry without its vector (for a store
/// with a vector store).
pub fn check(observation: &Observation) -> Option<Violation> {
    (observation.orphan_vectors > 0 || observation.missing_vectors > 0).then(|| {
        Violation::new(
            Invariant::NoOrphanVectors,
            format!(
                "{} vectors no entry refers to, {} entries whose vector is missing",
                observation.orphan_vectors, observation.missing_vectors
            ),
        )
    })
}

/// The store said its vector store could not be reached
/// ([`Observation::remote_unavailable`]) while the harness had it up, so its
/// vectors went unchecked.
pub fn claimed_unreachable() -> Violation {
    Violation::new(
        Invariant::NoOrphanVectors,
        "the store said its vector store could not be reached while it was up, so no vector was checked",
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_claim_of_an_unreachable_vector_store_is_a_violation_of_its_own() {
        let v = claimed_unreachable();
        assert_eq!(v.invariant, Invariant::NoOrphanVectors);
        assert!(v.evidence.contains("while it was up"), "{v}");
    }

    #[test]
    fn an_orphan_or_a_missing_vector_breaks_it_and_agreement_keeps_it() {
        let mut found = observation(&[("a", "1")]);
        assert_eq!(check(&found), None);
        found.orphan_vectors = 2;
        let orphans = check(&found).expect("caught");
        assert_eq!(orphans.invariant, Invariant::NoOrphanVectors);
        assert_eq!(
            orphans.evidence,
            "2 vectors no entry refers to, 0 entries whose vector is missing"
        );
        found.orphan_vectors = 0;
        found.missing_vectors = 1;
        assert_eq!(
            check(&found).expect("caught").evidence,
            "0 vectors no entry refers to, 1 entries whose vector is missing"
        );
    }
}
