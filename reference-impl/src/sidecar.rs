//! What share links (`crate::share`) and owners (`crate::owner`) share:
//! user data kept beside the sources, one small file per indexed document
//! in a directory of its own (`shares/`, `owners/`), named after it.
//!
//! - Written durably before the store says yes (temp file, fsync, rename,
//!   directory fsync), and only for an indexed document.
//! - A record that goes takes its files with it; a new record clears any an
//!   earlier record of its name left behind ([`Store::clear_sidecars`]).
//! - A writable open prunes the temp files of interrupted writes and the
//!   files of documents no longer indexed, then syncs what it keeps.
//! - A failed directory sync is remembered on the handle: a removal there
//!   may not be durable, so the next new record syncs both directories
//!   before it is created.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use tearline_sim_fs::{FileKind, FsExt};

use crate::error::{Context, Result, StoreError};
use crate::layout::DocName;
use crate::store::Store;

impl Store {
    /// For a new share link or owner under `dir`: checks the store is
    /// writable and `name` is an indexed document ([`StoreError::NotFound`]
    /// if not), and creates `dir` durably.
    pub(crate) fn sidecar_target(&self, name: &str, dir: &Path) -> Result<DocName> {
        self.require_writable()?;
        let name = DocName::new(name)?;
        if self.index.summary(name.as_str())?.is_none() {
            return Err(StoreError::NotFound {
                name: name.as_str().to_string(),
            });
        }
        self.fs
            .create_dir_all_durable(dir)
            .context(|| format!("creating {}", dir.display()))?;
        Ok(name)
    }

    /// Every indexed document's name: what a share link or an owner may name.
    pub(crate) fn indexed_names(&self) -> Result<BTreeSet<String>> {
        Ok(self.index.files()?.into_iter().map(|(name, _)| name).collect())
    }

    /// Removes `file` of `dir` (absent is fine) and makes the removal durable.
    pub(crate) fn remove_sidecar(&self, file: &Path, dir: &Path) -> Result<()> {
        if self
            .fs
            .remove_file_if_exists(file)
            .context(|| format!("removing {}", file.display()))?
        {
            self.sync_sidecar_dir(dir)?;
        }
        Ok(())
    }

    /// Removes from `dir` the temp files of interrupted writes and the files
    /// of documents no longer indexed, then syncs it (if it held anything).
    pub(crate) fn prune_sidecars(&self, dir: &Path) -> Result<()> {
        let entries = self
            .fs
            .read_dir_or_empty(dir)
            .context(|| format!("listing {}", dir.display()))?;
        if entries.is_empty() {
            return Ok(());
        }
        let indexed = self.indexed_names()?;
        for entry in entries.iter().filter(|e| e.kind == FileKind::File) {
            if entry.name.starts_with('.') || !indexed.contains(&entry.name) {
                let path = dir.join(&entry.name);
                self.fs
                    .remove_file_if_exists(&path)
                    .context(|| format!("removing {}", path.display()))?;
            }
        }
        self.sync_sidecar_dir(dir)
    }

    /// Syncs `dir` (`shares/` or `owners/`); a failure is remembered (see
    /// [`Store::clear_sidecars`]) and returned.
    pub(crate) fn sync_sidecar_dir(&self, dir: &Path) -> Result<()> {
        let synced = self.fs.sync_dir(dir).context(|| format!("syncing {}", dir.display()));
        if synced.is_err() {
            self.sidecars_unsynced.store(true, Ordering::Relaxed);
        }
        synced
    }

    /// Before a record is created for `name`: removes any share link and
    /// owner an earlier record of the name left behind, durably, so the new
    /// one starts with neither. If a sync of `shares/` or `owners/` failed
    /// earlier on this handle, a removal there may not be durable yet: both
    /// are synced again first (the harness found a link whose removal's
    /// directory sync failed coming back after a power cut on the next
    /// document of its name: `tearline repro shared-record-kept:0:1752:ENOSPC`
    /// before the sync here).
    pub(crate) fn clear_sidecars(&mut self, name: &DocName) -> Result<()> {
        self.unshare(name.as_str())?;
        self.disown(name)?;
        if self.sidecars_unsynced.swap(false, Ordering::Relaxed) {
            for dir in [self.layout.shares_dir(), self.layout.owners_dir()] {
                let exists = self
                    .fs
                    .exists(&dir)
                    .context(|| format!("looking for {}", dir.display()));
                let synced = exists.and_then(|exists| if exists { self.sync_sidecar_dir(&dir) } else { Ok(()) });
                if synced.is_err() {
                    self.sidecars_unsynced.store(true, Ordering::Relaxed);
                    return synced;
                }
            }
        }
        Ok(())
    }
}
