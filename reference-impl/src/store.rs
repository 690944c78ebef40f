//! The store: opening (lock, generation, schema, vector store, recovery),
//! reading, searching and verifying. Mutations and recovery are in
//! [`crate::dual_write`]; rebuilding is in [`crate::rebuild`], building and
//! switching a generation in `crate::generation`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::Serialize;
use tearline_sim_fs::{Clock, FileKind, Fs, FsExt};

use crate::dual_write::RecoveryReport;
use crate::embed::{Embedder, HashingEmbedder, chunk, summarise};
use crate::error::{Context, Named, Result, StoreError};
use crate::generation;
use crate::index::{FileRow, Index, IndexAccess, IndexedDocument};
use crate::journal::JournalReport;
use crate::layout::{DocName, Generation, Layout};
use crate::lock::StoreLock;
use crate::rebuild::RetentionPolicy;
use crate::reconcile::{ReconcileOptions, ReconcileStats};
use crate::repair::{self, Repair};
use crate::reserve;
use crate::schema::{self, Plan};
use crate::vectors::local::OpenReport as VectorOpenReport;
use crate::vectors::{LocalVectors, VectorBackend, VectorError, VectorId, VectorStore};

/// Whether a store is opened for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Takes the write lock, migrates, recovers; may mutate.
    Writable,
    /// Takes no lock and changes nothing on disk; sees the last complete state.
    ReadOnly,
}

/// Wraps the vector store a store opens (to model a remote one that fails).
pub type VectorWrapper = Box<dyn Fn(Box<dyn VectorStore>) -> Box<dyn VectorStore> + Send + Sync>;

/// How to open a store.
pub struct StoreOptions {
    /// Writable or read-only. Default writable.
    pub access: Access,
    /// Rebuild the index from the source files if its schema requires it.
    /// Only a writable open (which holds the lock) can. Default false: such
    /// an open fails with [`StoreError::RebuildRequired`] and changes nothing.
    pub rebuild_if_needed: bool,
    /// Wraps the local vector store (tests and the harness use it to inject
    /// vector-store failures). Default none.
    pub wrap_vectors: Option<VectorWrapper>,
    /// Which backup generations a writable open and a full rebuild keep.
    /// Default [`RetentionPolicy::default`]: one backup, at most 7 days old.
    pub retention: RetentionPolicy,
    /// How large a vector segment grows before writes go to a new one
    /// ([`crate::vectors::LocalOptions::segment_target_bytes`]). Default
    /// 4 MiB; the harness uses a small size so that its scenarios roll
    /// segments over.
    pub vector_segment_bytes: u64,
    /// Where each generation's vectors live. Default [`LocalVectors`]:
    /// segment files in the generation's directory, on `fs`.
    pub vector_backend: Arc<dyn VectorBackend>,
    /// A known-bad design to run with (see [`crate::flawed::Flaw`]). Default
    /// none: the real design.
    #[cfg(feature = "flawed-variants")]
    pub flaw: Option<crate::flawed::Flaw>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            access: Access::Writable,
            rebuild_if_needed: false,
            wrap_vectors: None,
            retention: RetentionPolicy::default(),
            vector_segment_bytes: crate::vectors::LocalOptions::default().segment_target_bytes,
            vector_backend: Arc::new(LocalVectors),
            #[cfg(feature = "flawed-variants")]
            flaw: None,
        }
    }
}

impl StoreOptions {
    /// The layout of the store at `root` these options open.
    pub(crate) fn layout(&self, root: &Path) -> Layout {
        Layout::new(root)
            .with_vector_segment_bytes(self.vector_segment_bytes)
            .with_vector_backend(Arc::clone(&self.vector_backend))
    }

    /// What a writable open locks: [`Layout::lock_path`] (with
    /// [`crate::flawed::Flaw::LockTrustsPath`], a lock file instead).
    pub(crate) fn lock_path(&self, layout: &Layout) -> PathBuf {
        #[cfg(feature = "flawed-variants")]
        if self.flaw == Some(crate::flawed::Flaw::LockTrustsPath) {
            return crate::flawed::trusted_lock_file(layout);
        }
        layout.lock_path()
    }

    /// A read-only open.
    pub fn read_only() -> Self {
        Self {
            access: Access::ReadOnly,
            ..Self::default()
        }
    }
}

/// Refuses to open a store with its vectors in another place than it was
/// created with (`VECTORS`, absent: files beside each index).
fn check_placement(fs: &dyn Fs, layout: &Layout) -> Result<()> {
    let file = layout.vectors_file();
    let recorded = match fs.read_file(&file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::vectors::backend::FILES.to_string(),
        Err(e) => return Err(e).context(|| format!("reading {}", file.display())),
    };
    let given = layout.vector_backend().placement();
    if recorded == given {
        return Ok(());
    }
    Err(StoreError::Vectors {
        context: format!("opening the store at {}", layout.root().display()),
        source: VectorError::Invalid(format!(
            "it keeps its vectors in {recorded}, and was opened with them in {given} (give the store's own \
             vector store: `--vectors URL` and `--vectors-prefix` for a vector server, neither for files)"
        )),
    })
}

