//! Known-bad designs, kept only to prove that Tearline's checks catch them.
//!
//! Each [`Flaw`] is one design an origin document proposed (or a defect the
//! journal tests switch on), implemented as a small branch at the one place
//! where it differs from the real design. Only with the `flawed-variants`
//! cargo feature; a store selects one with [`crate::StoreOptions::flaw`], and
//! the harness knows each as the store `refstore/<name>`
//! ([`Flaw::store_name`]), which must break one of [`Flaw::breaks`]. Never
//! enable in a build that stores data.

use std::path::PathBuf;

use tearline_model::Invariant;

use crate::layout::Layout;

/// One deliberate defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flaw {
    /// origins/1: a full rebuild drops every row of the live index, then
    /// re-indexes the source files in place, one commit per document (the
    /// rebuild that loses everything when interrupted).
    DropAndReindex,
    /// origins/1: the shadow rebuild's swap by two renames of generation
    /// directories (the live one to a backup name, the new one to the live
    /// name), without a directory fsync. A power cut can leave no live
    /// generation, or the old one after an acknowledged rebuild. Its open
    /// is the one of its time: it does not rebuild a missing live
    /// generation from the sources (`crate::repair`), which would hide the
    /// first.
    TwoRenameSwap,
    /// origins/2: index and vector store written without intents or
    /// recovery: the index rows first, then the vector, and a failed vector
    /// write is ignored ("failure is acceptable"); a writable open neither
    /// resolves intents nor sweeps orphans.
    NoIntents,
    /// origins/4: a mutation's files published by rename without fsyncing
    /// `source/` before the commit.
    PublishWithoutFsync,
    /// origins/4: publishing across devices copies the staged file and
    /// renames the copy into place without fsyncing it (the EXDEV fallback
    /// without fsync).
    CopyWithoutFsync,
    /// A journal rollback restores no file (it only marks and cleans up).
    SkipRollback,
    /// A read-only open serves whatever is on disk, unfinished mutation
    /// journals or not: a reader during an import (or after one was killed
    /// in its index phase) sees part of it (origins/1: "API returns
    /// incomplete results until manual intervention").
    ReaderIgnoresJournal,
    /// A mutation whose indexing fails after its journal committed reports
    /// that nothing was changed; the next drain applies it anyway (the
    /// import that said "disk is full" and was applied by a later `rm`).
    FailAfterCommit,
    /// The space reserve is never used: on a device that stays full,
    /// recovery cannot write, every writable open fails, and so does the
    /// removal that would free space (the store wedged until the disk grows).
    NoReserve,
    /// Every regular file with a valid name in `source/` is taken as a
    /// document, and indexing one that is not text fails the operation: one
    /// such file makes every rebuild and sync fail.
    StrictSources,
    /// origins/5: a read-only open (no lock) that finds a newer schema
    /// deletes the index and recreates it anyway.
    WipeWithoutLock,
    /// origins/5, by truncation: a read-only open (no lock) that finds a
    /// newer schema truncates the index file in place (`O_TRUNC`) and
    /// recreates its tables: nothing is unlinked or renamed, so only a lock
    /// invariant that counts truncation sees the wipe.
    TruncateWithoutLock,
    /// origins/5: an in-place migration stamps the new version first, in its
    /// own transaction, and runs the step's SQL afterwards.
    StampWithoutMigration,
    /// origins/3: reconcile's destructive modes without the force requirement.
    CleanWithoutForce,
    /// Storm Cloud before its fix: the clean's delete pass ignores share
    /// links and deletes a record someone still links to.
    CleanDeletesShared,
    /// A sync that also cleans: records whose file is gone are deleted by a
    /// mode that must only add and refresh (and needs no force). Each entry
    /// left agrees with its file, so only a check of the exact state right
    /// after the sync returns sees it.
    SyncCleans,
    /// A mutation that succeeded leaves its (committed) journal behind for
    /// the next writable open to drain: every reader is refused ("a
    /// mutation is unfinished") until then, though nothing is.
    KeepsFinishedJournal,
    /// A reconcile scoped to one owner forgets its scope (the user filter
    /// applied to the listing but not to the passes): a clean for one user
    /// deletes every user's orphaned records.
    ReconcileIgnoresOwner,
    /// A share link written in place and acknowledged without an fsync: a
    /// power cut loses the acknowledged link, and the record is unprotected.
    ShareWithoutFsync,
    /// The vector store's torn-tail repair cuts one byte too many: the last
    /// whole record loses its final byte, which only the next open sees.
    RepairOneByteShort,
    /// The write lock is a `flock` of a lock file (`<root>/store.lock`),
    /// trusting the path: if another process removes or replaces the file
    /// while a writer holds it, the next writer locks a new file at the path
    /// and gets in beside the first.
    LockTrustsPath,
    /// fsyncgate: a failed fsync retried as if it had changed nothing. When
    /// the fsync of a mutation's staged file fails, this store fsyncs it
    /// again, gets 0, and carries on (publishes and commits). On Linux the
    /// failed fsync marked the dirty pages clean, so the retry makes nothing
    /// durable: a power cut later takes back the content of an acknowledged
    /// add or import (the real store fails the mutation and rolls it back).
    /// Caught only where the simulated fsync has Linux's semantics.
    RetriesFsync,
    /// An open that trusts its derived files: no check of the live
    /// generation (`CREATED`, SQLite's `integrity_check`, the index's tables) and
    /// no CRC check of vector records. A damaged index or vector segment is
    /// served as it reads: a wrong vector, a wrong answer, or a failure at
    /// the first query, never a repair from the source files.
    TrustsIndex,
    /// The old repair: a rebuild needs the live generation to open first, so
    /// a damaged live generation (index, vectors, `CURRENT`, `CREATED`) makes
    /// every writable open fail (with the damage named), `refstore rebuild
    /// --full` and `reconcile` included, until an operator edits `CURRENT`
    /// by hand: the store cannot be brought back from its source files.
    RebuildNeedsLive,
    /// The old open order: other generations are cleaned up (leftovers
    /// removed, backups expired by the retention policy, counted from the
    /// generation `CURRENT` names) before the live one is checked, and a
    /// damaged live generation then fails the open. With `CURRENT` naming a
    /// generation that does not exist, the open deletes the backup and then
    /// fails: a failed open that changed something.
    CleansBeforeCheck,
    /// A vector store outage is found only when a call to it fails: a
    /// writable open starts its recovery, and a mutation its journal, and
    /// each fails midway (having rolled back what it had begun), saying only
    /// "vector store unavailable" with no word of what was changed.
    IgnoresOutage,
    /// A journal that does not parse, or that the device cannot read, fails
    /// every writable open instead of being quarantined: one damaged record
    /// of an interrupted mutation wedges the store.
    StrictJournals,
    /// A source file listed is taken to be there: one that vanishes between
    /// the listing and the read (another process removed it) fails the
    /// whole rebuild or sync.
    ListedMeansThere,
    /// An import reads each input file once: a bit flipped in that one
    /// transfer is stored as the document's source, the truth, for good.
    ReadsInputOnce,
    /// A writable open that finds the vector store down refuses before it
    /// recovers anything: a mutation interrupted before the outage stays
    /// unfinished, and every reader is refused ("a mutation is unfinished")
    /// for as long as the outage lasts.
    RecoveryNeedsVectors,
    /// A name in `source/` that is not a document name (one that is not
    /// UTF-8, listed with U+FFFD) fails every scan of the sources (sync,
    /// incremental rebuild, verify) instead of being skipped with a word.
    StrictNames,
    /// Every entry of `source/` that is not a directory is read as a
    /// document, a symbolic link followed: one that loops (`ELOOP`) fails
    /// every scan of the sources.
    ReadsEveryEntry,
    /// Vector segment rollover that does not advance the segment counter:
    /// the new segment takes the full one's name and truncates it. The
    /// writer's memory keeps every vector, so the writer sees nothing; the
    /// vectors acknowledged in the old segment are gone from the disk, for
    /// a reader and for the next open.
    SegmentNameReused,
}

