//! The space reserve: a file of [`RESERVE_BYTES`] zeros kept under the root
//! (`<root>/RESERVE`), so that a store whose device is full can still
//! recover and remove documents.
//!
//! Recovery (resolving an intent, rolling a journal back or forward) and a
//! removal both write before they free anything: SQLite writes its rollback
//! journal, the mutation its journal file. On a device that is full, and
//! stays full, they would fail forever, and the one command that frees
//! space (`rm`) with them. So the store keeps space aside:
//!
//! - `init` creates the reserve, and every writable open recreates it when
//!   it is missing and there is room (temp file + fsync + rename + directory
//!   fsync; a temp file left by a crash is a leftover the next writable open
//!   removes).
//! - A writable open whose recovery fails for lack of space releases the
//!   reserve (unlink + directory fsync) and recovers again.
//! - A removal on a device with less room than the reserve releases the
//!   reserve first (a removal writes before it frees).
//!
//! Without a reserve (it was used and there is no room to recreate it) the
//! store works as before; [`crate::OpenReport::reserve_kept`] says which.

use std::io;

use tearline_sim_fs::{Fs, FsExt};

use crate::error::{Context, Named, Result, StoreError};
use crate::layout::Layout;

/// The reserve's size: room for recovery's and a removal's writes (SQLite's
/// rollback journal for one transaction, a mutation journal) on a store of
/// thousands of documents.
pub const RESERVE_BYTES: u64 = 64 * 1024;

/// The reserve's temporary name while it is written.
pub(crate) const RESERVE_TMP: &str = ".RESERVE.tmp";

/// Makes sure the reserve exists: `Ok(true)` if it does (or was just
/// created), `Ok(false)` if there is no room for it now (nothing is left
/// behind).
pub(crate) fn ensure(fs: &dyn Fs, layout: &Layout) -> Result<bool> {
    let path = layout.reserve_file();
    match fs.metadata(&path) {
        Ok(meta) if meta.len == RESERVE_BYTES => return Ok(true),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StoreError::Io {
                context: format!("looking for {}", path.display()),
                source,
            });
        }
    }
    let zeros = vec![0u8; RESERVE_BYTES as usize];
    match fs.write_file_atomic(&path, &zeros) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::StorageFull => {
            let tmp = layout.root().join(RESERVE_TMP);
            if fs
                .remove_file_if_exists(&tmp)
                .context(|| format!("removing {}", tmp.display()))?
            {
                fs.sync_dir_named(layout.root()).named()?;
            }
            Ok(false)
        }
        Err(source) => Err(StoreError::Io {
            context: format!("creating the space reserve {}", path.display()),
            source,
        }),
    }
}

/// Gives the reserve's space back to the device: `Ok(true)` if there was a
/// reserve to release.
pub(crate) fn release(fs: &dyn Fs, layout: &Layout) -> Result<bool> {
    let path = layout.reserve_file();
    if !fs
        .remove_file_if_exists(&path)
        .context(|| format!("releasing the space reserve {}", path.display()))?
    {
        return Ok(false);
    }
    fs.sync_dir_named(layout.root()).named()?;
    Ok(true)
}

/// Whether `error` (or what caused it) is the device being full.
pub(crate) fn out_of_space(error: &StoreError) -> bool {
    match error {
        StoreError::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
        StoreError::Sqlite {
            source: rusqlite::Error::SqliteFailure(failure, _),
            ..
        } => failure.code == rusqlite::ErrorCode::DiskFull,
        StoreError::Vectors {
            source: crate::vectors::VectorError::Io(source),
            ..
        } => source.kind() == io::ErrorKind::StorageFull,
        StoreError::NothingChanged { cause }
        | StoreError::CommittedNotIndexed { cause, .. }
        | StoreError::RebuildFailed { cause, .. }
        | StoreError::SwitchUncertain { cause, .. } => out_of_space(cause),
        StoreError::RollbackFailed { last, cause, .. } => {
            out_of_space(last) || cause.as_deref().is_some_and(out_of_space)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_found_through_causes() {
        let full = || StoreError::Io {
            context: "writing".into(),
            source: tearline_sim_fs::errno::enospc(),
        };
        assert!(out_of_space(&full()));
        assert!(out_of_space(&StoreError::NothingChanged {
            cause: Box::new(full())
        }));
        let eio = StoreError::Io {
            context: "writing".into(),
            source: tearline_sim_fs::errno::eio(),
        };
        assert!(!out_of_space(&eio));
        assert!(!out_of_space(&StoreError::NothingChanged { cause: Box::new(eio) }));
    }
}
