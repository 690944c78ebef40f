//! Reconciling the index with the source files: the filesystem wins.
//!
//! Files change behind the store's back (edited, added, deleted by hand or by
//! another tool). Reconcile compares `source/` with the index:
//!
//! | mode | does | needs `force` |
//! |---|---|---|
//! | [`ReconcileMode::Audit`] | reports, changes nothing | no |
//! | [`ReconcileMode::Sync`] | indexes missing files, refreshes stale ones | no |
//! | [`ReconcileMode::Clean`] | deletes entries whose file is gone | yes |
//! | [`ReconcileMode::Full`] | sync and clean | yes |
//!
//! Destructive modes refuse without `force` and change nothing. A dry run of
//! any mode changes nothing and reports what the mode would do (a dry run
//! needs no `force`: it is how to preview one). Every change goes through
//! [`Store::reindex`], the crash-safe two-phase protocol, so a crash midway
//! leaves each document old or new and a second run finishes the job; a run
//! on a reconciled store changes nothing (idempotent). An orphaned record
//! with an active share link (`crate::share`) is reported as protected and
//! never deleted. A run scoped to one owner (`crate::owner`) counts and
//! changes only that owner's records.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tearline_sim_fs::FileKind;

use crate::error::{Context, Result, StoreError};
use crate::layout::DocName;
use crate::store::{Store, content_hash};

/// What reconcile does. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileMode {
    /// Report only.
    Audit,
    /// Add missing records, refresh stale ones.
    Sync,
    /// Delete records whose source file is gone (needs force).
    Clean,
    /// Sync and clean (needs force).
    Full,
}

impl ReconcileMode {
    /// Parses `audit`, `sync`, `clean` or `full`.
    pub fn parse(text: &str) -> Option<ReconcileMode> {
        match text {
            "audit" => Some(ReconcileMode::Audit),
            "sync" => Some(ReconcileMode::Sync),
            "clean" => Some(ReconcileMode::Clean),
            "full" => Some(ReconcileMode::Full),
            _ => None,
        }
    }

    /// Whether the mode deletes records (and so needs force).
    pub fn is_destructive(&self) -> bool {
        matches!(self, ReconcileMode::Clean | ReconcileMode::Full)
    }

    fn syncs(&self) -> bool {
        matches!(self, ReconcileMode::Sync | ReconcileMode::Full)
    }
}

impl fmt::Display for ReconcileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReconcileMode::Audit => "audit",
            ReconcileMode::Sync => "sync",
            ReconcileMode::Clean => "clean",
            ReconcileMode::Full => "full",
        })
    }
}

/// How to run reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// The mode.
    pub mode: ReconcileMode,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
    /// Allow the destructive modes.
    pub force: bool,
    /// Only this owner's records (`crate::owner`); `None`: every record.
    pub owner: Option<String>,
}

impl ReconcileOptions {
    /// A run of `mode` over every record, not dry.
    pub fn new(mode: ReconcileMode, force: bool) -> Self {
        Self {
            mode,
            dry_run: false,
            force,
            owner: None,
        }
    }

    /// An audit.
    pub fn audit() -> Self {
        Self::new(ReconcileMode::Audit, false)
    }
}

/// What reconcile found and did. Serialisable for `--json` and reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReconcileStats {
    /// The mode run.
    pub mode: ReconcileMode,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// The owner the run was scoped to (every count below is of that
    /// owner's records only); `None`: every record.
    pub owner: Option<String>,
    /// Source files found (valid names, temporary files excluded).
    pub files_on_disk: usize,
    /// Documents in the index before the run.
    pub files_in_index: usize,
    /// Source files the index lacks.
    pub missing: Vec<String>,
    /// Source files whose content differs from what was indexed.
    pub stale: Vec<String>,
    /// Index entries whose source file is gone.
    pub orphaned: Vec<String>,
    /// Of those, the records with an active share link (`crate::share`):
    /// protected, never deleted.
    pub protected: Vec<String>,
    /// Records created (or, in a dry run, that would be).
    pub created: usize,
    /// Records refreshed (or would be).
    pub refreshed: usize,
    /// Records deleted (or would be).
    pub deleted: usize,
    /// Files that cannot be indexed (not text, or an invalid name), left alone.
    pub skipped: Vec<String>,
    /// Per-document failures; the run goes on past them.
    pub errors: Vec<String>,
}

impl ReconcileStats {
    /// True if the index and the files agree (nothing missing, stale or
    /// orphaned).
    pub fn in_agreement(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty() && self.orphaned.is_empty()
    }

    /// True if the run changed (or, dry, would change) something.
    pub fn changed(&self) -> bool {
        self.created + self.refreshed + self.deleted > 0
    }
}

