//! The abstract model: what a store's state must be after each operation.
//!
//! The model keeps the **acknowledged** state (every operation that returned
//! `Ok`, and every source edit the harness made durably) and, while an
//! operation is in flight or after one failed, the state it would lead to.
//! After a crash the store must equal the acknowledged state, except that
//! the in-flight operation's documents may each be before or after it: all
//! together for an operation that is atomic ([`Granularity::Whole`]), each on
//! its own for one that works document by document
//! ([`Granularity::PerDocument`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::contract::{Capabilities, Observation, Operation, RebuildKind, ReconcileKind};

/// SHA-256 of `content`, lower-case hex: how observations name content.
pub fn content_hash(content: &[u8]) -> String {
    Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect()
}

/// Name → content hash, for the index and for the source files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct State {
    /// What the index serves.
    pub indexed: BTreeMap<String, String>,
    /// What the source files hold.
    pub sources: BTreeMap<String, String>,
    /// The documents with an active share link (stores with share links).
    pub shared: BTreeSet<String>,
    /// The owner of each indexed document that has one (stores with owners).
    pub owners: BTreeMap<String, String>,
}

impl State {
    /// The share links that protect a record: shared and indexed (a link
    /// whose record a rebuild dropped protects nothing).
    pub fn active_shares(&self) -> BTreeSet<&String> {
        self.shared
            .iter()
            .filter(|name| self.indexed.contains_key(*name))
            .collect()
    }
}

/// Whether an interrupted operation is all-or-nothing, or per document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Granularity {
    /// Every touched document is before, or every one is after.
    Whole,
    /// Each touched document is before or after, independently.
    PerDocument,
}

/// What an operation must do, from a given state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// The state if it succeeds.
    pub after: State,
    /// How an interruption may leave it.
    pub granularity: Granularity,
    /// It must fail and change nothing (a destructive reconcile without
    /// force, the removal of an absent document).
    pub must_fail: bool,
}

/// The operation in flight, or the last one, which failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Uncertain {
    op: Operation,
    expected: Expected,
}

/// An operation the store failed saying nothing of it was applied: what it
/// would have left, for the documents it would have changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The operation, described.
    pub op: String,
    /// The content hashes it would have left in the index (`None`: removed).
    pub indexed: BTreeMap<String, Option<String>>,
    /// The content hashes it would have left in the source files.
    pub sources: BTreeMap<String, Option<String>>,
}

/// The model of one store through a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Model {
    acked: State,
    uncertain: Option<Uncertain>,
    full_rebuilds: usize,
    rejected: Vec<Rejected>,
    unspecified: BTreeSet<String>,
    damage: Option<String>,
}

/// What a recovered store may look like: the acknowledged state, or (for
/// the documents `touched` by the uncertain operation) the state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed<'a> {
    /// Every acknowledged operation applied.
    pub before: &'a State,
    /// The uncertain operation applied too (equal to `before` if none).
    pub after: &'a State,
    /// The names whose index entry or source file the uncertain operation changes.
    pub touched: BTreeSet<String>,
    /// All touched together, or each on its own.
    pub granularity: Granularity,
    /// The uncertain operation, described, if there is one.
    pub op: Option<String>,
}

impl Model {
    /// An empty store.
    pub fn new() -> Model {
        Model::default()
    }

    /// The acknowledged state.
    pub fn acknowledged(&self) -> &State {
        &self.acked
    }

    /// How many full rebuilds were acknowledged (a backup must exist after one).
    pub fn full_rebuilds(&self) -> usize {
        self.full_rebuilds
    }

    /// The harness wrote (or, with `None`, deleted) a source file behind the
    /// store's back, durably.
    pub fn edit_source(&mut self, name: &str, content: Option<&str>) {
        match content {
            Some(content) => self
                .acked
                .sources
                .insert(name.to_string(), content_hash(content.as_bytes())),
            None => self.acked.sources.remove(name),
        };
    }

    /// The harness put something at source name `name` (and below it) that
    /// a store may take as a document or skip (bytes that are not text, a
    /// directory): from now on neither side of an observation is judged
    /// there. A store must still not fail on it.
    pub fn unspecify(&mut self, name: &str) {
        self.unspecified.insert(name.to_string());
    }

