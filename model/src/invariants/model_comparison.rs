//! The comparison committed-durable and atomic-op share: each side of an
//! observation (the index, and the source files of a store that has them),
//! document by document, against the model. A document the operation in
//! flight does not touch is judged by [`committed_durable`]; one it touches
//! by [`atomic_op`]; one found as an operation the store said it had not
//! applied would have left it, by [`failed_means_not_applied`]. The
//! violations come out in document order, side by side, as each invariant's
//! own check produces them. [`exact`] is the strict comparison a fault-free
//! run makes right after each operation returns.

use std::collections::{BTreeMap, BTreeSet};

use super::{Violation, atomic_op, committed_durable, failed_means_not_applied};
use crate::contract::{Capabilities, Observation};
use crate::model::Model;

/// What one side of an observation showed of one document, against the
/// model.
pub(crate) struct Document<'a> {
    /// `index` or `source`.
    pub side: &'a str,
    /// The document.
    pub name: &'a str,
    /// The operation in flight, described (empty if none).
    pub op: &'a str,
    /// The content hash found (`None`: absent).
    pub found: Option<&'a String>,
    /// The content hash before the operation in flight (the acknowledged
    /// content, for a document it does not touch).
    pub before: Option<&'a String>,
    /// The content hash after the operation in flight.
    pub after: Option<&'a String>,
    /// Whether the index entry matches its source file (index side of a
    /// store with source files).
    pub follows_source: bool,
}

/// The first eight characters of a content hash, or `absent`.
pub(crate) fn short(hash: Option<&String>) -> String {
    match hash {
        Some(hash) => hash.chars().take(8).collect(),
        None => "absent".to_string(),
    }
}

/// Committed-durable and atomic-op on every side of `observation`; the
/// source files only for a store that has them.
pub(crate) fn check(observation: &Observation, model: &Model, caps: &Capabilities) -> Vec<Violation> {
    let allowed = model.allowed();
    let mut violations = compare_side(
        "index",
        &observation.indexed,
        &allowed.before.indexed,
        &allowed.after.indexed,
        caps.source_files.then_some(&observation.sources),
        model,
    );
    if caps.source_files {
        violations.extend(compare_side(
            "source",
            &observation.sources,
            &allowed.before.sources,
            &allowed.after.sources,
            None,
            model,
        ));
    }
    violations
}

/// Compares one side (index or sources) of an observation with the model.
///
/// `sources`, for the index side of a store with source files: a document
/// the interrupted operation touched may also be indexed as its source file
/// is found. A rolled-back mutation re-indexes what it touched from the
/// files (the filesystem wins), which refreshes an entry that was stale
/// because the file had been edited behind the store's back; that counts as
/// "before". After damage ([`Model::damage`]), any entry that matches its
/// source file counts as right: the store may have rebuilt from the files.
fn compare_side(
    side: &str,
    found: &BTreeMap<String, String>,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    sources: Option<&BTreeMap<String, String>>,
    model: &Model,
) -> Vec<Violation> {
    let allowed = model.allowed();
    let op = allowed.op.clone().unwrap_or_default();
    let mut violations = Vec::new();
    let mut halves = atomic_op::Halves::default();
    let names: BTreeSet<&String> = found.keys().chain(before.keys()).chain(after.keys()).collect();
    for name in names.into_iter().filter(|name| !model.is_unspecified(name)) {
        let got = found.get(name);
        let document = Document {
            side,
            name,
            op: &op,
            found: got,
            before: before.get(name),
            after: after.get(name),
            follows_source: sources.is_some_and(|sources| sources.get(name) == got),
        };
        // After damage to a derived file, a store may have rebuilt its index
        // from the source files (rebuildable-from-source): an entry that is
        // its source file as found is right.
        if model.damage().is_some() && sources.is_some() && document.follows_source {
            continue;
        }
        // An index entry may catch up with a file edited behind the store's
        // back at any time (the filesystem wins: a rollback or an audit
        // re-indexes from the files): outside the operation in flight, an
        // entry that is its source file as acknowledged is right.
        if document.follows_source && !allowed.touched.contains(name) && allowed.before.sources.get(name) == got {
            continue;
        }
        let broken = if allowed.touched.contains(name) {
            atomic_op::check_document(&document, &mut halves)
        } else {
            committed_durable::check_document(&document)
        };
        // A document left as an operation that failed saying nothing was
        // applied would have left it: that operation's doing.
        violations.extend(broken.map(|v| match model.rejected_as(side, name, got) {
            Some(rejected) => failed_means_not_applied::violation(side, name, rejected, got),
            None => v,
        }));
    }
    violations.extend(atomic_op::check_whole(side, &op, allowed.granularity, &halves));
    violations
}

