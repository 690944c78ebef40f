//! Where everything lives under a store's root.
//!
//! ```text
//! <root>/                           locked (flock of the directory) by the
//!                                   writer: the exclusive write lock
//! <root>/source/<name>              the documents: the source of truth
//! <root>/journal/<id>.json          a journaled mutation (see `crate::journal`)
//! <root>/journal/<id>.snap/<name>   its snapshots of the files it touches
//! <root>/journal/quarantine/        malformed journals, moved aside
//! <root>/staging/<id>/<name>        its staged new contents (may be another device)
//! <root>/RESERVE                    space kept aside for recovery on a full device
//! <root>/CURRENT                    the live generation's name, e.g. "gen-000001\n"
//! <root>/VECTORS                    where the vectors are, if not in files beside
//!                                   each index (see `crate::vectors::backend`)
//! <root>/generations/gen-000001/    one generation: a complete index
//!     index.db                        SQLite: files, chunks, summaries, intents
//!     vectors/                        the vector store's segment files
//!     CREATED                         when it was built (ms since the Unix epoch),
//!                                     written last: the generation is complete
//! <root>/generations/damaged-gen-000002/  a damaged generation a repair moved
//!                                     aside for inspection (`DAMAGED` says
//!                                     when and why), see `crate::repair`
//! ```
//!
//! A generation is complete before `CURRENT` names it: `CURRENT` is replaced
//! by temp file + fsync + rename + directory fsync, so at every instant it
//! names a complete generation. Older generations are backups (see
//! [`crate::rebuild::RetentionPolicy`]); newer ones are leftovers of
//! interrupted rebuilds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StoreError};
use crate::vectors::{LocalVectors, VectorBackend};

/// The paths of one store, and the two settings of its files' layout that
/// are not paths: how large a vector segment grows before the next one,
/// and where each generation's vectors live.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    vector_segment_bytes: u64,
    vectors: Arc<dyn VectorBackend>,
}

