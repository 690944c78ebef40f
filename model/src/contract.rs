//! The contract a store implements to be tested by Tearline.
//!
//! A store is written against [`tearline_sim_fs::Fs`] and
//! [`tearline_sim_fs::Clock`]. To be tested it provides a [`StoreFactory`]
//! (create an empty store, open it) and a [`StoreUnderTest`] handle (apply an
//! [`Operation`], [`observe`](StoreUnderTest::observe) its state in the
//! canonical [`Observation`] form). The harness drives it on a simulated
//! machine, injects faults, reopens it (a writable open must recover), and
//! compares observations with the [`crate::model::Model`].
//!
//! Capabilities are declared, not guessed: an invariant or scenario that
//! needs a capability the store lacks is reported as not applicable, never
//! as passed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tearline_sim_fs::{Clock, Fs};

/// What a store runs on: a filesystem, a clock, its root directory, and
/// the state of its remote dependency.
#[derive(Clone)]
pub struct Env {
    /// The filesystem (on the harness: one simulated process's view).
    pub fs: Arc<dyn Fs>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The store's root directory.
    pub root: PathBuf,
    /// How the store's remote dependency (a vector database, say) behaves
    /// when the store is opened: an outage of another host outlives the
    /// store's processes, so every open in this environment starts so (a
    /// store with no remote dependency ignores it). [`RemoteFault::Healthy`]
    /// unless a scenario takes the dependency down
    /// ([`StoreUnderTest::set_remote_fault`] changes one handle only).
    pub remote: RemoteFault,
}

impl Env {
    /// An environment whose remote dependency is healthy.
    pub fn new(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, root: impl Into<PathBuf>) -> Self {
        Env {
            fs,
            clock,
            root: root.into(),
            remote: RemoteFault::Healthy,
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("root", &self.root)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Takes the store's lock (if it has one) and recovers before returning.
    Writable,
    /// Takes no lock and must change nothing.
    ReadOnly,
}

/// What a store supports. The harness skips (and reports as not applicable)
/// whatever needs a capability that is `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// [`Operation::Remove`].
    pub remove: bool,
    /// [`Operation::Import`] (all or nothing).
    pub import: bool,
    /// [`Operation::Rebuild`] with [`RebuildKind::Full`] (a shadow rebuild
    /// that keeps a backup).
    pub full_rebuild: bool,
    /// [`Operation::Rebuild`] with [`RebuildKind::Incremental`].
    pub incremental_rebuild: bool,
    /// [`Operation::Reconcile`].
    pub reconcile: bool,
    /// A separate vector store whose agreement with the index is observed.
    pub vectors: bool,
    /// A versioned schema ([`Observation::schema`]).
    pub schema_version: bool,
    /// An exclusive write lock: a second writer is refused.
    pub exclusive_lock: bool,
    /// Source files under [`StoreFactory::source_dir`] are the truth and may
    /// be edited behind the store's back.
    pub source_files: bool,
    /// A read-only open may run while a writer works, and after a fault
    /// before any writable open has recovered: it must then show a state the
    /// model allows (every acknowledged operation, the one in flight all or
    /// nothing) or fail saying recovery is pending
    /// ([`FailureKind::RecoveryPending`]). Absent from older descriptions:
    /// `false`.
    #[serde(default)]
    pub concurrent_readers: bool,
    /// The store says when a failed operation applied nothing
    /// ([`FailureKind::NotApplied`]): failed-means-not-applied holds it to
    /// that, and the workload goes on after such a failure. Absent from
    /// older descriptions: `false` (every failure's outcome is unknown).
    #[serde(default)]
    pub definite_failures: bool,
    /// The store names its derived files ([`StoreFactory::derived_files`]:
    /// index, vectors, pointer, completion marks, journals), so the harness
    /// can damage them at rest, and it claims it can always be rebuilt from
    /// its source files (rebuildable-from-source). Absent from older
    /// descriptions: `false`.
    #[serde(default)]
    pub derived_files: bool,
    /// [`Operation::Share`] and [`Operation::Unshare`]: a document can have
    /// an active share link, and a record with one is protected: a clean or
    /// full reconcile never deletes it (protected-records-kept), and it is
    /// reported in [`Observation::shared`]. Absent from older descriptions:
    /// `false`.
    #[serde(default)]
    pub share_links: bool,
    /// [`Operation::SetOwner`], and [`Operation::Reconcile`] scoped to one
    /// owner: an indexed document can belong to an owner, reported in
    /// [`Observation::owners`], and a scoped reconcile changes only that
    /// owner's records (owner-scope-kept). Absent from older descriptions:
    /// `false`.
    #[serde(default)]
    pub owners: bool,
}

impl Capabilities {
    /// Each capability by its name (the field's), in declaration order.
    pub fn flags(&self) -> [(&'static str, bool); 14] {
        [
            ("remove", self.remove),
            ("import", self.import),
            ("full_rebuild", self.full_rebuild),
            ("incremental_rebuild", self.incremental_rebuild),
            ("reconcile", self.reconcile),
            ("vectors", self.vectors),
            ("schema_version", self.schema_version),
            ("exclusive_lock", self.exclusive_lock),
            ("source_files", self.source_files),
            ("concurrent_readers", self.concurrent_readers),
            ("definite_failures", self.definite_failures),
            ("derived_files", self.derived_files),
            ("share_links", self.share_links),
            ("owners", self.owners),
        ]
    }
}

/// How a rebuild is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildKind {
    /// A whole new index from the source files, switched in atomically.
    Full,
    /// Only what changed.
    Incremental,
}

/// A reconcile mode (see the reference store's `reconcile` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconcileKind {
    /// Report only.
    Audit,
    /// Index missing files, refresh stale ones.
    Sync,
    /// Drop entries whose file is gone (destructive: needs force).
    Clean,
    /// Sync and clean (destructive: needs force).
    Full,
}

