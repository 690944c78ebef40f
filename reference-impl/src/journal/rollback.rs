//! Rollback: every touched file restored from its snapshot (or removed if it
//! did not exist), the index brought in line, the journal marked
//! `rolled_back`; tried up to [`ROLLBACK_ATTEMPTS`] times.

use std::collections::BTreeMap;

use tearline_sim_fs::FsExt;

use super::link_refused;
use super::record::{JournalRecord, JournalState};
use crate::error::{Context, Named, Result, StoreError};
use crate::layout::DocName;
use crate::store::{Store, content_hash};

/// How many times a rollback is tried before giving up.
pub const ROLLBACK_ATTEMPTS: u32 = 3;

impl Store {
    /// Rolls back after `original` failed; returns the error to report.
    pub(super) fn roll_back_after(&mut self, record: &mut JournalRecord, original: StoreError) -> StoreError {
        let mut reindexed = Vec::new();
        match self.roll_back_with_retries(record, &mut reindexed) {
            Ok(()) => {
                let _ = self.clean_up(&record.id);
                StoreError::NothingChanged {
                    cause: Box::new(original),
                }
            }
            Err(StoreError::RollbackFailed {
                journal,
                attempts,
                last,
                ..
            }) => StoreError::RollbackFailed {
                journal,
                attempts,
                cause: Some(Box::new(original)),
                last,
            },
            Err(other) => other,
        }
    }

    /// [`Store::roll_back`], up to [`ROLLBACK_ATTEMPTS`] times.
    pub(super) fn roll_back_with_retries(
        &mut self,
        record: &mut JournalRecord,
        reindexed: &mut Vec<String>,
    ) -> Result<()> {
        let mut last = None;
        for attempt in 0..ROLLBACK_ATTEMPTS {
            match self.roll_back(record, reindexed, attempt > 0) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(StoreError::RollbackFailed {
            journal: self.journal_file(&record.id),
            attempts: ROLLBACK_ATTEMPTS,
            cause: None,
            last: Box::new(last.unwrap_or_else(|| StoreError::Corrupt {
                what: "no rollback attempt was made".to_string(),
            })),
        })
    }

    /// Restores every touched file, brings the index in line, and marks the
    /// journal `rolled_back` durably. Idempotent: a retry or a later drain
    /// starts it over. `rewrite` (a retry after a failed attempt) writes
    /// again even the files that already read as their snapshot.
    fn roll_back(&mut self, record: &mut JournalRecord, reindexed: &mut Vec<String>, rewrite: bool) -> Result<()> {
        if !flaw!(self.flaw, SkipRollback) {
            let snaps = self.snapshot_dir(&record.id);
            for path in &record.paths {
                let name = DocName::new(&path.name)?;
                let target = self.layout.source_file(&name);
                self.remove_if_exists(&self.source_temp(&path.name))?;
                if !path.existed {
                    self.remove_if_exists(&target)?;
                    continue;
                }
                let snap = snaps.join(&path.name);
                // No snapshot: the mutation stopped before publishing, so the
                // file was never replaced.
                let Some(old) = self.read_if_exists(&snap)? else {
                    continue;
                };
                let temp = self.source_temp(&path.name);
                if self.read_source(&name)?.as_deref() == Some(&old[..]) {
                    if !rewrite {
                        continue;
                    }
                    // A retry after a failed attempt: the file may read as
                    // the snapshot only from the page cache, after a restore
                    // whose fsync failed, and a failed fsync loses what it
                    // was to write (syncing again would "succeed" with
                    // nothing durable). Written again as a new file (a link
                    // to the same inode would rename as a no-op), so the
                    // directory fsync below has something to make durable.
                    self.write_synced(&temp, &old)?;
                } else {
                    match self.fs.hard_link(&snap, &temp) {
                        Ok(()) => {}
                        Err(e) if link_refused(&e) => self.write_synced(&temp, &old)?,
                        Err(source) => {
                            return Err(StoreError::Io {
                                context: format!("restoring {} from {}", target.display(), snap.display()),
                                source,
                            });
                        }
                    }
                }
                self.fs
                    .rename(&temp, &target)
                    .context(|| format!("restoring {}", target.display()))?;
            }
            self.fs.sync_dir_named(&self.layout.source_dir()).named()?;
        }
        self.bring_index_in_line(record, reindexed)?;
        record.state = JournalState::RolledBack;
        self.write_journal(record)
    }

    /// Reindexes every touched name whose index entry disagrees with its
    /// source file (by content hash, or by presence).
    pub(super) fn bring_index_in_line(&mut self, record: &JournalRecord, reindexed: &mut Vec<String>) -> Result<()> {
        let rows: BTreeMap<String, String> = self
            .index
            .files()?
            .into_iter()
            .map(|(path, row)| (path, row.hash))
            .collect();
        for path in &record.paths {
            let name = DocName::new(&path.name)?;
            let current = self.read_source(&name)?;
            let agrees = match (&current, rows.get(&path.name)) {
                (Some(content), Some(hash)) => content_hash(content) == *hash,
                (None, None) => true,
                _ => false,
            };
            if !agrees {
                self.reindex(&path.name)?;
                reindexed.push(path.name.clone());
            }
        }
        Ok(())
    }
}
