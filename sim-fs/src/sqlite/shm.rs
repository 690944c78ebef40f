//! The WAL index ("shared memory") of one connection, as `unixShm*`.
//!
//! The unix VFS maps the `<db>-shm` file into every process that opens the
//! database. Here every simulated process lives in one real process, so the
//! regions are heap memory in a process-global registry keyed by the
//! [`FileIdentity`] of the `-shm` file: every connection that reaches the same
//! file (through any [`Fs`] object of the same machine) sees the same memory,
//! and a new boot of a simulated machine (a new identity) sees fresh memory.
//! The registry entry is dropped when its last connection unmaps.
//!
//! What stays faithful to the unix VFS is everything that touches the
//! filesystem: the `-shm` file is opened through the [`Fs`], truncated by the
//! first connection, grown page by page as regions are added, and all WAL
//! locks are byte-range locks on it (slot `n` at byte 120 + n; the "dead man
//! switch" at byte 128). The contents of the regions are never written to the
//! file: no reader of it exists, and unix discards them too (the first
//! connection after everyone has gone truncates the file).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use rusqlite::ffi;

use super::errors::{Code, lock_error};
use crate::fs::{ByteRange, FileHandle, FileHandleExt, FileIdentity, Fs, OpenOptions, RangeLockMode};

/// The byte of the `-shm` file that WAL lock slot 0 locks.
const LOCK_BASE: u64 = 120;
/// The "dead man switch": held shared by every connection that maps the
/// file; a connection that gets it exclusively is the only one and resets.
const DMS: ByteRange = ByteRange::new(LOCK_BASE + ffi::SQLITE_SHM_NLOCK as u64, 1);
/// The length the first connection truncates the `-shm` file to (less than
/// a WAL-index header, as unix does).
const RESET_LEN: u64 = 3;
/// The page size unix assumes when it grows the `-shm` file.
const OS_PAGE: u64 = 4096;

/// The memory of one `-shm` file, shared by every connection mapping it.
#[derive(Debug, Default)]
struct ShmNode {
    regions: Mutex<Regions>,
}

#[derive(Debug, Default)]
struct Regions {
    /// Bytes per region (SQLite always asks for the same size).
    size: usize,
    /// Atomic bytes so that SQLite can write through the pointers handed out
    /// while Rust holds shared references; the boxes never move.
    list: Vec<Box<[AtomicU8]>>,
}

