//! committed-durable: every operation that returned Ok before the fault is
//! there after recovery.
//!
//! Judged document by document on each side of the observation (see
//! `model_comparison`), for the documents the operation in flight does not
//! touch: those must hold exactly their acknowledged content. Callers reach
//! it through [`check_recovered`](super::check_recovered). What the
//! operation in flight touches is [`atomic_op`](super::atomic_op)'s.

use super::model_comparison::{Document, short};
use super::{Invariant, InvariantSpec, Violation};

/// committed-durable in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "committed-durable",
    explanation: "Every operation that returned Ok before the fault is there after recovery: its \
                  documents are in the index and the source files with the content it gave them. \
                  Checked against the model's acknowledged state; an operation still in flight is \
                  exempt (that is atomic-op).",
    usually: "An operation was acknowledged before its data was durable: a missing fsync of the file, or of the directory that holds its new name, or a failed fsync that was retried and believed. Usually fixed by fsyncing file then directory before returning Ok, and treating a failed fsync as a failed operation.",
    example: "index d0.md: acknowledged content 9b78224e, found absent (add d0.md returned Ok before the power cut)",
    needs: None,
    applies_to: |_| true,
};

/// A document the operation in flight does not touch must hold its
/// acknowledged content (`document.before`).
pub(crate) fn check_document(document: &Document<'_>) -> Option<Violation> {
    let Document {
        side,
        name,
        found,
        before,
        ..
    } = document;
    (found != before).then(|| {
        Violation::new(
            Invariant::CommittedDurable,
            format!(
                "{side} {name}: acknowledged content {}, found {}",
                short(*before),
                short(*found)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::check_recovered;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_lost_acknowledged_document_breaks_committed_durable() {
        let model = model_with(&[add("a", "1"), add("b", "2")], None);
        let found = observation(&[("a", "1")]);
        let violations = check_recovered(&found, &model, &caps());
        assert_eq!(
            broken(&violations),
            [Invariant::CommittedDurable, Invariant::CommittedDurable]
        );
        assert!(violations[0].evidence.contains("index b"), "{}", violations[0].evidence);
        assert!(check_recovered(&observation(&[("a", "1"), ("b", "2")]), &model, &caps()).is_empty());
    }

    #[test]
    fn the_evidence_names_the_side_and_both_contents() {
        let hash = "0123456789abcdef".to_string();
        let other = "fedcba9876543210".to_string();
        let document = |found| Document {
            side: "source",
            name: "a",
            op: "",
            found,
            before: Some(&hash),
            after: Some(&hash),
            follows_source: false,
        };
        assert_eq!(check_document(&document(Some(&hash))), None);
        let changed = check_document(&document(Some(&other))).expect("caught");
        assert_eq!(
            changed.evidence,
            "source a: acknowledged content 01234567, found fedcba98"
        );
        let lost = check_document(&document(None)).expect("caught");
        assert_eq!(lost.evidence, "source a: acknowledged content 01234567, found absent");
    }
}
