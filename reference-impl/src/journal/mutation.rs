//! The mutation steps: [`Store::add`], [`Store::remove`] and
//! [`Store::import`] run through the protocol of the module docs of
//! [`crate::journal`] (journal, snapshot, stage, publish, commit, index,
//! clean up).

use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Serialize;
#[cfg(feature = "flawed-variants")]
use tearline_sim_fs::FileHandleExt;
use tearline_sim_fs::{FileKind, FsExt, OpenOptions};

use super::record::{JOURNAL_VERSION, JournalRecord, JournalState, MutationOp, PathAction, TouchedPath};
use super::{Change, QUARANTINE_DIR, link_refused};
use crate::dual_write::{AddOutcome, check_text};
use crate::error::{Context, Named, Result, StoreError};
use crate::layout::DocName;
use crate::store::{SkippedSource, Store};

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportStats {
    /// Files imported.
    pub files: usize,
    /// Of those, new documents.
    pub added: usize,
    /// Of those, documents that replaced an earlier version.
    pub replaced: usize,
    /// Bytes imported.
    pub bytes: u64,
    /// Entries of the directory that are not files, left out (import does
    /// not recurse into subdirectories).
    pub skipped: Vec<SkippedSource>,
}

/// Where an import stands, for progress reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// `reading` the directory's files, `staging` them durably, or
    /// `indexing` them once committed.
    pub phase: &'static str,
    /// Files done in this phase.
    pub done: usize,
    /// Files in this phase.
    pub total: usize,
    /// The file just done.
    pub name: String,
}

