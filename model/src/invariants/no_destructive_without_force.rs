//! no-destructive-without-force: a destructive operation (reconcile clean
//! or full) without force fails and changes nothing.
//!
//! [`check`] judges a call from the observations around it;
//! [`check_acknowledged`] judges from the answer alone, when the model says
//! the call must fail and it returned Ok.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::{Observation, Operation};

/// no-destructive-without-force in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "no-destructive-without-force",
    explanation: "A destructive operation (reconcile clean or full) without force fails and changes \
                  nothing. Needs reconcile.",
    usually: "A destructive mode (clean, full reconcile) ran without the explicit force the API promises. Usually fixed by checking the flag before any listing or deletion, and refusing with an error that names it.",
    example: "`reconcile clean` without force returned Ok and deleted 2 index entries",
    needs: Some("reconcile (capability `reconcile`)"),
    applies_to: |caps| caps.reconcile,
};

/// A destructive reconcile without force (and not a dry run) must fail and
/// change nothing. `returned_ok` is what the store answered; `before` and
/// `after` are its observations around the call. `None` for any other
/// operation.
pub fn check(op: &Operation, returned_ok: bool, before: &Observation, after: &Observation) -> Option<Violation> {
    let Operation::Reconcile {
        mode, force, dry_run, ..
    } = op
    else {
        return None;
    };
    if !mode.is_destructive() || *force || *dry_run {
        return None;
    }
    let mut changed: Vec<&str> = before
        .indexed
        .keys()
        .chain(after.indexed.keys())
        .filter(|name| before.indexed.get(*name) != after.indexed.get(*name))
        .map(String::as_str)
        .collect();
    changed.sort_unstable();
    changed.dedup();
    if !returned_ok && changed.is_empty() {
        return None;
    }
    let answer = if returned_ok { "returned Ok" } else { "failed" };
    let effect = if changed.is_empty() {
        "changed nothing".to_string()
    } else {
        format!("changed the index entries of {}", changed.join(", "))
    };
    Some(Violation::new(
        Invariant::NoDestructiveWithoutForce,
        format!("`{}` {answer} and {effect}", op.describe()),
    ))
}

/// A store answered Ok to `op`; `must_fail` is what the model expected
/// (`Model::expect`). A destructive reconcile the model says must fail (no
/// force) breaks it; `None` for anything else.
pub fn check_acknowledged(op: &Operation, must_fail: bool) -> Option<Violation> {
    let Operation::Reconcile { mode, .. } = op else {
        return None;
    };
    (must_fail && mode.is_destructive()).then(|| {
        Violation::new(
            Invariant::NoDestructiveWithoutForce,
            format!("`{}` without force returned Ok", op.describe()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_destructive_reconcile_without_force_must_fail_and_change_nothing() {
        let clean = |force, dry_run| Operation::Reconcile {
            mode: crate::contract::ReconcileKind::Clean,
            force,
            dry_run,
            owner: None,
        };
        let before = observation(&[("a", "1"), ("b", "2")]);
        let after = observation(&[("a", "1")]);
        assert_eq!(check(&clean(false, false), false, &before, &before), None);
        let ok = check(&clean(false, false), true, &before, &after).expect("caught");
        assert_eq!(ok.invariant, Invariant::NoDestructiveWithoutForce);
        assert!(
            ok.evidence.contains("returned Ok") && ok.evidence.contains('b'),
            "{}",
            ok.evidence
        );
        assert!(check(&clean(false, false), false, &before, &after).is_some());
        assert_eq!(check(&clean(true, false), true, &before, &after), None);
        assert_eq!(check(&clean(false, true), true, &before, &before), None);
        assert_eq!(check(&add("a", "1"), true, &before, &after), None);
    }

    #[test]
    fn a_destructive_reconcile_that_must_fail_but_returned_ok_is_caught() {
        let reconcile = |mode, force| Operation::Reconcile {
            mode,
            force,
            dry_run: false,
            owner: None,
        };
        let clean = reconcile(crate::contract::ReconcileKind::Clean, false);
        let violation = check_acknowledged(&clean, true).expect("caught");
        assert_eq!(violation.invariant, Invariant::NoDestructiveWithoutForce);
        assert_eq!(violation.evidence, "`reconcile clean` without force returned Ok");
        assert_eq!(check_acknowledged(&clean, false), None);
        assert_eq!(
            check_acknowledged(&reconcile(crate::contract::ReconcileKind::Sync, false), true),
            None
        );
        assert_eq!(check_acknowledged(&add("a", "1"), true), None);
    }
}
