//! The database-file locking protocol of the unix VFS, over
//! [`FileHandle::lock_range`].
//!
//! SQLite's five lock levels are encoded as byte-range locks in a region the
//! database never stores data in (the page holding `PENDING_BYTE` is never
//! used), exactly as `os_unix.c` encodes them, so a connection through this
//! bridge and one through the unix VFS exclude each other on a real disk:
//!
//! | level     | bytes held                                                |
//! |-----------|-----------------------------------------------------------|
//! | SHARED    | read lock on the shared range                             |
//! | RESERVED  | SHARED + write lock on `RESERVED_BYTE`                    |
//! | PENDING   | RESERVED + write lock on `PENDING_BYTE`                   |
//! | EXCLUSIVE | PENDING + write lock on the shared range                  |
//!
//! A reader takes a read lock on `PENDING_BYTE` while it acquires SHARED, so a
//! writer waiting for EXCLUSIVE (which holds PENDING) keeps new readers out.
//! Locks belong to the handle (open-file-description semantics), so two
//! connections conflict like two processes even within one process.

use std::os::raw::c_int;

use rusqlite::ffi;

use super::errors::{Code, lock_error};
use crate::fs::{ByteRange, FileHandle, RangeLockMode};

/// The first byte of the lock region (1 GiB), as SQLite's `PENDING_BYTE`.
const PENDING_BYTE: u64 = 0x4000_0000;
/// The byte a writer holds for the whole of its write transaction.
const RESERVED_BYTE: u64 = PENDING_BYTE + 1;
/// The first byte of the range readers share.
const SHARED_FIRST: u64 = PENDING_BYTE + 2;
/// The length of the range readers share.
const SHARED_SIZE: u64 = 510;

const PENDING: ByteRange = ByteRange::new(PENDING_BYTE, 1);
const RESERVED: ByteRange = ByteRange::new(RESERVED_BYTE, 1);
const SHARED: ByteRange = ByteRange::new(SHARED_FIRST, SHARED_SIZE);
const PENDING_AND_RESERVED: ByteRange = ByteRange::new(PENDING_BYTE, 2);
/// Every byte this protocol ever locks.
const WHOLE_REGION: ByteRange = ByteRange::new(PENDING_BYTE, 2 + SHARED_SIZE);

/// SQLite's lock levels, in increasing order of strength.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LockLevel {
    /// No lock.
    #[default]
    None,
    /// Reading.
    Shared,
    /// Reading, and intending to write.
    Reserved,
    /// Waiting for readers to leave before writing.
    Pending,
    /// Writing.
    Exclusive,
}

impl LockLevel {
    /// The level for one of SQLite's `SQLITE_LOCK_*` values.
    pub(crate) fn from_sqlite(level: c_int) -> Option<Self> {
        match level {
            ffi::SQLITE_LOCK_NONE => Some(Self::None),
            ffi::SQLITE_LOCK_SHARED => Some(Self::Shared),
            ffi::SQLITE_LOCK_RESERVED => Some(Self::Reserved),
            ffi::SQLITE_LOCK_PENDING => Some(Self::Pending),
            ffi::SQLITE_LOCK_EXCLUSIVE => Some(Self::Exclusive),
            _ => None,
        }
    }
}

/// The lock level one handle on a database file holds.
#[derive(Debug, Default)]
pub(crate) struct DbLock {
    level: LockLevel,
}

impl DbLock {
    /// The level currently held.
    #[cfg(test)]
    fn level(&self) -> LockLevel {
        self.level
    }

