//! [`RemoteVectorStore`]: the store's [`VectorStore`] over HTTP, against a
//! `vector-server` collection.
//!
//! Every call has a timeout; a call that fails in a way another attempt may
//! cure (no connection, a timeout, a broken connection, a `5xx`) is tried
//! again, up to [`RemoteOptions::retries`] more times, after a growing pause.
//! Writes are by id, so a retry of a write whose answer was lost applies
//! the same write again, harmlessly. When the attempts run out:
//!
//! - nothing could even connect: [`VectorError::Unavailable`] (nothing
//!   was applied);
//! - a request may have reached the server, or it answered with a `5xx`:
//!   [`VectorError::Timeout`], the ambiguous outcome: the write may or may
//!   not be applied, and the caller (the store's two-phase dual write) must
//!   find out;
//! - the server said no (`4xx`): [`VectorError::Invalid`], at once;
//! - the server's copy is damaged: [`VectorError::Corrupt`], at once,
//!   naming the segment (under the collection's URL) and the byte, so the
//!   store treats it as damage to a derived file and rebuilds it from its
//!   sources.
//!
//! Every request carries its timeout as a budget
//! ([`BUDGET_HEADER`](super::server::BUDGET_HEADER)): the server refuses
//! (`408`, not applied) a write that reaches its collection later than
//! that. Before it reports `Timeout`, the client waits one more timeout,
//! so by then a write it saw no answer to is applied or never will be,
//! and one `get` settles it (assuming a request reaches the server within
//! its timeout, as on a local network).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tearline_refstore::vectors::{Neighbour, VectorError, VectorId, VectorStore};

/// How a [`RemoteVectorStore`] calls.
#[derive(Clone, Copy, Debug)]
pub struct RemoteOptions {
    /// The longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// How many more attempts a failed call gets.
    pub retries: u32,
    /// The pause before the first retry; each next one is twice as long.
    pub backoff: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(2),
            retries: 3,
            backoff: Duration::from_millis(50),
        }
    }
}

/// How a client's requests reach a `vector-server`: over TCP
/// ([`HttpTransport`]), or through a simulated network or straight into a
/// server in the same process. Object-safe.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends one request, `method` on `path` (`/v1/…`) with `body` as
    /// JSON and `timeout` as its budget ([`BUDGET_HEADER`](super::server::BUDGET_HEADER)),
    /// and waits at most `timeout` for the whole answer: its status and
    /// body, or why there is none.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, String), Unanswered>;

    /// Waits `pause` (between attempts, and out a last budget).
    fn pause(&self, pause: Duration);

    /// Where the server is, for messages (`http://127.0.0.1:7641`).
    fn describe(&self) -> String;
}

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// It was never sent: no connection could be made.
    NotSent(String),
    /// It may have reached the server; no whole answer came back in time.
    Lost(String),
}

/// The server at a URL, over TCP (`ureq`, its connection pool shared by
/// clones), waiting on the wall clock.
#[derive(Clone)]
pub struct HttpTransport {
    agent: ureq::Agent,
    /// `http://HOST:PORT`.
    url: String,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// The server at `url` (`http://127.0.0.1:PORT`), no attempt taking
    /// longer than `timeout`. Connects on the first request.
    pub fn new(url: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .build()
            .into();
        HttpTransport {
            agent,
            url: url.trim_end_matches('/').to_string(),
        }
    }
}

