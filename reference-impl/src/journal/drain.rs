//! Draining `journal/` on every writable open (and before a mutation that
//! finds a journal left behind): `active` journals rolled back, `committed`
//! and `rolled_back` ones finished and cleaned up, malformed ones moved to
//! `journal/quarantine/`, and leftovers without a journal removed.

use std::collections::BTreeSet;

use serde::Serialize;
use tearline_sim_fs::{FileKind, FsExt};

use super::record::{JournalState, parse_journal};
use crate::error::{Context, Named, Result, StoreError};
use crate::store::Store;

/// The directory under `journal/` malformed journals are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A malformed journal moved aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuarantinedJournal {
    /// The journal file, relative to the store's root (`journal/x.json`).
    pub file: String,
    /// Where it was moved, relative to the store's root.
    pub moved_to: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for QuarantinedJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed journal {}: {}; moved to {} (the index was brought in line with the source files)",
            self.file, self.reason, self.moved_to
        )
    }
}

/// What draining the journals did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JournalReport {
    /// Ids of `active` journals whose mutations were rolled back.
    pub rolled_back: Vec<String>,
    /// Ids of `committed` journals whose mutations were finished.
    pub completed: Vec<String>,
    /// Ids of `rolled_back` journals that were cleaned up.
    pub cleaned_up: Vec<String>,
    /// Malformed journals moved to `journal/quarantine/`.
    pub quarantined: Vec<QuarantinedJournal>,
    /// Documents reindexed to agree with their files.
    pub reindexed: Vec<String>,
    /// Leftovers without a journal (snapshots, staging directories, temp
    /// files) removed, relative to the store's root.
    pub leftovers_removed: Vec<String>,
}

impl JournalReport {
    /// True if there was nothing to drain.
    pub fn is_empty(&self) -> bool {
        *self == JournalReport::default()
    }
}

impl Store {
    /// Rolls back every `active` journal, finishes every `committed` or
    /// `rolled_back` one, quarantines malformed ones, and removes leftovers
    /// without a journal. Every writable open runs it; see the module docs.
    pub fn drain_journals(&mut self) -> Result<JournalReport> {
        self.require_writable()?;
        let mut report = JournalReport::default();
        let dir = self.layout.journal_dir();
        for entry in self
            .fs
            .read_dir_or_empty(&dir)
            .context(|| format!("listing {}", dir.display()))?
        {
            if entry.kind != FileKind::File || entry.name.starts_with('.') {
                continue;
            }
            let Some(id) = entry.name.strip_suffix(".json") else {
                continue;
            };
            let path = dir.join(&entry.name);
            // A journal the device cannot read (a latent sector error, EIO
            // twice) is as lost as a malformed one: quarantined, not fatal.
            let parsed = match crate::store::retry_eio(|| self.fs.read_file(&path)) {
                Ok(bytes) => parse_journal(id, &bytes),
                Err(e) if crate::store::is_eio(&e) => Err(format!("the device cannot read it: {e}")),
                Err(source) => {
                    return Err(StoreError::Io {
                        context: format!("reading {}", path.display()),
                        source,
                    });
                }
            };
            let mut record = match parsed {
                Ok(record) => record,
                // KNOWN BAD (Flaw::StrictJournals): the damage wedges every open.
                Err(reason) if flaw!(self.flaw, StrictJournals) => {
                    return Err(StoreError::Corrupt {
                        what: format!("journal {}: {reason}", path.display()),
                    });
                }
                Err(reason) => {
                    let quarantined = self.quarantine(&entry.name, id, reason)?;
                    report.quarantined.push(quarantined);
                    continue;
                }
            };
            match record.state {
                JournalState::Active => {
                    self.roll_back_with_retries(&mut record, &mut report.reindexed)?;
                    report.rolled_back.push(record.id.clone());
                }
                JournalState::Committed => {
                    self.bring_index_in_line(&record, &mut report.reindexed)?;
                    report.completed.push(record.id.clone());
                }
                JournalState::RolledBack => {
                    self.bring_index_in_line(&record, &mut report.reindexed)?;
                    report.cleaned_up.push(record.id.clone());
                }
            }
            self.clean_up(&record.id)?;
        }
        self.remove_leftovers(&mut report)?;
        if !report.quarantined.is_empty() {
            let verify = self.verify()?;
            let names: BTreeSet<String> = verify
                .unindexed_sources
                .into_iter()
                .chain(verify.missing_sources)
                .chain(verify.stale)
                .collect();
            for name in names {
                self.reindex(&name)?;
                report.reindexed.push(name);
            }
        }
        Ok(report)
    }

