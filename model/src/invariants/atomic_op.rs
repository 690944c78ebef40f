//! atomic-op: the operation in flight at the fault (or that failed) left
//! every document it touches entirely as before or entirely as after, and an
//! atomic operation left all of them before or all after.
//!
//! Judged on each side of the observation (see `model_comparison`), for the
//! documents the operation in flight touches: each one by
//! `check_document`, then the side as a whole by `check_whole`; callers
//! reach it through [`check_recovered`](super::check_recovered).

use super::model_comparison::{Document, short};
use super::{Invariant, InvariantSpec, Violation};
use crate::model::Granularity;

/// atomic-op in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "atomic-op",
    explanation: "The operation in flight at the fault (or that failed) left every document it touches \
                  entirely as before or entirely as after; an atomic operation (add, remove, import, \
                  full rebuild) left all of them before or all after.",
    usually: "An operation's steps were made durable one by one with no record of the whole: a crash between them leaves half an import, or a document whose index row is new and whose file is old. Usually fixed with a journal (or intent record) written durably before the first change, and a recovery that rolls the whole operation back or forward from it.",
    example: "import 4 documents: after recovery a.md, b.md are as after and c.md, d.md as before (half applied)",
    needs: None,
    applies_to: |_| true,
};

/// The touched documents of one side found wholly after and wholly before
/// the operation in flight.
#[derive(Default)]
pub(crate) struct Halves<'a> {
    after: Vec<&'a str>,
    before: Vec<&'a str>,
}

/// A document the operation in flight touches must be as before or as
/// after; which one it is goes into `halves` for [`check_whole`]. An index
/// entry that follows its source file counts as before (a rolled-back
/// mutation re-indexes from the files).
pub(crate) fn check_document<'a>(document: &Document<'a>, halves: &mut Halves<'a>) -> Option<Violation> {
    let Document {
        side,
        name,
        op,
        found: got,
        before: old,
        after: new,
        follows_source,
    } = *document;
    if got == new && got != old {
        halves.after.push(name);
    } else if (got == old || follows_source) && got != new {
        halves.before.push(name);
    } else if got != old && got != new {
        return Some(Violation::new(
            Invariant::AtomicOp,
            format!(
                "{side} {name} after an interrupted `{op}` is {}, neither before ({}) nor after ({})",
                short(got),
                short(old),
                short(new)
            ),
        ));
    }
    None
}

/// An atomic operation (`Granularity::Whole`) must not be half applied on
/// one side: some touched documents as after and others as before.
pub(crate) fn check_whole(side: &str, op: &str, granularity: Granularity, halves: &Halves<'_>) -> Option<Violation> {
    (granularity == Granularity::Whole && !halves.after.is_empty() && !halves.before.is_empty()).then(|| {
        Violation::new(
            Invariant::AtomicOp,
            format!(
                "an interrupted `{op}` is half applied in the {side}: {} as after, {} as before",
                halves.after.join(", "),
                halves.before.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::check_recovered;
    use super::super::test_support::*;
    use super::*;
    use crate::contract::Operation;

    #[test]
    fn an_in_flight_operation_may_be_before_or_after_but_not_half() {
        let import = Operation::Import {
            documents: vec![("x".into(), "new".into()), ("y".into(), "new".into())],
        };
        let model = model_with(&[add("x", "old"), add("y", "old")], Some(import));
        assert!(check_recovered(&observation(&[("x", "old"), ("y", "old")]), &model, &caps()).is_empty());
        assert!(check_recovered(&observation(&[("x", "new"), ("y", "new")]), &model, &caps()).is_empty());
        let half = check_recovered(&observation(&[("x", "new"), ("y", "old")]), &model, &caps());
        assert!(broken(&half).contains(&Invariant::AtomicOp), "{half:?}");
        let garbage = check_recovered(&observation(&[("x", "???"), ("y", "old")]), &model, &caps());
        assert!(broken(&garbage).contains(&Invariant::AtomicOp));
    }

    #[test]
    fn per_document_operations_may_be_mixed() {
        let mut model = model_with(&[add("x", "old"), add("y", "old")], None);
        model.edit_source("x", Some("new"));
        model.edit_source("y", Some("new"));
        model.begin(&Operation::Rebuild {
            kind: crate::contract::RebuildKind::Incremental,
        });
        let mut found = observation(&[("x", "new"), ("y", "old")]);
        found.sources = observation(&[("x", "new"), ("y", "new")]).sources;
        assert!(check_recovered(&found, &model, &caps()).is_empty());
    }

    #[test]
    fn a_rolled_back_operation_may_refresh_a_stale_entry_from_its_file() {
        // a.md indexed as "1", then edited behind the store's back to "2";
        // a replace to "3" is interrupted and rolled back, re-indexing a.md
        // from its file.
        let mut model = model_with(&[add("a", "1")], None);
        model.edit_source("a", Some("2"));
        model.begin(&add("a", "3"));
        let mut found = observation(&[("a", "2")]);
        found.sources = observation(&[("a", "2")]).sources;
        assert!(check_recovered(&found, &model, &caps()).is_empty());
        // An entry matching neither the model nor the file is still caught.
        let mut garbage = observation(&[("a", "9")]);
        garbage.sources = found.sources.clone();
        assert!(broken(&check_recovered(&garbage, &model, &caps())).contains(&Invariant::AtomicOp));
    }

    #[test]
    fn the_evidence_names_the_operation_and_the_halves() {
        let import = Operation::Import {
            documents: vec![("x".into(), "new".into()), ("y".into(), "new".into())],
        };
        let model = model_with(&[add("x", "old"), add("y", "old")], Some(import));
        let mut half = observation(&[("x", "new"), ("y", "old")]);
        half.sources = observation(&[("x", "old"), ("y", "old")]).sources;
        let violations = check_recovered(&half, &model, &caps());
        assert_eq!(broken(&violations), [Invariant::AtomicOp]);
        assert_eq!(
            violations[0].evidence,
            "an interrupted `import 2 documents` is half applied in the index: x as after, y as before"
        );
    }
}
