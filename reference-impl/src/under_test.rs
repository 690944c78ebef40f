//! The reference store under Tearline's contract ([`tearline_model`]), and
//! the known-bad designs of the origin documents as test-only variants.
//!
//! [`RefStoreFactory`] creates and opens the store ([`Store::init`],
//! [`Store::open`]; a writable open recovers, and fails at once if another
//! process holds the lock); its handle, [`RefStore`], maps each
//! [`Operation`] onto the store's API and reports the store's state as an
//! [`Observation`].
//!
//! # Fault model
//!
//! The adapter adds nothing to the store's: every fault is an `Fs` syscall
//! that fails, or a process crash or power cut at one. The one thing it
//! writes itself is the scratch directory an import is read from
//! (`<root>.import-<n>`, beside the root on the same `Fs`); it removes it
//! after the import, and a writable open removes any an interrupted import
//! left, so a crash never leaks one.
//!
//! # Known-bad designs
//!
//! [`RefStoreFactory::correct`] is the store. With the `flawed-variants`
//! cargo feature, [`RefStoreFactory::with_flaw`] runs one design an origin
//! document proposed ([`Flaw`]), which must break one of the invariants
//! [`Flaw::breaks`] names: a harness that does not catch it has no teeth.
//! Never use them to store data. [`stores`] registers them all with the
//! harness by name.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tearline_model::contract::{Access as ContractAccess, RebuildKind, ReconcileKind};
use tearline_model::{
    Capabilities, DerivedFile, Env, FailureKind, FileRole, NamedStore, Observation, Operation, RemoteFault,
    SchemaObservation, SchemaStamp, StoreFactory, StoreFailure, StoreUnderTest,
};
use tearline_sim_fs::{FileKind, Fs, FsExt};

use crate::error::FailureEffect;
#[cfg(feature = "flawed-variants")]
use crate::flawed::Flaw;
use crate::generation;
use crate::layout::{Generation, Layout};
use crate::rebuild::RebuildMode;
use crate::reconcile::{ReconcileMode, ReconcileOptions};
use crate::schema::SCHEMA_VERSION;
use crate::store::{Access, Store, StoreOptions};
use crate::vectors::{FaultMode, FaultSwitch, FaultyVectorStore, VectorBackend};

/// Creates and opens the reference store for the harness: as designed, or
/// (with the `flawed-variants` feature) with one known-bad design of the
/// origin documents, kept only to prove the harness catches it.
#[derive(Clone, Debug, Default)]
pub struct RefStoreFactory {
    #[cfg(feature = "flawed-variants")]
    flaw: Option<Flaw>,
    /// Where the store keeps its vectors, if not in files beside the index.
    vectors: Option<Arc<dyn VectorBackend>>,
}

impl RefStoreFactory {
    /// The reference store as designed.
    pub fn correct() -> Self {
        Self::default()
    }

    /// The store with a known-bad design.
    #[cfg(feature = "flawed-variants")]
    pub fn with_flaw(flaw: Flaw) -> Self {
        Self {
            flaw: Some(flaw),
            ..Self::default()
        }
    }

    /// The store registered as `name` ([`stores`]), if this build has it.
    pub fn named(name: &str) -> Option<Self> {
        if name == STORE_NAME {
            return Some(Self::correct());
        }
        #[cfg(feature = "flawed-variants")]
        if let Some(flaw) = Flaw::ALL.into_iter().find(|flaw| flaw.store_name() == name) {
            return Some(Self::with_flaw(flaw));
        }
        None
    }

    /// This store with its vectors kept by `backend` (a remote vector
    /// store's collections) rather than in files beside its index.
    pub fn with_vector_backend(self, backend: Arc<dyn VectorBackend>) -> Self {
        Self {
            vectors: Some(backend),
            ..self
        }
    }

    /// The known-bad design it runs, if any.
    #[cfg(feature = "flawed-variants")]
    pub fn flaw(&self) -> Option<Flaw> {
        self.flaw
    }

