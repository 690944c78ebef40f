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
//! # On-disk format (version 1)
//!
//! ```json
//! {"version":1,"id":"m00000001700000000123","op":"import","state":"active",
//!  "paths":[{"name":"a.md","existed":true,"action":"write"},
//!           {"name":"b.md","existed":false,"action":"write"}]}
//! ```
//!
//! `op` is `add`, `remove` or `import`; `state` is `active`, `committed` or
//! `rolled_back`; `action` is `write` or `remove`; `name` is a document name
//! (relative to `source/`); `id` equals the file's stem. Unknown fields are
//! refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use tearline_sim_fs::{FileHandleExt, FileKind, FsExt, OpenOptions};

use crate::dual_write::{AddOutcome, check_text};
use crate::error::{Context, Result, StoreError};
use crate::layout::DocName;
use crate::store::{Store, content_hash};

/// The journal format this build writes and reads.
pub const JOURNAL_VERSION: u32 = 1;

/// How many times a rollback is tried before giving up.
pub const ROLLBACK_ATTEMPTS: u32 = 3;

/// The directory under `journal/` malformed journals are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";

/// What a journaled mutation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationOp {
    /// [`Store::add`]: one document written.
    Add,
    /// [`Store::remove`]: one document removed.
    Remove,
    /// [`Store::import`]: several documents written.
    Import,
}

/// Where a journaled mutation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// In progress: a drain rolls it back.
    Active,
    /// Its files are published: a drain brings the index in line and cleans up.
    Committed,
    /// Its files are restored: a drain cleans up.
    RolledBack,
}

/// What a mutation does to one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathAction {
    /// Writes new content.
    Write,
    /// Removes it.
    Remove,
}

/// One document a mutation touches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouchedPath {
    /// The document's name (its file under `source/`).
    pub name: String,
    /// Whether its source file existed when the mutation began.
    pub existed: bool,
    /// What the mutation does to it.
    pub action: PathAction,
}

/// A journal file's content. See the module docs for the format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalRecord {
    /// Always [`JOURNAL_VERSION`].
    pub version: u32,
    /// The journal's id: its file is `journal/<id>.json`.
    pub id: String,
    /// The mutation.
    pub op: MutationOp,
    /// Where it stands.
    pub state: JournalState,
    /// Every document it touches, each once.
    pub paths: Vec<TouchedPath>,
}

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
}

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