/// What opening the store did.
#[derive(Clone, Debug, Serialize)]
pub struct OpenReport {
    /// The live generation.
    pub generation: u64,
    /// In-place migration: the schema version found, if one ran.
    pub migrated_from: Option<u32>,
    /// Rebuild: the schema version found, if the index was rebuilt.
    pub rebuilt_from: Option<u32>,
    /// Leftovers of interrupted rebuilds (and of interrupted removals) that
    /// were removed.
    pub removed_generations: Vec<String>,
    /// Backup generations the retention policy no longer keeps, removed.
    pub removed_backups: Vec<String>,
    /// What the vector store repaired when it opened.
    pub vector_repair: VectorRepair,
    /// Recovery ran out of space and used the space reserve.
    pub reserve_released: bool,
    /// The space reserve exists after the open (it is recreated when
    /// missing and there is plenty of room).
    pub reserve_kept: bool,
    /// What recovery did (empty for a read-only open).
    pub recovery: RecoveryReport,
    /// The audit a writable open runs: where the index and the files
    /// disagree. Reported, never acted on (see [`Store::reconcile`]).
    pub audit: Option<ReconcileStats>,
    /// What draining the mutation journals did (empty for a read-only open).
    pub journals: JournalReport,
    /// The live generation was damaged and a writable open rebuilt it from
    /// the source files: which file, why, and where the damaged generation
    /// was kept (see `crate::repair`).
    pub repaired: Option<Repair>,
    /// Why removing leftovers and expired backups failed, if it did (the
    /// open still succeeded; the next writable open retries).
    pub cleanup_error: Option<String>,
    /// The vector store could not be reached at this writable open, and
    /// why: interrupted mutations were finished or rolled back at the files
    /// and the index only, so reads serve a whole state; what the vectors
    /// owe waits in dual-write intents for the next writable open that can
    /// reach them, and every write is refused until then.
    pub vectors_deferred: Option<String>,
}

/// What the vector store dropped when it opened (torn tails).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VectorRepair {
    /// Records dropped.
    pub dropped_records: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

impl VectorRepair {
    fn from_report(report: &VectorOpenReport) -> Self {
        Self {
            dropped_records: report.dropped_records,
            dropped_bytes: report.dropped_bytes,
        }
    }
}

/// A document as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Document {
    /// Its name.
    pub name: String,
    /// Its content (from the source file).
    pub content: String,
    /// Its summary.
    pub summary: String,
    /// Its vector's id.
    pub vector_id: VectorId,
    /// How many chunks it was split into.
    pub chunks: u64,
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// The document's name.
    pub name: String,
    /// Its summary.
    pub summary: String,
    /// Cosine similarity of its summary to the query.
    pub score: f32,
}

/// What `verify` found. [`VerifyReport::is_clean`] is true when nothing is wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// SQLite's `integrity_check` ("ok" when sound).
    pub integrity: String,
    /// Vectors no summary (and no pending intent) refers to.
    pub orphan_vectors: Vec<VectorId>,
    /// Documents whose summary's vector is missing from the vector store.
    pub missing_vectors: Vec<String>,
    /// Source files the index does not know.
    pub unindexed_sources: Vec<String>,
    /// Indexed documents whose source file is gone.
    pub missing_sources: Vec<String>,
    /// Indexed documents whose source file changed since.
    pub stale: Vec<String>,
    /// Dual-write intents not yet resolved.
    pub pending_intents: usize,
    /// Entries of `source/` that are not documents (skipped, not damage).
    pub skipped_sources: Vec<SkippedSource>,
}

impl VerifyReport {
    /// True when the index is sound and agrees with the vectors and the sources.
    pub fn is_clean(&self) -> bool {
        self.integrity == "ok"
            && self.orphan_vectors.is_empty()
            && self.missing_vectors.is_empty()
            && self.unindexed_sources.is_empty()
            && self.missing_sources.is_empty()
            && self.stale.is_empty()
            && self.pending_intents == 0
    }
}

/// The store's logical content in a canonical, comparable form: what it
/// holds, not how (no vector ids, no generation, no timestamps).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Dump {
    /// Every indexed document, by name.
    pub documents: Vec<DumpedDocument>,
}

/// One document of a [`Dump`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DumpedDocument {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its content, hex.
    pub hash: String,
    /// Its summary.
    pub summary: String,
    /// Its chunks, in order.
    pub chunks: Vec<String>,
    /// Its vector, or `None` if the vector store lacks it.
    pub vector: Option<Vec<f32>>,
}

/// A short status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The live generation.
    pub generation: u64,
    /// The index's schema version.
    #[serde(rename = "index_schema_version")]
    pub schema_version: u32,
    /// Indexed documents.
    pub documents: usize,
    /// Vectors in the vector store.
    pub vectors: usize,
    /// Dual-write intents not yet resolved.
    pub pending_intents: usize,
    /// Whether this handle may write.
    pub writable: bool,
}

/// The vector store's ids beside the summaries' references.
pub(crate) struct VectorAgreement {
    /// Every id the vector store holds.
    pub(crate) stored: BTreeSet<VectorId>,
    /// Every (document, vector id) of the summaries, by document.
    pub(crate) summaries: Vec<(String, VectorId)>,
    /// The ids the summaries refer to.
    pub(crate) referenced: BTreeSet<VectorId>,
}

