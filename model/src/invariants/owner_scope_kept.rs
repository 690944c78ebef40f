//! owner-scope-kept: a reconcile scoped to one owner leaves every other
//! owner's records as they were, and an acknowledged owner survives every
//! fault.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;
use crate::model::Model;

/// owner-scope-kept in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "owner-scope-kept",
    explanation: "A document's owner is user data: an acknowledged owner survives every fault, and a reconcile \
                  scoped to one owner (Storm Cloud's per-user reconciliation) changes only that owner's records. \
                  Checked after every recovery: every document the model says has an owner, the same before and \
                  after the operation in flight, must be indexed with that owner, and no document may have an \
                  owner the model gives it neither before nor after. Needs owners.",
    usually: "A scoped reconcile filtered the listing by owner but not its passes (or not its delete pass), so a \
              clean for one user deleted another user's orphaned records; or the owner was acknowledged before \
              it was durable. Usually fixed by computing the scope once and running every pass over it only, and \
              by writing owners durably (fsync the file and its directory) before saying yes.",
    example: "b.md (owner bob) is gone from the index",
    needs: Some("owners (`owners`)"),
    applies_to: |caps| caps.owners,
};

/// Every document the model gives the same owner before and after the
/// operation in flight must be indexed with that owner in `observation`.
pub fn check(observation: &Observation, model: &Model) -> Vec<Violation> {
    let allowed = model.allowed();
    let mut violations = Vec::new();
    for (name, owner) in &allowed.before.owners {
        // A name whose source a fault made unreadable or took away is not
        // judged (see `Model::unspecify`).
        if allowed.after.owners.get(name) != Some(owner) || model.is_unspecified(name) {
            continue;
        }
        if !observation.indexed.contains_key(name) {
            violations.push(Violation::new(
                Invariant::OwnerScopeKept,
                format!("{name} (owner {owner}) is gone from the index"),
            ));
            continue;
        }
        match observation.owners.get(name) {
            Some(found) if found == owner => {}
            Some(found) => violations.push(Violation::new(
                Invariant::OwnerScopeKept,
                format!("{name}'s acknowledged owner {owner} is now {found}"),
            )),
            None => violations.push(Violation::new(
                Invariant::OwnerScopeKept,
                format!("{name}'s acknowledged owner {owner} is gone"),
            )),
        }
    }
    // The other way: an owner no acknowledged operation gave (one left
    // behind by a removal or a clean, that a later document of the name
    // took over, or a change a power cut undid).
    for (name, owner) in &observation.owners {
        if model.is_unspecified(name)
            || allowed.before.owners.get(name) == Some(owner)
            || allowed.after.owners.get(name) == Some(owner)
        {
            continue;
        }
        violations.push(Violation::new(
            Invariant::OwnerScopeKept,
            format!("{name} has owner {owner}, which no acknowledged operation gave it"),
        ));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract::{Operation, ReconcileKind};

    fn owned(name: &str, owner: &str) -> Operation {
        Operation::SetOwner {
            name: name.into(),
            owner: owner.into(),
        }
    }

    /// a.md of alice and b.md of bob, both files gone behind the store's back.
    fn two_owners_orphaned() -> Model {
        let mut model = model_with(
            &[
                add("a.md", "1"),
                add("b.md", "2"),
                owned("a.md", "alice"),
                owned("b.md", "bob"),
            ],
            None,
        );
        model.edit_source("a.md", None);
        model.edit_source("b.md", None);
        model
    }

    fn with_owners(mut observation: Observation, owners: &[(&str, &str)]) -> Observation {
        observation.owners = owners.iter().map(|(n, o)| (n.to_string(), o.to_string())).collect();
        observation
    }

    #[test]
    fn a_clean_scoped_to_alice_that_deletes_bobs_record_breaks_it() {
        let mut model = two_owners_orphaned();
        model.begin(&Operation::Reconcile {
            mode: ReconcileKind::Clean,
            force: true,
            dry_run: false,
            owner: Some("alice".into()),
        });
        model.acknowledge();
        // Alice's orphan went, Bob's stayed: fine.
        let kept = with_owners(observation(&[("b.md", "2")]), &[("b.md", "bob")]);
        assert!(check(&kept, &model).is_empty());
        // Bob's went too: broken.
        let violations = check(&observation(&[]), &model);
        assert_eq!(broken(&violations), vec![Invariant::OwnerScopeKept]);
        assert!(
            violations[0].evidence.contains("b.md (owner bob) is gone"),
            "{violations:?}"
        );
    }

    #[test]
    fn an_acknowledged_owner_that_is_lost_or_changed_breaks_it() {
        let model = model_with(&[add("a.md", "1"), owned("a.md", "alice")], None);
        let found = |owners: &[(&str, &str)]| check(&with_owners(observation(&[("a.md", "1")]), owners), &model);
        assert!(found(&[("a.md", "alice")]).is_empty());
        assert!(found(&[])[0].evidence.contains("owner alice is gone"));
        assert!(found(&[("a.md", "bob")])[0].evidence.contains("is now bob"));
    }

    #[test]
    fn an_owner_change_or_a_removal_in_flight_may_go_either_way() {
        let base = [add("a.md", "1"), owned("a.md", "alice")];
        let found = |owner: &str| with_owners(observation(&[("a.md", "1")]), &[("a.md", owner)]);
        let changing = model_with(&base, Some(owned("a.md", "bob")));
        assert!(check(&found("alice"), &changing).is_empty());
        assert!(check(&found("bob"), &changing).is_empty());
        assert!(!check(&found("carol"), &changing).is_empty());
        let removing = model_with(&base, Some(Operation::Remove { name: "a.md".into() }));
        assert!(check(&observation(&[]), &removing).is_empty());
        assert!(check(&found("alice"), &removing).is_empty());
        assert!(!check(&found("bob"), &removing).is_empty());
    }

    #[test]
    fn an_owner_nobody_gave_breaks_it() {
        // a.md was alice's, removed, and added again: it has no owner now.
        let model = model_with(
            &[
                add("a.md", "1"),
                owned("a.md", "alice"),
                Operation::Remove { name: "a.md".into() },
                add("a.md", "2"),
            ],
            None,
        );
        assert!(check(&observation(&[("a.md", "2")]), &model).is_empty());
        let stale = with_owners(observation(&[("a.md", "2")]), &[("a.md", "alice")]);
        let violations = check(&stale, &model);
        assert_eq!(broken(&violations), vec![Invariant::OwnerScopeKept]);
        assert!(
            violations[0]
                .evidence
                .contains("which no acknowledged operation gave it")
        );
    }

    #[test]
    fn an_unscoped_clean_deletes_every_orphan_whatever_its_owner() {
        let mut model = two_owners_orphaned();
        model.begin(&Operation::Reconcile {
            mode: ReconcileKind::Clean,
            force: true,
            dry_run: false,
            owner: None,
        });
        model.acknowledge();
        assert!(model.acknowledged().indexed.is_empty());
        assert!(check(&observation(&[]), &model).is_empty());
    }
}