/// A journal id is what this build generates: ASCII letters, digits, `-`, `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Parses and checks a journal file whose name is `<id>.json`; the reason it
/// is malformed otherwise.
pub fn parse_journal(id: &str, bytes: &[u8]) -> std::result::Result<JournalRecord, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_string());
    }
    if !valid_id(id) {
        return Err(format!(
            "its name {id:?} is not a journal id (ASCII letters, digits, '-' and '_')"
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("it is not valid JSON ({e})"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        None => return Err("it has no numeric \"version\"".to_string()),
        Some(v) if v != u64::from(JOURNAL_VERSION) => {
            return Err(format!(
                "it has version {v}, this build reads version {JOURNAL_VERSION}"
            ));
        }
        Some(_) => {}
    }
    let record: JournalRecord =
        serde_json::from_value(value).map_err(|e| format!("it does not match the journal format ({e})"))?;
    if record.id != id {
        return Err(format!("it names journal {:?} but its file is {id}.json", record.id));
    }
    let mut seen = BTreeSet::new();
    for path in &record.paths {
        if let Err(e) = DocName::new(&path.name) {
            return Err(format!("it lists a path that is not a valid document name: {e}"));
        }
        if !seen.insert(path.name.as_str()) {
            return Err(format!("it lists {:?} twice", path.name));
        }
    }
    Ok(record)
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
        let outcomes = self.mutate(
            MutationOp::Add,
            vec![Change {
                name: name.clone(),
                content: Some(content.to_vec()),
            }],
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
        self.mutate(MutationOp::Remove, vec![Change { name, content: None }])?;
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
        for entry in entries.into_iter().filter(|e| e.kind == FileKind::File) {
            let path = dir.join(&entry.name);
            let name = DocName::new(&entry.name).map_err(|e| refuse(&path, e.to_string()))?;
            let content = self
                .fs
                .read_file(&path)
                .context(|| format!("reading {}", path.display()))?;
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
            ..ImportStats::default()
        };
        if changes.is_empty() {
            return Ok(stats);
        }
        for outcome in self.mutate(MutationOp::Import, changes)?.into_iter().flatten() {
            if outcome.replaced {
                stats.replaced += 1;
            } else {
                stats.added += 1;
            }
        }
        Ok(stats)
    }

    /// Rolls back every `active` journal, finishes every `committed` or
    /// `rolled_back` one, quarantines malformed ones, and removes leftovers
    /// without a journal. Every writable open runs it; see the module docs.
    pub fn drain_journals(&mut self) -> Result<JournalReport> {
        self.require_writable()?;
        let mut report = JournalReport::default();
        let dir = self.layout.journal_dir();
        for entry in self.list_dir(&dir)? {
            if entry.kind != FileKind::File || entry.name.starts_with('.') {
                continue;
            }
            let Some(id) = entry.name.strip_suffix(".json") else {
                continue;
            };
            let path = dir.join(&entry.name);
            let bytes = self
                .fs
                .read_file(&path)
                .context(|| format!("reading {}", path.display()))?;
            let mut record = match parse_journal(id, &bytes) {
                Ok(record) => record,
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

    /// Runs one mutation through the protocol of the module docs; returns
    /// what reindexing each document gave.
    fn mutate(&mut self, op: MutationOp, changes: Vec<Change>) -> Result<Vec<Option<AddOutcome>>> {
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
            return Err(e);
        }
        let applied = self
            .snapshot(&record)
            .and_then(|()| self.stage(&record, &changes))
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
        for change in &changes {
            // On error the journal stays `committed`: the next drain (or
            // recovery, for an intent left pending) brings the index in line.
            outcomes.push(self.reindex(change.name.as_str())?);
        }
        let _ = self.clean_up(&record.id);
        Ok(outcomes)
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

    /// Step 2: a durable snapshot of every touched file that exists.
    fn snapshot(&self, record: &JournalRecord) -> Result<()> {
        if !record.paths.iter().any(|p| p.existed) {
            return Ok(());
        }
        let dir = self.snapshot_dir(&record.id);
        self.fs
            .create_dir(&dir)
            .context(|| format!("creating {}", dir.display()))?;
        self.sync_dir(&self.layout.journal_dir())?;
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
        self.sync_dir(&dir)
    }

    /// Step 3: every new content in `staging/<id>/`, fsynced.
    fn stage(&self, record: &JournalRecord, changes: &[Change]) -> Result<()> {
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
        for change in changes {
            if let Some(content) = &change.content {
                self.write_synced(&dir.join(change.name.as_str()), content)?;
            }
        }
        Ok(())
    }

    /// Step 4: every staged file renamed (or copied, across devices) over its
    /// source file, every removal unlinked, then `source/` synced.
    fn publish(&self, record: &JournalRecord, changes: &[Change]) -> Result<()> {
        let staging = self.staging_for(&record.id);
        for change in changes {
            let target = self.layout.source_file(&change.name);
            match &change.content {
                Some(content) => {
                    let staged = staging.join(change.name.as_str());
                    match self.fs.rename(&staged, &target) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                            // The staged file is on another device: copy its
                            // content (held in memory) beside the target.
                            let temp = self.source_temp(change.name.as_str());
                            if flaw!(self.flaw, CopyWithoutFsync) {
                                // KNOWN BAD (origins/4): the copy is renamed
                                // into place before its bytes are durable.
                                self.fs
                                    .write_file(&temp, content)
                                    .context(|| format!("writing {}", temp.display()))?;
                            } else {
                                self.write_synced(&temp, content)?;
                            }
                            self.fs
                                .rename(&temp, &target)
                                .context(|| format!("renaming {} to {}", temp.display(), target.display()))?;
                        }
                        Err(source) => {
                            return Err(StoreError::Io {
                                context: format!("publishing {} as {}", staged.display(), target.display()),
                                source,
                            });
                        }
                    }
                }
                None => {
                    self.remove_if_exists(&target)?;
                }
            }
        }
        if flaw!(self.flaw, PublishWithoutDirSync) {
            // KNOWN BAD (origins/4): the commit follows a publish that may not be durable.
            return Ok(());
        }
        self.sync_dir(&self.layout.source_dir())
    }

    /// Rolls back after `original` failed; returns the error to report.
    fn roll_back_after(&mut self, record: &mut JournalRecord, original: StoreError) -> StoreError {
        let mut reindexed = Vec::new();
        match self.roll_back_with_retries(record, &mut reindexed) {
            Ok(()) => {
                let _ = self.clean_up(&record.id);
                original
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
    fn roll_back_with_retries(&mut self, record: &mut JournalRecord, reindexed: &mut Vec<String>) -> Result<()> {
        let mut last = None;
        for _ in 0..ROLLBACK_ATTEMPTS {
            match self.roll_back(record, reindexed) {
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
    /// starts it over.
    fn roll_back(&mut self, record: &mut JournalRecord, reindexed: &mut Vec<String>) -> Result<()> {
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
                if self.read_source(&name)?.as_deref() == Some(&old[..]) {
                    continue;
                }
                let temp = self.source_temp(&path.name);
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
                self.fs
                    .rename(&temp, &target)
                    .context(|| format!("restoring {}", target.display()))?;
            }
            self.sync_dir(&self.layout.source_dir())?;
        }
        self.bring_index_in_line(record, reindexed)?;
        record.state = JournalState::RolledBack;
        self.write_journal(record)
    }

    /// Reindexes every touched name whose index entry disagrees with its
    /// source file (by content hash, or by presence).
    fn bring_index_in_line(&mut self, record: &JournalRecord, reindexed: &mut Vec<String>) -> Result<()> {
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

    /// Removes a journal's snapshot, staging directory and file, each made
    /// durable, the journal file last.
    fn clean_up(&self, id: &str) -> Result<()> {
        self.remove_tree_if_exists(&self.snapshot_dir(id))?;
        if self.remove_tree_if_exists(&self.staging_for(id))? {
            self.sync_dir(&self.layout.staging_dir())?;
        }
        self.remove_if_exists(&self.journal_file(id))?;
        self.sync_dir(&self.layout.journal_dir())
    }

    /// Moves a malformed journal (and its snapshot directory) into
    /// `journal/quarantine/`.
    fn quarantine(&self, file_name: &str, id: &str, reason: String) -> Result<QuarantinedJournal> {
        let dir = self.layout.journal_dir();
        let quarantine = dir.join(QUARANTINE_DIR);
        self.fs
            .create_dir_all_durable(&quarantine)
            .context(|| format!("creating {}", quarantine.display()))?;
        let taken: BTreeSet<String> = self.list_dir(&quarantine)?.into_iter().map(|e| e.name).collect();
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
        self.sync_dir(&quarantine)?;
        self.sync_dir(&dir)?;
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
        let entries = self.list_dir(&dir)?;
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
            self.sync_dir(&dir)?;
        }
        let staging = self.layout.staging_dir();
        let mut removed = false;
        for entry in self.list_dir(&staging)? {
            if journals.contains(entry.name.as_str()) {
                continue;
            }
            let path = staging.join(&entry.name);
            match entry.kind {
                FileKind::Dir => {
                    self.remove_tree_if_exists(&path)?;
                }
                FileKind::File => {
                    self.remove_if_exists(&path)?;
                }
            }
            report.leftovers_removed.push(format!("staging/{}", entry.name));
            removed = true;
        }
        if removed {
            self.sync_dir(&staging)?;
        }
        Ok(())
    }

    /// A directory's entries; none if it does not exist.
    fn list_dir(&self, dir: &Path) -> Result<Vec<tearline_sim_fs::DirEntry>> {
        match self.fs.read_dir(dir) {
            Ok(entries) => Ok(entries),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StoreError::Io {
                context: format!("listing {}", dir.display()),
                source,
            }),
        }
    }

    /// Removes a directory and everything in it (syncing it before removing
    /// it); false if it did not exist. The caller syncs the parent.
    fn remove_tree_if_exists(&self, dir: &Path) -> Result<bool> {
        let entries = match self.fs.read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(StoreError::Io {
                    context: format!("listing {}", dir.display()),
                    source,
                });
            }
        };
        let had_entries = !entries.is_empty();
        for entry in entries {
            let path = dir.join(&entry.name);
            match entry.kind {
                FileKind::Dir => {
                    self.remove_tree_if_exists(&path)?;
                }
                FileKind::File => {
                    self.remove_if_exists(&path)?;
                }
            }
        }
        if had_entries {
            self.sync_dir(dir)?;
        }
        self.fs
            .remove_dir(dir)
            .context(|| format!("removing {}", dir.display()))?;
        Ok(true)
    }

    /// Unlinks a file; false if it did not exist.
    fn remove_if_exists(&self, path: &Path) -> Result<bool> {
        match self.fs.remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io {
                context: format!("removing {}", path.display()),
                source,
            }),
        }
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
    fn write_synced(&self, path: &Path, content: &[u8]) -> Result<()> {
        self.fs
            .open(path, &OpenOptions::create_truncate())
            .and_then(|file| {
                file.write_all_at(content, 0)?;
                file.sync_all()
            })
            .context(|| format!("writing {}", path.display()))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.fs.sync_dir(dir).context(|| format!("syncing {}", dir.display()))
    }
}
