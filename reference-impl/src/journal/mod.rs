//! Journaled mutations: [`Store::add`], [`Store::remove`] and
//! [`Store::import`] change the source files all or nothing, and an
//! interrupted one is rolled back before the next mutation.
//!
//! # Fault model
//!
//! Any syscall may fail (EIO, ENOSPC, EXDEV), the process may be killed, or the
//! power may be cut, after which any subset of the unsynced operations
//! survives and unsynced writes may be torn. The journal protocol must leave
//! every touched source file entirely old or entirely new, and all of them old
//! or all of them new, with the index agreeing with them once the next writable
//! open has run.
//!
//! # Protocol
//!
//! One mutation touches a list of documents, each written (new content) or
//! removed:
//! 1. **Journal** `journal/<id>.json` in state `active`, listing every touched
//!    name and whether its source file existed, written durably (temp file +
//!    fsync + rename + directory fsync).
//! 2. **Snapshot** every touched file that exists: a hard link
//!    `journal/<id>.snap/<name>` (where links are refused, e.g. EXDEV, a copy
//!    to a temp name, fsynced, renamed), the file fsynced and the directory
//!    synced. Hard-link snapshots are
//!    safe only because the store never writes a source file in place: every
//!    new version is a new inode renamed over the old name.
//! 3. **Stage** the new contents in `staging/<id>/<name>`, each fsynced.
//! 4. **Publish**: rename each staged file over `source/<name>`; where the
//!    rename fails with EXDEV (staging is on another device), copy into
//!    `source/.<name>.journal.tmp`, fsync, rename. Removals unlink. Then one
//!    directory fsync of `source/`.
//! 5. **Commit**: the journal is rewritten durably in state `committed`. This
//!    is the commit point: before it, a crash or an error rolls the mutation
//!    back; after it, the new files are the store's content.
//! 6. **Index**: [`Store::reindex`] of every touched name, through the
//!    two-phase dual write ([`crate::dual_write`]).
//! 7. **Clean up** the snapshot, the staging directory, then the journal file.
//!
//! A failure in steps 2 to 5 **rolls back**: every touched file is restored
//! from its snapshot (or removed if it did not exist; a file that existed but
//! has no snapshot was never published over, since every snapshot is durable
//! before the first publish), `source/` is synced, every touched name whose
//! index entry disagrees with its file is reindexed, the journal is rewritten
//! `rolled_back`, and cleaned up. A rollback is tried up to
//! [`ROLLBACK_ATTEMPTS`] times; if every attempt fails, the journal stays
//! `active` and [`StoreError::RollbackFailed`] is returned.
//!
//! A failure in step 6 does not roll back: the files are committed (the
//! filesystem is the source of truth, and the index is derived from it), so
//! the error is returned and the journal stays `committed` until a drain
//! brings the index in line (any intent left pending is resolved by
//! [`Store::recover`] the same way). A failure in step 7 is ignored: the
//! mutation succeeded, and the leftovers are drained later.
//!
//! # Draining
//!
//! Every writable open, after the recovery of dual-write intents, and every
//! mutation that finds a journal left behind, **drains** `journal/` before
//! mutating ([`Store::drain_journals`]): an `active` journal is rolled back,
//! a `committed` or `rolled_back` one has the index brought in line with its
//! files and is cleaned up, and leftovers without a journal (snapshots,
//! staging directories, temp files) are removed.
//!
//! A **malformed** journal (not JSON, empty, truncated, an unknown version,
//! operation or state, a name that is not a valid document name) cannot be
//! trusted to roll anything back. It is moved to `journal/quarantine/` (with
//! its snapshot directory, if any, for a human to inspect) and reported in
//! [`JournalReport::quarantined`]; the open goes on. The files it may have
//! touched are left as they are (the filesystem wins), and the index is
//! brought in line with **every** source file: each name that `verify`
//! reports unindexed, missing or stale is reindexed. That is a full scan, paid
//! only when something was quarantined, and it holds whatever the corrupt
//! journal did or did not list.
//!
//! # Where it lives
//!
//! - [`record`]: the journal file's format and its parser.
//! - `mutation`: the steps of add, remove and import (journal, snapshot, stage, commit, index).
//! - `publish`: staged files published by rename, with the `EXDEV` copy fallback.
//! - `rollback`: restoring touched files, with bounded retry.
//! - `drain`: the drain on every writable open, quarantine of malformed
//!   journals, removal of leftovers.
//! - here: the paths of a journal's files and the filesystem steps the
//!   others share.