/// The lock file [`Flaw::LockTrustsPath`] locks.
pub(crate) fn trusted_lock_file(layout: &Layout) -> PathBuf {
    layout.root().join("store.lock")
}

impl Flaw {
    /// Every flaw, in the order the harness lists them.
    pub const ALL: [Flaw; 33] = [
        Flaw::DropAndReindex,
        Flaw::TwoRenameSwap,
        Flaw::NoIntents,
        Flaw::PublishWithoutFsync,
        Flaw::CopyWithoutFsync,
        Flaw::SkipRollback,
        Flaw::ReaderIgnoresJournal,
        Flaw::FailAfterCommit,
        Flaw::NoReserve,
        Flaw::StrictSources,
        Flaw::WipeWithoutLock,
        Flaw::TruncateWithoutLock,
        Flaw::StampWithoutMigration,
        Flaw::CleanWithoutForce,
        Flaw::RepairOneByteShort,
        Flaw::LockTrustsPath,
        Flaw::RetriesFsync,
        Flaw::TrustsIndex,
        Flaw::RebuildNeedsLive,
        Flaw::CleansBeforeCheck,
        Flaw::IgnoresOutage,
        Flaw::StrictJournals,
        Flaw::ListedMeansThere,
        Flaw::ReadsInputOnce,
        Flaw::RecoveryNeedsVectors,
        Flaw::StrictNames,
        Flaw::ReadsEveryEntry,
        Flaw::SegmentNameReused,
        Flaw::CleanDeletesShared,
        Flaw::ShareWithoutFsync,
        Flaw::ReconcileIgnoresOwner,
        Flaw::SyncCleans,
        Flaw::KeepsFinishedJournal,
    ];

