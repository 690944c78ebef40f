//! rebuild-idempotent: a full rebuild run twice in a row gives the same
//! logical content as running it once.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// rebuild-idempotent in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "rebuild-idempotent",
    explanation: "A full rebuild run twice in a row gives the same logical content as running it once. \
                  Checked after a scenario's fault-free rebuild.",
    usually: "A second full rebuild from the same sources gave a different index: the rebuild depends on state other than the sources (order, leftovers, the previous index). Usually fixed by deriving everything from a sorted listing of the sources.",
    example: "a second full rebuild changed the index: b.md summary differs",
    needs: Some("full rebuilds (capability `full_rebuild`)"),
    applies_to: |caps| caps.full_rebuild,
};

/// Two observations around a second full rebuild must be equal.
pub fn check(first: &Observation, second: &Observation) -> Option<Violation> {
    (first.indexed != second.indexed).then(|| {
        Violation::new(
            Invariant::RebuildIdempotent,
            format!(
                "a second full rebuild changed the index: {} entries before, {} after",
                first.indexed.len(),
                second.indexed.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn idempotence_compares_the_index_around_a_second_rebuild() {
        let mut found = observation(&[("a", "1")]);
        found.sources.insert("b".into(), "h".into());
        assert!(check(&found, &observation(&[("a", "1")])).is_none());
        assert!(check(&found, &observation(&[])).is_some());
        assert_eq!(
            check(&found, &observation(&[])).map(|v| (v.invariant, v.evidence)),
            Some((
                Invariant::RebuildIdempotent,
                "a second full rebuild changed the index: 1 entries before, 0 after".to_string()
            ))
        );
    }
}
