//! The store's exclusive write lock, and the permission to wipe that only it
//! can hand out.
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
use crate::layout::Layout;

/// The held write lock. Released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _guard: Box<dyn LockGuard>,
}

impl StoreLock {
    /// Takes the lock without waiting; `Locked` if another process holds it.
    pub fn acquire(fs: &dyn Fs, layout: &Layout) -> Result<StoreLock> {
        let path = layout.lock_file();
        match fs.try_lock(&path) {
            Ok(guard) => Ok(StoreLock { _guard: guard }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(StoreError::Locked { lock: path }),
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