impl Transport for HttpTransport {
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, String), Unanswered> {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .header(super::server::BUDGET_HEADER, timeout.as_millis().to_string())
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .map_err(|e| Unanswered::NotSent(e.to_string()))?;
        let mut response = self.agent.run(request).map_err(|e| match e {
            ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                Unanswered::NotSent(e.to_string())
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                Unanswered::NotSent(io.to_string())
            }
            other => Unanswered::Lost(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Unanswered::Lost(e.to_string()))?;
        Ok((status, text))
    }

    fn pause(&self, pause: Duration) {
        std::thread::sleep(pause);
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// A `vector-server`, for whole collections: list, look up, create, open,
/// drop. Cheap to clone (the transport is shared).
#[derive(Clone, Debug)]
pub struct VectorServerClient {
    transport: Arc<dyn Transport>,
    options: RemoteOptions,
    /// KNOWN BAD ([`crate::flawed::ServiceFlaw::RetriedUpsertDuplicates`]):
    /// a retried upsert is sent as a new vector.
    #[cfg(feature = "flawed-variants")]
    retried_upsert_duplicates: bool,
    /// KNOWN BAD ([`crate::flawed::ServiceFlaw::DamageAsIoError`]): a
    /// damaged collection is reported as an I/O error.
    #[cfg(feature = "flawed-variants")]
    damage_as_io: bool,
}

/// A collection of a `vector-server`, as a [`VectorStore`]. See the module
/// docs for timeouts, retries and the ambiguous outcome.
#[derive(Debug)]
pub struct RemoteVectorStore {
    server: VectorServerClient,
    name: String,
    dimension: usize,
    /// Refuse every write (a read-only open of the store).
    read_only: bool,
}

/// How one attempt failed.
enum Attempt {
    /// Nothing was applied: no connection was made, or the server refused
    /// the write because its budget was spent (`408`).
    NotSent(String),
    /// The request may have reached the server; no usable answer came.
    Lost(String),
    /// The server refused it (`4xx`, with its status): another attempt
    /// would be refused too.
    Refused(u16, String),
    /// The server's copy of the collection is damaged (in this segment of
    /// it, from this byte, for this reason): another attempt would read
    /// the same damage.
    Damaged {
        segment: String,
        offset: u64,
        reason: String,
    },
}

impl VectorServerClient {
    /// The server at `url` (`http://127.0.0.1:PORT`) over TCP. Connects on the first call.
    pub fn new(url: &str, options: RemoteOptions) -> Self {
        Self::over(Arc::new(HttpTransport::new(url, options.timeout)), options)
    }

    /// The server `transport` reaches.
    pub fn over(transport: Arc<dyn Transport>, options: RemoteOptions) -> Self {
        VectorServerClient {
            transport,
            options,
            #[cfg(feature = "flawed-variants")]
            retried_upsert_duplicates: false,
            #[cfg(feature = "flawed-variants")]
            damage_as_io: false,
        }
    }

    /// This client with the service's known-bad design called `name` (a
    /// `refstore serve --flaw` name) where it is the vector client's
    /// (`retried-upsert-duplicates`, `damage-as-io-error`); unchanged for
    /// any other, and in a build without the feature `flawed-variants`,
    /// which is the only one that has any.
    pub fn with_flaw_named(self, name: &str) -> Self {
        #[cfg(feature = "flawed-variants")]
        let flaw = crate::flawed::ServiceFlaw::parse(name);
        #[cfg(feature = "flawed-variants")]
        let flawed = VectorServerClient {
            retried_upsert_duplicates: flaw == Some(crate::flawed::ServiceFlaw::RetriedUpsertDuplicates),
            damage_as_io: flaw == Some(crate::flawed::ServiceFlaw::DamageAsIoError),
            ..self
        };
        #[cfg(not(feature = "flawed-variants"))]
        let flawed = {
            let _ = name;
            self
        };
        flawed
    }

    /// Every collection's name, in order.
    pub fn collections(&self) -> Result<Vec<String>, VectorError> {
        let answer = self.call("GET", "/v1/collections", None)?;
        serde_json::from_value(answer["collections"].clone()).map_err(|e| garbled("collections", e))
    }

    /// Collection `name`, created with `dimension` if it is new (refused
    /// if it exists with another dimension).
    pub fn create(&self, name: &str, dimension: usize) -> Result<RemoteVectorStore, VectorError> {
        self.call("PUT", &collection_path(name), Some(json!({ "dimension": dimension })))?;
        Ok(RemoteVectorStore {
            server: self.clone(),
            name: name.to_string(),
            dimension,
            read_only: false,
        })
    }

    /// Collection `name` if it exists; never creates one.
    pub fn open(&self, name: &str) -> Result<Option<RemoteVectorStore>, VectorError> {
        let Some(answer) = self.call_unless_missing("GET", &collection_path(name), None)? else {
            return Ok(None);
        };
        let dimension = answer["dimension"]
            .as_u64()
            .ok_or_else(|| garbled("dimension", "missing"))? as usize;
        Ok(Some(RemoteVectorStore {
            server: self.clone(),
            name: name.to_string(),
            dimension,
            read_only: false,
        }))
    }

    /// A read-only handle on collection `name`, taken to hold vectors of
    /// `dimension`, made without asking the server (it cannot be reached
    /// now): each call on it asks, and says so if it still cannot.
    pub fn unverified(&self, name: &str, dimension: usize) -> RemoteVectorStore {
        RemoteVectorStore {
            server: self.clone(),
            name: name.to_string(),
            dimension,
            read_only: true,
        }
    }

    /// Removes collection `name` and its vectors (absent is fine).
    pub fn drop_collection(&self, name: &str) -> Result<(), VectorError> {
        self.call("DELETE", &collection_path(name), None).map(|_| ())
    }

    /// One call, with its retries (see the module docs).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, VectorError> {
        self.calling(method, path, body, false)
            .map(|answer| answer.unwrap_or(Value::Null))
    }

    /// [`Self::call`], but `None` for a `404`.
    fn call_unless_missing(&self, method: &str, path: &str, body: Option<Value>) -> Result<Option<Value>, VectorError> {
        self.calling(method, path, body, true)
    }

    fn calling(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        missing_ok: bool,
    ) -> Result<Option<Value>, VectorError> {
        let url = format!("{}{path}", self.transport.describe());
        let body = body.map(|b| b.to_string().into_bytes());
        let mut pause = self.options.backoff;
        let mut reached = false;
        let mut last = String::new();
        for attempt in 0..=self.options.retries {
            if attempt > 0 {
                self.transport.pause(pause);
                pause *= 2;
            }
            #[cfg(feature = "flawed-variants")]
            let body = match (attempt > 0 && self.retried_upsert_duplicates, &body) {
                (true, Some(sent)) if path.ends_with("/upsert") => Some(as_new_vectors(sent)),
                _ => body.clone(),
            };
            match self.attempt(method, path, body.as_deref()) {
                Ok(answer) => return Ok(Some(answer)),
                Err(Attempt::Refused(404, _)) if missing_ok => return Ok(None),
                Err(Attempt::Refused(_, why)) => return Err(VectorError::Invalid(why)),
                Err(Attempt::Damaged {
                    segment,
                    offset,
                    reason,
                }) => {
                    #[cfg(feature = "flawed-variants")]
                    if self.damage_as_io {
                        return Err(VectorError::Io(std::io::Error::other(format!(
                            "{method} {url}: {reason}"
                        ))));
                    }
                    // Named by its collection's URL: `/v1/collections/NAME`.
                    let collection: Vec<&str> = path.split('/').take(4).collect();
                    let file = format!("{}{}/{segment}", self.transport.describe(), collection.join("/"));
                    return Err(VectorError::Corrupt {
                        file: file.into(),
                        offset,
                        reason: format!("{reason} (the vector server's copy, found by {method} {url})"),
                    });
                }
                Err(Attempt::NotSent(why)) => last = why,
                Err(Attempt::Lost(why)) => {
                    reached = true;
                    last = why;
                }
            }
        }
        if reached {
            // Out of the budget of the last attempt, on the server's clock
            // too: what it did not apply by now it never will.
            self.transport.pause(self.options.timeout);
            Err(VectorError::Timeout)
        } else {
            Err(VectorError::Unavailable(format!("{method} {url}: {last}")))
        }
    }

    fn attempt(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Value, Attempt> {
        let (status, text) = self
            .transport
            .send(method, path, body, self.options.timeout)
            .map_err(|unanswered| match unanswered {
                Unanswered::NotSent(why) => Attempt::NotSent(why),
                Unanswered::Lost(why) => Attempt::Lost(why),
            })?;
        let answer: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| Attempt::Lost(format!("an answer that is not JSON ({e})")))?
        };
        let detail = || format!("{status}: {}", answer["detail"].as_str().unwrap_or(&text));
        let damaged = answer["type"].as_str() == Some(&format!("urn:tearline:problem:{}", super::server::DAMAGED));
        match status {
            200..=299 => Ok(answer),
            408 => Err(Attempt::NotSent(detail())),
            400..=499 => Err(Attempt::Refused(status, detail())),
            _ if damaged => Err(Attempt::Damaged {
                segment: answer["damage"]["segment"].as_str().unwrap_or("?").to_string(),
                offset: answer["damage"]["offset"].as_u64().unwrap_or(0),
                reason: answer["damage"]["reason"].as_str().map_or_else(detail, str::to_string),
            }),
            _ => Err(Attempt::Lost(detail())),
        }
    }
}

