//! The service's state and the rules that order its work, without HTTP:
//! one writer, reads from a published view, rebuilds in the background.
//!
//! - **Reads** go through [`Service::read`]: a read-only handle on the store
//!   ([`ReadView`]) opened when no write was in flight, entered through
//!   [`Live::read`]. They never take the writer's lock.
//! - **In-place writes** ([`Service::write_in_place`]: put, delete, import,
//!   reconcile, an incremental rebuild) take the writer, then
//!   [`Live::exclusive`] while they change the live files, and publish a
//!   fresh view before readers come back.
//! - **A full rebuild** builds its generation beside the live one while
//!   readers go on with the old view, then publishes the new one: readers
//!   never wait for it and never see it half built (zero downtime, not a
//!   503 while it switches).
//! - A write that fails in a way that may leave work unfinished reopens the
//!   writer, which recovers it (the store's own rule: a writable open
//!   finishes or rolls back what was interrupted), before readers return.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tearline_live::{Exclusive, Live};
use tearline_refstore::vectors::{LocalVectors, VectorBackend};
use tearline_refstore::{
    FailureEffect, ImportStats, RebuildMode, ReconcileMode, ReconcileOptions, ReconcileStats, Store, StoreError,
    StoreOptions,
};
use tearline_sim_fs::{Clock, Fs, FsExt};

use crate::jobs::{Jobs, Progress};
use crate::keys::Keys;
use crate::listen::Offload;
use crate::problem::Problem;

/// What reads are served from: a read-only handle on the store opened while
/// no write was in flight, or, when it could not be opened after a write
/// changed the files, nothing (reads answer 503 until a view opens: an old
/// view would mix its vectors, loaded when it opened, with the new files).
#[derive(Debug)]
pub struct ReadView {
    /// The generation it reads (0 when there is no handle).
    pub generation: u64,
    store: Result<Mutex<Store>, String>,
}

/// Where the startup audit is.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Audit {
    /// Still comparing the index with the source files.
    Running,
    /// Finished.
    Done {
        /// Whether the index and the source files agree.
        in_agreement: bool,
        /// Source files the index lacks.
        missing: usize,
        /// Source files whose content differs from what was indexed.
        stale: usize,
        /// Index entries whose source file is gone.
        orphaned: usize,
    },
    /// Could not run.
    Failed {
        /// Why.
        error: Problem,
    },
}

/// What `GET /v1/health` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// `ok`, or `degraded` when writes cannot be served (see `problem`).
    pub status: &'static str,
    /// The generation reads are served from.
    pub generation: u64,
    /// The startup audit.
    pub audit: Audit,
    /// The rebuild job queued or running, if any.
    pub rebuild_job: Option<u64>,
    /// Why the service is degraded, if it is.
    pub problem: Option<String>,
}

/// How to run the service.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The store's root (initialised).
    pub root: PathBuf,
    /// Who may call what.
    pub keys: Keys,
    /// Where imports are staged, each in a fresh directory of its own, on
    /// the service's filesystem, outside the store's root.
    pub staging_dir: PathBuf,
    /// A known-bad design to serve with (tests only).
    #[cfg(feature = "flawed-variants")]
    pub flaw: Option<crate::flawed::ServiceFlaw>,
    /// Part of every staging directory's name: random in a server (nobody
    /// else can take the names before it), fixed in a simulation
    /// ([`ServiceOptions::with_staging_tag`]).
    pub staging_tag: u64,
    /// Where the store keeps each generation's vectors (default: files in
    /// the generation's directory; [`crate::vectors::RemoteVectors`]: a
    /// `vector-server`'s collections).
    pub vector_backend: Arc<dyn VectorBackend>,
}

impl ServiceOptions {
    /// Options for the store at `root`, with `keys`, staging imports in
    /// `staging_dir`, and no known-bad design.
    pub fn new(root: impl Into<PathBuf>, keys: Keys, staging_dir: impl Into<PathBuf>) -> Self {
        use std::hash::{BuildHasher, Hasher};
        ServiceOptions {
            root: root.into(),
            keys,
            staging_dir: staging_dir.into(),
            #[cfg(feature = "flawed-variants")]
            flaw: None,
            // The standard library's per-process random hash keys.
            staging_tag: std::collections::hash_map::RandomState::new().build_hasher().finish(),
            vector_backend: Arc::new(LocalVectors),
        }
    }