impl ReconcileKind {
    /// Whether the mode deletes index entries.
    pub fn is_destructive(&self) -> bool {
        matches!(self, ReconcileKind::Clean | ReconcileKind::Full)
    }
}

/// An operation the harness asks a store to perform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Add or replace a document.
    Add {
        /// Its name.
        name: String,
        /// Its content (UTF-8 text).
        content: String,
    },
    /// Remove a document.
    Remove {
        /// Its name.
        name: String,
    },
    /// Add or replace several documents, all or nothing.
    Import {
        /// Name and content of each.
        documents: Vec<(String, String)>,
    },
    /// Rebuild the index.
    Rebuild {
        /// Full or incremental.
        kind: RebuildKind,
    },
    /// Reconcile the index with the source files.
    Reconcile {
        /// The mode.
        mode: ReconcileKind,
        /// Allow destructive modes.
        force: bool,
        /// Change nothing; report.
        dry_run: bool,
        /// Only this owner's records (stores with [`Capabilities::owners`]);
        /// `None`: every record. Absent from older operations: `None`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// Give an indexed document an active share link (it must be indexed).
    Share {
        /// Its name.
        name: String,
    },
    /// Revoke a document's share link (none is fine).
    Unshare {
        /// Its name.
        name: String,
    },
    /// Make `owner` the owner of an indexed document (it must be indexed).
    SetOwner {
        /// Its name.
        name: String,
        /// The owner's id.
        owner: String,
    },
}

impl Operation {
    /// A short description for traces and reports (`add a.md`, `rebuild full`).
    pub fn describe(&self) -> String {
        match self {
            Operation::Add { name, .. } => format!("add {name}"),
            Operation::Remove { name } => format!("remove {name}"),
            Operation::Share { name } => format!("share {name}"),
            Operation::Unshare { name } => format!("unshare {name}"),
            Operation::Import { documents } => format!("import {} documents", documents.len()),
            Operation::Rebuild { kind } => format!("rebuild {kind:?}").to_lowercase(),
            Operation::SetOwner { name, owner } => format!("set-owner {name} {owner}"),
            Operation::Reconcile {
                mode,
                force,
                dry_run,
                owner,
            } => format!(
                "reconcile {}{}{}{}",
                format!("{mode:?}").to_lowercase(),
                if *force { " --force" } else { "" },
                if *dry_run { " --dry-run" } else { "" },
                owner.as_ref().map(|o| format!(" --owner {o}")).unwrap_or_default()
            ),
        }
    }
}

