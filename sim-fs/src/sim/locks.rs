//! Locks: the whole-file exclusive lock ([`crate::Fs::try_lock`], traced as
//! `flock`/`funlock`) and byte-range locks ([`crate::FileHandle::lock_range`],
//! traced as `fcntl_lock`).
//!
//! A whole-file lock belongs to a process and goes when its guard drops, the
//! process dies or the machine reboots. A byte-range lock belongs to an open
//! handle and goes when the handle closes. Setting or clearing a byte range
//! over the ranges a handle already holds is [`set_range`], a pure function.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::image::Ino;
use super::trace::{Outcome, SyscallArgs, SyscallKind};
use super::world::{Call, HandleId, Pid, World, lock_world};
use crate::errno;
use crate::fs::{ByteRange, LockGuard, RangeLockMode};

/// One byte range locked by one open handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RangeLock {
    /// The handle holding it.
    pub(super) handle: HandleId,
    /// The bytes it covers.
    pub(super) range: ByteRange,
    /// A write lock (else a read lock).
    pub(super) exclusive: bool,
}

/// The holder of a file's whole-file lock.
#[derive(Clone, Debug)]
pub(super) struct FileLock {
    /// The process holding it.
    pub(super) pid: Pid,
    /// The guard that releases it (a guard of an older lock releases nothing).
    pub(super) guard: u64,
}

/// Sets `handle`'s lock over `range` to `mode` among the ranges `held` on one
/// file, as `fcntl(F_SETLK)` does: `EINVAL` for an empty range, `EWOULDBLOCK`
/// if another handle holds an overlapping range and either lock is exclusive
/// (an unlock never conflicts). Otherwise the handle's old coverage of the
/// range is removed, splitting a range that sticks out on either side, and
/// the new range added (unless unlocking). Adjacent ranges are not merged.
/// On an error `held` is unchanged.
pub(super) fn set_range(
    held: &mut Vec<RangeLock>,
    handle: HandleId,
    range: ByteRange,
    mode: RangeLockMode,
) -> io::Result<()> {
    if range.len == 0 {
        return Err(errno::einval());
    }
    let exclusive = mode == RangeLockMode::Exclusive;
    if mode != RangeLockMode::Unlock
        && held
            .iter()
            .any(|l| l.handle != handle && l.range.overlaps(&range) && (l.exclusive || exclusive))
    {
        return Err(errno::ewouldblock());
    }
    // Remove this handle's coverage of the range, splitting as needed.
    let mut kept = Vec::with_capacity(held.len() + 1);
    for lock in held.drain(..) {
        if lock.handle != handle || !lock.range.overlaps(&range) {
            kept.push(lock);
            continue;
        }
        if lock.range.start < range.start {
            kept.push(RangeLock {
                range: ByteRange::new(lock.range.start, range.start - lock.range.start),
                ..lock
            });
        }
        if lock.range.end() > range.end() {
            kept.push(RangeLock {
                range: ByteRange::new(range.end(), lock.range.end() - range.end()),
                ..lock
            });
        }
    }
    if mode != RangeLockMode::Unlock {
        kept.push(RangeLock {
            handle,
            range,
            exclusive,
        });
    }
    *held = kept;
    Ok(())
}

/// An exclusive lock on a simulated file.
pub(super) struct SimLock {
    pub(super) world: Arc<Mutex<World>>,
    pub(super) path: PathBuf,
    pub(super) ino: Ino,
    pub(super) guard: u64,
}

impl fmt::Debug for SimLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimLock")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LockGuard for SimLock {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut world = lock_world(&self.world);
        let Some(lock) = world.file_locks.get(&self.ino) else {
            return;
        };
        if lock.guard != self.guard {
            return;
        }
        let pid = lock.pid;
        world.file_locks.remove(&self.ino);
        let path = self.path.display().to_string();
        let call = Call {
            index: world.syscall_index,
            pid,
            op: SyscallKind::Unlock,
            path: &path,
            args: SyscallArgs::None,
        };
        // Every index has its snapshot, this one included.
        let index = world.snapshot_index();
        world.record_snapshot(index);
        world.syscall_index += 1;
        world.log(&call, Outcome::Ok, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(handle: HandleId, start: u64, len: u64, exclusive: bool) -> RangeLock {
        RangeLock {
            handle,
            range: ByteRange::new(start, len),
            exclusive,
        }
    }

    #[test]
    fn unlocking_the_middle_splits_a_range_in_two() {
        let mut held = vec![lock(1, 0, 100, false)];
        set_range(&mut held, 1, ByteRange::new(40, 20), RangeLockMode::Unlock).expect("unlock");
        assert_eq!(held, vec![lock(1, 0, 40, false), lock(1, 60, 40, false)]);
    }

    #[test]
    fn relocking_part_of_a_range_replaces_that_part() {
        let mut held = vec![lock(1, 0, 100, false)];
        set_range(&mut held, 1, ByteRange::new(90, 20), RangeLockMode::Exclusive).expect("upgrade");
        assert_eq!(held, vec![lock(1, 0, 90, false), lock(1, 90, 20, true)]);
    }

    #[test]
    fn adjacent_ranges_are_kept_apart() {
        let mut held = vec![lock(1, 0, 10, false)];
        set_range(&mut held, 1, ByteRange::new(10, 10), RangeLockMode::Shared).expect("extend");
        assert_eq!(held, vec![lock(1, 0, 10, false), lock(1, 10, 10, false)]);
    }

    #[test]
    fn shared_locks_share_and_exclusive_ones_conflict() {
        let mut held = vec![lock(1, 0, 10, false)];
        set_range(&mut held, 2, ByteRange::new(5, 10), RangeLockMode::Shared).expect("share");
        let before = held.clone();
        let err = set_range(&mut held, 3, ByteRange::new(9, 1), RangeLockMode::Exclusive).expect_err("conflict");
        assert_eq!(err.raw_os_error(), Some(libc::EWOULDBLOCK));
        assert_eq!(held, before);
        set_range(&mut held, 3, ByteRange::new(15, 1), RangeLockMode::Exclusive).expect("no overlap");
        set_range(&mut held, 3, ByteRange::new(0, 100), RangeLockMode::Unlock).expect("unlock never conflicts");
        assert_eq!(held, before);
    }

    #[test]
    fn an_empty_range_is_einval() {
        let mut held = Vec::new();
        let err = set_range(&mut held, 1, ByteRange::new(3, 0), RangeLockMode::Shared).expect_err("empty");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert!(held.is_empty());
    }
}