use std::io;
use std::path::{Path, PathBuf};

use tearline_sim_fs::{FileHandleExt, FsExt, OpenOptions};

use crate::error::{Context, Result, StoreError};
use crate::layout::DocName;
use crate::store::Store;

mod drain;
mod mutation;
mod publish;
pub mod record;
mod rollback;

pub use drain::{JournalReport, QUARANTINE_DIR, QuarantinedJournal};
pub use mutation::{ImportProgress, ImportStats};
pub use record::{JOURNAL_VERSION, JournalRecord, JournalState, MutationOp, PathAction, TouchedPath, parse_journal};
pub use rollback::ROLLBACK_ATTEMPTS;

/// One document of a mutation: new content, or `None` to remove it.
struct Change {
    name: DocName,
    content: Option<Vec<u8>>,
}

/// Whether a failed hard link should be retried as a copy.
fn link_refused(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::CrossesDevices | io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
    )
}

impl Store {
    fn journal_file(&self, id: &str) -> PathBuf {
        self.layout.journal_dir().join(format!("{id}.json"))
    }

    fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.layout.journal_dir().join(format!("{id}.snap"))
    }

    fn staging_for(&self, id: &str) -> PathBuf {
        self.layout.staging_dir().join(id)
    }

    /// The temp name a publish or restore writes before renaming over
    /// `source/<name>` (recovery removes `source/.*.tmp` leftovers).
    fn source_temp(&self, name: &str) -> PathBuf {
        self.layout.source_dir().join(format!(".{name}.journal.tmp"))
    }

    /// Writes the journal durably: temp + fsync + rename + directory fsync.
    fn write_journal(&self, record: &JournalRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            what: format!("journal {} cannot be serialised: {e}", record.id),
        })?;
        let path = self.journal_file(&record.id);
        self.fs
            .write_file_atomic(&path, &bytes)
            .context(|| format!("writing the journal {}", path.display()))
    }

    /// Removes a directory and everything in it, syncing each directory
    /// that had entries before removing it; false if it did not exist. The
    /// caller syncs the parent.
    fn remove_tree_if_exists(&self, dir: &Path) -> Result<bool> {
        self.fs
            .remove_tree_durable(dir)
            .context(|| format!("removing {}", dir.display()))
    }

    /// Unlinks a file; false if it did not exist.
    fn remove_if_exists(&self, path: &Path) -> Result<bool> {
        self.fs
            .remove_file_if_exists(path)
            .context(|| format!("removing {}", path.display()))
    }

    fn read_if_exists(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match self.fs.read_file(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Creates or truncates `path`, writes `content` and fsyncs it.
    ///
    /// Then it reads the file back: a write the device put elsewhere (a
    /// misdirected write) reports success, and only a read-back shows it. A
    /// file that does not read back as written is an error, so the mutation
    /// fails (and rolls back) rather than publish what the user did not write.
    pub(crate) fn write_synced(&self, path: &Path, content: &[u8]) -> Result<()> {
        self.fs
            .open(path, &OpenOptions::create_truncate())
            .and_then(|file| {
                file.write_all_at(content, 0)?;
                file.sync_all()
            })
            .context(|| format!("writing {}", path.display()))?;
        let written = self
            .fs
            .read_file(path)
            .context(|| format!("reading back {}", path.display()))?;
        if written != content {
            return Err(StoreError::Corrupt {
                what: format!(
                    "{} does not read back as written ({} bytes written, {} read back, or different bytes): a \
                     write the device put elsewhere?",
                    path.display(),
                    content.len(),
                    written.len()
                ),
            });
        }
        Ok(())
    }
}