    /// Removes a journal's snapshot, staging directory and file, each made
    /// durable, the journal file last.
    pub(super) fn clean_up(&self, id: &str) -> Result<()> {
        self.remove_tree_if_exists(&self.snapshot_dir(id))?;
        if self.remove_tree_if_exists(&self.staging_for(id))? {
            self.fs.sync_dir_named(&self.layout.staging_dir()).named()?;
        }
        self.remove_if_exists(&self.journal_file(id))?;
        self.fs.sync_dir_named(&self.layout.journal_dir()).named()
    }

    /// Moves a malformed journal (and its snapshot directory) into
    /// `journal/quarantine/`.
    fn quarantine(&self, file_name: &str, id: &str, reason: String) -> Result<QuarantinedJournal> {
        let dir = self.layout.journal_dir();
        let quarantine = dir.join(QUARANTINE_DIR);
        self.fs
            .create_dir_all_durable(&quarantine)
            .context(|| format!("creating {}", quarantine.display()))?;
        let taken: BTreeSet<String> = self
            .fs
            .read_dir_or_empty(&quarantine)
            .context(|| format!("listing {}", quarantine.display()))?
            .into_iter()
            .map(|e| e.name)
            .collect();
        let mut target = file_name.to_string();
        let mut n = 1;
        while taken.contains(&target) || taken.contains(&format!("{target}.snap")) {
            target = format!("{file_name}.{n}");
            n += 1;
        }
        let from = dir.join(file_name);
        let to = quarantine.join(&target);
        self.fs
            .rename(&from, &to)
            .context(|| format!("quarantining {} as {}", from.display(), to.display()))?;
        let snap = dir.join(format!("{id}.snap"));
        if self
            .fs
            .exists(&snap)
            .context(|| format!("looking for {}", snap.display()))?
        {
            let snap_to = quarantine.join(format!("{target}.snap"));
            self.fs
                .rename(&snap, &snap_to)
                .context(|| format!("quarantining {} as {}", snap.display(), snap_to.display()))?;
        }
        self.fs.sync_dir_named(&quarantine).named()?;
        self.fs.sync_dir_named(&dir).named()?;
        Ok(QuarantinedJournal {
            file: format!("journal/{file_name}"),
            moved_to: format!("journal/{QUARANTINE_DIR}/{target}"),
            reason,
        })
    }

    /// Removes what no journal owns: temp files and snapshot directories in
    /// `journal/`, and everything in `staging/`.
    fn remove_leftovers(&self, report: &mut JournalReport) -> Result<()> {
        let dir = self.layout.journal_dir();
        let entries = self
            .fs
            .read_dir_or_empty(&dir)
            .context(|| format!("listing {}", dir.display()))?;
        let journals: BTreeSet<&str> = entries
            .iter()
            .filter(|e| e.kind == FileKind::File && !e.name.starts_with('.'))
            .filter_map(|e| e.name.strip_suffix(".json"))
            .collect();
        let mut removed = false;
        for entry in &entries {
            let path = dir.join(&entry.name);
            let orphan_snap = entry.kind == FileKind::Dir
                && entry
                    .name
                    .strip_suffix(".snap")
                    .is_some_and(|id| !journals.contains(id));
            let temp = entry.kind == FileKind::File && entry.name.starts_with('.') && entry.name.ends_with(".tmp");
            if orphan_snap {
                self.remove_tree_if_exists(&path)?;
            } else if temp {
                self.remove_if_exists(&path)?;
            } else {
                continue;
            }
            report.leftovers_removed.push(format!("journal/{}", entry.name));
            removed = true;
        }
        if removed {
            self.fs.sync_dir_named(&dir).named()?;
        }
        let staging = self.layout.staging_dir();
        let mut removed = false;
        for entry in self
            .fs
            .read_dir_or_empty(&staging)
            .context(|| format!("listing {}", staging.display()))?
        {
            if journals.contains(entry.name.as_str()) {
                continue;
            }
            let path = staging.join(&entry.name);
            match entry.kind {
                FileKind::Dir => {
                    self.remove_tree_if_exists(&path)?;
                }
                FileKind::File | FileKind::Other => {
                    self.remove_if_exists(&path)?;
                }
            }
            report.leftovers_removed.push(format!("staging/{}", entry.name));
            removed = true;
        }
        if removed {
            self.fs.sync_dir_named(&staging).named()?;
        }
        Ok(())
    }
}