impl Layout {
    /// The layout of the store at `root`, with vector segments of
    /// [`crate::vectors::LocalOptions::default`]'s size.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            vector_segment_bytes: crate::vectors::LocalOptions::default().segment_target_bytes,
            vectors: Arc::new(LocalVectors),
        }
    }

    /// This layout with each generation's vectors kept by `backend`
    /// (default [`LocalVectors`]: files in the generation's directory).
    pub fn with_vector_backend(self, backend: Arc<dyn VectorBackend>) -> Self {
        Self {
            vectors: backend,
            ..self
        }
    }

    /// Where each generation's vectors live.
    pub(crate) fn vector_backend(&self) -> &dyn VectorBackend {
        self.vectors.as_ref()
    }

    /// This layout with vector segments that roll over at `bytes`
    /// ([`crate::vectors::LocalOptions::segment_target_bytes`]).
    pub fn with_vector_segment_bytes(self, bytes: u64) -> Self {
        Self {
            vector_segment_bytes: bytes,
            ..self
        }
    }

    /// The options a vector store of this layout is written with.
    pub(crate) fn vector_options(&self) -> crate::vectors::LocalOptions {
        crate::vectors::LocalOptions {
            segment_target_bytes: self.vector_segment_bytes,
            ..crate::vectors::LocalOptions::default()
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the exclusive write lock locks: the root directory itself (see
    /// [`crate::lock`] for why not a lock file).
    pub fn lock_path(&self) -> PathBuf {
        self.root.clone()
    }

    /// The space reserve (see [`crate::reserve`]).
    pub fn reserve_file(&self) -> PathBuf {
        self.root.join("RESERVE")
    }

    /// The documents' directory.
    pub fn source_dir(&self) -> PathBuf {
        self.root.join("source")
    }

    /// A document's source file.
    pub fn source_file(&self, name: &DocName) -> PathBuf {
        self.source_dir().join(name.as_str())
    }

    /// The mutation journals' directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    /// The share links: one empty file per shared document, named after it
    /// (see `crate::share`). User data, like `source/`: no rebuild or
    /// reconcile derives or removes it.
    pub fn shares_dir(&self) -> PathBuf {
        self.root.join("shares")
    }

    /// A document's share link.
    pub fn share_file(&self, name: &DocName) -> PathBuf {
        self.shares_dir().join(name.as_str())
    }

    /// The owners: one file per owned document, named after it, holding
    /// the owner's id (see `crate::owner`). User data, like `shares/`.
    pub fn owners_dir(&self) -> PathBuf {
        self.root.join("owners")
    }

    /// A document's owner file.
    pub fn owner_file(&self, name: &DocName) -> PathBuf {
        self.owners_dir().join(name.as_str())
    }

    /// The directory new contents are staged in before they are published
    /// into `source/`. A deployment may mount it on another device.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Where the vectors are, when not in files beside each index
    /// ([`crate::vectors::VectorBackend::placement`]).
    pub fn vectors_file(&self) -> PathBuf {
        self.root.join("VECTORS")
    }

    /// The generation pointer.
    pub fn current_file(&self) -> PathBuf {
        self.root.join("CURRENT")
    }

    /// The temporary file a switch writes before renaming it over `CURRENT`
    /// (see `FsExt::write_file_atomic`).
    pub fn current_tmp_file(&self) -> PathBuf {
        self.root.join(".CURRENT.tmp")
    }

    /// The directory holding every generation.
    pub fn generations_dir(&self) -> PathBuf {
        self.root.join("generations")
    }

    /// One generation's directory.
    pub fn generation_dir(&self, generation: Generation) -> PathBuf {
        self.generations_dir().join(generation.dir_name())
    }

    /// A generation's SQLite index.
    pub fn index_file(&self, generation: Generation) -> PathBuf {
        self.generation_dir(generation).join(INDEX_FILE_NAME)
    }

    /// A generation's vector store directory.
    pub fn vectors_dir(&self, generation: Generation) -> PathBuf {
        self.generation_dir(generation).join(VECTORS_DIR_NAME)
    }
}

/// The name of a generation's SQLite index inside its directory.
pub(crate) const INDEX_FILE_NAME: &str = "index.db";
/// The name of a generation's vector store directory inside its directory.
pub(crate) const VECTORS_DIR_NAME: &str = "vectors";
/// The name of a generation's creation record inside its directory.
pub(crate) const CREATED_FILE_NAME: &str = "CREATED";

/// A generation number (1 for the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

impl Generation {
    /// The directory name, `gen-000001`.
    pub fn dir_name(&self) -> String {
        format!("gen-{:06}", self.0)
    }

    /// Parses a directory name or the content of `CURRENT` (trailing newline allowed).
    pub fn parse(text: &str) -> Option<Generation> {
        let digits = text.trim_end_matches('\n').strip_prefix("gen-")?;
        if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|n| *n > 0).map(Generation)
    }

    /// The next generation.
    pub fn next(&self) -> Generation {
        Generation(self.0 + 1)
    }
}

/// A valid document name: 1 to 200 bytes of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.` (names starting with `.` are the store's
/// temporary files).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocName(String);

impl DocName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<DocName> {
        let invalid = |reason| StoreError::InvalidName {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > 200 {
            return Err(invalid("it is longer than 200 bytes"));
        }
        if name.starts_with('.') {
            return Err(invalid(
                "names starting with '.' are reserved for the store's temporary files",
            ));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(invalid("only ASCII letters, digits, '.', '_' and '-' are allowed"));
        }
        Ok(DocName(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DocName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_round_trip() {
        assert_eq!(Generation(7).dir_name(), "gen-000007");
        assert_eq!(Generation::parse("gen-000007\n"), Some(Generation(7)));
        assert_eq!(Generation::parse("gen-1234567"), Some(Generation(1_234_567)));
        for bad in ["", "gen-", "gen-00000x", "gen-000000", "foo-000001", "gen-12"] {
            assert_eq!(Generation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn document_names_are_checked() {
        assert!(DocName::new("notes-2024_v1.md").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "sp ace", "é", &"x".repeat(201)] {
            assert!(DocName::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
