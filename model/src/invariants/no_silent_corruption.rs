//! no-silent-corruption: after a fault at rest or damage to a file, every
//! answer the store gives is right, or a clear error that names the damaged
//! file; never a wrong answer.
//!
//! Checked on every observation (after recovery and by readers): a stored
//! vector that is not the embedding of its document's content
//! ([`Observation::wrong_vectors`], compared value by value) is a wrong
//! answer ([`check`]); once the model has noted damage, any disagreement of
//! what the store serves with the model is one too ([`after_damage`]); and a
//! refusal that says the store is damaged must name the file
//! ([`refusal`]).

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::{FailureKind, Observation, StoreFailure};

/// no-silent-corruption in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "no-silent-corruption",
    explanation: "After any fault at rest (a latent sector error, bit rot, a bit flip on a read, a \
                  misdirected write) or damage to one of its files, every answer the store gives is right \
                  (what it serves matches the model and the source files, and every stored vector is the \
                  embedding of its document's content, compared value by value) or a clear error of kind \
                  `damaged` that names the damaged file. Never a wrong answer, never a panic.",
    usually: "The store served data that changed at rest (a flipped bit, a misdirected write) without noticing: it trusts the bytes it reads. Usually fixed with checksums on every record or page, checked on read, and a repair from the source files.",
    example: "served vectors that are not the embedding of their document's content: d1.md",
    needs: None,
    applies_to: |_| true,
};

/// Every stored vector must be the embedding of its document's content.
pub fn check(observation: &Observation) -> Option<Violation> {
    (!observation.wrong_vectors.is_empty()).then(|| {
        Violation::new(
            Invariant::NoSilentCorruption,
            format!(
                "served vectors that are not the embedding of their document's content: {}",
                observation.wrong_vectors.join(", ")
            ),
        )
    })
}

/// What the store served disagreed with the model (`found`, another
/// check's violation) after `damage`: a wrong answer, not an error.
pub fn after_damage(damage: &str, found: &Violation) -> Violation {
    Violation::new(
        Invariant::NoSilentCorruption,
        format!(
            "after {damage}, the store answered wrong ({}): {}",
            found.invariant, found.evidence
        ),
    )
}

/// A store call `when` refused saying it is damaged: the message must name
/// the damaged file (a path). `None` for any other refusal.
pub fn refusal(failure: &StoreFailure, when: &str) -> Option<Violation> {
    (failure.kind == FailureKind::Damaged && !names_a_file(&failure.message)).then(|| {
        Violation::new(
            Invariant::NoSilentCorruption,
            format!(
                "{when} said the store is damaged without naming the file: {}",
                failure.message
            ),
        )
    })
}

/// Whether a message names a file: some word of it is a path, absolute
/// (`/store/CURRENT`) or relative with a file name (`source/a.md`); "I/O"
/// is not one.
pub(crate) fn names_a_file(message: &str) -> bool {
    message.split_whitespace().any(|word| {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric() && !matches!(c, '/' | '.' | '_' | '-'));
        let word = word.trim_end_matches('.');
        word.starts_with('/') && word.len() > 1
            || word.contains('/') && word.rsplit('/').next().is_some_and(|name| name.contains('.'))
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_wrong_vector_breaks_it_and_right_ones_keep_it() {
        let mut found = observation(&[("a.md", "alpha"), ("b.md", "beta")]);
        assert_eq!(check(&found), None);
        found.wrong_vectors = vec!["b.md".to_string()];
        let violation = check(&found).expect("caught");
        assert_eq!(violation.invariant, Invariant::NoSilentCorruption);
        assert_eq!(
            violation.evidence,
            "served vectors that are not the embedding of their document's content: b.md"
        );
    }

    #[test]
    fn a_damaged_refusal_must_name_the_file() {
        let named = StoreFailure::of_kind(
            FailureKind::Damaged,
            "/store/generations/gen-000002/index.db is damaged: page 3 checksum",
        );
        assert_eq!(refusal(&named, "a reader"), None);
        let unnamed = StoreFailure::of_kind(FailureKind::Damaged, "disk I/O error");
        let violation = refusal(&unnamed, "a reader").expect("caught");
        assert_eq!(
            violation.evidence,
            "a reader said the store is damaged without naming the file: disk I/O error"
        );
        for (message, names) in [
            ("reading /store/CURRENT: Input/output error (os error 5)", true),
            ("checksum of source/a.md.", true),
            ("Input/output error", false),
            ("disk I/O error", false),
        ] {
            assert_eq!(names_a_file(message), names, "{message}");
        }
        // Other refusals are another invariant's business.
        assert_eq!(refusal(&StoreFailure::new("disk I/O error"), "a reader"), None);
    }

    #[test]
    fn after_damage_a_rebuild_from_the_sources_is_right_and_anything_else_is_a_wrong_answer() {
        use crate::contract::Operation;
        let add = Operation::Add {
            name: "a.md".into(),
            content: "alpha".into(),
        };
        let mut model = model_with(&[add], None);
        model.edit_source("a.md", Some("edited behind the store's back"));
        model.note_damage("garbage in the middle of /store/index.db");
        // Rebuilt from the sources: the index follows the edited file.
        let rebuilt = Observation {
            indexed: [(
                "a.md".to_string(),
                crate::model::content_hash(b"edited behind the store's back"),
            )]
            .into(),
            sources: [(
                "a.md".to_string(),
                crate::model::content_hash(b"edited behind the store's back"),
            )]
            .into(),
            integrity_ok: true,
            ..Observation::default()
        };
        assert_eq!(super::super::check_recovered(&rebuilt, &model, &caps()), Vec::new());
        // Served from the damaged index: neither the acknowledged entry nor the file.
        let mut wrong = rebuilt.clone();
        wrong
            .indexed
            .insert("a.md".into(), crate::model::content_hash(b"garbage"));
        let found = super::super::check_recovered(&wrong, &model, &caps());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].invariant, Invariant::NoSilentCorruption);
        assert!(
            found[0]
                .evidence
                .starts_with("after garbage in the middle of /store/index.db, the store answered wrong")
        );
    }

    #[test]
    fn a_wrong_answer_after_damage_names_both() {
        let found = Violation::new(Invariant::CommittedDurable, "index a.md: acknowledged 1, found 2");
        assert_eq!(
            after_damage("bit rot in /store/index.db", &found).evidence,
            "after bit rot in /store/index.db, the store answered wrong (committed-durable): index a.md: \
             acknowledged 1, found 2"
        );
    }
}
