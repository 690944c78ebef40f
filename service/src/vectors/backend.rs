//! [`RemoteVectors`]: a store's generations' vectors as collections of a
//! `vector-server`, one per generation, named after its directory.
//!
//! The store's protocols do not change: a generation's collection is
//! created empty with it (any collection of that name a crashed build left
//! is dropped first), opened with it and dropped before its directory is
//! removed; a writable open drops any collection of this store's whose
//! generation has no directory any more (one a repair moved aside as
//! damaged), and never another store's. The live generation is still whatever `CURRENT`
//! names, so a full rebuild's switch moves readers to the new collection
//! in one rename. Every vector write goes through
//! [`RemoteVectorStore`](super::RemoteVectorStore),
//! whose ambiguous outcome the two-phase dual write resolves.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tearline_refstore::Generation;
use tearline_refstore::vectors::{LocalOptions, OpenMode, OpenReport, VectorBackend, VectorError, VectorStore};
use tearline_sim_fs::Fs;

use super::client::VectorServerClient;

/// Each generation's vectors in a collection of a `vector-server`: see the
/// module docs.
#[derive(Clone, Debug)]
pub struct RemoteVectors {
    server: VectorServerClient,
    prefix: String,
}

impl RemoteVectors {
    /// Collections of the server `server` named `<prefix><generation's
    /// directory name>`; stores that share a server need prefixes that
    /// tell them apart.
    pub fn new(server: VectorServerClient, prefix: &str) -> Self {
        RemoteVectors {
            server,
            prefix: prefix.to_string(),
        }
    }

    /// The collection of the generation in `generation_dir`: its
    /// directory's name, with anything but an ASCII letter, digit, `_` or
    /// `-` as `_` (a collection name's alphabet).
    pub fn collection(&self, generation_dir: &Path) -> String {
        let dir = generation_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name: String = dir
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        format!("{}{name}", self.prefix)
    }
}

impl VectorBackend for RemoteVectors {
    fn open(
        &self,
        _fs: &Arc<dyn Fs>,
        generation_dir: &Path,
        dimension: usize,
        mode: OpenMode,
        _options: LocalOptions,
    ) -> Result<(Box<dyn VectorStore>, OpenReport), VectorError> {
        let name = self.collection(generation_dir);
        let store = match mode {
            OpenMode::ReadWrite => self.server.create(&name, dimension)?,
            // A reader needs the vector server only to search: while it
            // cannot be reached, the store opens for reading anyway (its
            // documents are in the index) and a search says the vector
            // store is unavailable.
            OpenMode::ReadOnly => match self.server.open(&name) {
                Err(VectorError::Unavailable(_) | VectorError::Timeout) => self.server.unverified(&name, dimension),
                opened => opened?
                    .ok_or_else(|| {
                        VectorError::Io(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("the vector server has no collection {name}"),
                        ))
                    })?
                    .read_only(),
            },
        };
        if store.dimension() != dimension {
            return Err(VectorError::Invalid(format!(
                "collection {name} holds vectors of {} components, not {dimension}",
                store.dimension()
            )));
        }
        Ok((Box::new(store), OpenReport::default()))
    }

    fn remove(&self, generation_dir: &Path) -> Result<(), VectorError> {
        self.server.drop_collection(&self.collection(generation_dir))
    }

    fn remove_unused(&self, present: &[String]) -> Result<Vec<String>, VectorError> {
        let mut removed = Vec::new();
        for name in self.server.collections()? {
            // Only a collection this store would name after a generation:
            // never another store's, whatever its prefix.
            let ours = name.strip_prefix(&self.prefix).and_then(Generation::parse).is_some();
            if ours && !present.iter().any(|dir| self.collection(Path::new(dir)) == name) {
                self.server.drop_collection(&name)?;
                removed.push(format!("collection {name}"));
            }
        }
        Ok(removed)
    }

    fn placement(&self) -> String {
        format!("vector-server collections prefixed {:?}", self.prefix)
    }

    fn keeps_files(&self) -> bool {
        false
    }
}