    /// Something the store derives from its sources was damaged at rest
    /// (`what`, for the evidence: "garbage in the middle of
    /// /store/generations/gen-000002/index.db"): from now on a writable open
    /// must bring the store back from its sources (rebuildable-from-source),
    /// and a wrong answer is silent corruption. The first damage is kept.
    pub fn note_damage(&mut self, what: impl Into<String>) {
        self.damage.get_or_insert_with(|| what.into());
    }

    /// The first damage noted (see [`Model::note_damage`]).
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Whether observations are not judged at `name` (see [`Model::unspecify`]).
    pub fn is_unspecified(&self, name: &str) -> bool {
        self.unspecified
            .iter()
            .any(|u| name == u || name.strip_prefix(u.as_str()).is_some_and(|rest| rest.starts_with('/')))
    }

    /// What `op` must do from the acknowledged state.
    pub fn expect(&self, op: &Operation) -> Expected {
        let mut after = self.acked.clone();
        let mut granularity = Granularity::Whole;
        let mut must_fail = false;
        match op {
            Operation::Add { name, content } => {
                let hash = content_hash(content.as_bytes());
                after.indexed.insert(name.clone(), hash.clone());
                after.sources.insert(name.clone(), hash);
            }
            Operation::Remove { name } => {
                if after.indexed.remove(name).is_none() {
                    must_fail = true;
                }
                after.sources.remove(name);
                // Deleting a document on purpose revokes its link and its owner.
                after.shared.remove(name);
                after.owners.remove(name);
                if must_fail {
                    after = self.acked.clone();
                }
            }
            Operation::Import { documents } => {
                for (name, content) in documents {
                    let hash = content_hash(content.as_bytes());
                    after.indexed.insert(name.clone(), hash.clone());
                    after.sources.insert(name.clone(), hash);
                }
            }
            Operation::Rebuild { kind } => {
                after.indexed = after.sources.clone();
                // A link whose record the rebuild dropped goes with it.
                let indexed = after.indexed.clone();
                after.shared.retain(|name| indexed.contains_key(name));
                if *kind == RebuildKind::Incremental {
                    granularity = Granularity::PerDocument;
                }
            }
            Operation::Reconcile {
                mode,
                force,
                dry_run,
                owner,
            } => {
                // A scoped run sees only the owner's records: indexed
                // documents of that owner (a file not indexed is nobody's).
                let in_scope = |name: &String| match owner {
                    None => true,
                    Some(owner) => self.acked.owners.get(name) == Some(owner),
                };
                if *dry_run || *mode == ReconcileKind::Audit {
                    // Changes nothing.
                } else if mode.is_destructive() && !*force {
                    must_fail = true;
                } else {
                    granularity = Granularity::PerDocument;
                    if matches!(mode, ReconcileKind::Sync | ReconcileKind::Full) {
                        for (name, hash) in after.sources.iter().filter(|(name, _)| in_scope(name)) {
                            after.indexed.insert(name.clone(), hash.clone());
                        }
                    }
                    if mode.is_destructive() {
                        // A record with an active share link is protected:
                        // reported, never deleted (protected-records-kept).
                        let (sources, shared) = (after.sources.clone(), after.shared.clone());
                        after
                            .indexed
                            .retain(|name, _| sources.contains_key(name) || shared.contains(name) || !in_scope(name));
                    }
                }
            }
            Operation::Share { name } => {
                if after.indexed.contains_key(name) {
                    after.shared.insert(name.clone());
                } else {
                    must_fail = true;
                }
            }
            Operation::Unshare { name } => {
                after.shared.remove(name);
            }
            Operation::SetOwner { name, owner } => {
                if after.indexed.contains_key(name) {
                    after.owners.insert(name.clone(), owner.clone());
                } else {
                    must_fail = true;
                }
            }
        }
        // An owner names an indexed document; one whose record went names nothing.
        let indexed = after.indexed.clone();
        after.owners.retain(|name, _| indexed.contains_key(name));
        Expected {
            after,
            granularity,
            must_fail,
        }
    }

    /// Marks `op` as in flight: until it is acknowledged, a crash may leave
    /// its documents before or after it.
    pub fn begin(&mut self, op: &Operation) {
        let expected = self.expect(op);
        self.uncertain = Some(Uncertain {
            op: op.clone(),
            expected,
        });
    }

