//! The vector store: a separate store with no transactions, standing in for
//! an external vector database.
//!
//! [`VectorStore`] is the contract the reference store writes against; the
//! local implementation keeps append-only, checksummed segment files on an
//! [`tearline_sim_fs::Fs`]. Because the store is not transactional, the index
//! never trusts it blindly: every write to it is bracketed by an intent in
//! SQLite (see `crate::dual_write`), and recovery checks what it really holds.
//!
//! - [`local`]: [`LocalVectorStore`], the segment files (format and repair
//!   rules in its docs).
//! - [`backend`]: [`VectorBackend`], where each generation's vectors live
//!   ([`LocalVectors`], the default: segment files in its directory; a
//!   remote vector database's collections, in `tearline-service`).
//! - [`faulty`]: [`FaultyVectorStore`], a wrapper that makes any store behave
//!   like an unreliable remote one, switched at run time.

pub mod backend;
pub mod faulty;
pub mod local;
mod search;

pub use backend::{LocalVectors, VectorBackend};
pub use faulty::{FaultMode, FaultSwitch, FaultyVectorStore};
pub use local::{AppendSync, LocalOptions, LocalVectorStore, MAX_DIMENSION, OpenMode, OpenReport};

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A vector's id, allocated by the index.
pub type VectorId = u64;

/// One result of a nearest-neighbour search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    /// The vector's id.
    pub id: VectorId,
    /// Cosine similarity to the query, in `[-1, 1]`; higher is nearer.
    pub score: f32,
}

/// Why a vector store call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum VectorError {
    /// The store could not be reached; nothing was applied.
    Unavailable(String),
    /// The call timed out: the write may or may not have been applied. The
    /// caller must find out (see [`VectorStore::get`]) before relying on it.
    Timeout,
    /// The filesystem failed.
    Io(io::Error),
    /// A segment is damaged somewhere other than its tail, so it cannot be
    /// repaired by truncation.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where the first bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The caller passed something the store cannot hold (wrong dimension,
    /// a NaN or infinite component).
    Invalid(String),
}

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VectorError::Unavailable(why) => write!(f, "vector store unavailable: {why}"),
            VectorError::Timeout => f.write_str("vector store timed out (a write may or may not have been applied)"),
            VectorError::Io(e) => write!(f, "vector store I/O error: {e}"),
            VectorError::Corrupt { file, offset, reason } => {
                write!(
                    f,
                    "vector segment {} is corrupt at byte {offset}: {reason}",
                    file.display()
                )
            }
            VectorError::Invalid(why) => write!(f, "invalid vector: {why}"),
        }
    }
}

impl std::error::Error for VectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VectorError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for VectorError {
    fn from(e: io::Error) -> Self {
        VectorError::Io(e)
    }
}

/// A store of fixed-dimension vectors by id. No transactions: each call is
/// applied on its own, and a successful write is durable when it returns.
///
/// Object-safe; the reference store holds a `Box<dyn VectorStore>`.
pub trait VectorStore: Send + fmt::Debug {
    /// The number of components every vector has.
    fn dimension(&self) -> usize;

    /// Stores `vector` under `id`, replacing any vector there. Durable on `Ok`.
    fn upsert(&mut self, id: VectorId, vector: &[f32]) -> Result<(), VectorError>;

    /// Removes `id`; removing an absent id is `Ok`. Durable on `Ok`.
    fn delete(&mut self, id: VectorId) -> Result<(), VectorError>;

    /// The vector stored under `id`, if any.
    fn get(&self, id: VectorId) -> Result<Option<Vec<f32>>, VectorError>;

    /// Every id stored, in ascending order.
    fn ids(&self) -> Result<Vec<VectorId>, VectorError>;

    /// The `k` stored vectors most similar (cosine) to `query`, nearest first;
    /// ties broken by ascending id.
    fn nearest(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, VectorError>;
}

/// Checks `vector` can be stored in (or searched for in) a store of
/// `dimension`: the right length, every component finite.
pub(crate) fn check_vector(dimension: usize, vector: &[f32]) -> Result<(), VectorError> {
    if vector.len() != dimension {
        return Err(VectorError::Invalid(format!(
            "expected {dimension} components, got {}",
            vector.len()
        )));
    }
    match vector.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(VectorError::Invalid(format!("component {i} is {}", vector[i]))),
        None => Ok(()),
    }
}
