//! `vector-server`: named collections of vectors over HTTP/JSON, each kept
//! on the server's own disk as a
//! [`LocalVectorStore`]
//! (`ROOT/COLLECTION/`, with its dimension in `ROOT/COLLECTION.json`).
//! A write is answered once it is durable.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | `GET` | `/v1/collections` | | `{collections}`: every name, in order |
//! | `PUT` | `/v1/collections/{name}` | `{dimension}` | `{name, dimension, count}` (created if new) |
//! | `GET` | `/v1/collections/{name}` | | `{name, dimension, count}`, `404` if there is none |
//! | `DELETE` | `/v1/collections/{name}` | | `204` |
//! | `POST` | `/v1/collections/{name}/upsert` | `{ids, embeddings}` | `{upserted}` |
//! | `POST` | `/v1/collections/{name}/delete` | `{ids}` | `{deleted}` |
//! | `POST` | `/v1/collections/{name}/get` | `{ids}` | `{ids, embeddings}` (`null` where absent) |
//! | `GET` | `/v1/collections/{name}/ids` | | `{ids}` ascending |
//! | `POST` | `/v1/collections/{name}/query` | `{embedding, k}` | `{neighbours: [{id, score}]}` nearest first |
//! | `GET` | `/v1/stats` | | `{writes_applied, writes_expired}` |
//!
//! A write may carry a budget ([`BUDGET_HEADER`]): if it reaches its
//! collection later than that after it was received, it is refused with
//! `408` and not applied.
//!
//! Errors are problem documents ([`Problem`]): `400` for what the store
//! cannot hold, `404` for an unknown collection, `409` for a dimension
//! that differs from the collection's, `500` for the disk (of type
//! [`DAMAGED`] when a collection's files are damaged).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use tearline_refstore::vectors::{LocalVectorStore, MAX_DIMENSION, OpenMode, VectorError, VectorId, VectorStore};
use tearline_sim_fs::{Fs, FsExt};

use crate::listen::Offload;
use crate::problem::{Problem, SegmentDamage};

/// How to run a [`VectorServer`].
#[derive(Clone, Debug)]
pub struct VectorServerOptions {
    /// Where the collections live.
    pub root: PathBuf,
    /// A known-bad network for the client's tests: every `n`th write
    /// (`slow_every`, from the first) is slowed by `slow_by`, after it is
    /// applied and made durable (its answer comes late: the ambiguous
    /// outcome) or before (it reaches the collection late, as a write stuck
    /// behind others does). `None` in service.
    pub slow_writes: Option<SlowWrites>,
    /// Where the handlers run the collections' (blocking) work: tokio's
    /// blocking threads in a server ([`Offload::Threads`], the default),
    /// the calling task on a host of a simulation ([`Offload::Inline`]).
    pub offload: Offload,
    /// Refuse a write that reaches its collection later than its budget,
    /// timed on the wall clock (default). Off where the work runs on the
    /// calling task as soon as it is received (a simulation, a server in
    /// the same process): nothing to wait behind, and no wall clock to read.
    pub budgets: bool,
}

impl VectorServerOptions {
    /// Options for collections in `root`: no slow writes, work on
    /// blocking threads.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        VectorServerOptions {
            root: root.into(),
            slow_writes: None,
            offload: Offload::Threads,
            budgets: true,
        }
    }
}

/// See [`VectorServerOptions::slow_writes`].
#[derive(Clone, Copy, Debug)]
pub struct SlowWrites {
    /// Every how many writes one is slow (1: every write).
    pub slow_every: u64,
    /// How much later.
    pub slow_by: Duration,
    /// Slowed before it is applied (rather than after).
    pub before_apply: bool,
}

/// The request header with a write's budget, in milliseconds: a write
/// that reaches its collection later than that after it was received is
/// refused, not applied (`408`), so a client that waited its budget out
/// knows a write it saw no answer to is applied now or never will be.
pub const BUDGET_HEADER: &str = "x-tearline-budget-ms";