    /// The store's name with this flaw, for `--store` and reports
    /// (`refstore/drop-and-reindex`).
    pub fn store_name(&self) -> &'static str {
        match self {
            Flaw::DropAndReindex => "refstore/drop-and-reindex",
            Flaw::TwoRenameSwap => "refstore/two-rename-swap",
            Flaw::NoIntents => "refstore/no-intents",
            Flaw::PublishWithoutFsync => "refstore/publish-without-fsync",
            Flaw::CopyWithoutFsync => "refstore/copy-without-fsync",
            Flaw::SkipRollback => "refstore/skip-rollback",
            Flaw::ReaderIgnoresJournal => "refstore/reader-ignores-journal",
            Flaw::FailAfterCommit => "refstore/fail-after-commit",
            Flaw::NoReserve => "refstore/no-reserve",
            Flaw::StrictSources => "refstore/strict-sources",
            Flaw::WipeWithoutLock => "refstore/wipe-without-lock",
            Flaw::TruncateWithoutLock => "refstore/truncate-without-lock",
            Flaw::StampWithoutMigration => "refstore/stamp-without-migration",
            Flaw::CleanWithoutForce => "refstore/clean-without-force",
            Flaw::CleanDeletesShared => "refstore/clean-deletes-shared",
            Flaw::ShareWithoutFsync => "refstore/share-without-fsync",
            Flaw::ReconcileIgnoresOwner => "refstore/reconcile-ignores-owner",
            Flaw::SyncCleans => "refstore/sync-cleans",
            Flaw::KeepsFinishedJournal => "refstore/keeps-finished-journal",
            Flaw::RepairOneByteShort => "refstore/repair-one-byte-short",
            Flaw::LockTrustsPath => "refstore/lock-trusts-path",
            Flaw::RetriesFsync => "refstore/retries-fsync",
            Flaw::TrustsIndex => "refstore/trusts-index",
            Flaw::RebuildNeedsLive => "refstore/rebuild-needs-live",
            Flaw::CleansBeforeCheck => "refstore/cleans-before-check",
            Flaw::IgnoresOutage => "refstore/ignores-outage",
            Flaw::StrictJournals => "refstore/strict-journals",
            Flaw::ListedMeansThere => "refstore/listed-means-there",
            Flaw::ReadsInputOnce => "refstore/reads-input-once",
            Flaw::RecoveryNeedsVectors => "refstore/recovery-needs-vectors",
            Flaw::StrictNames => "refstore/strict-names",
            Flaw::ReadsEveryEntry => "refstore/reads-every-entry",
            Flaw::SegmentNameReused => "refstore/segment-name-reused",
        }
    }

    /// The invariants a harness with teeth finds broken by this flaw (any
    /// one of them is a catch).
    pub fn breaks(&self) -> &'static [Invariant] {
        match self {
            Flaw::DropAndReindex | Flaw::TwoRenameSwap => &[Invariant::CompleteDatabase, Invariant::CommittedDurable],
            Flaw::NoIntents => &[Invariant::NoOrphanVectors],
            Flaw::PublishWithoutFsync | Flaw::CopyWithoutFsync => &[Invariant::CommittedDurable, Invariant::AtomicOp],
            // Its "rollback" says nothing changed, and the files stay new.
            Flaw::SkipRollback => &[
                Invariant::CommittedDurable,
                Invariant::AtomicOp,
                Invariant::FailedMeansNotApplied,
            ],
            Flaw::ReaderIgnoresJournal => &[Invariant::ReaderConsistent],
            Flaw::FailAfterCommit => &[Invariant::FailedMeansNotApplied],
            Flaw::NoReserve => &[Invariant::CompleteDatabase, Invariant::StaysServiceable],
            Flaw::StrictSources => &[Invariant::FilesystemWins],
            Flaw::WipeWithoutLock | Flaw::TruncateWithoutLock | Flaw::LockTrustsPath => &[Invariant::NoWipeWithoutLock],
            Flaw::StampWithoutMigration => &[Invariant::SchemaNeverMisStamped],
            Flaw::CleanWithoutForce => &[Invariant::NoDestructiveWithoutForce],
            Flaw::CleanDeletesShared | Flaw::ShareWithoutFsync => &[Invariant::ProtectedRecordsKept],
            Flaw::ReconcileIgnoresOwner => &[Invariant::OwnerScopeKept],
            Flaw::SyncCleans => &[Invariant::CommittedDurable],
            Flaw::KeepsFinishedJournal => &[Invariant::ReaderConsistent, Invariant::JournalDrained],
            Flaw::RepairOneByteShort => &[Invariant::RecoveryIdempotent],
            // The acknowledged add whose data a failed fsync dropped is gone
            // after the next power cut.
            Flaw::RetriesFsync => &[Invariant::CommittedDurable, Invariant::AtomicOp],
            Flaw::TrustsIndex => &[Invariant::NoSilentCorruption],
            Flaw::RebuildNeedsLive => &[Invariant::RebuildableFromSource],
            Flaw::CleansBeforeCheck => &[Invariant::FailedOpenChangesNothing],
            Flaw::IgnoresOutage => &[Invariant::StaysServiceable, Invariant::FailedOpenChangesNothing],
            Flaw::StrictJournals => &[Invariant::RebuildableFromSource, Invariant::CompleteDatabase],
            Flaw::ListedMeansThere => &[Invariant::FilesystemWins],
            Flaw::ReadsInputOnce => &[Invariant::NoSilentCorruption],
            Flaw::RecoveryNeedsVectors => &[Invariant::StaysServiceable],
            Flaw::StrictNames | Flaw::ReadsEveryEntry => &[Invariant::FilesystemWins],
            // Right after an add, a reader finds vectors missing.
            Flaw::SegmentNameReused => &[Invariant::NoOrphanVectors],
        }
    }
}