/// What a failed store call says of its effect: the harness holds a store
/// to what it claims, and a store that claims nothing is held to nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The store does not say whether the operation took effect (a timeout,
    /// a commit whose roll-forward is pending): a later recovery may apply
    /// it or not. The default.
    #[default]
    Unknown,
    /// The operation failed and nothing of it was applied, nor ever will be:
    /// failed-means-not-applied holds a store that declares
    /// [`Capabilities::definite_failures`] to that after every later
    /// recovery, and the workload goes on.
    NotApplied,
    /// A read refused to serve because the store has unfinished work (a
    /// writer in the middle of an operation, or one interrupted that a
    /// writable open must recover): retry later, or open writable.
    RecoveryPending,
    /// The store found one of its own files damaged (a checksum, an
    /// integrity check or a format that does not hold) and refused to
    /// answer rather than answer wrong; the message names the file. A
    /// writable open repairs it (rebuildable-from-source). Absent from
    /// older descriptions.
    Damaged,
    /// The store cannot do this while a dependency it needs is unavailable
    /// (its remote vector store is down); nothing was changed; the message
    /// names the dependency. stays-serviceable accepts a writable open that
    /// refuses so while the dependency is down. Absent from older
    /// descriptions.
    Unavailable,
}

impl FailureKind {
    /// Its kebab-case name (`not-applied`), as serialised.
    pub fn name(&self) -> &'static str {
        match self {
            FailureKind::Unknown => "unknown",
            FailureKind::NotApplied => "not-applied",
            FailureKind::RecoveryPending => "recovery-pending",
            FailureKind::Damaged => "damaged",
            FailureKind::Unavailable => "unavailable",
        }
    }
}

/// Why a store call failed: the store's message, and what it claims of the
/// call's effect ([`FailureKind`]; by default it claims nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFailure {
    /// The store's own message.
    pub message: String,
    /// What the store says of the call's effect.
    #[serde(default)]
    pub kind: FailureKind,
}

impl StoreFailure {
    /// A failure with this message that claims nothing of its effect.
    pub fn new(message: impl fmt::Display) -> Self {
        Self::of_kind(FailureKind::Unknown, message)
    }

    /// A failure of this kind with this message.
    pub fn of_kind(kind: FailureKind, message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            kind,
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreFailure {}

/// The schema the store reports, for schema-never-mis-stamped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObservation {
    /// The version stamped on disk.
    pub version: u32,
    /// The version this build writes.
    pub expected: u32,
    /// Whether the stored schema really is the one the stamp claims (every
    /// step up to `version` applied).
    pub matches_stamp: bool,
}

/// A store's state in canonical, comparable form.
///
/// Content is identified by its SHA-256 (lower-case hex), so observations
/// stay small and any two stores can be compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The documents the store's index serves: name → content hash, as indexed.
    pub indexed: BTreeMap<String, String>,
    /// The source files: name → content hash. Empty if the store has none.
    pub sources: BTreeMap<String, String>,
    /// Whether the index's own integrity check passes.
    pub integrity_ok: bool,
    /// What the integrity check said, when it failed.
    pub integrity_detail: String,
    /// Vectors no index entry refers to.
    pub orphan_vectors: usize,
    /// Index entries whose vector is missing.
    pub missing_vectors: usize,
    /// Unfinished work left on disk (dual-write intents, mutation journals).
    pub pending_work: usize,
    /// Temporary or staging files left under the root.
    pub leftover_files: Vec<String>,
    /// Earlier index generations kept as backups.
    pub backups: usize,
    /// The schema, if the store has a versioned one.
    pub schema: Option<SchemaObservation>,
    /// Documents whose stored vector is not the embedding of their indexed
    /// content (read back from the vector store and compared value by
    /// value): a vector store that serves damaged records silently.
    /// Absent from older observations: none.
    #[serde(default)]
    pub wrong_vectors: Vec<String>,
    /// The store's remote dependency (its vector store) could not be
    /// reached while observing: the vector fields (`orphan_vectors`,
    /// `missing_vectors`, `wrong_vectors`) and `pending_work` that waits on
    /// it are unknown, and only what the index serves is checked. Allowed
    /// only while the harness has the dependency down
    /// ([`Env::remote`]). Absent from older observations: false.
    #[serde(default)]
    pub remote_unavailable: bool,
    /// The indexed documents with an active share link (stores with
    /// [`Capabilities::share_links`]). Absent from older observations: none.
    #[serde(default)]
    pub shared: BTreeSet<String>,
    /// The indexed documents that have an owner, with it (stores with
    /// [`Capabilities::owners`]). Absent from older observations: none.
    #[serde(default)]
    pub owners: BTreeMap<String, String>,
    /// The open that recovered the store found its live index damaged and
    /// rebuilt it from the source files: what it found damaged. Without a
    /// fault at rest, damage is a crash the store did not survive whole,
    /// hidden by the repair (complete-database). Absent from older
    /// observations (and from stores that do not say): none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
}

