//! The reference store's errors: what went wrong, in words a caller can act on.

use std::fmt;
use std::io;
use std::path::PathBuf;

use tearline_sim_fs::PathError;

use crate::vectors::VectorError;

/// Why a store operation failed. Every variant says what to do next.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the store's write lock.
    Locked {
        /// What is locked (the store's root directory).
        lock: PathBuf,
    },
    /// There is no store at this root (run `init`).
    NotInitialized {
        /// The root looked at.
        root: PathBuf,
    },
    /// A store already exists at this root.
    AlreadyInitialized {
        /// The root.
        root: PathBuf,
    },
    /// The index's schema cannot be used as it is and must be rebuilt from
    /// the source files, which only a writable open that asks for it may do.
    RebuildRequired {
        /// The schema version found on disk.
        found: u32,
        /// The version this build uses.
        expected: u32,
        /// Why a rebuild is needed.
        reason: String,
    },
    /// A document name the store cannot hold.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An owner id the store cannot hold (see `crate::owner`).
    InvalidOwner {
        /// The id given.
        owner: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A document that is not UTF-8 text.
    NotText {
        /// The document's name.
        name: String,
    },
    /// No document of that name.
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A destructive operation was asked for without `force`.
    ForceRequired {
        /// The operation (e.g. the reconcile mode).
        mode: String,
    },
    /// The store's own files are damaged in a way it cannot repair.
    Corrupt {
        /// What is damaged and how.
        what: String,
    },
    /// The filesystem failed.
    Io {
        /// What the store was doing.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// SQLite failed.
    Sqlite {
        /// What the store was doing.
        context: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// The vector store failed.
    Vectors {
        /// What the store was doing.
        context: String,
        /// The error.
        source: VectorError,
    },
    /// The vector store could not be reached when an operation that needs
    /// it began, so it was refused before it changed anything (an outage is
    /// met up front, not halfway through a recovery or a mutation).
    VectorStoreDown {
        /// The refused operation (`a writable open's recovery`).
        during: String,
        /// What the vector store said.
        why: String,
    },
    /// A full rebuild failed before its new generation went live. The live
    /// generation is unchanged and still serves; the new one was removed
    /// (or, if removing it failed too, the next writable open removes it).
    /// Fix the cause and rebuild again.
    RebuildFailed {
        /// The live generation, unchanged.
        live: String,
        /// The generation that was being built.
        attempted: String,
        /// Why it failed.
        cause: Box<StoreError>,
    },
    /// A generation just built did not pass verification, so it never went live.
    GenerationInvalid {
        /// The generation.
        generation: String,
        /// What is wrong with it.
        problems: Vec<String>,
    },
    /// Making a rebuilt generation live failed half-way and could not be
    /// undone: `CURRENT` may name either generation after a crash (both are
    /// complete). The handle no longer writes; reopen the store.
    SwitchUncertain {
        /// The generation that was live.
        live: String,
        /// The generation being made live.
        attempted: String,
        /// Why the switch failed.
        cause: Box<StoreError>,
    },
    /// An interrupted mutation could not be rolled back, even after retries.
    /// Its journal stays `active`; the next writable open (or mutation)
    /// retries the rollback before anything else.
    RollbackFailed {
        /// The journal file.
        journal: PathBuf,
        /// How many rollbacks were tried.
        attempts: u32,
        /// The failure that made the mutation roll back, if a mutation did
        /// (`None` when draining a journal left by an earlier process).
        cause: Option<Box<StoreError>>,
        /// Why the last rollback failed.
        last: Box<StoreError>,
    },
    /// An import was refused before it changed anything.
    ImportRefused {
        /// The directory or file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A mutation failed and was rolled back (or had not touched anything
    /// yet): nothing of it was applied, and no later recovery applies it.
    NothingChanged {
        /// Why it failed.
        cause: Box<StoreError>,
    },
    /// A mutation's files were committed, but bringing the index in line
    /// with them failed: the mutation **is** applied, and the next writable
    /// open (or mutation) finishes indexing it. Not a failure to retry.
    CommittedNotIndexed {
        /// What was committed (`import 3 documents`).
        mutation: String,
        /// The journal that finishes it.
        journal: PathBuf,
        /// Why indexing failed.
        cause: Box<StoreError>,
    },
    /// A read-only open (or read) found unfinished work: a writer is in the
    /// middle of a mutation, or one was interrupted and a writable open must
    /// recover it. Serving now could show half of it, so nothing is served.
    RecoveryPending {
        /// What is unfinished.
        what: String,
    },
    /// A file the store derives from the source files (`CURRENT`, a
    /// generation's `CREATED`, its index or a vector segment) is damaged: it
    /// does not parse, fails its checksum or SQLite's integrity check, or is
    /// missing. Nothing is served from it. The source files are the truth: a
    /// writable open rebuilds from them (read-only opens, which hold no
    /// lock, refuse with this error and change nothing).
    Damaged {
        /// The damaged file (or directory).
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// What a failed call did to the store's content, as far as the store knows
/// (in JSON: `nothing-applied`, `unknown`, `recovery-pending`, `damaged`,
/// `unavailable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureEffect {
    /// Nothing of the call was applied, nor will any recovery apply it.
    NothingApplied,
    /// It may have been applied, or may be applied by the next recovery.
    Unknown,
    /// A read refused: unfinished work must be finished first.
    RecoveryPending,
    /// Refused: a derived file is damaged (see [`StoreError::Damaged`]);
    /// nothing was changed, and a writable open repairs it.
    Damaged,
    /// Refused: the vector store cannot be reached (see
    /// [`StoreError::VectorStoreDown`]); nothing was changed.
    Unavailable,
}

impl StoreError {
    /// What the failed call did: callers (and the harness) may rely on
    /// [`FailureEffect::NothingApplied`].
    pub fn effect(&self) -> FailureEffect {
        match self {
            StoreError::Locked { .. }
            | StoreError::NotInitialized { .. }
            | StoreError::AlreadyInitialized { .. }
            | StoreError::InvalidName { .. }
            | StoreError::InvalidOwner { .. }
            | StoreError::NotText { .. }
            | StoreError::NotFound { .. }
            | StoreError::ForceRequired { .. }
            | StoreError::RebuildFailed { .. }
            | StoreError::GenerationInvalid { .. }
            | StoreError::ImportRefused { .. }
            | StoreError::NothingChanged { .. } => FailureEffect::NothingApplied,
            // Only a writable open that may rebuild brings the index to this
            // build's schema: until one has, nothing is served.
            StoreError::RecoveryPending { .. } | StoreError::RebuildRequired { .. } => FailureEffect::RecoveryPending,
            StoreError::Damaged { .. } => FailureEffect::Damaged,
            StoreError::VectorStoreDown { .. } => FailureEffect::Unavailable,
            StoreError::Corrupt { .. }
            | StoreError::Io { .. }
            | StoreError::Sqlite { .. }
            | StoreError::Vectors { .. }
            | StoreError::SwitchUncertain { .. }
            | StoreError::RollbackFailed { .. }
            | StoreError::CommittedNotIndexed { .. } => FailureEffect::Unknown,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { lock } => write!(
                f,
                "the store is locked by another process: it holds the write lock on {}, which is released \
                 when that process exits (there is nothing to remove by hand); wait for it to finish, or \
                 open read-only",
                lock.display()
            ),
            StoreError::NotInitialized { root } => {
                write!(f, "no store at {} (run `refstore init` there first)", root.display())
            }
            StoreError::AlreadyInitialized { root } => write!(f, "a store already exists at {}", root.display()),
            StoreError::RebuildRequired {
                found,
                expected,
                reason,
            } => write!(
                f,
                "the index has schema version {found}, this build uses {expected}: {reason}; \
                 open it writable with rebuild allowed to rebuild it from the source files"
            ),
            StoreError::InvalidName { name, reason } => write!(f, "invalid document name {name:?}: {reason}"),
            StoreError::InvalidOwner { owner, reason } => write!(f, "invalid owner {owner:?}: {reason}"),
            StoreError::NotText { name } => write!(f, "document {name:?} is not UTF-8 text"),
            StoreError::NotFound { name } => write!(f, "no document named {name:?}"),
            StoreError::ForceRequired { mode } => write!(
                f,
                "{mode} deletes index records and needs --force (preview it with --dry-run); nothing was changed"
            ),
            StoreError::Corrupt { what } => write!(f, "the store is damaged: {what}"),
            StoreError::Io { context, source } => write!(f, "{context}: {source}"),
            StoreError::Sqlite { context, source } => write!(f, "{context}: {source}"),
            StoreError::Vectors { context, source } => write!(f, "{context}: {source}"),
            StoreError::VectorStoreDown { during, why } => write!(
                f,
                "the vector store cannot be reached ({why}), and {during} needs it: nothing was changed; \
                 reads of the index (get, list, status) still work; retry once the vector store is back"
            ),
            StoreError::RebuildFailed { live, attempted, cause } => write!(
                f,
                "rebuilding the index as {attempted} failed, so {live} is still live and unchanged: {cause}"
            ),
            StoreError::GenerationInvalid { generation, problems } => write!(
                f,
                "the rebuilt {generation} failed verification and was not made live: {}",
                problems.join("; ")
            ),
            StoreError::SwitchUncertain { live, attempted, cause } => write!(
                f,
                "switching from {live} to {attempted} failed and could not be undone ({cause}); \
                 either may be live after a crash, both are complete; reopen the store to continue"
            ),
            StoreError::RollbackFailed {
                journal,
                attempts,
                cause,
                last,
            } => {
                if let Some(cause) = cause {
                    write!(f, "the mutation failed ({cause}) and ")?;
                }
                write!(
                    f,
                    "rolling back the mutation of journal {} failed {attempts} times, last with: {last}; \
                     the journal stays active and the next writable open retries the rollback",
                    journal.display()
                )
            }
            StoreError::ImportRefused { path, reason } => {
                write!(f, "import refused, nothing was changed: {}: {reason}", path.display())
            }
            StoreError::NothingChanged { cause } => write!(f, "{cause}; nothing was changed"),
            StoreError::CommittedNotIndexed {
                mutation,
                journal,
                cause,
            } => write!(
                f,
                "the {mutation} is committed (its source files are in place; journal {}), but indexing it \
                 failed: {cause}; it is applied, and the next writable open finishes indexing it",
                journal.display()
            ),
            StoreError::RecoveryPending { what } => write!(
                f,
                "not serving a partial state: {what}; retry when the writer has finished, or open the \
                 store writable (any write command) to recover it"
            ),
            StoreError::Damaged { path, detail } => write!(
                f,
                "the store's {} is damaged ({detail}); nothing was served from it and nothing was changed; \
                 the source files are the truth: a writable open (any `refstore` write command, or \
                 `refstore rebuild --full`) rebuilds the index from them and keeps the damaged generation \
                 aside for inspection",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Sqlite { source, .. } => Some(source),
            StoreError::Vectors { source, .. } => Some(source),
            StoreError::RebuildFailed { cause, .. } | StoreError::SwitchUncertain { cause, .. } => Some(cause.as_ref()),
            StoreError::RollbackFailed { last, .. } => Some(last.as_ref()),
            StoreError::NothingChanged { cause } | StoreError::CommittedNotIndexed { cause, .. } => {
                Some(cause.as_ref())
            }
            _ => None,
        }
    }
}

/// Attaches what the store was doing to a lower-level error.
pub(crate) trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

/// An error of one of `FsExt`'s `*_named` helpers already says what was done
/// to which path (a [`PathError`]): that, the innermost and most specific
/// account, becomes the context, and the kernel's error its source.
impl<T> Context<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|error| match PathError::unwrap_from(error) {
            Ok(PathError { doing, source }) => StoreError::Io { context: doing, source },
            Err(source) => StoreError::Io {
                context: context(),
                source,
            },
        })
    }
}

/// [`StoreError`] from the result of one of `FsExt`'s `*_named` helpers
/// (`sync_dir_named`), whose error names its path itself.
pub(crate) trait Named<T> {
    /// The error as [`StoreError::Io`], its context the helper's own words.
    fn named(self) -> Result<T, StoreError>;
}

impl<T> Named<T> for io::Result<T> {
    fn named(self) -> Result<T, StoreError> {
        self.context(|| "the filesystem failed".to_string())
    }
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, VectorError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Vectors {
            context: context(),
            source,
        })
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn errors_cross_threads() {
        assert_send_sync::<StoreError>();
    }
}