static NODES: Mutex<BTreeMap<FileIdentity, Weak<ShmNode>>> = Mutex::new(BTreeMap::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One connection's mapping of a `-shm` file.
#[derive(Debug)]
pub(crate) struct Shm {
    handle: Box<dyn FileHandle>,
    path: PathBuf,
    identity: FileIdentity,
    node: Arc<ShmNode>,
}

impl Shm {
    /// Opens (creating it if needed) `<db_path>-shm` and joins its memory, as
    /// `unixOpenSharedMemory`. If no other connection holds the DMS lock,
    /// this one is the first: it truncates the file and zeroes the memory.
    /// `SQLITE_BUSY` if another connection is doing that right now.
    pub(crate) fn open(fs: &dyn Fs, db_path: &Path) -> Result<Self, Code> {
        let mut name = OsString::from(db_path.as_os_str());
        name.push("-shm");
        let path = PathBuf::from(name);
        let handle = fs
            .open(&path, &OpenOptions::create())
            .map_err(|_| ffi::SQLITE_CANTOPEN)?;
        let identity = handle.identity().map_err(|_| ffi::SQLITE_IOERR_SHMOPEN)?;
        let first = match handle.lock_range(DMS, RangeLockMode::Exclusive) {
            Ok(()) => true,
            Err(err) if lock_error(&err, ffi::SQLITE_IOERR_LOCK) == ffi::SQLITE_BUSY => false,
            Err(_) => return Err(ffi::SQLITE_IOERR_LOCK),
        };
        if first {
            handle.set_len(RESET_LEN).map_err(|_| ffi::SQLITE_IOERR_SHMOPEN)?;
        }
        handle
            .lock_range(DMS, RangeLockMode::Shared)
            .map_err(|err| lock_error(&err, ffi::SQLITE_IOERR_LOCK))?;
        let node = join(identity, first);
        Ok(Self {
            handle,
            path,
            identity,
            node,
        })
    }

    /// The address of region `index` of `size` bytes, as `unixShmMap`. If the
    /// region does not exist yet: `None` unless `extend`, in which case the
    /// file is grown to cover it (`SQLITE_IOERR_SHMSIZE` if that fails) and
    /// zeroed memory is added.
    pub(crate) fn map(&self, index: usize, size: usize, extend: bool) -> Result<Option<*mut u8>, Code> {
        let mut regions = lock(&self.node.regions);
        if regions.list.is_empty() {
            regions.size = size;
        }
        if size == 0 || size != regions.size {
            return Err(ffi::SQLITE_IOERR_SHMMAP);
        }
        if index >= regions.list.len() {
            if !extend {
                return Ok(None);
            }
            let needed = (index as u64 + 1).saturating_mul(size as u64);
            self.grow_file(needed).map_err(|_| ffi::SQLITE_IOERR_SHMSIZE)?;
            while regions.list.len() <= index {
                regions.list.push((0..size).map(|_| AtomicU8::new(0)).collect());
            }
        }
        Ok(Some(regions.list[index].as_ptr().cast::<u8>().cast_mut()))
    }

    /// Writes the last byte of every OS page between the file's end and
    /// `len`, as unix does to make the kernel allocate the pages.
    fn grow_file(&self, len: u64) -> std::io::Result<()> {
        let mut page = self.handle.len()? / OS_PAGE;
        while page < len.div_ceil(OS_PAGE) {
            self.handle.write_all_at(&[0], page * OS_PAGE + OS_PAGE - 1)?;
            page += 1;
        }
        Ok(())
    }

    /// Takes or releases WAL lock slots `offset .. offset + n`, as
    /// `unixShmLock`. `flags` is `SQLITE_SHM_UNLOCK`, or `SQLITE_SHM_LOCK`
    /// with `SQLITE_SHM_SHARED` or `SQLITE_SHM_EXCLUSIVE`.
    pub(crate) fn lock(&self, offset: c_int, n: c_int, flags: c_int) -> Result<(), Code> {
        let (Ok(offset), Ok(n)) = (u64::try_from(offset), u64::try_from(n)) else {
            return Err(ffi::SQLITE_IOERR_SHMLOCK);
        };
        if n == 0 || offset + n > ffi::SQLITE_SHM_NLOCK as u64 {
            return Err(ffi::SQLITE_IOERR_SHMLOCK);
        }
        let mode = if flags & ffi::SQLITE_SHM_UNLOCK != 0 {
            RangeLockMode::Unlock
        } else if flags & ffi::SQLITE_SHM_EXCLUSIVE != 0 {
            RangeLockMode::Exclusive
        } else {
            RangeLockMode::Shared
        };
        self.handle
            .lock_range(ByteRange::new(LOCK_BASE + offset, n), mode)
            .map_err(|err| lock_error(&err, ffi::SQLITE_IOERR_SHMLOCK))
    }

    /// Leaves the shared memory, as `unixShmUnmap`; with `delete`, removes
    /// the `-shm` file (ignoring failure, as unix does). Closing the handle
    /// releases this connection's WAL locks.
    pub(crate) fn unmap(self, fs: &dyn Fs, delete: bool) {
        if delete {
            let _ = fs.remove_file(&self.path);
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        let mut nodes = lock(&NODES);
        // Upgrades happen under the registry lock, so a count of one means
        // no other connection maps this node or can start to.
        if Arc::strong_count(&self.node) == 1 {
            nodes.remove(&self.identity);
        }
    }
}

/// The node for `identity`, created if no connection maps it; zeroed if
/// `reset` (its old mappers lost their DMS lock: their process died).
fn join(identity: FileIdentity, reset: bool) -> Arc<ShmNode> {
    let mut nodes = lock(&NODES);
    if let Some(node) = nodes.get(&identity).and_then(Weak::upgrade) {
        if reset {
            for region in &lock(&node.regions).list {
                for byte in region.iter() {
                    byte.store(0, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        return node;
    }
    let node = Arc::new(ShmNode::default());
    nodes.insert(identity, Arc::downgrade(&node));
    node
}

/// `true` if some connection maps the `-shm` file with this identity.
#[cfg(test)]
fn is_mapped(identity: FileIdentity) -> bool {
    lock(&NODES).contains_key(&identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::real::RealFs;

    #[test]
    fn two_connections_share_memory_and_the_last_one_out_frees_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let a = Shm::open(&RealFs, &db).expect("open a");
        let b = Shm::open(&RealFs, &db).expect("open b");
        assert_eq!(b.map(0, 32768, false), Ok(None));
        let pa = a.map(0, 32768, true).expect("map a").expect("region a");
        let pb = b.map(0, 32768, false).expect("map b").expect("region b");
        assert_eq!(pa, pb);
        assert_eq!(std::fs::metadata(dir.path().join("db-shm")).expect("shm").len(), 32768);
        assert_eq!(a.map(0, 16384, false), Err(ffi::SQLITE_IOERR_SHMMAP));
        let identity = a.identity;
        assert!(is_mapped(identity));
        a.unmap(&RealFs, false);
        b.unmap(&RealFs, true);
        assert!(!dir.path().join("db-shm").exists());
        assert!(!is_mapped(identity));
    }

    #[test]
    fn wal_locks_exclude_across_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let a = Shm::open(&RealFs, &db).expect("open a");
        let b = Shm::open(&RealFs, &db).expect("open b");
        let exclusive = ffi::SQLITE_SHM_LOCK | ffi::SQLITE_SHM_EXCLUSIVE;
        let shared = ffi::SQLITE_SHM_LOCK | ffi::SQLITE_SHM_SHARED;
        assert_eq!(a.lock(0, 1, exclusive), Ok(()));
        assert_eq!(b.lock(0, 1, shared), Err(ffi::SQLITE_BUSY));
        assert_eq!(b.lock(1, 2, shared), Ok(()));
        assert_eq!(a.lock(0, 1, ffi::SQLITE_SHM_UNLOCK), Ok(()));
        assert_eq!(b.lock(0, 1, exclusive), Ok(()));
        assert_eq!(a.lock(7, 2, shared), Err(ffi::SQLITE_IOERR_SHMLOCK));
    }

    #[test]
    fn the_first_connection_after_everyone_left_starts_from_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let a = Shm::open(&RealFs, &db).expect("open a");
        let p = a.map(0, 1024, true).expect("map").expect("region");
        lock(&a.node.regions).list[0][5].store(9, std::sync::atomic::Ordering::Relaxed);
        // `a`'s process dies: its locks go, its mapping lingers.
        a.handle.lock_range(DMS, RangeLockMode::Unlock).expect("release DMS");
        let b = Shm::open(&RealFs, &db).expect("open b");
        assert_eq!(
            std::fs::metadata(dir.path().join("db-shm")).expect("shm").len(),
            RESET_LEN
        );
        assert_eq!(b.map(0, 1024, false), Ok(Some(p)));
        assert_eq!(
            lock(&b.node.regions).list[0][5].load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        drop(a);
        drop(b);
        let c = Shm::open(&RealFs, &db).expect("open c");
        assert_eq!(c.map(0, 1024, false), Ok(None));
    }
}
