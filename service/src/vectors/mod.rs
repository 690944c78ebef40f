//! A remote vector store: the reference store's vector store as a network
//! service of its own, the way a real deployment reaches a vector database
//! (ChromaDB, Qdrant) over HTTP.
//!
//! - [`server`]: `vector-server`, collections of vectors on its own disk
//!   (each a [`tearline_refstore::vectors::LocalVectorStore`]: append-only,
//!   checksummed, durable when it answers), under `/v1/collections`.
//! - [`backend`]: [`RemoteVectors`], where a store keeps its generations'
//!   vectors when they live on a `vector-server`: a collection each.
//! - [`in_process`]: [`InProcess`], a server in this process, reached
//!   without a socket (a harness's, after a simulation).
//! - [`client`]: [`VectorServerClient`] for whole collections (list,
//!   look up, create, open, drop), and [`RemoteVectorStore`], the store's
//!   [`VectorStore`](tearline_refstore::vectors::VectorStore) trait over
//!   HTTP, with a timeout per call, bounded retries, and the ambiguous
//!   outcome (a write applied whose answer never came) reported as
//!   [`VectorError::Timeout`](tearline_refstore::vectors::VectorError::Timeout)
//!   when the retries run out.
//!
//! Every write is by id, so every write is idempotent: retrying an upsert
//! whose answer was lost stores the same vector under the same id again,
//! never a second copy.

pub mod backend;
pub mod client;
pub mod in_process;
pub mod server;

pub use backend::RemoteVectors;
pub use client::{HttpTransport, RemoteOptions, RemoteVectorStore, Transport, Unanswered, VectorServerClient};
pub use in_process::InProcess;
pub use server::{VectorServer, VectorServerOptions};
