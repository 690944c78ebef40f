//! reader-consistent: a read-only open, while a writer works or after a
//! fault before any writable open has recovered, shows a state the model
//! allows then, or fails saying recovery is pending.
//!
//! The engine opens the store read-only in a second simulated process (a)
//! at syscalls of every operation, from the state a concurrent reader would
//! see there (every write so far, durable or not), and (b) after every
//! fault, from what the fault left, before the writable open that recovers
//! it. What the reader observes is compared with the model (every
//! acknowledged operation present, the one in flight all or nothing: the
//! comparison committed-durable and atomic-op make of a recovered store);
//! a failure is allowed only if it says recovery is pending
//! ([`FailureKind::RecoveryPending`]); and the reader must change nothing on
//! disk.

use super::{Invariant, InvariantSpec, Violation, model_comparison, no_silent_corruption};
use crate::contract::{Capabilities, FailureKind, Observation, StoreFailure};
use crate::model::Model;

/// reader-consistent in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "reader-consistent",
    explanation: "A read-only open while a writer works (checked at every syscall of every operation, \
                  from what a concurrent reader would see there) and after every fault before recovery \
                  shows a state the model allows at that moment: every acknowledged operation, the one \
                  in flight all or nothing. Or it fails saying recovery is pending; never a partial \
                  operation, never another error, never a change on disk.",
    usually: "A read-only open saw half an operation: the writer's changes became visible one by one, or a reader served the state a crash left before recovery. Usually fixed by making changes visible atomically (rename, a generation switch) and having readers refuse while recovery is pending.",
    example: "a reader while `import 4 documents` ran, before syscall 509, saw 2 of its 4 documents applied in the source",
    needs: Some("concurrent read-only opens (concurrent_readers)"),
    applies_to: |caps| caps.concurrent_readers,
};

/// What a reader `when` (`"a reader before syscall 812"`) observed, against
/// the model as it stood then.
pub fn check(observation: &Observation, model: &Model, caps: &Capabilities, when: &str) -> Vec<Violation> {
    let mut violations: Vec<Violation> = model_comparison::check(observation, model, caps)
        .into_iter()
        .map(|v| {
            let invariant = match v.invariant {
                Invariant::FailedMeansNotApplied => Invariant::FailedMeansNotApplied,
                _ if model.damage().is_some() => Invariant::NoSilentCorruption,
                _ => Invariant::ReaderConsistent,
            };
            Violation::new(invariant, format!("{when} saw {}", v.evidence))
        })
        .collect();
    violations.extend(
        no_silent_corruption::check(observation)
            .map(|v| Violation::new(v.invariant, format!("{when}: {}", v.evidence))),
    );
    violations
}

/// A read-only open or observation `when` failed: allowed only if it says
/// recovery is pending, or that a file is damaged and names it
/// (no-silent-corruption holds a refusal to that).
pub fn refused(failure: &StoreFailure, when: &str) -> Option<Violation> {
    if failure.kind == FailureKind::Damaged {
        return no_silent_corruption::refusal(failure, when);
    }
    (failure.kind != FailureKind::RecoveryPending).then(|| {
        Violation::new(
            Invariant::ReaderConsistent,
            format!(
                "{when} failed without saying recovery is pending ({}): {}",
                failure.kind.name(),
                failure.message
            ),
        )
    })
}

/// A read of one document through a service (a `GET`) `when` found
/// `found` (the content's hash, [`crate::content_hash`]; `None`: no such
/// document): it must be what the model allows there, the acknowledged
/// state (with an operation in flight, before or after it). A cache or a
/// view that a write did not refresh shows here.
pub fn check_read(name: &str, found: Option<&str>, model: &Model, when: &str) -> Option<Violation> {
    let allowed = model.allowed();
    let before = allowed.before.indexed.get(name).map(String::as_str);
    let after = allowed.after.indexed.get(name).map(String::as_str);
    if found == before || found == after {
        return None;
    }
    let show = |hash: Option<&str>| {
        hash.map_or("no document".to_string(), |hash| {
            format!("content {}", &hash[..hash.len().min(8)])
        })
    };
    Some(Violation::new(
        Invariant::ReaderConsistent,
        format!(
            "{when}: a read of {name} found {}, where every acknowledged write leaves {}",
            show(found),
            show(before)
        ),
    ))
}