    /// The store options for an open.
    fn options(&self, access: Access) -> StoreOptions {
        let writable = access == Access::Writable;
        StoreOptions {
            access,
            // A writable open holds the lock: it may rebuild an index whose
            // schema requires it, and must leave the current version.
            rebuild_if_needed: writable,
            vector_segment_bytes: HARNESS_VECTOR_SEGMENT_BYTES,
            vector_backend: match &self.vectors {
                Some(backend) => Arc::clone(backend),
                None => StoreOptions::default().vector_backend,
            },
            #[cfg(feature = "flawed-variants")]
            flaw: self.flaw,
            ..StoreOptions::default()
        }
    }
}

/// The vector segment size the harness runs the store with: four vectors
/// a segment, so that every scenario's adds and rebuilds start new
/// segments (under every fault), where the default 4 MiB would take some
/// fifteen thousand documents. SQLite's own tests shrink its page size for
/// the same reason.
pub const HARNESS_VECTOR_SEGMENT_BYTES: u64 = 1024;

/// The name the harness knows the reference store by.
pub const STORE_NAME: &str = "refstore";

/// The stores this crate registers with the harness: the reference store
/// first, then (with `flawed-variants`) one per [`Flaw`], by its
/// [`Flaw::store_name`].
pub fn stores() -> Vec<NamedStore> {
    #[allow(unused_mut)] // only the flawed variants add to it
    let mut stores = vec![NamedStore::new(STORE_NAME, "the reference store as designed", || {
        Box::new(RefStoreFactory::correct())
    })];
    #[cfg(feature = "flawed-variants")]
    for flaw in Flaw::ALL {
        stores.push(NamedStore::new(
            flaw.store_name(),
            "a known-bad design of the origin documents",
            move || Box::new(RefStoreFactory::with_flaw(flaw)),
        ));
    }
    stores
}

fn failure(error: impl std::fmt::Display) -> StoreFailure {
    StoreFailure::new(error)
}

/// The store's error, with what it says of the call's effect.
fn store_failure(error: crate::error::StoreError) -> StoreFailure {
    let kind = match error.effect() {
        FailureEffect::NothingApplied => FailureKind::NotApplied,
        FailureEffect::Unknown => FailureKind::Unknown,
        FailureEffect::RecoveryPending => FailureKind::RecoveryPending,
        FailureEffect::Damaged => FailureKind::Damaged,
        FailureEffect::Unavailable => FailureKind::Unavailable,
    };
    StoreFailure::of_kind(kind, error)
}

/// The prefix of the import scratch directories' names, beside the root.
fn scratch_prefix(root: &Path) -> (PathBuf, String) {
    let parent = root.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (parent, format!("{name}.import-"))
}

/// The import scratch directories beside `root` (full paths, sorted).
fn scratch_dirs(fs: &dyn Fs, root: &Path) -> io::Result<Vec<PathBuf>> {
    let (parent, prefix) = scratch_prefix(root);
    Ok(fs
        .read_dir_or_empty(&parent)?
        .into_iter()
        .filter(|e| e.name.starts_with(&prefix))
        .map(|e| parent.join(e.name))
        .collect())
}

