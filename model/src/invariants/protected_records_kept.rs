//! protected-records-kept: a record with an active share link is never
//! deleted by a clean or a full reconcile, and an acknowledged share link
//! survives every fault.

use std::collections::BTreeSet;

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;
use crate::model::Model;

/// protected-records-kept in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "protected-records-kept",
    explanation: "A record with an active share link is protected: a clean or full reconcile reports it as \
                  orphaned but protected and never deletes it, and an acknowledged share link survives \
                  every fault. Checked after every recovery: every document the model says is shared and \
                  indexed (before and after the operation in flight) must be indexed and shared, and no \
                  document may have a link the model gives it neither before nor after. Needs share links.",
    usually: "A cleanup deleted a record someone still links to: the reconcile's delete pass does not look at \
              share links, or the share link itself was not made durable before it was acknowledged, so \
              after a crash the record looked unprotected. Usually fixed by filtering protected records out \
              of every destructive pass (and reporting them), and by writing links durably (fsync the file \
              and its directory) before saying yes.",
    example: "shared.md has an active share link but is gone from the index",
    needs: Some("share links (`share_links`)"),
    applies_to: |caps| caps.share_links,
};

/// Every record the model protects, before and after the operation in
/// flight, must be indexed and shared in `observation`.
pub fn check(observation: &Observation, model: &Model) -> Vec<Violation> {
    let allowed = model.allowed();
    let before = allowed.before.active_shares();
    let after = allowed.after.active_shares();
    let protected: BTreeSet<&String> = before.intersection(&after).copied().collect();
    let mut violations = Vec::new();
    for name in protected {
        if !observation.indexed.contains_key(name) {
            violations.push(Violation::new(
                Invariant::ProtectedRecordsKept,
                format!("{name} has an active share link but is gone from the index"),
            ));
        } else if !observation.shared.contains(name) {
            violations.push(Violation::new(
                Invariant::ProtectedRecordsKept,
                format!("{name}'s acknowledged share link is gone"),
            ));
        }
    }
    // The other way: a link no acknowledged share gave (a revoked one a
    // power cut brought back, or one left behind by a removal or a rebuild
    // that dropped its record, which a later document of the name took
    // over: it would protect a record nobody shared).
    let before_or_after: BTreeSet<&String> = before.union(&after).copied().collect();
    for name in &observation.shared {
        if !model.is_unspecified(name) && !before_or_after.contains(name) {
            violations.push(Violation::new(
                Invariant::ProtectedRecordsKept,
                format!("{name} has a share link no acknowledged share gave it"),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract::{Operation, ReconcileKind};

    fn shared_orphan_model() -> Model {
        let mut model = Model::new();
        for op in [
            Operation::Add {
                name: "s".into(),
                content: "1".into(),
            },
            Operation::Share { name: "s".into() },
        ] {
            model.begin(&op);
            model.acknowledge();
        }
        model.edit_source("s", None);
        model
    }

    #[test]
    fn a_clean_that_deletes_a_shared_record_breaks_it() {
        let mut model = shared_orphan_model();
        model.begin(&Operation::Reconcile {
            mode: ReconcileKind::Clean,
            force: true,
            dry_run: false,
            owner: None,
        });
        model.acknowledge();
        // The store kept it: fine.
        let mut kept = observation(&[("s", "1")]);
        kept.shared.insert("s".into());
        assert!(check(&kept, &model).is_empty());
        // The store deleted it: broken.
        let deleted = observation(&[]);
        let violations = check(&deleted, &model);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].evidence.contains("gone from the index"));
        // The store kept the record but lost the link: broken too.
        kept.shared.clear();
        assert!(check(&kept, &model)[0].evidence.contains("share link is gone"));
    }

    #[test]
    fn a_link_nobody_gave_breaks_it() {
        // s was shared, unshared: a link found now was not given.
        let mut model = shared_orphan_model();
        model.edit_source("s", Some("1"));
        model.begin(&Operation::Unshare { name: "s".into() });
        // While the unshare is in flight, either is allowed.
        let mut linked = observation(&[("s", "1")]);
        linked.shared.insert("s".into());
        assert!(check(&linked, &model).is_empty());
        model.acknowledge();
        let violations = check(&linked, &model);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].evidence.contains("no acknowledged share gave it"));
        assert!(check(&observation(&[("s", "1")]), &model).is_empty());
    }

    #[test]
    fn a_share_in_flight_protects_nothing_yet() {
        let mut model = Model::new();
        model.begin(&Operation::Add {
            name: "s".into(),
            content: "1".into(),
        });
        model.acknowledge();
        model.begin(&Operation::Share { name: "s".into() });
        assert!(check(&observation(&[("s", "h")]), &model).is_empty());
    }
}
