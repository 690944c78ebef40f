//! Where a store keeps each generation's vectors: [`VectorBackend`].
//!
//! A generation is a directory of `generations/` (see [`crate::layout`]).
//! Its index is always a file there. Its vectors are, by default, segment
//! files in its `vectors/` subdirectory ([`LocalVectors`]); a deployment
//! may keep them elsewhere, in a collection of a vector database named
//! after the generation's directory, the way Storm Cloud keeps them in
//! ChromaDB. Either way the store's protocols are the same: a generation's
//! vectors are created with it, opened with it and removed with it, and
//! every write goes through the [`VectorStore`] trait, whose ambiguous
//! outcome ([`VectorError::Timeout`]) the two-phase dual write handles.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tearline_sim_fs::Fs;

use super::local::{LocalOptions, LocalVectorStore, OpenMode, OpenReport};
use super::{VectorError, VectorStore};
use crate::layout::VECTORS_DIR_NAME;

/// Where each generation's vectors live. Object-safe; a store holds an
/// `Arc<dyn VectorBackend>`.
pub trait VectorBackend: Send + Sync + fmt::Debug {
    /// The vector store of the generation in `generation_dir`, opened with
    /// `mode` (a writable open creates it if it is missing), holding
    /// vectors of `dimension` components. `fs` is the store's filesystem
    /// and `options` its segment settings, for a backend that keeps files.
    fn open(
        &self,
        fs: &Arc<dyn Fs>,
        generation_dir: &Path,
        dimension: usize,
        mode: OpenMode,
        options: LocalOptions,
    ) -> Result<(Box<dyn VectorStore>, OpenReport), VectorError>;

    /// Removes the vectors of the generation in `generation_dir`, if any,
    /// before its directory is removed (so that vectors never outlive
    /// their generation). Absent is fine.
    fn remove(&self, generation_dir: &Path) -> Result<(), VectorError>;

    /// Removes the vectors this backend keeps outside any generation's
    /// directory for a generation of this store that has no directory of
    /// that name (of `present`, the names in `generations/`) any more: one
    /// a repair moved aside as damaged. Returns what it removed, by name.
    /// Only the lock holder calls it, when no build is under way.
    fn remove_unused(&self, present: &[String]) -> Result<Vec<String>, VectorError>;

    /// Where the vectors are, as the store records it at its creation and
    /// checks at every open (`files` for files beside the index): a store
    /// opened with another placement than it was created with refuses,
    /// rather than find every vector missing and rebuild elsewhere.
    fn placement(&self) -> String;

    /// Whether the vectors are files in the generation's directory: then
    /// a missing `vectors/` directory or an unreadable segment is damage
    /// the store finds by looking, and repairs by rebuilding.
    fn keeps_files(&self) -> bool;
}

/// The placement of [`LocalVectors`]: files beside the index.
pub const FILES: &str = "files";

/// The default backend: each generation's vectors are a
/// [`LocalVectorStore`] in its `vectors/` directory, on the store's own
/// filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalVectors;

impl VectorBackend for LocalVectors {
    fn open(
        &self,
        fs: &Arc<dyn Fs>,
        generation_dir: &Path,
        dimension: usize,
        mode: OpenMode,
        options: LocalOptions,
    ) -> Result<(Box<dyn VectorStore>, OpenReport), VectorError> {
        let (store, report) = LocalVectorStore::open_with(
            Arc::clone(fs),
            &generation_dir.join(VECTORS_DIR_NAME),
            dimension,
            mode,
            options,
        )?;
        Ok((Box::new(store), report))
    }

    fn remove(&self, _generation_dir: &Path) -> Result<(), VectorError> {
        // The files go with the generation's directory.
        Ok(())
    }

    fn remove_unused(&self, _present: &[String]) -> Result<Vec<String>, VectorError> {
        // Nothing of a generation is kept outside its directory.
        Ok(Vec::new())
    }

    fn placement(&self) -> String {
        FILES.to_string()
    }

    fn keeps_files(&self) -> bool {
        true
    }
}
