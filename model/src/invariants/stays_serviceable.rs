//! stays-serviceable: after a fault whose cause persists (the device stays
//! full), the store can still be helped.
//!
//! In scenarios whose device stays full, after every recovery that kept
//! the other invariants, the engine asks, on the still-full device: does a
//! read-only open serve; does a writable open remove a document (the one
//! command that frees space); and, once the device has room again, does a
//! writable open add one? The store must then still show what the model
//! says (the usual checks of a recovered store). A store that is wedged
//! until the disk grows fails here, even if it lost nothing.

use super::{Invariant, InvariantSpec, Violation};

/// stays-serviceable in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "stays-serviceable",
    explanation: "After a fault whose cause persists (the device stays full), the store can still be \
                  helped: a read-only open serves, a writable open removes a document on the full device \
                  (the one command that frees space), and once the device has room again a writable open \
                  adds one; the store then shows what the model says. Checked in the scenarios whose \
                  device stays full, after every recovery that kept the other invariants.",
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
}