/// KNOWN BAD: an upsert's body with every id replaced by a fresh one, as
/// an add that lets the server pick ids would store it again.
#[cfg(feature = "flawed-variants")]
fn as_new_vectors(sent: &[u8]) -> Vec<u8> {
    const FRESH: u64 = 1 << 40;
    let mut body: Value = serde_json::from_slice(sent).unwrap_or(Value::Null);
    if let Some(ids) = body["ids"].as_array_mut() {
        for id in ids {
            *id = json!(id.as_u64().unwrap_or(0) + FRESH);
        }
    }
    body.to_string().into_bytes()
}

/// The path of collection `name`, its name percent-encoded (the server
/// refuses what is not a collection name; the path must still be one).
fn collection_path(name: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/v1/collections/{encoded}")
}

fn garbled(what: &str, why: impl std::fmt::Display) -> VectorError {
    VectorError::Io(std::io::Error::other(format!("the server's {what}: {why}")))
}

impl RemoteVectorStore {
    /// Collection `name` of the server at `url`, created with `dimension`
    /// if it is new: [`VectorServerClient::create`].
    pub fn connect(url: &str, name: &str, dimension: usize, options: RemoteOptions) -> Result<Self, VectorError> {
        VectorServerClient::new(url, options).create(name, dimension)
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This collection, refusing every write with
    /// `ErrorKind::ReadOnlyFilesystem` before it is sent, as a read-only
    /// local store does.
    pub fn read_only(self) -> Self {
        RemoteVectorStore {
            read_only: true,
            ..self
        }
    }

    /// Refuses a write to a read-only collection.
    fn writable(&self) -> Result<(), VectorError> {
        if self.read_only {
            return Err(VectorError::Io(std::io::Error::new(
                std::io::ErrorKind::ReadOnlyFilesystem,
                format!("collection {} was opened read-only", self.name),
            )));
        }
        Ok(())
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, VectorError> {
        self.server
            .call(method, &format!("{}{path}", collection_path(&self.name)), body)
    }
}

impl VectorStore for RemoteVectorStore {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn upsert(&mut self, id: VectorId, vector: &[f32]) -> Result<(), VectorError> {
        self.writable()?;
        self.call("POST", "/upsert", Some(json!({ "ids": [id], "embeddings": [vector] })))?;
        Ok(())
    }

    fn delete(&mut self, id: VectorId) -> Result<(), VectorError> {
        self.writable()?;
        self.call("POST", "/delete", Some(json!({ "ids": [id] })))?;
        Ok(())
    }

    fn get(&self, id: VectorId) -> Result<Option<Vec<f32>>, VectorError> {
        let answer = self.call("POST", "/get", Some(json!({ "ids": [id] })))?;
        let embeddings: Vec<Option<Vec<f32>>> =
            serde_json::from_value(answer["embeddings"].clone()).map_err(|e| garbled("embeddings", e))?;
        Ok(embeddings.into_iter().next().flatten())
    }

    fn ids(&self) -> Result<Vec<VectorId>, VectorError> {
        let answer = self.call("GET", "/ids", None)?;
        serde_json::from_value(answer["ids"].clone()).map_err(|e| garbled("ids", e))
    }

    fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, VectorError> {
        let answer = self.call("POST", "/query", Some(json!({ "embedding": query, "k": k })))?;
        #[derive(serde::Deserialize)]
        struct Found {
            id: VectorId,
            score: f32,
        }
        let found: Vec<Found> =
            serde_json::from_value(answer["neighbours"].clone()).map_err(|e| garbled("neighbours", e))?;
        Ok(found
            .into_iter()
            .map(|Found { id, score }| Neighbour { id, score })
            .collect())
    }
}
