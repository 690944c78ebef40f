//! Share links: a document with an active share link is *protected*. A
//! clean or full reconcile reports it as orphaned but protected and never
//! deletes it (Storm Cloud's rule: a record someone links to outlives its
//! file); removing the document on purpose revokes the link.
//!
//! A link is an empty file `shares/<name>`, written durably before
//! [`Store::share`] returns (temp file, fsync, rename, fsync of the
//! directory), so an acknowledged link survives a power cut. Links are user
//! data like the source files: a rebuild neither derives nor removes them;
//! a link whose document is no longer indexed protects nothing
//! ([`Store::shares`] lists only indexed ones).

use std::collections::BTreeSet;

use tearline_sim_fs::{FileKind, FsExt};

use crate::error::{Context, Result};
use crate::layout::DocName;
use crate::store::Store;

impl Store {
    /// Gives an indexed document an active share link, durably.
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) if the index does not hold it.
    pub fn share(&mut self, name: &str) -> Result<()> {
        let name = self.sidecar_target(name, &self.layout.shares_dir())?;
        let link = self.layout.share_file(&name);
        // KNOWN BAD with `Flaw::ShareWithoutFsync`: acknowledged before the
        // link is durable.
        if flaw!(self.flaw, ShareWithoutFsync) {
            return self
                .fs
                .write_file(&link, b"")
                .context(|| format!("writing {}", link.display()));
        }
        self.fs
            .write_file_atomic(&link, b"")
            .context(|| format!("writing {}", link.display()))
    }

    /// Revokes a document's share link, durably; none is fine.
    pub fn unshare(&mut self, name: &str) -> Result<()> {
        self.require_writable()?;
        let name = DocName::new(name)?;
        self.remove_sidecar(&self.layout.share_file(&name), &self.layout.shares_dir())
    }

    /// The indexed documents with an active share link, sorted.
    pub fn shares(&self) -> Result<BTreeSet<String>> {
        let indexed = self.indexed_names()?;
        Ok(self
            .share_links()?
            .into_iter()
            .filter(|name| indexed.contains(name))
            .collect())
    }

    /// Every share link on disk, indexed or not.
    pub(crate) fn share_links(&self) -> Result<BTreeSet<String>> {
        let dir = self.layout.shares_dir();
        let entries = self
            .fs
            .read_dir_or_empty(&dir)
            .context(|| format!("listing {}", dir.display()))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == FileKind::File && DocName::new(&e.name).is_ok())
            .map(|e| e.name)
            .collect())
    }

    /// A writable open's step, once recovery has settled the index: removes
    /// the temp files an interrupted [`Store::share`] left in `shares/` and
    /// the links whose document is no longer indexed (a removal interrupted
    /// before it revoked its link, a record a rebuild dropped), so no stale
    /// link protects a later document of that name; then makes durable what
    /// it keeps. A share interrupted after its rename but before its
    /// directory fsync shows its link to the recovering process, which
    /// reports the record protected; unless the directory is synced now, a
    /// power cut would take that link back (the harness's
    /// `shared-record-kept` found it: `tearline repro
    /// shared-record-kept:0:783:crash`).
    pub(crate) fn settle_shares(&self) -> Result<()> {
        self.prune_sidecars(&self.layout.shares_dir())
    }
}