/// A document store: source files, a SQLite index, a vector store.
pub struct Store {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) layout: Layout,
    pub(crate) generation: Generation,
    pub(crate) index: Index,
    pub(crate) vectors: Box<dyn VectorStore>,
    pub(crate) embedder: HashingEmbedder,
    pub(crate) lock: Option<StoreLock>,
    pub(crate) wrap_vectors: Option<VectorWrapper>,
    pub(crate) retention: RetentionPolicy,
    #[cfg(feature = "flawed-variants")]
    pub(crate) flaw: Option<crate::flawed::Flaw>,
    report: OpenReport,
    /// Set only while a writable open's recovery runs with the vector store
    /// down: reindexing then leaves the vector work in intents
    /// ([`OpenReport::vectors_deferred`]). A mutation later on this handle
    /// checks the vector store itself and, once it is back, writes through.
    deferring_vectors: bool,
    /// A sync of `shares/` or `owners/` failed on this handle: a removal
    /// there may not be durable, so the next new record syncs both before
    /// it is created (see `crate::owner`).
    pub(crate) sidecars_unsynced: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.layout.root())
            .field("generation", &self.generation)
            .field("writable", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

/// SHA-256 of `content`, lower-case hex: the hash the index keeps per
/// document. The same function as `tearline_model::content_hash` (a test of
/// the contract module holds them equal), so the store's observations and the
/// model agree, without the store linking the model.
pub(crate) fn content_hash(content: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the generation pointer.
pub(crate) fn read_current(fs: &dyn Fs, layout: &Layout) -> Result<Option<Generation>> {
    let path = layout.current_file();
    let bytes = match fs.read_file(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                context: format!("reading {}", path.display()),
                source,
            });
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    Generation::parse(&text).map(Some).ok_or_else(|| StoreError::Corrupt {
        what: format!("{} holds {text:?}, not a generation name", path.display()),
    })
}

impl Store {
    /// Creates an empty store at `root`: its directories, generation 1 with an
    /// empty index and vector store, and the pointer to it.
    pub fn init(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, root: &Path) -> Result<()> {
        Self::init_with(fs, clock, root, &StoreOptions::default())
    }

    /// [`Store::init`] with `options`: it takes the lock they name, writes
    /// vector segments of their size and keeps generation 1's vectors
    /// where their [`StoreOptions::vector_backend`] says (a store whose
    /// vectors are remote is initialised with its backend, and opened with
    /// it ever after); nothing else of them matters.
    pub fn init_with(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, root: &Path, options: &StoreOptions) -> Result<()> {
        let layout = options.layout(root);
        fs.create_dir_all_durable(root)
            .context(|| format!("creating {}", root.display()))?;
        let lock = StoreLock::acquire(fs.as_ref(), &options.lock_path(&layout))?;
        if read_current(fs.as_ref(), &layout)?.is_some() {
            return Err(StoreError::AlreadyInitialized {
                root: root.to_path_buf(),
            });
        }
        for dir in [layout.source_dir(), layout.generations_dir()] {
            fs.create_dir_all_durable(&dir)
                .context(|| format!("creating {}", dir.display()))?;
        }
        let placement = layout.vector_backend().placement();
        if placement != crate::vectors::backend::FILES {
            let file = layout.vectors_file();
            fs.write_file_atomic(&file, format!("{placement}\n").as_bytes())
                .context(|| format!("writing {}", file.display()))?;
        }
        let first = Generation(1);
        generation::build(&fs, &clock, &layout, first, &lock.wipe_permission(), &[], &mut |_| {})?;
        generation::switch_to(fs.as_ref(), &layout, first)?;
        reserve::ensure(fs.as_ref(), &layout).map(drop)
    }

    /// Opens the store at `root`. A writable open takes the lock (failing with
    /// [`StoreError::Locked`] if another process has it), checks the live
    /// generation (`CURRENT`, `CREATED`, the index's `integrity_check`, every
    /// vector record's CRC) before it removes or changes anything and, if it
    /// is damaged, rebuilds it from the source files and keeps the damaged
    /// one aside ([`OpenReport::repaired`]); then migrates or (if allowed)
    /// rebuilds the schema, recovers every pending dual write, drains every
    /// pending mutation journal, audits the index against the source files,
    /// and last (so that an open that fails has removed nothing) removes
    /// leftovers of interrupted rebuilds and the backups
    /// [`StoreOptions::retention`] does not keep, before returning. A read-only
    /// open that finds the live generation damaged fails with
    /// [`StoreError::Damaged`] and changes nothing.
    pub fn open(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, root: &Path, options: StoreOptions) -> Result<Store> {
        let layout = options.layout(root);
        let writable = options.access == Access::Writable;
        if !fs.exists(root).context(|| format!("looking for {}", root.display()))? {
            return Err(StoreError::NotInitialized {
                root: root.to_path_buf(),
            });
        }
        check_placement(fs.as_ref(), &layout)?;
        let lock = if writable {
            let lock = StoreLock::acquire(fs.as_ref(), &options.lock_path(&layout))?;
            // A switch that died between renaming `CURRENT` and syncing the
            // root left a pointer only the page cache holds: what this open
            // shows must survive a power cut, so the pointer it reads is
            // made durable first. (Opening local vectors synced the root as
            // a side effect; remote ones do not.)
            fs.sync_dir_named(root).named()?;
            Some(lock)
        } else {
            #[cfg(feature = "flawed-variants")]
            let checks = options.flaw != Some(crate::flawed::Flaw::ReaderIgnoresJournal);
            #[cfg(not(feature = "flawed-variants"))]
            let checks = true;
            if checks {
                refuse_unfinished(fs.as_ref(), &layout)?;
            }
            None
        };
        let reading = |e: StoreError| if writable { e } else { interrupted_transaction(e) };
        let vector_options = crate::vectors::LocalOptions {
            #[cfg(feature = "flawed-variants")]
            flaw: options.flaw,
            ..layout.vector_options()
        };
        let mut removed = generation::Removed::default();
        let cleans_first = flaw!(options.flaw, CleansBeforeCheck);
        if let (Some(lock), true) = (&lock, cleans_first) {
            // KNOWN BAD (Flaw::CleansBeforeCheck): the old order, cleanup
            // counted from whatever CURRENT names, before anything is checked.
            let named = read_current(fs.as_ref(), &layout)?.ok_or_else(|| StoreError::NotInitialized {
                root: root.to_path_buf(),
            })?;
            let permission = lock.wipe_permission();
            removed = generation::clean_up(
                fs.as_ref(),
                clock.as_ref(),
                &layout,
                named,
                &options.retention,
                &permission,
            )?;
        }
        // The live generation is checked before anything is removed or
        // changed (see `crate::repair`).
        let trust = flaw!(options.flaw, TrustsIndex);
        let checked = repair::check_live(&fs, &clock, &layout, writable, vector_options, trust).map_err(reading)?;
        let mut repaired = None;
        let live = match checked {
            repair::Checked::Sound(live) => live,
            repair::Checked::Damaged(damage) => {
                // The known-bad designs that predate the repair open as they
                // did: the vector record a one-byte-short tail repair cut
                // would otherwise be rebuilt from the sources, hiding the
                // design's own flaw. (The two-rename swap's crash, no
                // directory at the live name, is repaired: the harness
                // sees a repair no fault at rest called for.)
                let no_repair =
                    flaw!(options.flaw, RebuildNeedsLive) || flaw!(options.flaw, RepairOneByteShort) || cleans_first;
                let (Some(lock), false) = (&lock, no_repair) else {
                    // A read-only open holds no lock: it refuses, naming the file.
                    return Err(damage.into_error());
                };
                let permission = lock.wipe_permission();
                // The space reserve's room lets the repair build on a full
                // device; a writable open recreates it once there is room.
                if !flaw!(options.flaw, NoReserve) {
                    reserve::release(fs.as_ref(), &layout)?;
                }
                repaired = Some(repair::repair(&fs, &clock, &layout, damage, &permission)?);
                match repair::check_live(&fs, &clock, &layout, writable, vector_options, trust)? {
                    repair::Checked::Sound(live) => live,
                    repair::Checked::Damaged(damage) => return Err(damage.into_error()),
                }
            }
        };
        let repair::Live {
            mut generation,
            mut index,
            vectors: mut local,
            mut vector_report,
        } = *live;
        let access = if writable {
            IndexAccess::ReadWrite
        } else {
            IndexAccess::ReadOnly
        };
        let (found, has_tables) = index.version().map_err(reading)?;
        let mut migrated_from = None;
        let mut rebuilt_from = None;
        match schema::plan(found, has_tables) {
            Plan::Current => {}
            #[cfg(feature = "flawed-variants")]
            Plan::Migrate(steps) if writable && options.flaw == Some(crate::flawed::Flaw::StampWithoutMigration) => {
                index.migrate_stamp_first(&steps)?;
                migrated_from = Some(found);
            }
            Plan::Migrate(steps) if writable => {
                index.migrate(&steps)?;
                migrated_from = Some(found);
            }
            Plan::Migrate(_) => {
                return Err(StoreError::RebuildRequired {
                    found,
                    expected: schema::SCHEMA_VERSION,
                    reason: "the index needs an in-place migration, which only a writable open runs".to_string(),
                });
            }
            #[cfg(feature = "flawed-variants")]
            Plan::Rebuild(_)
                if !writable
                    && found > schema::SCHEMA_VERSION
                    && options.flaw == Some(crate::flawed::Flaw::WipeWithoutLock) =>
            {
                // KNOWN BAD (origins/5): deletes an index another process may
                // be using, and recreates it empty, without holding the lock.
                drop(index);
                index = Index::wipe_and_create(Arc::clone(&fs), Arc::clone(&clock), &layout.index_file(generation))?;
                rebuilt_from = Some(found);
            }
            #[cfg(feature = "flawed-variants")]
            Plan::Rebuild(_)
                if !writable
                    && found > schema::SCHEMA_VERSION
                    && options.flaw == Some(crate::flawed::Flaw::TruncateWithoutLock) =>
            {
                // KNOWN BAD (origins/5, by truncation): empties an index
                // another process may be using, in place, without the lock.
                drop(index);
                index =
                    Index::truncate_and_create(Arc::clone(&fs), Arc::clone(&clock), &layout.index_file(generation))?;
                rebuilt_from = Some(found);
            }
            Plan::Create | Plan::Rebuild(_) => {
                let reason = match schema::plan(found, has_tables) {
                    Plan::Rebuild(reason) => reason,
                    _ => "the live index is empty".to_string(),
                };
                let (Some(lock), true) = (&lock, options.rebuild_if_needed) else {
                    return Err(StoreError::RebuildRequired {
                        found,
                        expected: schema::SCHEMA_VERSION,
                        reason,
                    });
                };
                drop(index);
                let permission = lock.wipe_permission();
                let (next, more) = crate::rebuild::rebuild_for_schema(
                    &fs,
                    &clock,
                    &layout,
                    generation,
                    &options.retention,
                    &permission,
                )?;
                removed.leftovers.extend(more.leftovers);
                removed.backups.extend(more.backups);
                generation = next;
                rebuilt_from = Some(found);
                index = Index::open(Arc::clone(&fs), Arc::clone(&clock), &layout.index_file(next), access)?;
                (local, vector_report) = repair::open_vectors(&fs, &layout, next, writable, vector_options)
                    .context(|| format!("opening the vector store of {}", next.dir_name()))?;
            }
        }
        let embedder = HashingEmbedder::default();
        let vectors = match &options.wrap_vectors {
            Some(wrap) => wrap(local),
            None => local,
        };
        let mut store = Store {
            fs,
            clock,
            layout,
            generation,
            index,
            vectors,
            embedder,
            lock,
            wrap_vectors: options.wrap_vectors,
            retention: options.retention,
            #[cfg(feature = "flawed-variants")]
            flaw: options.flaw,
            report: OpenReport {
                generation: generation.0,
                migrated_from,
                rebuilt_from,
                removed_generations: removed.leftovers,
                removed_backups: removed.backups,
                vector_repair: VectorRepair::from_report(&vector_report),
                reserve_released: false,
                reserve_kept: false,
                recovery: RecoveryReport::default(),
                audit: None,
                journals: JournalReport::default(),
                repaired,
                cleanup_error: None,
                vectors_deferred: None,
            },
            deferring_vectors: false,
            sidecars_unsynced: std::sync::atomic::AtomicBool::new(false),
        };
        if writable {
            match store.recover_everything() {
                // A full device: the reserve's space lets recovery write.
                Err(e) if reserve::out_of_space(&e) && store.release_reserve()? => {
                    store.report.reserve_released = true;
                    store.recover_everything()?;
                }
                result => result?,
            }
            store.report.reserve_kept = store.keep_reserve()?;
            if !cleans_first {
                store.clean_up_generations();
            }
        }
        Ok(store)
    }

    /// A writable open's last step, once everything else succeeded (so an
    /// open that fails has removed nothing): leftovers of interrupted
    /// rebuilds go, backups and kept damaged generations as the retention
    /// policy says. A failure does not fail the open: it is reported in
    /// [`OpenReport::cleanup_error`], and the next writable open retries.
    fn clean_up_generations(&mut self) {
        let Some(lock) = &self.lock else {
            return;
        };
        let permission = lock.wipe_permission();
        match generation::clean_up(
            self.fs.as_ref(),
            self.clock.as_ref(),
            &self.layout,
            self.generation,
            &self.retention,
            &permission,
        ) {
            Ok(removed) => {
                self.report.removed_generations.extend(removed.leftovers);
                self.report.removed_backups.extend(removed.backups);
            }
            Err(error) => self.report.cleanup_error = Some(error.to_string()),
        }
    }

    /// A writable open's recovery: pending dual writes, then every pending
    /// journal (rolled back or finished before anything can mutate, see
    /// `crate::journal`), then the audit.
    fn recover_everything(&mut self) -> Result<()> {
        if !flaw!(self.flaw, IgnoresOutage)
            && !flaw!(self.flaw, RecoveryNeedsVectors)
            && let Some(why) = self.vector_store_down()
        {
            // What the files and the index alone can settle is settled now
            // (an interrupted mutation would otherwise keep every reader
            // out for as long as the outage lasts); the vectors wait.
            self.report.vectors_deferred = Some(why);
            self.deferring_vectors = true;
            let drained = self.drain_journals();
            self.deferring_vectors = false;
            self.report.journals = drained?;
            return Ok(());
        }
        self.require_vectors("a writable open's recovery")?;
        self.report.recovery = self.recover()?;
        self.report.journals = self.drain_journals()?;
        self.settle_shares()?;
        self.settle_owners()?;
        self.report.audit = Some(self.reconcile(ReconcileOptions::audit())?);
        Ok(())
    }

    /// Releases the space reserve ([`crate::reserve`]); false if there was none.
    pub(crate) fn release_reserve(&self) -> Result<bool> {
        #[cfg(feature = "flawed-variants")]
        if self.flaw == Some(crate::flawed::Flaw::NoReserve) {
            return Ok(false);
        }
        reserve::release(self.fs.as_ref(), &self.layout)
    }

    /// Whether the device has less room left than the space reserve.
    pub(crate) fn nearly_full(&self) -> Result<bool> {
        let free = self
            .fs
            .free_space(self.layout.root())
            .context(|| format!("asking the free space of {}", self.layout.root().display()))?;
        Ok(free < reserve::RESERVE_BYTES)
    }

    /// Recreates the space reserve if it is missing and the device has
    /// plenty of room (never the room a removal just freed); whether it
    /// exists now.
    pub(crate) fn keep_reserve(&self) -> Result<bool> {
        let path = self.layout.reserve_file();
        if self
            .fs
            .exists(&path)
            .context(|| format!("looking for {}", path.display()))?
        {
            return Ok(true);
        }
        let free = self
            .fs
            .free_space(self.layout.root())
            .context(|| format!("asking the free space of {}", self.layout.root().display()))?;
        if free < 4 * reserve::RESERVE_BYTES {
            return Ok(false);
        }
        reserve::ensure(self.fs.as_ref(), &self.layout)
    }

    /// What opening did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// For a read-only handle: refuses ([`StoreError::RecoveryPending`]) while
    /// a mutation is unfinished, so no read serves half of one. A writable
    /// handle has recovered and holds the lock: always readable.
    pub(crate) fn require_readable(&self) -> Result<()> {
        #[cfg(feature = "flawed-variants")]
        if self.flaw == Some(crate::flawed::Flaw::ReaderIgnoresJournal) {
            return Ok(());
        }
        match self.lock {
            Some(_) => Ok(()),
            None => refuse_unfinished(self.fs.as_ref(), &self.layout),
        }
    }

    /// Refuses ([`StoreError::VectorStoreDown`]) an operation that needs the
    /// vector store, before it changes anything, if the vector store cannot
    /// be reached: an outage is met up front, not halfway through. Other
    /// failures (a timeout) are left to the operation, which resolves them
    /// by its intents.
    pub(crate) fn require_vectors(&self, during: &str) -> Result<()> {
        if flaw!(self.flaw, IgnoresOutage) {
            return Ok(());
        }
        match self.vector_store_down() {
            Some(why) => Err(StoreError::VectorStoreDown {
                during: during.to_string(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Whether reindexing leaves the vector work in intents: only during a
    /// writable open's recovery in an outage ([`OpenReport::vectors_deferred`]).
    pub(crate) fn deferring_vectors(&self) -> bool {
        self.deferring_vectors
    }

    /// What the vector store says, if it cannot be reached.
    pub(crate) fn vector_store_down(&self) -> Option<String> {
        match self.vectors.ids() {
            Err(VectorError::Unavailable(why)) => Some(why),
            _ => None,
        }
    }

    pub(crate) fn require_writable(&self) -> Result<()> {
        match self.lock {
            Some(_) => Ok(()),
            None => Err(StoreError::Io {
                context: "this store was opened read-only".to_string(),
                source: tearline_sim_fs::errno::ebadf(),
            }),
        }
    }

    /// Reads a document's source file, if it exists and can be read: one the
    /// device cannot give back (`EIO` twice, see [`retry_eio`]) is lost to
    /// the store, which treats it as absent (the file stays where it is).
    pub(crate) fn read_source(&self, name: &DocName) -> Result<Option<Vec<u8>>> {
        let path = self.layout.source_file(name);
        match retry_eio(|| self.fs.read_file(&path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || is_eio(&e) => Ok(None),
            Err(source) => Err(StoreError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Everything the index keeps for `content`, with its vector.
    pub(crate) fn prepare(
        &self,
        name: &DocName,
        content: &[u8],
        vector_id: VectorId,
    ) -> Result<(IndexedDocument, Vec<f32>)> {
        prepare(
            self.fs.as_ref(),
            self.clock.as_ref(),
            &self.layout,
            &self.embedder,
            name,
            content,
            vector_id,
        )
    }

    /// A document, with its content from the source file.
    pub fn get(&self, name: &str) -> Result<Option<Document>> {
        self.require_readable()?;
        let name = DocName::new(name)?;
        let Some((summary, vector_id)) = self.index.summary(name.as_str())? else {
            return Ok(None);
        };
        let Some(content) = self.read_source(&name)? else {
            return Ok(None);
        };
        Ok(Some(Document {
            name: name.as_str().to_string(),
            content: String::from_utf8_lossy(&content).into_owned(),
            summary,
            vector_id,
            chunks: self.index.chunk_count(name.as_str())?,
        }))
    }

    /// The indexed documents' names, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        self.require_readable()?;
        Ok(self.index.files()?.into_iter().map(|(path, _)| path).collect())
    }

    /// The `k` documents whose summaries are nearest to `text`.
    pub fn search(&self, text: &str, k: usize) -> Result<Vec<Hit>> {
        self.require_readable()?;
        let query = self.embedder.embed(text);
        let neighbours = self
            .vectors
            .nearest(&query, k)
            .context(|| "searching the vector store".to_string())?;
        let mut hits = Vec::with_capacity(neighbours.len());
        for neighbour in neighbours {
            if let Some((name, summary)) = self.index.summary_of_vector(neighbour.id)? {
                hits.push(Hit {
                    name,
                    summary,
                    score: neighbour.score,
                });
            }
        }
        Ok(hits)
    }

    /// The documents of `source/` and what it holds that is not one (see
    /// [`scan_sources`]).
    pub(crate) fn sources(&self) -> Result<SourceScan> {
        #[cfg(feature = "flawed-variants")]
        if self.flaw == Some(crate::flawed::Flaw::StrictSources) {
            // KNOWN BAD: every regular file with a valid name, text or not.
            let dir = self.layout.source_dir();
            let entries = self
                .fs
                .read_dir(&dir)
                .context(|| format!("listing {}", dir.display()))?;
            let docs: Vec<DocName> = entries
                .into_iter()
                .filter(|e| e.kind == FileKind::File)
                .filter_map(|e| DocName::new(&e.name).ok())
                .collect();
            let mut hashes = BTreeMap::new();
            for name in &docs {
                if let Some(content) = self.read_source(name)? {
                    hashes.insert(name.as_str().to_string(), content_hash(&content));
                }
            }
            return Ok(SourceScan {
                docs,
                skipped: Vec::new(),
                hashes,
            });
        }
        let scan = scan_sources(self.fs.as_ref(), &self.layout)?;
        self.refuse_skipped(&scan)?;
        Ok(scan)
    }

    /// KNOWN BAD (only with a flaw that fails a scan on what the real scan
    /// skips): `ListedMeansThere` on a file that vanished, `StrictNames` on
    /// a name that is not a document's, `ReadsEveryEntry` on what is not a
    /// regular file and cannot be read (a symbolic link that loops).
    fn refuse_skipped(&self, scan: &SourceScan) -> Result<()> {
        for odd in &scan.skipped {
            let path = self.layout.source_dir().join(&odd.name);
            if flaw!(self.flaw, ListedMeansThere) && odd.reason.contains("vanished") {
                return Err(StoreError::Io {
                    context: format!("reading {}", path.display()),
                    source: tearline_sim_fs::errno::enoent(),
                });
            }
            if flaw!(self.flaw, StrictNames) && odd.reason.starts_with("not a document name") {
                return Err(StoreError::Corrupt {
                    what: format!("source/{}: {}", odd.name, odd.reason),
                });
            }
            if flaw!(self.flaw, ReadsEveryEntry)
                && odd.reason.starts_with("not a regular file")
                && let Err(source) = self.fs.read_file(&path)
                && source.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StoreError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                });
            }
        }
        Ok(())
    }

    /// What the vector store holds and what the summaries refer to, for
    /// checking (and restoring) that they agree both ways.
    pub(crate) fn vector_agreement(&self) -> Result<VectorAgreement> {
        let stored = self
            .vectors
            .ids()
            .context(|| "listing the vector store".to_string())?
            .into_iter()
            .collect();
        let summaries = self.index.summary_vectors()?;
        let referenced = summaries.iter().map(|(_, id)| *id).collect();
        Ok(VectorAgreement {
            stored,
            summaries,
            referenced,
        })
    }

    /// Checks the index's integrity, that vectors and summaries match both
    /// ways, and that every source file is indexed and up to date.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.require_readable()?;
        let mut report = VerifyReport {
            integrity: self.index.integrity_check()?,
            pending_intents: self.index.intents()?.len(),
            ..VerifyReport::default()
        };
        let VectorAgreement {
            stored,
            summaries,
            referenced,
        } = self.vector_agreement()?;
        let in_flight = self.index.intent_vectors()?;
        report.orphan_vectors = stored
            .iter()
            .filter(|id| !referenced.contains(id) && !in_flight.contains(id))
            .copied()
            .collect();
        report.missing_vectors = summaries
            .iter()
            .filter(|(_, id)| !stored.contains(id))
            .map(|(path, _)| path.clone())
            .collect();
        let indexed: Vec<(String, FileRow)> = self.index.files()?;
        let scan = self.sources()?;
        report.skipped_sources = scan.skipped;
        let sources = scan.docs;
        let hashes = scan.hashes;
        let source_set: BTreeSet<&str> = sources.iter().map(DocName::as_str).collect();
        let indexed_set: BTreeSet<&str> = indexed.iter().map(|(p, _)| p.as_str()).collect();
        report.unindexed_sources = source_set.difference(&indexed_set).map(|s| s.to_string()).collect();
        for (path, row) in &indexed {
            if !source_set.contains(path.as_str()) {
                report.missing_sources.push(path.clone());
                continue;
            }
            if hashes.get(path).is_some_and(|hash| *hash != row.hash) {
                report.stale.push(path.clone());
            }
        }
        Ok(report)
    }

    /// The vector stored under `id` for document `name`; a record that
    /// fails its checksum is [`StoreError::Damaged`], naming its file.
    pub(crate) fn stored_vector(&self, name: &str, id: VectorId) -> Result<Option<Vec<f32>>> {
        match self.vectors.get(id) {
            Err(crate::vectors::VectorError::Corrupt { file, offset, reason }) => Err(StoreError::Damaged {
                path: file,
                detail: format!("the vector of {name} is corrupt at byte {offset}: {reason}"),
            }),
            result => result.context(|| format!("reading the vector of {name}")),
        }
    }

    /// The indexed documents whose stored vector is not, value by value,
    /// the embedding of their indexed summary (the vector
    /// `crate::store::prepare` computes for their content): a vector store
    /// serving damaged records. A missing vector is not listed (`verify`
    /// reports it). Only the contract adapter observes it.
    #[cfg(feature = "tearline-contract")]
    pub(crate) fn wrong_vectors(&self) -> Result<Vec<String>> {
        let mut wrong = Vec::new();
        for (name, id) in self.index.summary_vectors()? {
            let Some(stored) = self.stored_vector(&name, id)? else {
                continue;
            };
            let summary = self
                .index
                .summary(&name)?
                .map(|(summary, _)| summary)
                .unwrap_or_default();
            if stored != self.embedder.embed(&summary) {
                wrong.push(name);
            }
        }
        Ok(wrong)
    }

    /// The logical content, canonically: two stores holding the same
    /// documents dump equal, whatever their history.
    pub fn dump(&self) -> Result<Dump> {
        self.require_readable()?;
        let mut documents = Vec::new();
        for (name, row) in self.index.files()? {
            let (summary, vector_id) = self.index.summary(&name)?.unwrap_or_default();
            let vector = self.stored_vector(&name, vector_id)?;
            documents.push(DumpedDocument {
                chunks: self.index.chunks(&name)?,
                name,
                size: row.size,
                hash: row.hash,
                summary,
                vector,
            });
        }
        Ok(Dump { documents })
    }

    /// A short status.
    pub fn status(&self) -> Result<Status> {
        self.require_readable()?;
        Ok(Status {
            generation: self.generation.0,
            schema_version: self.index.version()?.0,
            documents: self.index.files()?.len(),
            vectors: self
                .vectors
                .ids()
                .context(|| "listing the vector store".to_string())?
                .len(),
            pending_intents: self.index.intents()?.len(),
            writable: self.lock.is_some(),
        })
    }
}

/// [`StoreError::RecoveryPending`] if a mutation journal is on disk: a
/// writer is in the middle of a mutation (its files may be half published,
/// its index half updated), or one was interrupted and the next writable
/// open finishes or rolls it back. Quarantined journals do not count.
fn refuse_unfinished(fs: &dyn Fs, layout: &Layout) -> Result<()> {
    let dir = layout.journal_dir();
    let entries = fs
        .read_dir_or_empty(&dir)
        .context(|| format!("listing {}", dir.display()))?;
    match entries
        .iter()
        .find(|e| e.kind == FileKind::File && !e.name.starts_with('.') && e.name.ends_with(".json"))
    {
        Some(journal) => Err(StoreError::RecoveryPending {
            what: format!("a mutation is unfinished (journal/{})", journal.name),
        }),
        None => Ok(()),
    }
}

/// A read-only open's SQLite error that means a writer's transaction is in
/// progress or was interrupted (the database is locked, or has a hot
/// journal only a writer may roll back): [`StoreError::RecoveryPending`].
fn interrupted_transaction(error: StoreError) -> StoreError {
    use rusqlite::ErrorCode;
    match &error {
        StoreError::Sqlite {
            context,
            source: rusqlite::Error::SqliteFailure(failure, _),
        } if matches!(
            failure.code,
            ErrorCode::ReadOnly | ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
        ) =>
        {
            StoreError::RecoveryPending {
                what: format!("the index has a transaction in progress or interrupted ({context}: {error})"),
            }
        }
        _ => error,
    }
}

/// The documents in `source/`, sorted: its regular files with a valid
/// document name whose content is UTF-8 text. The store's temporary files
/// (names starting with `.`) are left out; so is everything else it cannot
/// index, which [`scan_sources`] names.
pub(crate) fn source_names(fs: &dyn Fs, layout: &Layout) -> Result<Vec<DocName>> {
    scan_sources(fs, layout).map(|scan| scan.docs)
}

/// An entry of `source/` the store does not take as a document, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedSource {
    /// Its name as listed (a name that is not UTF-8 is shown with U+FFFD).
    pub name: String,
    /// Why it is not a document.
    pub reason: String,
}

/// What `source/` holds.
pub(crate) struct SourceScan {
    /// The documents, sorted.
    pub docs: Vec<DocName>,
    /// Everything else but the store's temporary files, sorted by name.
    pub skipped: Vec<SkippedSource>,
    /// Each document's content hash, as read by the scan (so no caller
    /// reads the files again to hash them).
    pub hashes: BTreeMap<String, String>,
}

/// Lists `source/` and reads each candidate: a hostile tree (a directory or
/// a symlink under a document's name, a name that is not a document name or
/// not UTF-8, content that is not text, a file that vanishes between the
/// listing and the read) is skipped and named, never an error; only a
/// failing filesystem is.
/// Whether `error` is `EIO`: the device failed to read or write.
pub(crate) fn is_eio(error: &std::io::Error) -> bool {
    error.raw_os_error() == tearline_sim_fs::errno::eio().raw_os_error()
}

/// Runs `read` once more if it fails with `EIO`: an error that passes is not
/// a lost file; one that persists (a latent sector error) is returned.
pub(crate) fn retry_eio<T>(read: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match read() {
        Err(e) if is_eio(&e) => read(),
        result => result,
    }
}

pub(crate) fn scan_sources(fs: &dyn Fs, layout: &Layout) -> Result<SourceScan> {
    let dir = layout.source_dir();
    let entries = fs.read_dir(&dir).context(|| format!("listing {}", dir.display()))?;
    let mut scan = SourceScan {
        docs: Vec::new(),
        skipped: Vec::new(),
        hashes: BTreeMap::new(),
    };
    for entry in entries.into_iter().filter(|e| !e.name.starts_with('.')) {
        let skip = |reason: String| SkippedSource {
            name: entry.name.clone(),
            reason,
        };
        let name = match DocName::new(&entry.name) {
            Ok(name) => name,
            Err(e) => {
                scan.skipped.push(skip(format!("not a document name: {e}")));
                continue;
            }
        };
        match entry.kind {
            FileKind::File => {}
            FileKind::Dir => {
                scan.skipped.push(skip("a directory, not a file".to_string()));
                continue;
            }
            FileKind::Other => {
                scan.skipped
                    .push(skip("not a regular file (a symlink or a special file)".to_string()));
                continue;
            }
        }
        let path = layout.source_file(&name);
        match retry_eio(|| fs.read_file(&path)) {
            Ok(content) if std::str::from_utf8(&content).is_ok() => {
                scan.hashes.insert(name.as_str().to_string(), content_hash(&content));
                scan.docs.push(name);
            }
            Ok(_) => scan.skipped.push(skip("its content is not UTF-8 text".to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                scan.skipped
                    .push(skip("it vanished between the listing and the read".to_string()));
            }
            // The device cannot give the document back (a latent sector
            // error): it is lost to the store, but the others are not.
            Err(e) if is_eio(&e) => {
                scan.skipped.push(skip(format!("it cannot be read: {e}")));
            }
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                });
            }
        }
    }
    Ok(scan)
}

/// Everything the index keeps for a document, and its vector.
pub(crate) fn prepare(
    fs: &dyn Fs,
    clock: &dyn Clock,
    layout: &Layout,
    embedder: &HashingEmbedder,
    name: &DocName,
    content: &[u8],
    vector_id: VectorId,
) -> Result<(IndexedDocument, Vec<f32>)> {
    let text = std::str::from_utf8(content).map_err(|_| StoreError::NotText {
        name: name.as_str().to_string(),
    })?;
    let summary = summarise(text);
    let vector = embedder.embed(&summary);
    let path = layout.source_file(name);
    let mtime_ns = match fs.metadata(&path) {
        Ok(meta) => meta
            .modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        Err(_) => 0,
    };
    let indexed_at_ms = clock
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok((
        IndexedDocument {
            path: name.as_str().to_string(),
            row: FileRow {
                size: content.len() as u64,
                hash: content_hash(content),
                mtime_ns,
            },
            chunks: chunk(text),
            summary,
            vector_id,
            indexed_at_ms,
        },
        vector,
    ))
}