impl StoreFactory for RefStoreFactory {
    fn name(&self) -> &str {
        #[cfg(feature = "flawed-variants")]
        if let Some(flaw) = self.flaw {
            return flaw.store_name();
        }
        STORE_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
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
        }
    }

    fn init(&self, env: &Env) -> Result<(), StoreFailure> {
        let options = self.options(Access::Writable);
        Store::init_with(Arc::clone(&env.fs), Arc::clone(&env.clock), &env.root, &options).map_err(failure)
    }

    fn open(&self, env: &Env, access: ContractAccess) -> Result<Box<dyn StoreUnderTest>, StoreFailure> {
        let access = match access {
            ContractAccess::Writable => Access::Writable,
            ContractAccess::ReadOnly => Access::ReadOnly,
        };
        // The vector store is reached through a switch, so the harness can
        // make it misbehave as a remote one would.
        let remote = FaultSwitch::new();
        remote.set(fault_mode(env.remote));
        let switch = remote.clone();
        let options = StoreOptions {
            wrap_vectors: Some(Box::new(move |inner| {
                Box::new(FaultyVectorStore::new(inner, switch.clone()))
            })),
            ..self.options(access)
        };
        let store =
            Store::open(Arc::clone(&env.fs), Arc::clone(&env.clock), &env.root, options).map_err(store_failure)?;
        if access == Access::Writable {
            // The adapter's own recovery, under the lock: the scratch
            // directories of interrupted imports go.
            let dirs = scratch_dirs(env.fs.as_ref(), &env.root).map_err(failure)?;
            for dir in &dirs {
                env.fs
                    .remove_tree(dir)
                    .map_err(|e| failure(format!("removing {}: {e}", dir.display())))?;
            }
            if !dirs.is_empty() {
                let (parent, _) = scratch_prefix(&env.root);
                env.fs.sync_dir(&parent).map_err(failure)?;
            }
        }
        Ok(Box::new(RefStore {
            store,
            fs: Arc::clone(&env.fs),
            imports: 0,
            remote,
        }))
    }

    fn source_dir(&self, env: &Env) -> Option<PathBuf> {
        Some(Layout::new(&env.root).source_dir())
    }

    fn protected_paths(&self, env: &Env) -> Vec<String> {
        let generations = Layout::new(&env.root).generations_dir();
        vec![
            format!("{}/*/index.db*", generations.display()),
            format!("{}/*/vectors/*", generations.display()),
        ]
    }

    fn lock_file(&self, env: &Env) -> Option<PathBuf> {
        Some(self.options(Access::Writable).lock_path(&Layout::new(&env.root)))
    }

    fn derived_files(&self, env: &Env) -> Result<Vec<DerivedFile>, StoreFailure> {
        let layout = Layout::new(&env.root);
        let fs = env.fs.as_ref();
        let mut files = vec![DerivedFile {
            role: FileRole::Pointer,
            path: layout.current_file(),
        }];
        let listed = |dir: &Path| -> Result<Vec<PathBuf>, StoreFailure> {
            Ok(fs
                .read_dir_or_empty(dir)
                .map_err(failure)?
                .into_iter()
                .filter(|e| e.kind == FileKind::File)
                .map(|e| dir.join(e.name))
                .collect())
        };
        if let Some(live) = crate::store::read_current(fs, &layout).ok().flatten() {
            let dir = layout.generation_dir(live);
            files.push(DerivedFile {
                role: FileRole::Index,
                path: layout.index_file(live),
            });
            files.push(DerivedFile {
                role: FileRole::CompletionMark,
                path: dir.join(crate::layout::CREATED_FILE_NAME),
            });
            files.extend(listed(&layout.vectors_dir(live))?.into_iter().map(|path| DerivedFile {
                role: FileRole::Vectors,
                path,
            }));
        }
        files.extend(listed(&layout.journal_dir())?.into_iter().map(|path| DerivedFile {
            role: FileRole::Journal,
            path,
        }));
        Ok(files)
    }

    fn stamp_schema(&self, env: &Env, stamp: SchemaStamp) -> Result<bool, StoreFailure> {
        let layout = Layout::new(&env.root);
        let live = crate::store::read_current(env.fs.as_ref(), &layout)
            .map_err(failure)?
            .ok_or_else(|| StoreFailure::new("no live generation to stamp"))?;
        let sql = match stamp {
            SchemaStamp::Newer => format!("PRAGMA user_version = {};", SCHEMA_VERSION + 90),
            // Version 2's schema: version 3's column is not there yet, and
            // the step to 3 runs in place.
            SchemaStamp::OlderInPlace => {
                "ALTER TABLE files DROP COLUMN indexed_at_ms; PRAGMA user_version = 2;".to_string()
            }
        };
        // The other build checksums its pages as this one does.
        let vfs = tearline_sim_fs::SqliteVfs::register(
            Arc::clone(&env.fs),
            Arc::clone(&env.clock),
            tearline_sim_fs::VfsOptions {
                page_checksums: true,
                ..tearline_sim_fs::VfsOptions::default()
            },
        )
        .map_err(failure)?;
        let conn = vfs
            .open(&layout.index_file(live), rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(failure)?;
        // EXTRA: the stamp must survive the power cuts the scenario injects later.
        conn.execute_batch(&format!("PRAGMA synchronous=EXTRA; {sql}"))
            .map_err(failure)?;
        Ok(true)
    }
}