    /// Raises the lock to `target` (SHARED, RESERVED or EXCLUSIVE), as
    /// `unixLock`. `SQLITE_BUSY` if another handle is in the way. A failed
    /// attempt at EXCLUSIVE from RESERVED leaves PENDING held, so readers
    /// drain and a retry can succeed.
    pub(crate) fn lock(&mut self, file: &dyn FileHandle, target: LockLevel) -> Result<(), Code> {
        if self.level >= target {
            return Ok(());
        }
        match target {
            LockLevel::Shared => {
                set(file, PENDING, RangeLockMode::Shared)?;
                let shared = set(file, SHARED, RangeLockMode::Shared);
                let released = file.lock_range(PENDING, RangeLockMode::Unlock);
                shared?;
                released.map_err(|_| ffi::SQLITE_IOERR_UNLOCK)?;
            }
            LockLevel::Reserved if self.level == LockLevel::Shared => {
                set(file, RESERVED, RangeLockMode::Exclusive)?;
            }
            LockLevel::Exclusive if self.level != LockLevel::None => {
                if self.level == LockLevel::Reserved {
                    set(file, PENDING, RangeLockMode::Exclusive)?;
                    self.level = LockLevel::Pending;
                }
                set(file, SHARED, RangeLockMode::Exclusive)?;
            }
            // SQLite never asks for these transitions.
            _ => return Err(ffi::SQLITE_IOERR_LOCK),
        }
        self.level = target;
        Ok(())
    }

    /// Lowers the lock to `target` (SHARED or NONE), as `posixUnlock`.
    pub(crate) fn unlock(&mut self, file: &dyn FileHandle, target: LockLevel) -> Result<(), Code> {
        if target > LockLevel::Shared {
            return Err(ffi::SQLITE_IOERR_UNLOCK);
        }
        if self.level <= target {
            return Ok(());
        }
        if self.level > LockLevel::Shared {
            if target == LockLevel::Shared {
                file.lock_range(SHARED, RangeLockMode::Shared)
                    .map_err(|_| ffi::SQLITE_IOERR_RDLOCK)?;
            }
            file.lock_range(PENDING_AND_RESERVED, RangeLockMode::Unlock)
                .map_err(|_| ffi::SQLITE_IOERR_UNLOCK)?;
            self.level = LockLevel::Shared;
        }
        if target == LockLevel::None {
            // As unix: the level is NONE afterwards even if the unlock failed.
            self.level = LockLevel::None;
            file.lock_range(WHOLE_REGION, RangeLockMode::Unlock)
                .map_err(|_| ffi::SQLITE_IOERR_UNLOCK)?;
        }
        Ok(())
    }

    /// `true` if some handle holds RESERVED or more, as
    /// `unixCheckReservedLock`. Without a way to query locks, another
    /// handle's RESERVED lock is detected by briefly taking a read lock on
    /// `RESERVED_BYTE` (which makes a concurrent attempt at RESERVED by that
    /// handle fail with `SQLITE_BUSY` in that instant; SQLite retries).
    pub(crate) fn check_reserved(&self, file: &dyn FileHandle) -> Result<bool, Code> {
        if self.level > LockLevel::Shared {
            return Ok(true);
        }
        match file.lock_range(RESERVED, RangeLockMode::Shared) {
            Ok(()) => {
                file.lock_range(RESERVED, RangeLockMode::Unlock)
                    .map_err(|_| ffi::SQLITE_IOERR_CHECKRESERVEDLOCK)?;
                Ok(false)
            }
            Err(err) if lock_error(&err, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK) == ffi::SQLITE_BUSY => Ok(true),
            Err(_) => Err(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK),
        }
    }
}