/// The server's state: the open collections.
pub struct VectorServer {
    fs: Arc<dyn Fs>,
    options: VectorServerOptions,
    collections: Mutex<BTreeMap<String, LocalVectorStore>>,
    writes_received: AtomicU64,
    writes_applied: AtomicU64,
    writes_expired: AtomicU64,
}

impl std::fmt::Debug for VectorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorServer")
            .field("root", &self.options.root)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct CollectionFile {
    dimension: usize,
}

/// The prefix of a dropped collection's directory, moved aside until it is
/// removed (a collection's name cannot start with '.').
const DROPPED: &str = ".dropped-";

/// The problem type of a collection whose files are damaged: a `500` the
/// client must not retry (another attempt reads the same damage).
pub const DAMAGED: &str = "vectors-damaged";

fn problem(error: VectorError) -> Problem {
    if !matches!(error, VectorError::Invalid(_)) {
        crate::listen::log(&format!("vector-server: {error}"));
    }
    match error {
        VectorError::Invalid(why) => Problem::bad_request(why),
        VectorError::Corrupt { file, offset, reason } => {
            let segment = file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            Problem {
                damage: Some(Box::new(SegmentDamage {
                    segment,
                    offset,
                    reason,
                })),
                ..Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    DAMAGED,
                    "the collection's files are damaged (see the server's log)",
                )
            }
        }
        _ => Problem::internal("the vector store failed (see the server's log)"),
    }
}

fn check_name(name: &str) -> Result<(), Problem> {
    let fine =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    if fine {
        Ok(())
    } else {
        Err(Problem::bad_request(format!(
            "collection {name:?}: 1 to 64 ASCII letters, digits, '_' and '-'"
        )))
    }
}

impl VectorServer {
    /// A server over `options.root` (created if missing).
    /// Removes what a drop interrupted by a crash left (`.dropped-*`).
    pub fn new(fs: Arc<dyn Fs>, options: VectorServerOptions) -> std::io::Result<Arc<VectorServer>> {
        fs.create_dir_all_durable(&options.root)?;
        for entry in fs.read_dir(&options.root)? {
            if entry.name.starts_with(DROPPED) {
                fs.remove_tree_durable(&options.root.join(&entry.name))?;
            }
        }
        Ok(Arc::new(VectorServer {
            fs,
            options,
            collections: Mutex::new(BTreeMap::new()),
            writes_received: AtomicU64::new(0),
            writes_applied: AtomicU64::new(0),
            writes_expired: AtomicU64::new(0),
        }))
    }

    /// Where its handlers run the collections' work.
    fn offload(&self) -> Offload {
        self.options.offload.clone()
    }