    /// The in-flight operation returned `Ok`: its effect is acknowledged.
    pub fn acknowledge(&mut self) {
        if let Some(uncertain) = self.uncertain.take() {
            if matches!(
                uncertain.op,
                Operation::Rebuild {
                    kind: RebuildKind::Full
                }
            ) {
                self.full_rebuilds += 1;
            }
            self.acked = uncertain.expected.after;
        }
    }

    /// Settles the uncertainty to whichever state a recovered store was
    /// found in (after a check passed), so the workload can go on.
    pub fn settle(&mut self, found_after: bool) {
        if let Some(uncertain) = self.uncertain.take()
            && found_after
        {
            self.acked = uncertain.expected.after;
        }
    }

    /// Settles the uncertainty to what a recovered store shows in
    /// `observation`, when it shows the operation in flight wholly after
    /// (`Some(true)`) or wholly before (`Some(false)`): every name it
    /// touches, in the index, in the source files (stores with them), its
    /// share link and its owner (stores with those). `None`, and nothing
    /// settled, when it shows some names one way and some the other (a
    /// per-document operation partly applied), or when nothing is in
    /// flight.
    pub fn settle_to(&mut self, observation: &Observation, caps: &Capabilities) -> Option<bool> {
        let (all_after, all_before) = {
            let allowed = self.allowed();
            allowed.op.as_ref()?;
            let mut all_after = true;
            let mut all_before = true;
            for name in &allowed.touched {
                let mut sides = vec![(&observation.indexed, &allowed.before.indexed, &allowed.after.indexed)];
                if caps.source_files {
                    sides.push((&observation.sources, &allowed.before.sources, &allowed.after.sources));
                }
                for (found, before, after) in sides {
                    all_after &= found.get(name) == after.get(name);
                    all_before &= found.get(name) == before.get(name);
                }
                if caps.share_links {
                    let shared = observation.shared.contains(name);
                    all_after &= shared == allowed.after.active_shares().contains(name);
                    all_before &= shared == allowed.before.active_shares().contains(name);
                }
                if caps.owners {
                    let owner = observation.owners.get(name);
                    all_after &= owner == allowed.after.owners.get(name);
                    all_before &= owner == allowed.before.owners.get(name);
                }
            }
            (all_after, all_before)
        };
        let found_after = if all_after {
            true
        } else if all_before {
            false
        } else {
            return None;
        };
        self.settle(found_after);
        Some(found_after)
    }

    /// The in-flight operation failed and the store says nothing of it was
    /// applied: the acknowledged state stands, and what the operation would
    /// have left is remembered, so that finding it later is
    /// failed-means-not-applied.
    pub fn reject(&mut self) {
        let Some(uncertain) = self.uncertain.take() else {
            return;
        };
        let changed = |before: &BTreeMap<String, String>, after: &BTreeMap<String, String>| {
            before
                .keys()
                .chain(after.keys())
                .filter(|name| before.get(*name) != after.get(*name))
                .map(|name| (name.clone(), after.get(name).cloned()))
                .collect::<BTreeMap<_, _>>()
        };
        let after = &uncertain.expected.after;
        let rejected = Rejected {
            op: uncertain.op.describe(),
            indexed: changed(&self.acked.indexed, &after.indexed),
            sources: changed(&self.acked.sources, &after.sources),
        };
        if !rejected.indexed.is_empty() || !rejected.sources.is_empty() {
            self.rejected.push(rejected);
        }
    }

    /// The operation that failed saying nothing was applied and that would
    /// have left `name` as `found` on `side` (`index` or `source`), latest
    /// first.
    pub fn rejected_as(&self, side: &str, name: &str, found: Option<&String>) -> Option<&Rejected> {
        self.rejected.iter().rev().find(|r| {
            let values = if side == "index" { &r.indexed } else { &r.sources };
            values.get(name).is_some_and(|value| value.as_ref() == found)
        })
    }

