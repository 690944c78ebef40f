//! recovery-idempotent: once a writable open has recovered a store,
//! closing it and opening it writable again changes nothing a reader can
//! see.
//!
//! A repair that damages what it repairs (a torn-tail repair that cuts a
//! byte too many, a cleanup that leaves work for the next open) shows only
//! at the next open: the engine reopens the store after every recovery that
//! kept every other invariant, and compares the two observations.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// recovery-idempotent in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "recovery-idempotent",
    explanation: "Once a writable open has recovered the store after a fault, closing it and opening it \
                  writable again shows the same state: the same documents and sources, the same vectors, \
                  nothing newly pending or left behind, the same backups and schema. Checked after every \
                  recovery that kept the other invariants.",
    usually: "Running recovery twice changed the store the second time: the first recovery left work half done, or a repair cut too much. Usually fixed by making every recovery step check its own precondition and by syncing what it writes.",
    example: "a second writable open changed the store: vector 3 lost its last byte (dropped 1 byte)",
    needs: None,
    applies_to: |_| true,
};

/// The second writable open failed although the first had recovered.
pub fn reopen_failed(error: impl std::fmt::Display) -> Violation {
    Violation::new(
        Invariant::RecoveryIdempotent,
        format!("a second writable open after recovery failed: {error}"),
    )
}

/// The observation after a second writable open must equal the one after
/// the first (the recovery's).
pub fn check(recovered: &Observation, reopened: &Observation) -> Option<Violation> {
    let names = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(name, hash)| format!("{name}={}", hash.chars().take(8).collect::<String>()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let sides = |o: &Observation| {
        [
            ("index", names(&o.indexed)),
            ("sources", names(&o.sources)),
            ("integrity", o.integrity_ok.to_string()),
            ("orphan vectors", o.orphan_vectors.to_string()),
            ("missing vectors", o.missing_vectors.to_string()),
            ("pending work", o.pending_work.to_string()),
            ("left behind", o.leftover_files.join(",")),
            ("backups", o.backups.to_string()),
            ("schema", format!("{:?}", o.schema)),
        ]
    };
    let differences: Vec<String> = sides(recovered)
        .into_iter()
        .zip(sides(reopened))
        .filter(|((_, before), (_, after))| before != after)
        .map(|((what, before), (_, after))| format!("{what} {before} -> {after}"))
        .collect();
    (!differences.is_empty()).then(|| {
        Violation::new(
            Invariant::RecoveryIdempotent,
            format!(
                "a second writable open after recovery changed what the store shows: {}",
                differences.join("; ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn the_same_state_twice_passes() {
        let recovered = observation(&[("a", "1"), ("b", "2")]);
        assert_eq!(check(&recovered, &recovered.clone()), None);
    }

    #[test]
    fn a_vector_lost_at_the_second_open_breaks_it() {
        let recovered = observation(&[("a", "1")]);
        let mut reopened = recovered.clone();
        reopened.missing_vectors = 1;
        let violation = check(&recovered, &reopened).expect("caught");
        assert_eq!(violation.invariant, Invariant::RecoveryIdempotent);
        assert_eq!(
            violation.evidence,
            "a second writable open after recovery changed what the store shows: missing vectors 0 -> 1"
        );
    }

    #[test]
    fn a_document_that_changes_or_work_left_for_later_breaks_it() {
        let recovered = observation(&[("a", "1")]);
        let reopened = observation(&[("a", "2")]);
        let evidence = check(&recovered, &reopened).expect("caught").evidence;
        let (first, second) = (&recovered.indexed["a"][..8], &reopened.indexed["a"][..8]);
        assert!(
            evidence.contains(&format!("index a={first} -> a={second}")),
            "{evidence}"
        );
        let mut pending = recovered.clone();
        pending.pending_work = 2;
        pending.leftover_files = vec!["/store/x.tmp".into()];
        let evidence = check(&recovered, &pending).expect("caught").evidence;
        assert!(evidence.contains("pending work 0 -> 2"), "{evidence}");
        assert!(evidence.contains("left behind  -> /store/x.tmp"), "{evidence}");
        assert!(
            reopen_failed("EIO")
                .evidence
                .contains("second writable open after recovery failed: EIO")
        );
    }
}
