//! The comparison committed-durable and atomic-op share: each side of an
//! observation (the index, and the source files of a store that has them),
//! document by document, against the model. A document the operation in
//! flight does not touch is judged by [`committed_durable`]; one it touches
//! by [`atomic_op`]; one found as an operation the store said it had not
//! applied would have left it, by [`failed_means_not_applied`]. The
//! violations come out in document order, side by side, as each invariant's
//! own check produces them.

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