impl Store {
    /// Adds a document, or replaces the one of that name, as one journaled
    /// mutation. On `Ok` the document, its index rows and its vector are
    /// durable. On `Err` it is either entirely the new version or entirely as
    /// before, once recovery and the journal drain have run (which the next
    /// writable open does).
    pub fn add(&mut self, name: &str, content: &[u8]) -> Result<AddOutcome> {
        self.require_writable()?;
        let name = DocName::new(name)?;
        check_text(&name, content)?;
        let outcomes = self.mutate_with_progress(
            MutationOp::Add,
            vec![Change {
                name: name.clone(),
                content: Some(content.to_vec()),
            }],
            &mut |_| {},
        )?;
        outcomes
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("the source file of {name} vanished while it was being added"),
            })
    }

    /// Removes a document (its source file, rows and vector) as one journaled
    /// mutation. `NotFound` if the index does not know it.
    pub fn remove(&mut self, name: &str) -> Result<()> {
        self.require_writable()?;
        let name = DocName::new(name)?;
        if self.index.summary(name.as_str())?.is_none() {
            return Err(StoreError::NotFound {
                name: name.as_str().to_string(),
            });
        }
        // The one command that frees space must work on a full device: it
        // writes (a journal, SQLite's rollback journal) before it frees, so
        // on a nearly full one it first gives the reserve's space back.
        if self.nearly_full()? {
            self.release_reserve()?;
        }
        self.mutate_with_progress(
            MutationOp::Remove,
            vec![Change {
                name: name.clone(),
                content: None,
            }],
            &mut |_| {},
        )?;
        // Removing a document on purpose revokes its share link, once it is
        // gone (a link left by a crash here protects nothing: the document
        // is not indexed, and the next writable open prunes it).
        self.unshare(name.as_str())?;
        self.disown(&name)?;
        Ok(())
    }

    /// Imports every regular file of `dir` (on the store's filesystem, outside
    /// the store's root; subdirectories are not descended into) as a document
    /// named after the file, all in one journaled mutation: afterwards either
    /// every one of them is the imported version, or none is. A file whose
    /// name is not a valid document name, or whose content is not UTF-8,
    /// refuses the whole import up front ([`StoreError::ImportRefused`]) and
    /// changes nothing.
    pub fn import(&mut self, dir: &Path) -> Result<ImportStats> {
        self.import_with_progress(dir, &mut |_| {})
    }

    /// [`Store::import`], calling `progress` as each file is read, staged
    /// and indexed.
    pub fn import_with_progress(
        &mut self,
        dir: &Path,
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<ImportStats> {
        self.require_writable()?;
        let refuse = |path: &Path, reason: String| StoreError::ImportRefused {
            path: path.to_path_buf(),
            reason,
        };
        if dir.starts_with(self.layout.root()) {
            return Err(refuse(dir, "it is inside the store's root".to_string()));
        }
        let entries = self.fs.read_dir(dir).context(|| format!("listing {}", dir.display()))?;
        let mut changes = Vec::new();
        let mut skipped = Vec::new();
        let total = entries.len();
        for (done, entry) in entries.into_iter().enumerate() {
            progress(&ImportProgress {
                phase: "reading",
                done,
                total,
                name: entry.name.clone(),
            });
            if entry.kind != FileKind::File {
                skipped.push(SkippedSource {
                    reason: match entry.kind {
                        FileKind::Dir => "a directory: import does not recurse".to_string(),
                        _ => "not a regular file".to_string(),
                    },
                    name: entry.name,
                });
                continue;
            }
            let path = dir.join(&entry.name);
            let name = DocName::new(&entry.name).map_err(|e| refuse(&path, e.to_string()))?;
            let content = self.read_input(&path)?;
            if std::str::from_utf8(&content).is_err() {
                return Err(refuse(&path, "it is not UTF-8 text".to_string()));
            }
            changes.push(Change {
                name,
                content: Some(content),
            });
        }
        let mut stats = ImportStats {
            files: changes.len(),
            bytes: changes
                .iter()
                .map(|c| c.content.as_ref().map_or(0, |b| b.len() as u64))
                .sum(),
            skipped,
            ..ImportStats::default()
        };
        if changes.is_empty() {
            return Ok(stats);
        }
        for outcome in self
            .mutate_with_progress(MutationOp::Import, changes, progress)?
            .into_iter()
            .flatten()
        {
            if outcome.replaced {
                stats.replaced += 1;
            } else {
                stats.added += 1;
            }
        }
        Ok(stats)
    }

    /// Reads one file the user hands an import until two reads in a row
    /// agree. What an import reads becomes the truth (its source file), and
    /// nothing else holds a copy to check it against: a transfer error the
    /// device's own checks missed (one read returning a flipped bit) would
    /// otherwise be stored for good. A file that never reads the same twice
    /// (a failing device, or another process writing it) refuses the import.
    fn read_input(&self, path: &Path) -> Result<Vec<u8>> {
        const READS: usize = 4;
        let read = || {
            self.fs
                .read_file(path)
                .context(|| format!("reading {}", path.display()))
        };
        let mut last = read()?;
        if flaw!(self.flaw, ReadsInputOnce) {
            return Ok(last);
        }
        for _ in 1..READS {
            let again = read()?;
            if again == last {
                return Ok(last);
            }
            last = again;
        }
        Err(StoreError::ImportRefused {
            path: path.to_path_buf(),
            reason: format!(
                "it read differently each of {READS} times (a failing device, or another process writing it)"
            ),
        })
    }

    /// Runs one mutation through the protocol of the module docs, calling
    /// `progress` as each document is staged and indexed; returns what
    /// reindexing each document gave.
    fn mutate_with_progress(
        &mut self,
        op: MutationOp,
        changes: Vec<Change>,
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<Vec<Option<AddOutcome>>> {
        self.require_vectors(match op {
            MutationOp::Add => "an add",
            MutationOp::Remove => "a removal",
            MutationOp::Import => "an import",
        })?;
        self.prepare_journals()?;
        let mut paths = Vec::with_capacity(changes.len());
        for change in &changes {
            let path = self.layout.source_file(&change.name);
            let existed = self
                .fs
                .exists(&path)
                .context(|| format!("looking for {}", path.display()))?;
            paths.push(TouchedPath {
                name: change.name.as_str().to_string(),
                existed,
                action: match change.content {
                    Some(_) => PathAction::Write,
                    None => PathAction::Remove,
                },
            });
        }
        let mut record = JournalRecord {
            version: JOURNAL_VERSION,
            id: self.new_journal_id(),
            op,
            state: JournalState::Active,
            paths,
        };
        if let Err(e) = self.write_journal(&record) {
            // Nothing was touched yet; a journal that made it to the page
            // cache lists nothing to restore, so removing it is enough (and
            // the next drain would roll it back harmlessly otherwise).
            let _ = self.clean_up(&record.id);
            return Err(StoreError::NothingChanged { cause: Box::new(e) });
        }
        let applied = self
            .snapshot(&record)
            .and_then(|()| self.stage(&record, &changes, progress))
            .and_then(|()| self.publish(&record, &changes))
            .and_then(|()| {
                record.state = JournalState::Committed;
                self.write_journal(&record)
            });
        if let Err(e) = applied {
            record.state = JournalState::Active;
            return Err(self.roll_back_after(&mut record, e));
        }
        let mut outcomes = Vec::with_capacity(changes.len());
        for (done, change) in changes.iter().enumerate() {
            progress(&ImportProgress {
                phase: "indexing",
                done,
                total: changes.len(),
                name: change.name.as_str().to_string(),
            });
            // On error the journal stays `committed`: the next drain (or
            // recovery, for an intent left pending) brings the index in
            // line. The mutation is applied, and the error says so.
            match self.reindex(change.name.as_str()) {
                Ok(outcome) => outcomes.push(outcome),
                Err(cause) => return Err(self.committed_not_indexed(&record, cause)),
            }
        }
        // KNOWN BAD with `Flaw::KeepsFinishedJournal`: the journal stays.
        if !flaw!(self.flaw, KeepsFinishedJournal) {
            let _ = self.clean_up(&record.id);
        }
        Ok(outcomes)
    }

    /// The error of a committed mutation whose indexing failed: it is
    /// applied, and says so.
    fn committed_not_indexed(&self, record: &JournalRecord, cause: StoreError) -> StoreError {
        #[cfg(feature = "flawed-variants")]
        if self.flaw == Some(crate::flawed::Flaw::FailAfterCommit) {
            // KNOWN BAD: reports the committed mutation as failed and not
            // applied; the next drain applies it anyway.
            return StoreError::NothingChanged { cause: Box::new(cause) };
        }
        let mutation = match record.op {
            MutationOp::Add => "add".to_string(),
            MutationOp::Remove => "removal".to_string(),
            MutationOp::Import => format!("import of {} documents", record.paths.len()),
        };
        StoreError::CommittedNotIndexed {
            mutation,
            journal: self.journal_file(&record.id),
            cause: Box::new(cause),
        }
    }

    /// Before a mutation: drains journals left behind, or creates the
    /// journal and staging directories of a store that has none yet.
    fn prepare_journals(&mut self) -> Result<()> {
        let dir = self.layout.journal_dir();
        match self.fs.read_dir(&dir) {
            Ok(entries) => {
                if entries.iter().any(|e| e.name != QUARANTINE_DIR) {
                    self.drain_journals()?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                for dir in [self.layout.journal_dir(), self.layout.staging_dir()] {
                    self.fs
                        .create_dir_all_durable(&dir)
                        .context(|| format!("creating {}", dir.display()))?;
                }
                Ok(())
            }
            Err(source) => Err(StoreError::Io {
                context: format!("listing {}", dir.display()),
                source,
            }),
        }
    }

    /// A fresh id: the clock in nanoseconds (the journal directory is drained,
    /// so no live journal can have it).
    fn new_journal_id(&self) -> String {
        let nanos = self.clock.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("m{nanos:020}")
    }

    /// Step 2: a durable snapshot of every touched file that exists.
    fn snapshot(&self, record: &JournalRecord) -> Result<()> {
        if !record.paths.iter().any(|p| p.existed) {
            return Ok(());
        }
        let dir = self.snapshot_dir(&record.id);
        self.fs
            .create_dir(&dir)
            .context(|| format!("creating {}", dir.display()))?;
        self.fs.sync_dir_named(&self.layout.journal_dir()).named()?;
        for path in record.paths.iter().filter(|p| p.existed) {
            let name = DocName::new(&path.name)?;
            let source = self.layout.source_file(&name);
            let snap = dir.join(&path.name);
            match self.fs.hard_link(&source, &snap) {
                Ok(()) => self
                    .fs
                    .open(&snap, &OpenOptions::read_only())
                    .and_then(|file| file.sync_all())
                    .context(|| format!("syncing the snapshot {}", snap.display()))?,
                Err(e) if link_refused(&e) => {
                    // A copy gets its final name only once it is complete and
                    // durable: a rollback must never restore half a file.
                    let content = self
                        .fs
                        .read_file(&source)
                        .context(|| format!("reading {}", source.display()))?;
                    let temp = dir.join(format!(".{}.tmp", path.name));
                    self.write_synced(&temp, &content)?;
                    self.fs
                        .rename(&temp, &snap)
                        .context(|| format!("renaming {} to {}", temp.display(), snap.display()))?;
                }
                Err(source_err) => {
                    return Err(StoreError::Io {
                        context: format!("snapshotting {} as {}", source.display(), snap.display()),
                        source: source_err,
                    });
                }
            }
        }
        self.fs.sync_dir_named(&dir).named()
    }

    /// Step 3: every new content in `staging/<id>/`, fsynced.
    fn stage(
        &self,
        record: &JournalRecord,
        changes: &[Change],
        progress: &mut dyn FnMut(&ImportProgress),
    ) -> Result<()> {
        if changes.iter().all(|c| c.content.is_none()) {
            return Ok(());
        }
        let dir = self.staging_for(&record.id);
        match self.fs.create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let staging = self.layout.staging_dir();
                self.fs
                    .create_dir_all_durable(&staging)
                    .context(|| format!("creating {}", staging.display()))?;
                self.fs
                    .create_dir(&dir)
                    .context(|| format!("creating {}", dir.display()))?;
            }
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("creating {}", dir.display()),
                    source,
                });
            }
        }
        for (done, change) in changes.iter().enumerate() {
            progress(&ImportProgress {
                phase: "staging",
                done,
                total: changes.len(),
                name: change.name.as_str().to_string(),
            });
            if let Some(content) = &change.content {
                #[cfg(feature = "flawed-variants")]
                if self.flaw == Some(crate::flawed::Flaw::RetriesFsync) {
                    self.write_retrying_fsync(&dir.join(change.name.as_str()), content)?;
                    continue;
                }
                self.write_synced(&dir.join(change.name.as_str()), content)?;
            }
        }
        Ok(())
    }

    /// KNOWN BAD ([`crate::flawed::Flaw::RetriesFsync`], fsyncgate): writes
    /// and fsyncs `path`, and when the fsync fails, fsyncs again and carries
    /// on if that returns 0. On Linux the failed fsync marked the pages
    /// clean: the retry succeeds with the bytes still not on disk.
    #[cfg(feature = "flawed-variants")]
    fn write_retrying_fsync(&self, path: &Path, content: &[u8]) -> Result<()> {
        self.fs
            .open(path, &OpenOptions::create_truncate())
            .and_then(|file| {
                file.write_all_at(content, 0)?;
                file.sync_all().or_else(|_| file.sync_all())
            })
            .context(|| format!("writing {}", path.display()))
    }
}