impl Store {
    /// Compares `source/` with the index and, as the mode says, brings the
    /// index in line. See the module docs. Destructive modes without `force`
    /// fail with [`StoreError::ForceRequired`] and change nothing.
    pub fn reconcile(&mut self, options: ReconcileOptions) -> Result<ReconcileStats> {
        let ReconcileOptions {
            mode,
            dry_run,
            force,
            owner,
        } = options;
        if let Some(owner) = &owner {
            crate::owner::check_owner(owner)?;
        }
        // KNOWN BAD with `Flaw::CleanWithoutForce` (origins/3 without its
        // safety flag): a destructive mode runs without force.
        if mode.is_destructive() && !force && !dry_run && !flaw!(self.flaw, CleanWithoutForce) {
            return Err(StoreError::ForceRequired { mode: mode.to_string() });
        }
        if mode != ReconcileMode::Audit && !dry_run {
            self.require_writable()?;
            self.require_vectors("a reconcile")?;
        }
        let mut stats = self.audit_into(mode, dry_run)?;
        if let Some(owner) = owner
            && !flaw!(self.flaw, ReconcileIgnoresOwner)
        {
            self.scope_to(owner, &mut stats)?;
        }
        if mode.syncs() {
            for name in stats.missing.clone() {
                self.apply(&name, dry_run, &mut stats, |s| s.created += 1);
            }
            for name in stats.stale.clone() {
                self.apply(&name, dry_run, &mut stats, |s| s.refreshed += 1);
            }
        }
        // KNOWN BAD with `Flaw::SyncCleans`: a sync deletes orphans too.
        if mode.is_destructive() || (mode == ReconcileMode::Sync && flaw!(self.flaw, SyncCleans)) {
            for name in stats.orphaned.clone() {
                // KNOWN BAD with `Flaw::CleanDeletesShared`: the delete
                // pass does not look at share links.
                if stats.protected.contains(&name) && !flaw!(self.flaw, CleanDeletesShared) {
                    continue;
                }
                self.apply(&name, dry_run, &mut stats, |s| s.deleted += 1);
            }
        }
        Ok(stats)
    }

    /// Re-indexes one document (unless dry), counting it with `count` or
    /// recording its error.
    fn apply(&mut self, name: &str, dry_run: bool, stats: &mut ReconcileStats, count: fn(&mut ReconcileStats)) {
        if dry_run {
            count(stats);
            return;
        }
        match self.reindex(name) {
            Ok(_) => count(stats),
            Err(e) => stats.errors.push(format!("{name}: {e}")),
        }
    }

    /// Narrows what [`Store::audit_into`] found to `owner`'s records: the
    /// indexed documents whose owner it is (a file not indexed belongs to
    /// nobody yet). KNOWN BAD with `Flaw::ReconcileIgnoresOwner`: not
    /// called, so a scoped run acts on every record.
    fn scope_to(&self, owner: String, stats: &mut ReconcileStats) -> Result<()> {
        let owned: std::collections::BTreeSet<String> = self
            .owners()?
            .into_iter()
            .filter(|(_, of)| *of == owner)
            .map(|(name, _)| name)
            .collect();
        let in_scope = |names: &mut Vec<String>| names.retain(|name| owned.contains(name));
        in_scope(&mut stats.missing);
        in_scope(&mut stats.stale);
        in_scope(&mut stats.orphaned);
        in_scope(&mut stats.protected);
        in_scope(&mut stats.skipped);
        // Every owned record is indexed; its file is a document on disk
        // unless it is gone (orphaned) or no longer one (skipped).
        stats.files_in_index = owned.len();
        stats.files_on_disk = owned.len() - stats.orphaned.len() - stats.skipped.len();
        stats.owner = Some(owner);
        Ok(())
    }

    /// The comparison itself: what is missing, stale, orphaned, skipped.
    fn audit_into(&self, mode: ReconcileMode, dry_run: bool) -> Result<ReconcileStats> {
        let dir = self.layout.source_dir();
        let entries = self
            .fs
            .read_dir(&dir)
            .context(|| format!("listing {}", dir.display()))?;
        let indexed: BTreeMap<String, String> = self
            .index
            .files()?
            .into_iter()
            .map(|(name, row)| (name, row.hash))
            .collect();
        let mut stats = ReconcileStats {
            mode,
            dry_run,
            owner: None,
            files_on_disk: 0,
            files_in_index: indexed.len(),
            missing: Vec::new(),
            stale: Vec::new(),
            orphaned: Vec::new(),
            protected: Vec::new(),
            created: 0,
            refreshed: 0,
            deleted: 0,
            skipped: Vec::new(),
            errors: Vec::new(),
        };
        let mut on_disk = std::collections::BTreeSet::new();
        for entry in entries {
            if entry.kind != FileKind::File || entry.name.starts_with('.') {
                continue;
            }
            let Ok(name) = DocName::new(&entry.name) else {
                stats.skipped.push(entry.name);
                continue;
            };
            let Some(content) = self.read_source(&name)? else {
                continue;
            };
            if std::str::from_utf8(&content).is_err() {
                stats.skipped.push(entry.name);
                continue;
            }
            stats.files_on_disk += 1;
            match indexed.get(name.as_str()) {
                None => stats.missing.push(entry.name.clone()),
                Some(hash) if *hash != content_hash(&content) => stats.stale.push(entry.name.clone()),
                Some(_) => {}
            }
            on_disk.insert(entry.name);
        }
        stats.orphaned = indexed
            .keys()
            .filter(|name| !on_disk.contains(*name))
            .cloned()
            .collect();
        // A file that cannot be indexed but was indexed once is stale, not orphaned.
        stats.orphaned.retain(|name| !stats.skipped.contains(name));
        let links = self.share_links()?;
        stats.protected = stats
            .orphaned
            .iter()
            .filter(|name| links.contains(*name))
            .cloned()
            .collect();
        Ok(stats)
    }
}