    /// What a recovered store may look like now.
    pub fn allowed(&self) -> Allowed<'_> {
        let (after, granularity, op) = match &self.uncertain {
            Some(u) => (&u.expected.after, u.expected.granularity, Some(u.op.describe())),
            None => (&self.acked, Granularity::Whole, None),
        };
        let mut touched = BTreeSet::new();
        for (before, after) in [
            (&self.acked.indexed, &after.indexed),
            (&self.acked.sources, &after.sources),
        ] {
            for name in before.keys().chain(after.keys()) {
                if before.get(name) != after.get(name) {
                    touched.insert(name.clone());
                }
            }
        }
        touched.extend(
            self.acked
                .owners
                .iter()
                .chain(&after.owners)
                .filter(|(name, _)| self.acked.owners.get(*name) != after.owners.get(*name))
                .map(|(name, _)| name.clone()),
        );
        touched.extend(
            self.acked
                .active_shares()
                .symmetric_difference(&after.active_shares())
                .map(|name| (*name).clone()),
        );
        Allowed {
            before: &self.acked,
            after,
            touched,
            granularity,
            op,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &str, content: &str) -> Operation {
        Operation::Add {
            name: name.into(),
            content: content.into(),
        }
    }

    #[test]
    fn acknowledged_operations_accumulate() {
        let mut model = Model::new();
        model.begin(&add("a", "1"));
        model.acknowledge();
        model.begin(&add("b", "2"));
        assert_eq!(model.allowed().touched, BTreeSet::from(["b".to_string()]));
        model.acknowledge();
        assert_eq!(model.acknowledged().indexed.len(), 2);
        assert_eq!(model.allowed().touched, BTreeSet::new());
    }

    #[test]
    fn destructive_reconcile_without_force_must_fail() {
        let model = Model::new();
        let op = Operation::Reconcile {
            mode: ReconcileKind::Clean,
            force: false,
            dry_run: false,
            owner: None,
        };
        assert!(model.expect(&op).must_fail);
        let dry = Operation::Reconcile {
            mode: ReconcileKind::Full,
            force: false,
            dry_run: true,
            owner: None,
        };
        assert!(!model.expect(&dry).must_fail);
    }

    #[test]
    fn a_rebuild_makes_the_index_follow_the_sources() {
        let mut model = Model::new();
        model.begin(&add("a", "1"));
        model.acknowledge();
        model.edit_source("a", Some("2"));
        model.edit_source("b", Some("3"));
        let expected = model.expect(&Operation::Rebuild {
            kind: RebuildKind::Full,
        });
        assert_eq!(expected.after.indexed, expected.after.sources);
        assert_eq!(expected.granularity, Granularity::Whole);
        let incremental = model.expect(&Operation::Rebuild {
            kind: RebuildKind::Incremental,
        });
        assert_eq!(incremental.granularity, Granularity::PerDocument);
    }

    #[test]
    fn a_rejected_operation_leaves_the_acknowledged_state_and_is_remembered() {
        let mut model = Model::new();
        model.begin(&add("a", "1"));
        model.acknowledge();
        model.begin(&Operation::Import {
            documents: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        });
        model.reject();
        assert_eq!(model.acknowledged().indexed.len(), 1);
        assert_eq!(model.allowed().op, None);
        let b = content_hash(b"2");
        assert_eq!(
            model.rejected_as("index", "b", Some(&b)).map(|r| r.op.as_str()),
            Some("import 2 documents")
        );
        // "a" was unchanged by the import: finding it is not the rejected op's doing.
        assert_eq!(model.rejected_as("index", "a", Some(&content_hash(b"1"))), None);
        assert_eq!(model.rejected_as("index", "b", None), None);
        model.begin(&Operation::Remove { name: "a".into() });
        model.reject();
        assert!(model.rejected_as("source", "a", None).is_some());
    }

    #[test]
    fn an_unspecified_name_covers_what_is_below_it_only() {
        let mut model = Model::new();
        model.unspecify("folder.md");
        assert!(model.is_unspecified("folder.md"));
        assert!(model.is_unspecified("folder.md/inner.md"));
        assert!(!model.is_unspecified("folder.md.bak"));
        assert!(!model.is_unspecified("other.md"));
    }

    #[test]
    fn removing_an_absent_document_must_fail_and_change_nothing() {
        let model = Model::new();
        let expected = model.expect(&Operation::Remove { name: "x".into() });
        assert!(expected.must_fail);
        assert_eq!(expected.after, *model.acknowledged());
    }
}