fn set(file: &dyn FileHandle, range: ByteRange, mode: RangeLockMode) -> Result<(), Code> {
    file.lock_range(range, mode)
        .map_err(|err| lock_error(&err, ffi::SQLITE_IOERR_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, OpenOptions};
    use crate::real::RealFs;

    /// Two handles on one real file: the kernel's OFD locks arbitrate, so
    /// these tests check the protocol against reality, not against a model.
    fn two_handles() -> (tempfile::TempDir, Box<dyn FileHandle>, Box<dyn FileHandle>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let a = RealFs.open(&path, &OpenOptions::create()).expect("open a");
        let b = RealFs.open(&path, &OpenOptions::create()).expect("open b");
        (dir, a, b)
    }

    #[test]
    fn readers_share_and_a_writer_reserves_alone() {
        let (_dir, fa, fb) = two_handles();
        let (mut a, mut b) = (DbLock::default(), DbLock::default());
        assert_eq!(a.lock(&*fa, LockLevel::Shared), Ok(()));
        assert_eq!(b.lock(&*fb, LockLevel::Shared), Ok(()));
        assert_eq!(b.check_reserved(&*fb), Ok(false));
        assert_eq!(a.lock(&*fa, LockLevel::Reserved), Ok(()));
        assert_eq!(b.check_reserved(&*fb), Ok(true));
        assert_eq!(b.lock(&*fb, LockLevel::Reserved), Err(ffi::SQLITE_BUSY));
        assert_eq!(b.level(), LockLevel::Shared);
    }

    #[test]
    fn exclusive_waits_for_readers_while_holding_pending() {
        let (_dir, fa, fb) = two_handles();
        let (mut a, mut b) = (DbLock::default(), DbLock::default());
        a.lock(&*fa, LockLevel::Shared).expect("a shared");
        b.lock(&*fb, LockLevel::Shared).expect("b shared");
        a.lock(&*fa, LockLevel::Reserved).expect("a reserved");
        assert_eq!(a.lock(&*fa, LockLevel::Exclusive), Err(ffi::SQLITE_BUSY));
        assert_eq!(a.level(), LockLevel::Pending);
        // PENDING keeps new readers out.
        b.unlock(&*fb, LockLevel::None).expect("b unlock");
        assert_eq!(b.lock(&*fb, LockLevel::Shared), Err(ffi::SQLITE_BUSY));
        assert_eq!(b.level(), LockLevel::None);
        assert_eq!(a.lock(&*fa, LockLevel::Exclusive), Ok(()));
        assert_eq!(a.level(), LockLevel::Exclusive);
        a.unlock(&*fa, LockLevel::Shared).expect("a downgrade");
        assert_eq!(a.level(), LockLevel::Shared);
        assert_eq!(b.lock(&*fb, LockLevel::Shared), Ok(()));
        assert_eq!(b.lock(&*fb, LockLevel::Reserved), Ok(()));
    }

    #[test]
    fn exclusive_from_shared_skips_pending_and_unlock_releases_everything() {
        let (_dir, fa, fb) = two_handles();
        let (mut a, mut b) = (DbLock::default(), DbLock::default());
        a.lock(&*fa, LockLevel::Shared).expect("a shared");
        a.lock(&*fa, LockLevel::Exclusive).expect("a exclusive");
        assert_eq!(b.lock(&*fb, LockLevel::Shared), Err(ffi::SQLITE_BUSY));
        a.unlock(&*fa, LockLevel::None).expect("a unlock");
        assert_eq!(a.level(), LockLevel::None);
        assert_eq!(b.lock(&*fb, LockLevel::Shared), Ok(()));
        assert_eq!(b.lock(&*fb, LockLevel::Exclusive), Ok(()));
    }

    #[test]
    fn impossible_transitions_are_errors_not_panics() {
        let (_dir, fa, _fb) = two_handles();
        let mut a = DbLock::default();
        assert_eq!(a.lock(&*fa, LockLevel::Reserved), Err(ffi::SQLITE_IOERR_LOCK));
        assert_eq!(a.lock(&*fa, LockLevel::Pending), Err(ffi::SQLITE_IOERR_LOCK));
        assert_eq!(a.unlock(&*fa, LockLevel::Reserved), Err(ffi::SQLITE_IOERR_UNLOCK));
        assert_eq!(LockLevel::from_sqlite(7), None);
        assert_eq!(
            LockLevel::from_sqlite(ffi::SQLITE_LOCK_PENDING),
            Some(LockLevel::Pending)
        );
    }
}