/// An open reference store, as the harness drives it.
#[derive(Debug)]
pub struct RefStore {
    store: Store,
    fs: Arc<dyn Fs>,
    /// Imports made through this handle (names the next scratch directory).
    imports: u64,
    /// How the vector store behaves, as the harness sets it.
    remote: FaultSwitch,
}

impl RefStore {
    /// The store itself.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes `documents` into a fresh scratch directory beside the root,
    /// imports it, and removes it.
    fn import(&mut self, documents: &[(String, String)]) -> Result<(), StoreFailure> {
        let fs = Arc::clone(&self.fs);
        let (parent, prefix) = scratch_prefix(self.store.root());
        let dir = parent.join(format!("{prefix}{}", self.imports));
        self.imports += 1;
        // Until the store is called, nothing of the import is applied.
        let scratch = |what: String| StoreFailure::of_kind(FailureKind::NotApplied, what);
        fs.remove_tree(&dir)
            .map_err(|e| scratch(format!("removing {}: {e}", dir.display())))?;
        fs.create_dir(&dir)
            .map_err(|e| scratch(format!("creating {}: {e}", dir.display())))?;
        let written = documents.iter().try_for_each(|(name, content)| {
            let path = dir.join(name);
            fs.write_file(&path, content.as_bytes())
                .map_err(|e| scratch(format!("writing {}: {e}", path.display())))?;
            // The input the user hands the store must be what the harness
            // meant (a misdirected write reports success).
            match fs.read_file(&path) {
                Ok(back) if back == content.as_bytes() => Ok(()),
                _ => Err(scratch(format!("{} does not read back as written", path.display()))),
            }
        });
        let result = written.and_then(|()| self.store.import(&dir).map(drop).map_err(store_failure));
        // Best effort: a writable open removes what is left.
        let _ = fs.remove_tree(&dir);
        result
    }

    /// Relative paths (from the root) of what an interrupted operation may
    /// leave and a writable open must remove.
    fn leftovers(&self, live: Generation) -> Result<Vec<String>, StoreFailure> {
        let fs = self.fs.as_ref();
        let layout = Layout::new(self.store.root());
        let mut found = Vec::new();
        let listed = |dir: &Path| {
            fs.read_dir_or_empty(dir)
                .map_err(|e| failure(format!("listing {}: {e}", dir.display())))
        };
        for entry in listed(layout.root())? {
            if entry.name.starts_with('.') {
                found.push(entry.name);
            }
        }
        for entry in listed(&layout.source_dir())? {
            if entry.name.starts_with('.') {
                found.push(format!("source/{}", entry.name));
            }
        }
        for (dir, shown) in [(layout.shares_dir(), "shares"), (layout.owners_dir(), "owners")] {
            for entry in listed(&dir)? {
                if entry.name.starts_with('.') {
                    found.push(format!("{shown}/{}", entry.name));
                }
            }
        }
        for entry in listed(&layout.journal_dir())? {
            let snapshot = entry.kind == FileKind::Dir && entry.name.ends_with(".snap");
            let temp = entry.kind == FileKind::File && entry.name.starts_with('.');
            if snapshot || temp {
                found.push(format!("journal/{}", entry.name));
            }
        }
        for entry in listed(&layout.staging_dir())? {
            found.push(format!("staging/{}", entry.name));
        }
        for entry in listed(&layout.generations_dir())? {
            if entry.kind == FileKind::Dir && entry.name.starts_with(crate::repair::DAMAGED_PREFIX) {
                // A damaged generation a repair kept aside for inspection:
                // neither a leftover nor a backup (see `crate::repair`).
                continue;
            }
            let generation = Generation::parse(&entry.name).filter(|_| entry.kind == FileKind::Dir);
            let leftover = match generation {
                Some(g) if g == live => false,
                // A damaged mark: the store keeps it, not a leftover.
                Some(g) if g < live => {
                    generation::mark(fs, &layout.generation_dir(g)).map_err(failure)? == generation::Mark::Absent
                }
                _ => true,
            };
            if leftover {
                found.push(format!("generations/{}", entry.name));
            }
        }
        for dir in scratch_dirs(fs, layout.root()).map_err(failure)? {
            found.push(dir.display().to_string());
        }
        found.sort();
        Ok(found)
    }

