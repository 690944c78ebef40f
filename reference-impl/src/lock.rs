//! The store's exclusive write lock, and the permission to wipe that only it
//! can hand out.
//!
//! # What is locked
//!
//! The lock is an exclusive `flock(2)` ([`Fs::try_lock`]) of the store's
//! root directory itself ([`Layout::lock_path`]), taken without waiting by
//! every writable open (and by `init`), held for as long as the store is
//! open, and released by the kernel when the holder closes it or dies: a
//! `kill -9` leaves nothing stale behind, and there is never a lock file to
//! clean up by hand. The store never creates, deletes or renames what it
//! locks.
//!
//! Why the directory and not a lock file: a lock belongs to an inode, not to
//! a name. A lock file can be unlinked or replaced while its holder works
//! (an operator "cleaning a stale lock"); the holder keeps a lock on an
//! inode no longer at the path, and the next writer creates and locks a new
//! file there and gets in beside it (the harness's `lock-file-removed` and
//! `lock-file-replaced` scenarios; the design is kept as
//! `Flaw::LockTrustsPath`). The root directory holds the store, so it cannot
//! be removed or have another directory renamed over it while the store
//! exists: whoever opens the store at that path locks the same inode.
//! (Moving the whole root away and creating another store at its path makes
//! a different store.) Read-only opens take no lock.
//!
//! Wiping an index (to rebuild it from the source files) destroys data that a
//! concurrent reader or writer may be using, so it is allowed only to the
//! process that holds the lock. That rule is in the types: every function that
//! wipes takes a [`WipePermission`], and the only way to make one is
//! [`StoreLock::wipe_permission`].

use std::io;
use std::path::Path;

use tearline_sim_fs::{Fs, FsExt, LockGuard};

use crate::error::{Result, StoreError};
#[cfg(doc)]
use crate::layout::Layout;

/// The held write lock. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _guard: Box<dyn LockGuard>,
}

impl StoreLock {
    /// Takes the lock on `path` (the store's [`Layout::lock_path`]) without
    /// waiting; `Locked` if another process holds it.
    pub fn acquire(fs: &dyn Fs, path: &Path) -> Result<StoreLock> {
        match fs.try_lock(path) {
            Ok(guard) => Ok(StoreLock { _guard: guard }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(StoreError::Locked {
                lock: path.to_path_buf(),
            }),
            Err(source) => Err(StoreError::Io {
                context: format!("taking the lock {}", path.display()),
                source,
            }),
        }
    }

    /// The permission to wipe, valid while this lock is held.
    pub fn wipe_permission(&self) -> WipePermission<'_> {
        WipePermission { _lock: self }
    }
}

/// Proof that the caller holds the store's lock: required by every operation
/// that wipes an index. It cannot be made any other way.
#[derive(Debug, Clone, Copy)]
pub struct WipePermission<'lock> {
    _lock: &'lock StoreLock,
}

impl WipePermission<'_> {
    /// Removes a directory tree ([`FsExt::remove_tree`]). Only the lock
    /// holder may. `ENOENT` if `dir` does not exist.
    pub fn remove_tree(&self, fs: &dyn Fs, dir: &Path) -> io::Result<()> {
        if fs.remove_tree(dir)? {
            Ok(())
        } else {
            Err(tearline_sim_fs::errno::enoent())
        }
    }
}
