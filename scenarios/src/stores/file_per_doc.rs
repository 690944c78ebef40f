//! A tiny store for testing the engine: one file per document under
//! `<root>/docs`, each written by temp file + fsync + rename + directory
//! fsync, removed by unlink + directory fsync. No vectors, no lock, no
//! source files, no rebuild: the smallest thing that keeps every applicable
//! invariant under the faults of a syscall (with one copy of each document
//! and no checksum, it cannot survive a sector that goes bad under it:
//! faults at rest break it, as they must). [`FilePerDocFactory::without_fsync`] is the same store without
//! any fsync, which the matrix must catch.

use std::path::{Path, PathBuf};

use tearline_model::{
    Access, Capabilities, Env, Observation, Operation, StoreFactory, StoreFailure, StoreUnderTest, content_hash,
};
use tearline_sim_fs::{FileHandleExt, FsExt, OpenOptions};

/// The factory for the file-per-document store.
#[derive(Clone, Debug)]
pub struct FilePerDocFactory {
    name: &'static str,
    fsync: bool,
}

impl FilePerDocFactory {
    /// The correct store.
    pub fn correct() -> Self {
        Self {
            name: "file-per-doc",
            fsync: true,
        }
    }

    /// The broken copy: never fsyncs a file or a directory.
    pub fn without_fsync() -> Self {
        Self {
            name: "file-per-doc-nosync",
            fsync: false,
        }
    }
}

fn docs(env: &Env) -> PathBuf {
    env.root.join("docs")
}

fn fail(what: &str, e: impl std::fmt::Display) -> StoreFailure {
    StoreFailure::new(format!("{what}: {e}"))
}

fn valid_name(name: &str) -> Result<(), StoreFailure> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(StoreFailure::new(format!("invalid document name {name:?}")));
    }
    Ok(())
}

impl StoreFactory for FilePerDocFactory {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            remove: true,
            ..Capabilities::default()
        }
    }

    fn init(&self, env: &Env) -> Result<(), StoreFailure> {
        env.fs
            .create_dir_all_durable(&docs(env))
            .map_err(|e| fail("creating the store", e))
    }

    fn open(&self, env: &Env, access: Access) -> Result<Box<dyn StoreUnderTest>, StoreFailure> {
        let store = FilePerDoc {
            env: env.clone(),
            fsync: self.fsync,
        };
        if access == Access::Writable {
            store.recover()?;
        }
        Ok(Box::new(store))
    }

    fn source_dir(&self, _env: &Env) -> Option<PathBuf> {
        None
    }

    fn protected_paths(&self, env: &Env) -> Vec<String> {
        vec![format!("{}/*", docs(env).display())]
    }

    fn lock_file(&self, _env: &Env) -> Option<PathBuf> {
        None
    }
}

/// An open file-per-document store.
#[derive(Debug)]
struct FilePerDoc {
    env: Env,
    fsync: bool,
}

impl FilePerDoc {
    fn dir(&self) -> PathBuf {
        docs(&self.env)
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), StoreFailure> {
        if self.fsync {
            self.env
                .fs
                .sync_dir(dir)
                .map_err(|e| fail("syncing the directory", e))?;
        }
        Ok(())
    }

    /// Removes the temp files of interrupted writes, and makes whatever a
    /// crashed process left in the page cache durable before anyone reads it.
    fn recover(&self) -> Result<(), StoreFailure> {
        let dir = self.dir();
        let entries = self.env.fs.read_dir(&dir).map_err(|e| fail("listing", e))?;
        for entry in entries {
            if entry.name.starts_with('.') {
                self.env
                    .fs
                    .remove_file(&dir.join(&entry.name))
                    .map_err(|e| fail("removing a temp file", e))?;
            } else if self.fsync {
                let file = self
                    .env
                    .fs
                    .open(&dir.join(&entry.name), &OpenOptions::read_only())
                    .map_err(|e| fail("opening", e))?;
                file.sync_all().map_err(|e| fail("syncing", e))?;
            }
        }
        self.sync_dir(&dir)
    }

    fn write(&self, name: &str, content: &str) -> Result<(), StoreFailure> {
        valid_name(name)?;
        let dir = self.dir();
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let file = self
                .env
                .fs
                .open(&tmp, &OpenOptions::create_truncate())
                .map_err(|e| fail("creating the temp file", e))?;
            file.write_all_at(content.as_bytes(), 0)
                .map_err(|e| fail("writing", e))?;
            if self.fsync {
                file.sync_all().map_err(|e| fail("syncing", e))?;
            }
        }
        self.env
            .fs
            .rename(&tmp, &dir.join(name))
            .map_err(|e| fail("renaming into place", e))?;
        self.sync_dir(&dir)
    }
}

impl StoreUnderTest for FilePerDoc {
    fn apply(&mut self, op: &Operation) -> Result<(), StoreFailure> {
        match op {
            Operation::Add { name, content } => self.write(name, content),
            Operation::Remove { name } => {
                valid_name(name)?;
                let dir = self.dir();
                self.env
                    .fs
                    .remove_file(&dir.join(name))
                    .map_err(|e| fail(&format!("removing {name}"), e))?;
                self.sync_dir(&dir)
            }
            other => Err(StoreFailure::new(format!("unsupported: {}", other.describe()))),
        }
    }

    fn observe(&self) -> Result<Observation, StoreFailure> {
        let dir = self.dir();
        let mut observation = Observation {
            integrity_ok: true,
            ..Observation::default()
        };
        for entry in self.env.fs.read_dir(&dir).map_err(|e| fail("listing", e))? {
            if entry.name.starts_with('.') {
                observation.leftover_files.push(format!("docs/{}", entry.name));
                continue;
            }
            let content = self
                .env
                .fs
                .read_file(&dir.join(&entry.name))
                .map_err(|e| fail("reading", e))?;
            observation.indexed.insert(entry.name.clone(), content_hash(&content));
        }
        Ok(observation)
    }
}