/// How [`StoreFactory::stamp_schema`] makes an index look written by another build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaStamp {
    /// By a later build: only a rebuild (by the lock holder) may open it.
    Newer,
    /// By an earlier build whose upgrade to this one runs in place.
    OlderInPlace,
}

/// What a derived file is to its store (see [`StoreFactory::derived_files`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileRole {
    /// The live index (a SQLite database, say).
    Index,
    /// A file of the live vector store.
    Vectors,
    /// What names the live generation (`CURRENT`).
    Pointer,
    /// What marks a generation complete (`CREATED`).
    CompletionMark,
    /// A mutation journal.
    Journal,
}

impl FileRole {
    /// Its kebab-case name (`completion-mark`), as serialised.
    pub fn name(&self) -> &'static str {
        match self {
            FileRole::Index => "index",
            FileRole::Vectors => "vectors",
            FileRole::Pointer => "pointer",
            FileRole::CompletionMark => "completion-mark",
            FileRole::Journal => "journal",
        }
    }
}

/// One file a store derives from its source files, which damage must never
/// cost a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedFile {
    /// What it is.
    pub role: FileRole,
    /// Where it is.
    pub path: PathBuf,
}

/// A store, as the harness creates and opens it.
pub trait StoreFactory: Send + Sync {
    /// The store's name, for reports.
    fn name(&self) -> &str;

    /// What it supports.
    fn capabilities(&self) -> Capabilities;

    /// Creates an empty store at `env.root` (before any fault is injected).
    fn init(&self, env: &Env) -> Result<(), StoreFailure>;

    /// Opens the store. A writable open must leave it consistent (recovery
    /// runs here), and a writable open while another process holds the
    /// store must fail rather than wait.
    fn open(&self, env: &Env, access: Access) -> Result<Box<dyn StoreUnderTest>, StoreFailure>;

    /// Where the source files live (for stores with
    /// [`Capabilities::source_files`]): the harness edits them there behind
    /// the store's back.
    fn source_dir(&self, env: &Env) -> Option<PathBuf>;

    /// Globs of the paths a process may only destroy (unlink, rename over,
    /// truncate) while holding the store's lock: its index files.
    fn protected_paths(&self, env: &Env) -> Vec<String>;

    /// The lock file, if the store has an exclusive lock.
    fn lock_file(&self, env: &Env) -> Option<PathBuf>;

    /// The files the store derives from its source files, as they stand now
    /// (the store is closed): the harness damages them at rest to check
    /// that a writable open brings the store back from the sources
    /// (rebuildable-from-source). For a store that declares
    /// [`Capabilities::derived_files`]; the default names none.
    fn derived_files(&self, env: &Env) -> Result<Vec<DerivedFile>, StoreFailure> {
        let _ = env;
        Ok(Vec::new())
    }

