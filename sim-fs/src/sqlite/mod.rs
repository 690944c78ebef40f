//! A SQLite VFS that routes every file operation through an [`Fs`], so real
//! SQLite (through `rusqlite`, unmodified) runs on [`crate::RealFs`] or on a
//! simulated filesystem that injects faults and crashes.
//!
//! # What the bridge promises
//!
//! It behaves like SQLite's own unix VFS (`os_unix.c`) wherever SQLite's
//! behaviour under faults depends on it, so a crash test through it tests
//! SQLite as it runs on Linux:
//!
//! - **Every byte goes through the `Fs`**: the database, journals, the WAL,
//!   the `-shm` file, and temp files (named `etilqs_<n>`, `n` counting up per
//!   registration, in [`VfsOptions::temp_dir`]). A file SQLite wants deleted
//!   on close is unlinked right after it is opened, as unix does.
//! - **Syncs are exactly SQLite's**: `xSync` is `sync_data` for
//!   `SQLITE_SYNC_DATAONLY`, else `sync_all`; the first successful sync of a
//!   journal, super-journal or WAL file this open may have created also syncs
//!   its directory (errors there are ignored, as unix does); `xDelete` syncs
//!   the directory when SQLite asks (`synchronous=EXTRA` does, after the
//!   commit that deletes the journal; `FULL` does not). Nothing else syncs.
//!   [`VfsOptions::skip_sync`] drops all of them, to show a crash test fails
//!   without them.
//! - **The device promises nothing**: no atomic writes, no safe append, no
//!   powersafe overwrite (`xDeviceCharacteristics` = 0; unix claims
//!   powersafe overwrite), so SQLite skips no sync and no journaling.
//! - **Locks work across simulated processes**: the database locks are unix's
//!   byte-range protocol (`locks`) and the WAL locks are byte-range locks on
//!   the `-shm` file (`shm`), all through [`crate::FileHandle::lock_range`].
//!   Those locks belong to the handle, so every connection is excluded from
//!   every other one as if each were its own process, and a simulated process
//!   that dies releases its locks. Normal (shared-memory) WAL mode works,
//!   also between connections of different registrations ("processes").
//! - **Errors, not aborts**: a failing `Fs` call becomes the result code unix
//!   would return: `SQLITE_FULL` for `ENOSPC` on a write,
//!   `SQLITE_IOERR_CORRUPTFS` for `EIO` on a read, `SQLITE_BUSY` for a lock
//!   conflict, otherwise the call's `SQLITE_IOERR_*` code (`_FSYNC`,
//!   `_DELETE`, `_DELETE_NOENT`, `_DIR_FSYNC`, `_TRUNCATE`, `_FSTAT`,
//!   `_ACCESS`, `_SHMMAP`, ...) and `SQLITE_CANTOPEN` for an open. A panic in
//!   the `Fs` becomes `SQLITE_IOERR`. A file is always closed when SQLite
//!   closes it, even after a simulated crash.
//! - **Determinism**: `xRandomness` is a ChaCha stream seeded with
//!   [`VfsOptions::randomness_seed`]; `xSleep` and `xCurrentTime` use the
//!   [`Clock`]. But SQLite's own PRNG (WAL salts, journal nonces) is
//!   process-global and seeded from the *default* VFS: call
//!   [`reseed_sqlite_prng`] before each run, and do not run SQLite
//!   simulations on several threads of one process at once if the runs must
//!   be reproducible.
//!
//! - **Page checksums, if asked** ([`VfsOptions::page_checksums`], see
//!   `checksum.rs`): on a database that reserves 8 bytes per page
//!   ([`reserve_page_checksum_bytes`]), every page written carries a
//!   checksum of its content and page number, and every page read is
//!   checked: bit rot and misdirected writes read as `SQLITE_IOERR_DATA`,
//!   not as data. SQLite itself checksums nothing in a rollback-journal
//!   database.
//!
//! Differences from unix a caller may notice: relative paths are passed
//! through, not made absolute; `xAccess` reports a failing `stat` as
//! `SQLITE_IOERR_ACCESS` instead of "does not exist"; no file controls are
//! implemented (no chunk size, no persistent WAL); no memory-mapped I/O.
//!
//! # Pitfalls for callers
//!
//! - **PRAGMAs hide errors.** A `PRAGMA journal_mode=WAL` read with
//!   `query_row` can return `"wal"` although writing the header failed, and
//!   the connection then silently stays in rollback mode. Step PRAGMAs to
//!   completion and read the mode back.
//! - **Lifetime.** The VFS stays alive while any file opened through it is
//!   open, even after [`SqliteVfs`] is dropped, and is freed (with its `Fs`)
//!   after both. A connection that has no file open (an in-memory database
//!   opened by this VFS's name) must not outlive the [`SqliteVfs`];
//!   [`SqliteVfs::open`] refuses in-memory databases for that reason.
//!
//! # Layout
//!
//! `ffi` holds every `unsafe` line: the C tables and thin callbacks.
//! `vfs` (opening, deleting, time, randomness), `file` (one open file),
//! `checksum` (page checksums),
//! `locks` (the database lock protocol), `shm` (WAL shared memory) and
//! `errors` (errno to result code) are safe code.

mod checksum;
mod errors;
mod ffi;
mod file;
mod locks;
mod shm;
mod vfs;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use crate::clock::Clock;
use crate::fs::Fs;