    /// The open collections. If a call panicked while holding them, they
    /// are closed, and reopen from their files on next use.
    fn collections(&self) -> MutexGuard<'_, BTreeMap<String, LocalVectorStore>> {
        self.collections.lock().unwrap_or_else(|poisoned| {
            let mut collections = poisoned.into_inner();
            collections.clear();
            self.collections.clear_poison();
            collections
        })
    }

    fn dimension_file(&self, name: &str) -> PathBuf {
        self.options.root.join(format!("{name}.json"))
    }

    /// Collection `name` among the open ones, opened from its files (of
    /// `dimension`) first if it is not.
    fn opened<'m>(
        &self,
        collections: &'m mut BTreeMap<String, LocalVectorStore>,
        name: &str,
        dimension: usize,
    ) -> Result<&'m mut LocalVectorStore, Problem> {
        match collections.entry(name.to_string()) {
            Entry::Occupied(open) => Ok(open.into_mut()),
            Entry::Vacant(closed) => {
                let dir = self.options.root.join(name);
                let (store, _) = LocalVectorStore::open(Arc::clone(&self.fs), &dir, dimension, OpenMode::ReadWrite)
                    .map_err(problem)?;
                Ok(closed.insert(store))
            }
        }
    }

    /// Creates collection `name` of `dimension` (durably: its dimension
    /// first, then its directory), or opens it if it exists with that
    /// dimension. Returns how many vectors it holds.
    fn create(&self, name: &str, dimension: usize) -> Result<usize, Problem> {
        check_name(name)?;
        let mut collections = self.collections();
        if let Some(existing) = self.known_dimension(name)? {
            if existing != dimension {
                return Err(Problem::conflict(format!(
                    "collection {name} has dimension {existing}, not {dimension}"
                )));
            }
        } else {
            if dimension == 0 || dimension > MAX_DIMENSION {
                return Err(Problem::bad_request(format!(
                    "dimension {dimension} is outside 1..={MAX_DIMENSION}"
                )));
            }
            let file =
                serde_json::to_vec(&CollectionFile { dimension }).map_err(|e| Problem::internal(e.to_string()))?;
            self.fs
                .write_file_atomic(&self.dimension_file(name), &file)
                .map_err(|e| problem(e.into()))?;
        }
        let store = self.opened(&mut collections, name, dimension)?;
        Ok(store.ids().map_err(problem)?.len())
    }

    fn known_dimension(&self, name: &str) -> Result<Option<usize>, Problem> {
        let path = self.dimension_file(name);
        if !self.fs.exists(&path).map_err(|e| problem(e.into()))? {
            return Ok(None);
        }
        let bytes = self.fs.read_file(&path).map_err(|e| problem(e.into()))?;
        let file: CollectionFile =
            serde_json::from_slice(&bytes).map_err(|e| Problem::internal(format!("{}: {e}", path.display())))?;
        Ok(Some(file.dimension))
    }

    /// Runs `work` on collection `name`, opening it if it exists on disk
    /// (after a restart, the first call to each collection opens it).
    fn with<R>(
        &self,
        name: &str,
        work: impl FnOnce(&mut LocalVectorStore) -> Result<R, VectorError>,
    ) -> Result<R, Problem> {
        check_name(name)?;
        let mut collections = self.collections();
        let dimension = match collections.get(name) {
            Some(open) => open.dimension(),
            None => self
                .known_dimension(name)?
                .ok_or_else(|| Problem::not_found(format!("no collection named {name}")))?,
        };
        work(self.opened(&mut collections, name, dimension)?).map_err(problem)
    }

    /// Every collection's name, in order (a collection is named by its
    /// dimension file).
    fn names(&self) -> Result<Vec<String>, Problem> {
        let entries = self
            .fs
            .read_dir_or_empty(&self.options.root)
            .map_err(|e| problem(e.into()))?;
        let mut names: Vec<String> = entries
            .iter()
            .filter_map(|entry| entry.name.strip_suffix(".json").map(str::to_string))
            .filter(|name| check_name(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Removes collection `name` and its vectors (absent is fine).
    fn drop_collection(&self, name: &str) -> Result<(), Problem> {
        check_name(name)?;
        let mut collections = self.collections();
        collections.remove(name);
        // The vectors leave in one durable rename, before the name goes: a
        // crash at any point leaves the whole collection or none of its
        // vectors (a segment store reopened with some segments unlinked
        // would bring back vectors deleted or replaced in the later ones).
        // What was moved aside is removed here, or at the next start.
        let root = &self.options.root;
        let (dir, aside) = (root.join(name), root.join(format!("{DROPPED}{name}")));
        let io = |e: std::io::Error| problem(e.into());
        if self.fs.exists(&dir).map_err(io)? {
            self.fs.remove_tree_durable(&aside).map_err(io)?;
            self.fs.rename(&dir, &aside).map_err(io)?;
            self.fs.sync_dir(root).map_err(io)?;
        }
        self.fs.remove_file_if_exists(&self.dimension_file(name)).map_err(io)?;
        self.fs.sync_dir(root).map_err(io)?;
        self.fs.remove_tree_durable(&aside).map_err(io)?;
        Ok(())
    }

    /// Runs write `work` on collection `name` unless its budget (when it
    /// was received, and how long it had) is spent when it reaches the
    /// collection: then it is refused with `408` and not applied. Counts
    /// it, and slows it if the options say so.
    fn write(
        &self,
        name: &str,
        budget: Option<(Instant, Duration)>,
        work: impl FnOnce(&mut LocalVectorStore) -> Result<(), VectorError>,
    ) -> Result<(), Problem> {
        let n = self.writes_received.fetch_add(1, Ordering::SeqCst);
        let slow = self
            .options
            .slow_writes
            .filter(|slow| n.is_multiple_of(slow.slow_every.max(1)));
        if let Some(slow) = slow.filter(|slow| slow.before_apply) {
            std::thread::sleep(slow.slow_by);
        }
        let applied = self.with(name, |store| {
            if budget.is_some_and(|(received, budget)| received.elapsed() > budget) {
                return Ok(false);
            }
            work(store).map(|()| true)
        })?;
        if !applied {
            self.writes_expired.fetch_add(1, Ordering::SeqCst);
            return Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "budget-spent",
                "the write's budget was spent before it reached the collection; it was not applied",
            ));
        }
        self.writes_applied.fetch_add(1, Ordering::SeqCst);
        if let Some(slow) = slow.filter(|slow| !slow.before_apply) {
            std::thread::sleep(slow.slow_by);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    dimension: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    ids: Vec<VectorId>,
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsBody {
    ids: Vec<VectorId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    embedding: Vec<f32>,
    k: usize,
}

type Shared = State<Arc<VectorServer>>;
type Answer = Result<Response, Problem>;

fn body<T>(body: Result<axum::Json<T>, JsonRejection>) -> Result<T, Problem> {
    body.map(|axum::Json(value)| value)
        .map_err(|rejection| Problem::bad_request(rejection.body_text()))
}

fn json(value: serde_json::Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

async fn create(
    State(server): Shared,
    UrlPath(name): UrlPath<String>,
    raw: Result<axum::Json<CreateBody>, JsonRejection>,
) -> Answer {
    let CreateBody { dimension } = body(raw)?;
    let (count, name) = server
        .offload()
        .run(move || Ok((server.create(&name, dimension)?, name)))
        .await?;
    Ok(json(
        serde_json::json!({"name": name, "dimension": dimension, "count": count}),
    ))
}

async fn list(State(server): Shared) -> Answer {
    let names = server.offload().run(move || server.names()).await?;
    Ok(json(serde_json::json!({ "collections": names })))
}

async fn describe(State(server): Shared, UrlPath(name): UrlPath<String>) -> Answer {
    let (dimension, count, name) = server
        .offload()
        .run(move || {
            let (dimension, count) = server.with(&name, |store| Ok((store.dimension(), store.ids()?.len())))?;
            Ok((dimension, count, name))
        })
        .await?;
    Ok(json(
        serde_json::json!({"name": name, "dimension": dimension, "count": count}),
    ))
}

async fn remove(State(server): Shared, UrlPath(name): UrlPath<String>) -> Answer {
    server.offload().run(move || server.drop_collection(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// When the request came and its budget, if it has one and `server`
/// enforces budgets (the wall clock is read only then).
fn budget_of(server: &VectorServer, headers: &HeaderMap) -> Option<(Instant, Duration)> {
    if !server.options.budgets {
        return None;
    }
    let budget = headers
        .get(BUDGET_HEADER)
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .map(Duration::from_millis)?;
    Some((Instant::now(), budget))
}

async fn upsert(
    State(server): Shared,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    raw: Result<axum::Json<UpsertBody>, JsonRejection>,
) -> Answer {
    let budget = budget_of(&server, &headers);
    let UpsertBody { ids, embeddings } = body(raw)?;
    if ids.len() != embeddings.len() {
        return Err(Problem::bad_request(format!(
            "{} ids but {} embeddings",
            ids.len(),
            embeddings.len()
        )));
    }
    let count = ids.len();
    server
        .offload()
        .run(move || {
            server.write(&name, budget, |store| {
                // All checked first: a batch the store cannot hold is refused
                // whole. (A disk error part way through still leaves the
                // vectors before it applied: each upsert is durable on its own.)
                let dimension = store.dimension();
                if let Some(bad) = embeddings
                    .iter()
                    .position(|e| e.len() != dimension || e.iter().any(|x| !x.is_finite()))
                {
                    return Err(VectorError::Invalid(format!(
                        "embedding {bad}: expected {dimension} finite components"
                    )));
                }
                for (id, embedding) in ids.into_iter().zip(embeddings) {
                    store.upsert(id, &embedding)?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(json(serde_json::json!({ "upserted": count })))
}

async fn delete(
    State(server): Shared,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    raw: Result<axum::Json<IdsBody>, JsonRejection>,
) -> Answer {
    let budget = budget_of(&server, &headers);
    let IdsBody { ids } = body(raw)?;
    let count = ids.len();
    server
        .offload()
        .run(move || server.write(&name, budget, |store| ids.iter().try_for_each(|id| store.delete(*id))))
        .await?;
    Ok(json(serde_json::json!({ "deleted": count })))
}

async fn get_vectors(
    State(server): Shared,
    UrlPath(name): UrlPath<String>,
    raw: Result<axum::Json<IdsBody>, JsonRejection>,
) -> Answer {
    let IdsBody { ids } = body(raw)?;
    let (ids, embeddings) = server
        .offload()
        .run(move || {
            let embeddings = server.with(&name, |store| {
                ids.iter().map(|id| store.get(*id)).collect::<Result<Vec<_>, _>>()
            })?;
            Ok((ids, embeddings))
        })
        .await?;
    Ok(json(serde_json::json!({ "ids": ids, "embeddings": embeddings })))
}

async fn list_ids(State(server): Shared, UrlPath(name): UrlPath<String>) -> Answer {
    let ids = server
        .offload()
        .run(move || server.with(&name, |store| store.ids()))
        .await?;
    Ok(json(serde_json::json!({ "ids": ids })))
}

async fn query(
    State(server): Shared,
    UrlPath(name): UrlPath<String>,
    raw: Result<axum::Json<QueryBody>, JsonRejection>,
) -> Answer {
    let QueryBody { embedding, k } = body(raw)?;
    let neighbours = server
        .offload()
        .run(move || server.with(&name, |store| store.nearest(&embedding, k)))
        .await?;
    let neighbours: Vec<_> = neighbours
        .iter()
        .map(|n| serde_json::json!({"id": n.id, "score": n.score}))
        .collect();
    Ok(json(serde_json::json!({ "neighbours": neighbours })))
}

async fn stats(State(server): Shared) -> Answer {
    Ok(json(serde_json::json!({
        "writes_applied": server.writes_applied.load(Ordering::SeqCst),
        "writes_expired": server.writes_expired.load(Ordering::SeqCst)
    })))
}

/// The server's routes.
pub fn router(server: Arc<VectorServer>) -> Router {
    Router::new()
        .route("/v1/collections", get(list))
        .route("/v1/collections/{name}", put(create).get(describe).delete(remove))
        .route("/v1/collections/{name}/upsert", post(upsert))
        .route("/v1/collections/{name}/delete", post(delete))
        .route("/v1/collections/{name}/get", post(get_vectors))
        .route("/v1/collections/{name}/ids", get(list_ids))
        .route("/v1/collections/{name}/query", post(query))
        .route("/v1/stats", get(stats))
        .fallback(|| async { Problem::not_found("no such endpoint (the API is under /v1/collections)") })
        .with_state(server)
}