/// What the store's own handle shows right after an operation returned,
/// with no fault anywhere, against the acknowledged state, exactly: every
/// indexed document, every source file (stores with them), every active
/// share link and every owner (stores with those), names made unspecified
/// left out; and no unfinished work and (stores with vectors) no orphan
/// or missing vector, while the vector store is reachable. Nothing of
/// the leniency a recovery gets (an entry that caught
/// up with its file) applies: no recovery ran, so a difference is the
/// operation doing other than it said (a sync that deletes, a dry run that
/// writes, a scoped run that reaches past its scope). `op` is the operation
/// that just returned, described.
pub fn exact(observation: &Observation, model: &Model, caps: &Capabilities, op: &str) -> Vec<Violation> {
    let acked = model.acknowledged();
    let mut violations = Vec::new();
    let mut sides = vec![("index", &observation.indexed, &acked.indexed)];
    if caps.source_files {
        sides.push(("source", &observation.sources, &acked.sources));
    }
    for (side, found, expected) in sides {
        let names: BTreeSet<&String> = found.keys().chain(expected.keys()).collect();
        for name in names.into_iter().filter(|name| !model.is_unspecified(name)) {
            let (got, want) = (found.get(name), expected.get(name));
            if got != want {
                violations.push(Violation::new(
                    super::Invariant::CommittedDurable,
                    format!(
                        "right after `{op}` returned, with no fault anywhere, the {side} shows {name} as {}, where \
                         every acknowledged operation leaves {}",
                        short(got),
                        short(want)
                    ),
                ));
            }
        }
    }
    if caps.share_links {
        let want = acked.active_shares();
        for name in observation.shared.iter().chain(want.iter().copied()) {
            let (got, wanted) = (observation.shared.contains(name), want.contains(name));
            if got != wanted && !model.is_unspecified(name) {
                violations.push(Violation::new(
                    super::Invariant::ProtectedRecordsKept,
                    format!(
                        "right after `{op}` returned, with no fault anywhere, {name} {} a share link, where every \
                         acknowledged operation leaves it {}",
                        if got { "has" } else { "has no" },
                        if wanted { "shared" } else { "unshared" }
                    ),
                ));
            }
        }
    }
    if caps.owners {
        let names: BTreeSet<&String> = observation.owners.keys().chain(acked.owners.keys()).collect();
        for name in names.into_iter().filter(|name| !model.is_unspecified(name)) {
            let (got, want) = (observation.owners.get(name), acked.owners.get(name));
            if got != want {
                violations.push(Violation::new(
                    super::Invariant::OwnerScopeKept,
                    format!(
                        "right after `{op}` returned, with no fault anywhere, {name}'s owner is {}, where every \
                         acknowledged operation leaves {}",
                        got.map_or("none", String::as_str),
                        want.map_or("none", String::as_str)
                    ),
                ));
            }
        }
    }
    // The vector store as the operation left it, before any recovery's
    // sweep could make it good: a vector write skipped or not made durable
    // on the way shows here, or nowhere.
    if !observation.remote_unavailable {
        let mut left = vec![(
            observation.pending_work,
            "pieces of unfinished work (intents, journals)",
            super::Invariant::JournalDrained,
        )];
        if caps.vectors {
            left.push((
                observation.orphan_vectors,
                "vectors no entry refers to",
                super::Invariant::NoOrphanVectors,
            ));
            left.push((
                observation.missing_vectors,
                "entries whose vector is missing",
                super::Invariant::NoOrphanVectors,
            ));
        }
        for (count, what, invariant) in left.into_iter().filter(|(count, _, _)| *count > 0) {
            violations.push(Violation::new(
                invariant,
                format!("right after `{op}` returned, with no fault anywhere, the store holds {count} {what}"),
            ));
        }
    }
    violations.sort_by(|a, b| a.evidence.cmp(&b.evidence));
    violations.dedup();
    violations
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::contract::{Operation, ReconcileKind};

    #[test]
    fn a_sync_that_deletes_an_orphan_or_a_dry_run_that_writes_breaks_the_exact_state() {
        // a.md indexed, its file gone behind the store's back; b.md a file
        // nobody indexed.
        let mut model = model_with(&[add("a.md", "1")], None);
        model.edit_source("a.md", None);
        model.edit_source("b.md", Some("2"));
        model.begin(&Operation::Reconcile {
            mode: ReconcileKind::Full,
            force: true,
            dry_run: true,
            owner: None,
        });
        model.acknowledge();
        let caps = caps();
        let mut kept = observation(&[("a.md", "1")]);
        kept.sources = observation(&[("b.md", "2")]).sources;
        assert!(exact(&kept, &model, &caps, "reconcile full --dry-run").is_empty());
        // The dry run deleted a.md and indexed b.md: what a recovery's
        // comparison forgives (each entry is its file), the exact one does not.
        let mut wrote = observation(&[("b.md", "2")]);
        wrote.sources = kept.sources.clone();
        assert!(
            check(&wrote, &model, &caps).is_empty(),
            "the lenient comparison forgives it"
        );
        let violations = exact(&wrote, &model, &caps, "reconcile full --dry-run");
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations
                .iter()
                .all(|v| v.invariant == super::super::Invariant::CommittedDurable)
        );
        assert!(
            violations[0]
                .evidence
                .contains("right after `reconcile full --dry-run` returned")
        );
    }

    #[test]
    fn a_missing_vector_right_after_an_add_breaks_the_exact_state_unless_the_vector_store_is_down() {
        let model = model_with(&[add("a.md", "1")], None);
        let mut found = observation(&[("a.md", "1")]);
        assert!(exact(&found, &model, &caps(), "add a.md").is_empty());
        found.missing_vectors = 1;
        let violations = exact(&found, &model, &caps(), "add a.md");
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].invariant, super::super::Invariant::NoOrphanVectors);
        assert!(violations[0].evidence.contains("1 entries whose vector is missing"));
        found.remote_unavailable = true;
        assert!(exact(&found, &model, &caps(), "add a.md").is_empty());
    }

    #[test]
    fn an_owner_or_a_link_that_differs_right_after_an_operation_breaks_the_exact_state() {
        let model = model_with(
            &[
                add("a.md", "1"),
                Operation::SetOwner {
                    name: "a.md".into(),
                    owner: "alice".into(),
                },
            ],
            None,
        );
        let caps = Capabilities {
            owners: true,
            share_links: true,
            ..caps()
        };
        let mut found = observation(&[("a.md", "1")]);
        assert_eq!(exact(&found, &model, &caps, "x").len(), 1, "the owner is missing");
        found.owners.insert("a.md".into(), "alice".into());
        assert!(exact(&found, &model, &caps, "x").is_empty());
        found.shared.insert("a.md".into());
        let violations = exact(&found, &model, &caps, "x");
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].invariant, super::super::Invariant::ProtectedRecordsKept);
    }
}