    /// Journal files not yet drained (the quarantine excluded).
    fn pending_journals(&self) -> Result<usize, StoreFailure> {
        let dir = Layout::new(self.store.root()).journal_dir();
        Ok(self
            .fs
            .read_dir_or_empty(&dir)
            .map_err(failure)?
            .into_iter()
            .filter(|e| e.kind == FileKind::File && !e.name.starts_with('.') && e.name.ends_with(".json"))
            .count())
    }

    /// Older complete generations.
    fn backups(&self, live: Generation) -> Result<usize, StoreFailure> {
        let fs = self.fs.as_ref();
        let layout = Layout::new(self.store.root());
        let mut backups = 0;
        for generation in generation::existing(fs, &layout).map_err(failure)? {
            // A damaged mark: the store keeps the generation.
            let kept = generation < live
                && generation::mark(fs, &layout.generation_dir(generation)).map_err(failure)?
                    != generation::Mark::Absent;
            if kept {
                backups += 1;
            }
        }
        Ok(backups)
    }
}

/// How the vector store misbehaves for a remote fault of the harness.
fn fault_mode(fault: RemoteFault) -> FaultMode {
    match fault {
        RemoteFault::Healthy => FaultMode::Healthy,
        RemoteFault::Unavailable => FaultMode::Unavailable,
        RemoteFault::TimeoutBeforeApply => FaultMode::TimeoutBeforeApply,
        RemoteFault::TimeoutAfterApply => FaultMode::TimeoutAfterApply,
    }
}

impl StoreUnderTest for RefStore {
    fn set_remote_fault(&mut self, fault: RemoteFault) -> bool {
        self.remote.set(fault_mode(fault));
        true
    }

    fn apply(&mut self, op: &Operation) -> Result<(), StoreFailure> {
        let store = &mut self.store;
        match op {
            Operation::Add { name, content } => store.add(name, content.as_bytes()).map(drop).map_err(store_failure),
            Operation::Remove { name } => store.remove(name).map_err(store_failure),
            Operation::Share { name } => store.share(name).map_err(store_failure),
            Operation::Unshare { name } => store.unshare(name).map_err(store_failure),
            Operation::SetOwner { name, owner } => store.set_owner(name, owner).map_err(store_failure),
            Operation::Import { documents } => self.import(documents),
            Operation::Rebuild { kind } => {
                let mode = match kind {
                    RebuildKind::Full => RebuildMode::Full,
                    RebuildKind::Incremental => RebuildMode::Incremental,
                };
                store.rebuild(mode, &mut |_| {}).map(drop).map_err(store_failure)
            }
            Operation::Reconcile {
                mode,
                force,
                dry_run,
                owner,
            } => {
                let mode = match mode {
                    ReconcileKind::Audit => ReconcileMode::Audit,
                    ReconcileKind::Sync => ReconcileMode::Sync,
                    ReconcileKind::Clean => ReconcileMode::Clean,
                    ReconcileKind::Full => ReconcileMode::Full,
                };
                let stats = store
                    .reconcile(ReconcileOptions {
                        mode,
                        dry_run: *dry_run,
                        force: *force,
                        owner: owner.clone(),
                    })
                    .map_err(failure)?;
                // Reconcile goes on past a document it cannot bring in line;
                // the operation as a whole did not succeed.
                match stats.errors.first() {
                    None => Ok(()),
                    Some(first) => Err(failure(format!(
                        "reconcile {mode} failed for {} documents, first: {first}",
                        stats.errors.len()
                    ))),
                }
            }
        }
    }