    /// These options with the store's vectors kept by `backend`.
    pub fn with_vector_backend(self, backend: Arc<dyn VectorBackend>) -> Self {
        ServiceOptions {
            vector_backend: backend,
            ..self
        }
    }

    /// These options with staging directories named from `tag`: a
    /// simulation, which must name them the same way on every run.
    pub fn with_staging_tag(self, tag: u64) -> Self {
        ServiceOptions {
            staging_tag: tag,
            ..self
        }
    }

    /// These options with the known-bad design called `name` (a `refstore
    /// serve --flaw` name): for a caller that names designs without
    /// depending on the `flawed-variants` feature, which is the only build
    /// that has any.
    pub fn with_flaw_named(self, name: &str) -> Result<Self, String> {
        #[cfg(feature = "flawed-variants")]
        if let Some(flaw) = crate::flawed::ServiceFlaw::parse(name) {
            return Ok(ServiceOptions {
                flaw: Some(flaw),
                ..self
            });
        }
        Err(format!(
            "no known-bad service design named {name:?} in this build (they need the feature `flawed-variants`)"
        ))
    }

    /// `store` with the store's known-bad design, if the service runs on
    /// one (tests only).
    fn store_options(&self, store: StoreOptions) -> StoreOptions {
        let store = StoreOptions {
            vector_backend: Arc::clone(&self.vector_backend),
            ..store
        };
        #[cfg(feature = "flawed-variants")]
        let store = StoreOptions {
            flaw: self.flaw.and_then(|flaw| flaw.store_flaw()),
            ..store
        };
        store
    }
}

/// An import's staging directory, removed (what is in it, then it) when
/// dropped; a server killed before that leaves it behind.
struct Staged<'a> {
    fs: &'a dyn Fs,
    dir: PathBuf,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        for entry in self.fs.read_dir(&self.dir).unwrap_or_default() {
            self.fs.remove_file(&self.dir.join(&entry.name)).ok();
        }
        self.fs.remove_dir(&self.dir).ok();
    }
}

