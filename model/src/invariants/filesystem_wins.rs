//! filesystem-wins: after an acknowledged full reconcile (with force) or
//! rebuild, the index serves exactly the source files.

use super::{Invariant, InvariantSpec, Violation};
use crate::contract::Observation;

/// filesystem-wins in the catalogue.
pub(crate) const SPEC: InvariantSpec = InvariantSpec {
    name: "filesystem-wins",
    explanation: "After an acknowledged full reconcile (with force) or rebuild, the index serves exactly \
                  the source files. Needs source files.",
    usually: "The index disagrees with the source files after a full sync: a file added, changed or removed behind the store's back was missed, or one the store could not read failed the whole sync. Usually fixed by reconciling from a fresh listing, skipping (and naming) what is not a document, and treating a file that vanished as removed.",
    example: "the index and the source files differ on: notes.md (indexed 1f2e3d4c, on disk 9a8b7c6d)",
    needs: Some("source files and a full reconcile or rebuild (`source_files` and `reconcile` or `full_rebuild`)"),
    applies_to: |caps| caps.source_files && (caps.reconcile || caps.full_rebuild),
};

/// A rebuild or sync (`op`) failed with no fault injected, on the source
/// files the harness left: a source the store cannot index must be skipped
/// and reported, never fail the whole operation.
pub fn failed_fault_free(op: &str, error: impl std::fmt::Display) -> Violation {
    Violation::new(
        Invariant::FilesystemWins,
        format!(
            "`{op}` failed with no fault injected: {error}; a source file the store cannot index must be \
             skipped (and reported), not fail the operation"
        ),
    )
}

/// A rebuild or sync (`op`) failed because a source file vanished between
/// its listing and its read (another process removed it): that is the
/// sources changing, not a fault; the file must be taken as gone.
pub fn failed_on_vanished(op: &str, path: &str, error: impl std::fmt::Display) -> Violation {
    Violation::new(
        Invariant::FilesystemWins,
        format!(
            "`{op}` failed because {path} vanished between its listing and its read (another process removed \
             it): {error}; a source file that is gone must be taken as gone, not fail the operation"
        ),
    )
}

/// After an acknowledged full reconcile or rebuild: the index serves
/// exactly the source files.
/// A record with an active share link whose file is gone is kept on
/// purpose (protected-records-kept), not a difference.
pub fn check(observation: &Observation) -> Option<Violation> {
    let protected = |name: &String| observation.shared.contains(name) && !observation.sources.contains_key(name);
    let differing: Vec<&String> = observation
        .indexed
        .keys()
        .chain(observation.sources.keys())
        .filter(|name| observation.indexed.get(*name) != observation.sources.get(*name) && !protected(name))
        .collect();
    if differing.is_empty() {
        return None;
    }
    let mut names: Vec<&str> = differing.iter().map(|s| s.as_str()).collect();
    names.dedup();
    Some(Violation::new(
        Invariant::FilesystemWins,
        format!("the index and the source files differ on: {}", names.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn filesystem_wins_compares_the_index_with_the_source_files() {
        let mut found = observation(&[("a", "1")]);
        assert!(check(&found).is_none());
        found.sources.insert("b".into(), "h".into());
        assert!(check(&found).is_some_and(|v| v.evidence.contains('b')));
    }

    #[test]
    fn a_shared_record_whose_file_is_gone_is_no_difference() {
        let mut found = observation(&[("a", "1"), ("s", "2")]);
        found.sources.remove("s");
        assert!(check(&found).is_some_and(|v| v.evidence.contains('s')));
        found.shared.insert("s".into());
        assert!(check(&found).is_none());
        // A shared record whose file changed is still a difference.
        found.sources.insert("s".into(), "other".into());
        assert!(check(&found).is_some());
    }
}
