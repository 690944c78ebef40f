//! stays-serviceable: after a fault whose cause persists (the device stays
//! full, the vector store stays down), the store can still be helped.
//!
//! In scenarios whose device stays full, after every recovery that kept
//! the other invariants, the engine asks, on the still-full device: does a
//! read-only open serve what the model says; does a writable open remove a
//! document (the one command that frees space); and, once the device has
//! room again, does a writable open add one? The store must then still show
//! what the model says (the usual checks of a recovered store). A store that
//! is wedged until the disk grows fails here, even if it lost nothing.
//!
//! In scenarios whose vector store stays down, every writable open after a
//! fault must succeed or refuse naming the cause (a failure of kind
//! `unavailable`); a read-only open must serve what the model says while it
//! is down; and once it is back, a writable open must finish what was left
//! and add a document.

use super::{Invariant, InvariantSpec, Violation};

/// stays-serviceable in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "stays-serviceable",
    explanation: "After a fault whose cause persists (the device stays full, the vector store stays down), \
                  the store can still be helped: a writable open succeeds or refuses naming the cause, a \
                  read-only open serves what the model says, a writable open removes a document on the \
                  full device (the one command that frees space), and once the cause is cleared a writable \
                  open adds one; the store then shows what the model says. Checked in the scenarios whose \
                  device stays full or whose vector store stays down, after every recovery that kept the \
                  other invariants.",
    usually: "A fault whose cause persists (a full disk, a vector store that is down) wedged the store: every writable open fails, even the removal that would free space. Usually fixed with a reserve of space recovery can release, and an open that serves what it can and refuses writes with a clear reason.",
    example: "while the device is full, `remove a.md` failed: no space left on device (the only command that frees space)",
    needs: Some("removing documents (remove)"),
    applies_to: |caps| caps.remove,
};

/// `what` (`a removal on the full device`) failed with `error`.
pub fn failed(what: &str, error: impl std::fmt::Display) -> Violation {
    Violation::new(
        Invariant::StaysServiceable,
        format!("the store cannot be helped: {what} failed: {error}"),
    )
}

/// `what` failed with `error` while a cause persists, without naming it (a
/// failure of kind `unavailable`).
pub fn cause_unnamed(what: &str, error: impl std::fmt::Display) -> Violation {
    Violation::new(
        Invariant::StaysServiceable,
        format!(
            "{what} failed while the vector store was down without saying so (a failure of kind \
             `unavailable`): {error}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Capabilities;

    #[test]
    fn a_failed_step_names_itself_and_the_error() {
        let v = failed(
            "`remove d0.md` on the full device",
            "linking a.md: database or disk is full",
        );
        assert_eq!(v.invariant, Invariant::StaysServiceable);
        assert!(
            v.evidence
                .contains("`remove d0.md` on the full device failed: linking a.md"),
            "{v}"
        );
        assert!(!Invariant::StaysServiceable.applies_to(&Capabilities::default()));
    }

    #[test]
    fn a_refusal_that_does_not_name_the_cause_says_what_it_should_have_been() {
        let v = cause_unnamed("the writable open after the fault", "disk I/O error");
        assert_eq!(v.invariant, Invariant::StaysServiceable);
        assert!(v.evidence.contains("kind `unavailable`"), "{v}");
        assert!(v.evidence.ends_with("disk I/O error"), "{v}");
    }
}