    /// Makes the store's index (the store is closed) look written by another
    /// build, durably, as the schema-versioning scenarios need. Returns
    /// `Ok(false)` if the store cannot: the default, and those scenarios are
    /// then not applicable.
    fn stamp_schema(&self, env: &Env, stamp: SchemaStamp) -> Result<bool, StoreFailure> {
        let _ = (env, stamp);
        Ok(false)
    }

    /// Where this factory serves several opens with one process of the
    /// store (a black-box child reused after a `reset`), the same store
    /// with a new process for every open: the repeatability check runs the
    /// fault-free workload on it and compares the syscalls. `None` (the
    /// default): nothing is reused.
    fn without_reuse(&self) -> Option<Box<dyn StoreFactory>> {
        None
    }

    /// Whether the store lives wholly in this process's memory and files,
    /// so that a fork of this process (how the crash matrix branches cases
    /// off one run of the workload) holds a copy of all of it. Default
    /// `true`; a store that runs as other processes (a black-box child and
    /// the mount that serves it) says `false`, and its cases are replayed
    /// from scratch.
    fn forks_with_this_process(&self) -> bool {
        true
    }
}

/// How a store's remote dependency (a vector database, say) misbehaves,
/// for stores that have one. Faults of the filesystem come from the
/// simulator; these are the faults it cannot make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteFault {
    /// Calls go through.
    Healthy,
    /// Calls fail at once; nothing is applied.
    Unavailable,
    /// Writes time out before they are applied.
    TimeoutBeforeApply,
    /// Writes are applied, then time out: the caller cannot tell.
    TimeoutAfterApply,
}

/// An open store.
pub trait StoreUnderTest {
    /// Performs one operation. `Err` is a clean failure (the harness checks
    /// that the state is then one the model allows); a panic is a violation.
    fn apply(&mut self, op: &Operation) -> Result<(), StoreFailure>;

    /// The store's state, canonically.
    fn observe(&self) -> Result<Observation, StoreFailure>;

    /// Makes the store's remote dependency misbehave from now on (a new
    /// handle starts healthy). Returns `false` if the store has none: the
    /// default.
    fn set_remote_fault(&mut self, fault: RemoteFault) -> bool {
        let _ = fault;
        false
    }
}

/// A store registered with the harness by name: how `tearline run --store
/// NAME` (and each of its worker processes) builds the very factory the
/// parent runs. A store crate exports a list of these; the harness collects
/// them.
pub struct NamedStore {
    /// The name `--store` takes and reports print (`refstore/no-intents`).
    pub name: &'static str,
    /// What it is, in a few words (for listings).
    pub summary: &'static str,
    make: Box<dyn Fn() -> Box<dyn StoreFactory> + Send + Sync>,
}

impl NamedStore {
    /// Registers `make` under `name`.
    pub fn new(
        name: &'static str,
        summary: &'static str,
        make: impl Fn() -> Box<dyn StoreFactory> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            summary,
            make: Box::new(make),
        }
    }

    /// A new factory of this store.
    pub fn factory(&self) -> Box<dyn StoreFactory> {
        (self.make)()
    }
}

impl std::fmt::Debug for NamedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedStore")
            .field("name", &self.name)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_flags_are_named_as_serialised() {
        let all = Capabilities {
            remove: true,
            import: true,
            full_rebuild: true,
            incremental_rebuild: true,
            reconcile: true,
            vectors: true,
            schema_version: true,
            exclusive_lock: true,
            source_files: true,
            concurrent_readers: true,
            definite_failures: true,
            derived_files: true,
            share_links: true,
            owners: true,
        };
        let json = serde_json::to_value(all).unwrap();
        let fields: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut names: Vec<&str> = all.flags().iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(names, fields);
        assert!(all.flags().iter().all(|(_, on)| *on));
        assert!(Capabilities::default().flags().iter().all(|(_, on)| !*on));
    }
}