/// The reader `when` changed the disk: `change` is the first syscall that did.
pub fn changed_disk(change: impl std::fmt::Display, when: &str) -> Violation {
    Violation::new(
        Invariant::ReaderConsistent,
        format!("{when} changed the disk, which a read-only open must not: {change}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract::Operation;

    fn readers() -> Capabilities {
        Capabilities {
            concurrent_readers: true,
            ..caps()
        }
    }

    #[test]
    fn a_read_through_a_service_must_find_what_was_acknowledged() {
        let hash = |content: &str| crate::content_hash(content.as_bytes());
        let model = model_with(&[add("x", "old"), add("x", "new")], None);
        let when = "GET x.md after its second PUT";
        assert_eq!(check_read("x", Some(&hash("new")), &model, when), None);
        let stale = check_read("x", Some(&hash("old")), &model, when).expect("a stale read");
        assert_eq!(stale.invariant, Invariant::ReaderConsistent);
        assert!(
            stale
                .evidence
                .starts_with("GET x.md after its second PUT: a read of x found content"),
            "{stale:?}"
        );
        assert!(
            check_read("x", None, &model, when).is_some(),
            "an acknowledged document found missing"
        );
        assert!(
            check_read("y", Some(&hash("y")), &model, when).is_some(),
            "a document nobody wrote"
        );
        assert_eq!(check_read("y", None, &model, when), None);
        // With an operation in flight, before or after it.
        let model = model_with(&[add("x", "old")], Some(Operation::Remove { name: "x".into() }));
        assert_eq!(check_read("x", None, &model, when), None);
        assert_eq!(check_read("x", Some(&hash("old")), &model, when), None);
    }

    #[test]
    fn a_reader_seeing_half_an_import_breaks_reader_consistent() {
        let import = Operation::Import {
            documents: vec![("x".into(), "new".into()), ("y".into(), "new".into())],
        };
        let model = model_with(&[add("x", "old"), add("y", "old")], Some(import));
        let when = "a reader before syscall 7";
        let half = check(&observation(&[("x", "new"), ("y", "old")]), &model, &readers(), when);
        assert!(!half.is_empty());
        assert!(
            half.iter().all(|v| v.invariant == Invariant::ReaderConsistent),
            "{half:?}"
        );
        assert!(
            half[0].evidence.starts_with("a reader before syscall 7 saw "),
            "{half:?}"
        );
        for whole in [[("x", "old"), ("y", "old")], [("x", "new"), ("y", "new")]] {
            assert!(check(&observation(&whole), &model, &readers(), when).is_empty());
        }
        // A document neither before nor after is the reader's violation too.
        let lost = check(&observation(&[("x", "old")]), &model, &readers(), when);
        assert!(!lost.is_empty());
        assert!(
            lost.iter().all(|v| v.invariant == Invariant::ReaderConsistent),
            "{lost:?}"
        );
    }

    #[test]
    fn only_a_failure_that_says_recovery_is_pending_is_allowed() {
        let when = "a reader after the fault";
        let pending = StoreFailure::of_kind(FailureKind::RecoveryPending, "journal 3 is committed");
        assert_eq!(refused(&pending, when), None);
        for kind in [FailureKind::Unknown, FailureKind::NotApplied] {
            let v = refused(&StoreFailure::of_kind(kind, "no such table: files"), when).expect("a violation");
            assert_eq!(v.invariant, Invariant::ReaderConsistent);
            assert!(v.evidence.contains("no such table: files"), "{v}");
        }
        assert!(
            changed_disk("#000012 b0 p3 unlink /store/x", when)
                .evidence
                .contains("changed the disk")
        );
    }

    #[test]
    fn it_applies_only_to_a_store_that_declares_concurrent_readers() {
        assert!(!Invariant::ReaderConsistent.applies_to(&caps()));
        assert!(Invariant::ReaderConsistent.applies_to(&readers()));
    }
}
