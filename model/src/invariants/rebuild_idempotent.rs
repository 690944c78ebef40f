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

/// Two observations around a second full rebuild must be equal, but for
/// the records a full reconcile kept because a share link protects them
/// while their file is gone: a rebuild derives the index from the source
/// files alone, and drops them.
pub fn check(first: &Observation, second: &Observation) -> Option<Violation> {
    let mut before = first.indexed.clone();
    before.retain(|name, _| !first.shared.contains(name) || first.sources.contains_key(name));
    (before != second.indexed).then(|| {
        Violation::new(
            Invariant::RebuildIdempotent,
            format!(
                "a second full rebuild changed the index: {} entries before, {} after",
                before.len(),
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

    #[test]
    fn a_rebuild_may_drop_a_protected_record_whose_file_is_gone() {
        let mut kept = observation(&[("a", "1"), ("s", "2")]);
        kept.sources.remove("s");
        assert!(check(&kept, &observation(&[("a", "1")])).is_some());
        kept.shared.insert("s".into());
        assert!(check(&kept, &observation(&[("a", "1")])).is_none());
        assert!(check(&kept, &observation(&[])).is_some());
    }
}