/// The service: see the module docs.
pub struct Service {
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    options: ServiceOptions,
    /// `None` after a failed reopen: writes are refused (503) until one
    /// succeeds.
    writer: Mutex<Option<Store>>,
    live: Live<ReadView>,
    jobs: Jobs,
    audit: Mutex<Audit>,
    /// Why the writer could not be reopened, if it could not.
    writer_problem: Mutex<Option<String>>,
    /// Why reads cannot be served, if they cannot.
    view_problem: Mutex<Option<String>>,
    /// The generation of the view readers see (health reads it without
    /// entering a read, which an in-place write would make it wait for).
    generation: AtomicU64,
    /// Import staging directories made so far (their names count up).
    staged: AtomicU64,
    /// The `cached-reads` flaw's cache (never invalidated).
    #[cfg(feature = "flawed-variants")]
    cached: Mutex<std::collections::BTreeMap<String, tearline_refstore::Document>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("root", &self.options.root)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Service {
    /// Opens the store writable (recovering anything interrupted) and a
    /// first view. Fails if the store cannot be opened; the startup audit
    /// is started separately ([`Service::start_audit`]).
    pub fn open(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, options: ServiceOptions) -> Result<Arc<Service>, StoreError> {
        let writer = Store::open(
            Arc::clone(&fs),
            Arc::clone(&clock),
            &options.root,
            options.store_options(StoreOptions::default()),
        )?;
        let view = open_view(&fs, &clock, &options)?;
        let first = view.generation;
        Ok(Arc::new(Service {
            fs,
            clock,
            options,
            writer: Mutex::new(Some(writer)),
            live: Live::new(view),
            jobs: Jobs::default(),
            audit: Mutex::new(Audit::Running),
            writer_problem: Mutex::new(None),
            view_problem: Mutex::new(None),
            generation: AtomicU64::new(first),
            staged: AtomicU64::new(0),
            #[cfg(feature = "flawed-variants")]
            cached: Mutex::default(),
        }))
    }

    /// Who may call what.
    pub fn keys(&self) -> &Keys {
        &self.options.keys
    }

    /// Runs the startup audit (reconcile, audit mode) in the background;
    /// [`Service::health`] reports it. The service serves meanwhile.
    pub fn start_audit(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let service = Arc::clone(self);
        std::thread::spawn(move || {
            let result = service.with_writer(|store| store.reconcile(ReconcileOptions::audit()));
            *lock(&service.audit) = match result {
                Ok(stats) => Audit::Done {
                    in_agreement: stats.in_agreement(),
                    missing: stats.missing.len(),
                    stale: stats.stale.len(),
                    orphaned: stats.orphaned.len(),
                },
                Err(error) => Audit::Failed { error },
            };
        })
    }

    /// The service's health. Never waits for a write.
    pub fn health(&self) -> Health {
        let problem = lock(&self.writer_problem)
            .clone()
            .or_else(|| lock(&self.view_problem).clone());
        Health {
            status: if problem.is_some() { "degraded" } else { "ok" },
            generation: self.generation.load(Ordering::SeqCst),
            audit: lock(&self.audit).clone(),
            rebuild_job: self.jobs.active(),
            problem,
        }
    }

    /// The jobs.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The known-bad design this service runs with, if any.
    #[cfg(feature = "flawed-variants")]
    pub fn flaw(&self) -> Option<crate::flawed::ServiceFlaw> {
        self.options.flaw
    }

    /// The `cached-reads` flaw: the document `name` as first read, cached
    /// for good (`read` fills it).
    #[cfg(feature = "flawed-variants")]
    pub(crate) fn cached_read(
        &self,
        name: &str,
        read: impl FnOnce() -> Result<tearline_refstore::Document, Problem>,
    ) -> Result<tearline_refstore::Document, Problem> {
        if let Some(document) = lock(&self.cached).get(name) {
            return Ok(document.clone());
        }
        let document = read()?;
        lock(&self.cached).insert(name.to_string(), document.clone());
        Ok(document)
    }

    /// Runs a read on the current view.
    pub fn read<R>(&self, read: impl FnOnce(&Store) -> Result<R, StoreError>) -> Result<R, Problem> {
        #[cfg(feature = "flawed-variants")]
        if self.options.flaw == Some(crate::flawed::ServiceFlaw::UnavailableWhileRebuilding)
            && let Some(job) = self.jobs.active()
        {
            return Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "rebuilding",
                format!("rebuild job {job} is running"),
            ));
        }
        let view = self.live.read();
        let store = match &view.store {
            Ok(store) => lock(store),
            Err(why) => {
                let why = why.clone();
                drop(view);
                // Try again to open one, keeping readers out as a write does.
                let mut gate = self.live.exclusive();
                if gate.current().store.is_err() {
                    self.republish(|view| gate.publish(view));
                }
                drop(gate);
                let view = self.live.read();
                return match &view.store {
                    Ok(store) => Ok(read(&lock(store))?),
                    Err(_) => Err(Problem::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "reads-unavailable",
                        format!("the store cannot be opened for reading: {why}"),
                    )),
                };
            }
        };
        Ok(read(&store)?)
    }

    /// Runs `work` on the writer alone (nothing is published: for work that
    /// changes no file, like an audit or a dry run).
    pub fn with_writer<R>(&self, work: impl FnOnce(&mut Store) -> Result<R, StoreError>) -> Result<R, Problem> {
        let mut writer = lock(&self.writer);
        let store = self.writer_store(&mut writer)?;
        Ok(work(store)?)
    }

    /// Runs a write that changes the live files: readers are kept out while
    /// it runs and see a fresh view after. Refused (409) while a rebuild is
    /// queued or running.
    pub fn write_in_place<R>(&self, write: impl FnOnce(&mut Store) -> Result<R, StoreError>) -> Result<R, Problem> {
        if let Some(job) = self.jobs.active() {
            return Err(Problem::conflict(format!(
                "rebuild job {job} is running; writes resume when it ends"
            )));
        }
        let mut writer = lock(&self.writer);
        let store = self.writer_store(&mut writer)?;
        let mut gate = self.live.exclusive();
        let result = catch_unwind(AssertUnwindSafe(|| write(store)));
        let unsure = match &result {
            Ok(Ok(_)) => false,
            Ok(Err(error)) => error.effect() != FailureEffect::NothingApplied,
            Err(_) => true,
        };
        self.after_write(&mut writer, unsure, &mut gate);
        match result {
            Ok(result) => Ok(result?),
            Err(_) => Err(Problem::internal(
                "the write stopped unexpectedly; the store recovered what it left",
            )),
        }
    }

    /// Queues a rebuild, run where `offload` runs background work (a
    /// thread of its own in a server; a task of the host's in a
    /// simulation). A full rebuild leaves readers on the old view until it
    /// has switched.
    pub fn start_rebuild(self: &Arc<Self>, mode: RebuildMode, offload: &Offload) -> Result<u64, Problem> {
        let id = self.jobs.start(mode)?;
        let service = Arc::clone(self);
        let readers = offload.clone();
        let spawned = offload.detach(format!("rebuild-{id}"), move || {
            let result = catch_unwind(AssertUnwindSafe(|| service.rebuild(id, mode, &readers))).unwrap_or_else(|_| {
                // The writer may be half way through anything: reopen it.
                let mut writer = lock(&service.writer);
                *writer = None;
                service.writer_store(&mut writer).ok();
                Err(Problem::internal(
                    "the rebuild stopped unexpectedly; the store recovered what it left",
                ))
            });
            service.jobs.finish(id, result);
        });
        if let Err(e) = spawned {
            let problem = Problem::internal(format!("could not start the rebuild: {e}"));
            self.jobs.finish(id, Err(problem.clone()));
            return Err(problem);
        }
        Ok(id)
    }

    /// The job: a rebuild in `mode`, its progress reported to the job
    /// registry. A full one lets readers in (`offload`'s
    /// [`Offload::let_readers_in`]) after each document and once it has
    /// ended: they must find the live generation whole throughout.
    fn rebuild(
        &self,
        id: u64,
        mode: RebuildMode,
        offload: &Offload,
    ) -> Result<tearline_refstore::RebuildStats, Problem> {
        let mut writer = lock(&self.writer);
        let store = self.writer_store(&mut writer)?;
        self.jobs.running(id);
        let full = mode == RebuildMode::Full;
        let mut progress = |p: &tearline_refstore::RebuildProgress| {
            self.jobs.progress(
                id,
                Progress {
                    done: p.done,
                    total: p.total,
                },
            );
            if full {
                offload.let_readers_in();
            }
        };
        // A full rebuild builds beside the live generation: readers stay
        // on the live view until it has switched. An incremental one
        // changes the live files and keeps them out throughout.
        let held = (!full).then(|| self.live.exclusive());
        let result = store.rebuild(mode, &mut progress);
        let mut gate = held.unwrap_or_else(|| self.live.exclusive());
        self.after_write(&mut writer, result.is_err(), &mut gate);
        drop(gate);
        if full {
            offload.let_readers_in();
        }
        Ok(result?)
    }

    /// The end of every write, under the gate: if it may have left work
    /// unfinished (`unsure`), the writer is reopened, which finishes or
    /// rolls it back; then readers get a fresh view.
    fn after_write(&self, writer: &mut Option<Store>, unsure: bool, gate: &mut Exclusive<'_, ReadView>) {
        if unsure {
            *writer = None;
            self.reopen_writer(writer).ok();
        }
        self.republish(|view| gate.publish(view));
    }

    /// Compares the index with the source files and, by `options.mode`,
    /// brings it in line. Audits and dry runs change nothing and keep
    /// readers in.
    pub fn reconcile(&self, options: ReconcileOptions) -> Result<ReconcileStats, Problem> {
        if options.dry_run || options.mode == ReconcileMode::Audit {
            self.with_writer(|store| store.reconcile(options))
        } else {
            self.write_in_place(|store| store.reconcile(options))
        }
    }

    /// Imports `documents` (name, content) all or nothing: staged as files
    /// in a fresh directory of [`ServiceOptions::staging_dir`], then the
    /// store's import.
    pub fn import(&self, documents: &[(String, String)]) -> Result<ImportStats, Problem> {
        let mut names = std::collections::BTreeSet::new();
        for (name, _) in documents {
            tearline_refstore::DocName::new(name)?;
            if !names.insert(name.as_str()) {
                return Err(Problem::bad_request(format!("{name} appears twice in the import")));
            }
        }
        let staged = self.stage(documents)?;
        self.write_in_place(|store| store.import(&staged.dir))
    }

    /// A fresh directory of its own under [`ServiceOptions::staging_dir`],
    /// on the service's filesystem (the store reads the import from it),
    /// with `documents` in it: only this user may enter it (on a real
    /// disk), it is created exclusively (a name that exists, another
    /// server's or anyone's, is passed over), and it is named by
    /// [`ServiceOptions::staging_tag`] and a counter, so nobody can take
    /// the names ahead of a server and a simulated run names it the same
    /// way every time. Removed when the returned guard drops.
    fn stage(&self, documents: &[(String, String)]) -> Result<Staged<'_>, Problem> {
        let failed = |e: std::io::Error| Problem::internal(format!("staging the import failed: {e}"));
        let mut tries = 0;
        let dir = loop {
            let n = self.staged.fetch_add(1, Ordering::SeqCst);
            let tag = self.options.staging_tag;
            let dir = self
                .options
                .staging_dir
                .join(format!(".refstore-import-{tag:016x}-{n:06}"));
            match self.fs.create_private_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 1000 => tries += 1,
                Err(e) => return Err(failed(e)),
            }
        };
        let staged = Staged {
            fs: self.fs.as_ref(),
            dir,
        };
        for (name, content) in documents {
            self.fs
                .write_file(&staged.dir.join(name), content.as_bytes())
                .map_err(failed)?;
        }
        Ok(staged)
    }
    /// The writer, reopened (recovering) if an earlier failure closed it:
    /// the reopen keeps readers out, as any change of the live files does,
    /// and publishes a fresh view.
    fn writer_store<'a>(&self, writer: &'a mut Option<Store>) -> Result<&'a mut Store, Problem> {
        if writer.is_none() {
            let mut gate = self.live.exclusive();
            let reopened = self.reopen_writer(writer);
            self.republish(|view| gate.publish(view));
            reopened?;
        }
        writer
            .as_mut()
            .ok_or_else(|| Problem::internal("the writer is not open"))
    }

    /// Opens the writer (a writable open recovers what was interrupted).
    /// The caller holds [`Live::exclusive`] and republishes.
    fn reopen_writer(&self, writer: &mut Option<Store>) -> Result<(), Problem> {
        match Store::open(
            Arc::clone(&self.fs),
            Arc::clone(&self.clock),
            &self.options.root,
            self.options.store_options(StoreOptions::default()),
        ) {
            Ok(store) => {
                *writer = Some(store);
                *lock(&self.writer_problem) = None;
                Ok(())
            }
            Err(error) => {
                crate::listen::log(&format!(
                    "refstore serve: the store cannot be opened for writing: {error}"
                ));
                *lock(&self.writer_problem) = Some(
                    "writes are unavailable: the store cannot be opened for writing (see the server's log)".to_string(),
                );
                Err(Problem::from(error))
            }
        }
    }

    /// Opens a fresh view and hands it to `publish` (the caller holds
    /// [`Live::exclusive`], or the files under the old view did not change);
    /// if it cannot be opened, readers get a view that answers 503 and says
    /// why, never the old one, whose vectors would disagree with the files.
    fn republish(&self, publish: impl FnOnce(ReadView)) {
        let view = open_view(&self.fs, &self.clock, &self.options).unwrap_or_else(|error| ReadView {
            generation: 0,
            store: Err(error.to_string()),
        });
        self.generation.store(view.generation, Ordering::SeqCst);
        *lock(&self.view_problem) = view.store.as_ref().err().map(|why| {
            crate::listen::log(&format!(
                "refstore serve: the store cannot be opened for reading: {why}"
            ));
            "reads are unavailable: the store cannot be opened for reading (see the server's log)".to_string()
        });
        publish(view);
    }
}

fn open_view(fs: &Arc<dyn Fs>, clock: &Arc<dyn Clock>, options: &ServiceOptions) -> Result<ReadView, StoreError> {
    let store = Store::open(
        Arc::clone(fs),
        Arc::clone(clock),
        &options.root,
        options.store_options(StoreOptions::read_only()),
    )?;
    Ok(ReadView {
        generation: store.open_report().generation,
        store: Ok(Mutex::new(store)),
    })
}