/// How a [`SqliteVfs`] behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfsOptions {
    /// Drop every `xSync` and the directory sync of `xDelete`, to prove that a
    /// crash test notices missing syncs. Default `false`.
    pub skip_sync: bool,
    /// Seeds the stream `xRandomness` draws from. Default `0`.
    pub randomness_seed: u64,
    /// What `xSectorSize` reports, in bytes: a power of two from 512 to
    /// 65536. Default 4096.
    pub sector_size: u32,
    /// Where temp files go. `None` (the default): the directory of the main
    /// database this VFS opened most recently; a temp file needed before any
    /// database was opened then fails with `SQLITE_CANTOPEN`.
    pub temp_dir: Option<PathBuf>,
    /// Checksum every page of a main database that reserves the bytes for
    /// it ([`reserve_page_checksum_bytes`]); a damaged or misplaced page
    /// reads as `SQLITE_IOERR_DATA`. Default `false`.
    pub page_checksums: bool,
}

impl Default for VfsOptions {
    fn default() -> Self {
        Self {
            skip_sync: false,
            randomness_seed: 0,
            sector_size: 4096,
            temp_dir: None,
            page_checksums: false,
        }
    }
}

impl VfsOptions {
    /// Checks every setting is in range; `EINVAL` otherwise.
    pub fn validate(&self) -> io::Result<()> {
        if !(512..=65536).contains(&self.sector_size) || !self.sector_size.is_power_of_two() {
            return Err(crate::errno::einval());
        }
        Ok(())
    }
}

/// A SQLite VFS registered under a unique name, serving every file operation
/// from an [`Fs`]. Unregistered when dropped; freed once, in addition, every
/// file opened through it is closed.
pub struct SqliteVfs {
    registration: Arc<ffi::Registration>,
    name: String,
}

impl fmt::Debug for SqliteVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteVfs")
            .field("name", &self.name)
            .field("options", self.registration.state().options())
            .finish()
    }
}

impl SqliteVfs {
    /// Registers a VFS over `fs` and `clock` (not as SQLite's default),
    /// named `tearline-<n>` with `n` unique in this process. `EINVAL` for
    /// out-of-range options; an error if SQLite refuses the registration.
    pub fn register(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, options: VfsOptions) -> io::Result<Self> {
        static REGISTERED: AtomicU64 = AtomicU64::new(0);
        options.validate()?;
        let name = format!("tearline-{}", REGISTERED.fetch_add(1, Ordering::Relaxed));
        let c_name = CString::new(name.as_str()).map_err(|_| crate::errno::einval())?;
        let state = vfs::VfsState::new(fs, clock, options);
        let registration = ffi::Registration::register(c_name, state)
            .map_err(|rc| io::Error::other(format!("sqlite3_vfs_register failed with result code {rc}")))?;
        Ok(Self { registration, name })
    }

    /// The name the VFS is registered under, for
    /// `rusqlite::Connection::open_with_flags_and_vfs`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the database file at `path` through this VFS. `path` is a path,
    /// never a URI (`SQLITE_OPEN_URI` is ignored). In-memory databases
    /// (`""`, `":memory:"`, `SQLITE_OPEN_MEMORY`) are refused with
    /// `InvalidPath`: they open no file, so nothing would keep the VFS alive
    /// for them (see the module docs).
    ///
    /// The connection has no mutex of its own (`SQLITE_OPEN_NOMUTEX`, as
    /// rusqlite's default flags ask; `SQLITE_OPEN_FULLMUTEX` is dropped): a
    /// [`Connection`] is used by one thread at a time anyway, and a
    /// connection's recursive mutex belongs to the thread that took it, so
    /// a process forked while a connection is busy (the harness branching
    /// a case off its workload at a syscall) could never take it again.
    pub fn open(&self, path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
        let in_memory = path.as_os_str().is_empty() || path == Path::new(":memory:");
        if in_memory || flags.contains(OpenFlags::SQLITE_OPEN_MEMORY) {
            return Err(rusqlite::Error::InvalidPath(path.to_path_buf()));
        }
        let flags =
            (flags - OpenFlags::SQLITE_OPEN_URI - OpenFlags::SQLITE_OPEN_FULL_MUTEX) | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags_and_vfs(path, flags, self.name.as_str())
    }
}

impl Drop for SqliteVfs {
    fn drop(&mut self) {
        self.registration.unregister();
    }
}

/// Makes a new, empty database reserve room for page checksums at the end
/// of every page (`SQLITE_FCNTL_RESERVE_BYTES`), so a VFS with
/// [`VfsOptions::page_checksums`] checks it. Call it before the first table
/// is created; on a database that already has pages it changes nothing
/// (SQLite fixes the reserve with the first page).
pub fn reserve_page_checksum_bytes(conn: &Connection) -> rusqlite::Result<()> {
    ffi::request_reserve_bytes(conn, checksum::CHECKSUM_BYTES)
}

/// Seeds SQLite's process-global PRNG, which draws WAL salts, journal
/// nonces and `random()`. The 64-bit seed is folded to the 32 bits SQLite
/// takes; a fold of 0 (which SQLite reads as "unseeded") becomes 1.
pub fn reseed_sqlite_prng(seed: u64) {
    let folded = (seed ^ (seed >> 32)) as u32;
    let folded = if folded == 0 { 1 } else { folded };
    ffi::seed_sqlite_prng(folded as i32);
}