    fn observe(&self) -> Result<Observation, StoreFailure> {
        let store = &self.store;
        // SQLite finding its index damaged while serving: a refusal that
        // names the file, not an answer.
        let index = store.layout.index_file(store.generation);
        let store_failure = |e: crate::error::StoreError| {
            if crate::repair::sqlite_damage(&e) {
                StoreFailure::of_kind(FailureKind::Damaged, format!("{} is damaged: {e}", index.display()))
            } else {
                store_failure(e)
            }
        };
        let failure = |e: crate::error::StoreError| store_failure(e);
        // With the vector store down, reads of the index still serve: what
        // the index holds is observed, and the vectors are said unknown.
        let remote_unavailable = store.vector_store_down().is_some();
        let (integrity, orphan_vectors, missing_vectors, intents, wrong_vectors) = if remote_unavailable {
            store.require_readable().map_err(failure)?;
            let integrity = store.index.integrity_check().map_err(failure)?;
            (
                integrity,
                0,
                0,
                store.index.intents().map_err(failure)?.len(),
                Vec::new(),
            )
        } else {
            let verify = store.verify().map_err(store_failure)?;
            (
                verify.integrity,
                verify.orphan_vectors.len(),
                verify.missing_vectors.len(),
                verify.pending_intents,
                store.wrong_vectors().map_err(store_failure)?,
            )
        };
        let indexed: BTreeMap<String, String> = store
            .index
            .files()
            .map_err(failure)?
            .into_iter()
            .map(|(name, row)| (name, row.hash))
            .collect();
        let sources = store.sources().map_err(failure)?.hashes;
        let (version, _) = store.index.version().map_err(failure)?;
        let matches_stamp = store.index.schema_matches_stamp().map_err(failure)?;
        let live = store.generation;
        let shared = store.shares().map_err(failure)?;
        let owners = store.owners().map_err(failure)?;
        let repaired = store
            .open_report()
            .repaired
            .as_ref()
            .map(|repair| format!("{}: {}", repair.damaged.display(), repair.detail));
        Ok(Observation {
            indexed,
            sources,
            integrity_ok: integrity == "ok",
            integrity_detail: if integrity == "ok" { String::new() } else { integrity },
            orphan_vectors,
            missing_vectors,
            pending_work: intents + self.pending_journals()?,
            leftover_files: self.leftovers(live)?,
            backups: self.backups(live)?,
            schema: Some(SchemaObservation {
                version,
                expected: SCHEMA_VERSION,
                matches_stamp,
            }),
            wrong_vectors,
            remote_unavailable,
            shared,
            owners,
            repaired,
        })
    }
}

#[cfg(test)]
mod tests {
    /// The store hashes content itself (it does not link the model outside
    /// this module); its observations agree with the model only while the two
    /// hashes are the same function.
    #[test]
    fn the_store_hashes_content_as_the_model_does() {
        let contents: [&[u8]; 4] = [b"", b"Alpha\n\nOne.", "\u{e9}t\u{e9}".as_bytes(), &[0, 255, 10, 13]];
        for content in contents {
            assert_eq!(
                crate::store::content_hash(content),
                tearline_model::content_hash(content),
                "{content:?}"
            );
        }
    }
}
