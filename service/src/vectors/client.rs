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
//! - a request may have reached the server: [`VectorError::Timeout`], the
//!   ambiguous outcome: the write may or may not be applied, and the caller
//!   (the store's two-phase dual write) must find out;
//! - the server said no (`4xx`): [`VectorError::Invalid`], at once.

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

/// A collection of a `vector-server`, as a [`VectorStore`]. See the module
/// docs for timeouts, retries and the ambiguous outcome.
pub struct RemoteVectorStore {
    agent: ureq::Agent,
    /// `http://HOST:PORT/v1/collections/NAME`.
    collection: String,
    dimension: usize,
    options: RemoteOptions,
}

impl std::fmt::Debug for RemoteVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteVectorStore")
            .field("collection", &self.collection)
            .field("dimension", &self.dimension)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// How one attempt failed.
enum Attempt {
    /// No connection was made: nothing reached the server.
    NotSent(String),
    /// The request may have reached the server; no usable answer came.
    Lost(String),
    /// The server refused it (`4xx`): another attempt would too.
    Refused(String),
}

impl RemoteVectorStore {
    /// Connects to collection `name` of the server at `url`
    /// (`http://127.0.0.1:PORT`), creating it with `dimension` if it is new.
    pub fn connect(url: &str, name: &str, dimension: usize, options: RemoteOptions) -> Result<Self, VectorError> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .build()
            .into();
        let store = RemoteVectorStore {
            agent,
            collection: format!("{}/v1/collections/{name}", url.trim_end_matches('/')),
            dimension,
            options,
        };
        store.call("PUT", "", Some(json!({ "dimension": dimension })))?;
        Ok(store)
    }

    /// One call, with its retries (see the module docs).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, VectorError> {
        let url = format!("{}{path}", self.collection);
        let mut pause = self.options.backoff;
        let mut reached = false;
        let mut last = String::new();
        for attempt in 0..=self.options.retries {
            if attempt > 0 {
                std::thread::sleep(pause);
                pause *= 2;
            }
            match self.attempt(method, &url, body.as_ref()) {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Refused(why)) => return Err(VectorError::Invalid(why)),
                Err(Attempt::NotSent(why)) => last = why,
                Err(Attempt::Lost(why)) => {
                    reached = true;
                    last = why;
                }
            }
        }
        if reached {
            Err(VectorError::Timeout)
        } else {
            Err(VectorError::Unavailable(format!("{method} {url}: {last}")))
        }
    }

    fn attempt(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Value, Attempt> {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Content-Type", "application/json")
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| Attempt::Refused(e.to_string()))?;
        let mut response = self.agent.run(request).map_err(|e| match e {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => Attempt::NotSent(e.to_string()),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                Attempt::NotSent(io.to_string())
            }
            other => Attempt::Lost(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Attempt::Lost(e.to_string()))?;
        let answer: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| Attempt::Lost(format!("an answer that is not JSON ({e})")))?
        };
        let detail = || format!("{status}: {}", answer["detail"].as_str().unwrap_or(&text));
        match status {
            200..=299 => Ok(answer),
            400..=499 => Err(Attempt::Refused(detail())),
            _ => Err(Attempt::Lost(detail())),
        }
    }

    fn ids_of(answer: &Value, field: &str) -> Result<Vec<VectorId>, VectorError> {
        serde_json::from_value(answer[field].clone())
            .map_err(|e| VectorError::Io(std::io::Error::other(format!("the server's {field}: {e}"))))
    }
}

impl VectorStore for RemoteVectorStore {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn upsert(&mut self, id: VectorId, vector: &[f32]) -> Result<(), VectorError> {
        self.call("POST", "/upsert", Some(json!({ "ids": [id], "embeddings": [vector] })))?;
        Ok(())
    }

    fn delete(&mut self, id: VectorId) -> Result<(), VectorError> {
        self.call("POST", "/delete", Some(json!({ "ids": [id] })))?;
        Ok(())
    }

    fn get(&self, id: VectorId) -> Result<Option<Vec<f32>>, VectorError> {
        let answer = self.call("POST", "/get", Some(json!({ "ids": [id] })))?;
        let embeddings: Vec<Option<Vec<f32>>> = serde_json::from_value(answer["embeddings"].clone())
            .map_err(|e| VectorError::Io(std::io::Error::other(format!("the server's embeddings: {e}"))))?;
        Ok(embeddings.into_iter().next().flatten())
    }

    fn ids(&self) -> Result<Vec<VectorId>, VectorError> {
        Self::ids_of(&self.call("GET", "/ids", None)?, "ids")
    }

    fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, VectorError> {
        let answer = self.call("POST", "/query", Some(json!({ "embedding": query, "k": k })))?;
        #[derive(serde::Deserialize)]
        struct Found {
            id: VectorId,
            score: f32,
        }
        let found: Vec<Found> = serde_json::from_value(answer["neighbours"].clone())
            .map_err(|e| VectorError::Io(std::io::Error::other(format!("the server's neighbours: {e}"))))?;
        Ok(found
            .into_iter()
            .map(|Found { id, score }| Neighbour { id, score })
            .collect())
    }
}
