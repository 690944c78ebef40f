//! failed-means-not-applied: an operation the store failed saying nothing
//! of it was applied ([`FailureKind::NotApplied`](crate::contract::FailureKind::NotApplied))
//! is absent after every later recovery.
//!
//! The model remembers what such an operation would have left
//! ([`Model::reject`](crate::model::Model::reject)); the comparison of each
//! later observation with the model (see `model_comparison`) names a
//! document found that way after it, instead of committed-durable or
//! atomic-op. Only a store that declares
//! [`Capabilities::definite_failures`](crate::contract::Capabilities::definite_failures)
//! is held to it; for any other, every failure's outcome is unknown.

use super::model_comparison::short;
use super::{Invariant, InvariantSpec, Violation};
use crate::model::Rejected;

/// failed-means-not-applied in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "failed-means-not-applied",
    explanation: "An operation that returned a definite failure (the store said nothing of it was \
                  applied) is absent after every later recovery and every later operation: none of its \
                  documents shows its content in the index or the source files. A store that may still \
                  roll an operation forward must say its outcome is unknown (or succeed), not that it \
                  failed. Checked on every observation after such a failure; the workload goes on \
                  after it.",
    usually: "The store said an operation failed and changed nothing, but a later recovery applied it: the commit point came before the error was decided. Usually fixed by reporting the failure's real effect (\"committed, indexing pending\") or by rolling back before reporting.",
    example: "`import 4 documents` failed with \"disk is full; nothing was changed\", and a later `rm` applied the whole import",
    needs: Some("failures that say nothing was applied (definite_failures)"),
    applies_to: |caps| caps.definite_failures,
};

/// `name` on `side` was found as `rejected` would have left it.
pub(crate) fn violation(side: &str, name: &str, rejected: &Rejected, found: Option<&String>) -> Violation {
    Violation::new(
        Invariant::FailedMeansNotApplied,
        format!(
            "`{}` failed saying nothing was applied, yet {side} {name} is as it would leave it ({})",
            rejected.op,
            short(found)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::check_recovered;
    use super::super::test_support::*;
    use super::*;
    use crate::contract::Operation;

    #[test]
    fn a_failed_import_found_applied_breaks_failed_means_not_applied() {
        let import = Operation::Import {
            documents: vec![("x".into(), "new".into()), ("y".into(), "new".into())],
        };
        let mut model = model_with(&[add("x", "old")], Some(import));
        model.reject();
        let applied = check_recovered(&observation(&[("x", "new"), ("y", "new")]), &model, &caps());
        assert_eq!(broken(&applied), [Invariant::FailedMeansNotApplied; 4], "{applied:?}");
        assert!(
            applied[0].evidence.contains("`import 2 documents` failed"),
            "{applied:?}"
        );
        assert!(check_recovered(&observation(&[("x", "old")]), &model, &caps()).is_empty());
        // Content it would not have left is the other invariants' to judge.
        let lost = check_recovered(&observation(&[]), &model, &caps());
        assert_eq!(broken(&lost), [Invariant::CommittedDurable; 2]);
    }

    #[test]
    fn an_index_that_caught_up_with_its_file_is_not_the_failed_operations_doing() {
        // Found by the fuzzer (target `operations`): b.md edited behind the
        // store's back to X, then `add b.md X` fails saying nothing was
        // applied; its rollback re-indexes b.md from its file (the
        // filesystem wins), which is X.
        let mut model = model_with(&[], None);
        model.edit_source("b.md", Some("X"));
        model.begin(&add("b.md", "X"));
        model.reject();
        let caught_up = check_recovered(&observation(&[("b.md", "X")]), &model, &caps());
        assert!(caught_up.is_empty(), "{caught_up:?}");
        // Content the file never held is still the failed add's doing.
        let mut model = model_with(&[], None);
        model.edit_source("b.md", Some("X"));
        model.begin(&add("b.md", "Z"));
        model.reject();
        let mut applied = observation(&[("b.md", "Z")]);
        applied.sources = observation(&[("b.md", "X")]).sources;
        let found = check_recovered(&applied, &model, &caps());
        assert_eq!(broken(&found), [Invariant::FailedMeansNotApplied], "{found:?}");
    }

    #[test]
    fn a_failed_removal_found_applied_is_named() {
        let mut model = model_with(&[add("x", "old")], Some(Operation::Remove { name: "x".into() }));
        model.reject();
        let removed = check_recovered(&observation(&[]), &model, &caps());
        assert_eq!(broken(&removed), [Invariant::FailedMeansNotApplied; 2], "{removed:?}");
        assert!(!Invariant::FailedMeansNotApplied.applies_to(&caps()));
        let definite = crate::contract::Capabilities {
            definite_failures: true,
            ..caps()
        };
        assert!(Invariant::FailedMeansNotApplied.applies_to(&definite));
    }
}
