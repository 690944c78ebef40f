//! The safe half of one registered `sqlite3_vfs`: opening, deleting and
//! probing files, randomness and time, as the unix VFS does them.

use std::io;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rusqlite::ffi;

use super::VfsOptions;
use super::errors::{Code, is_not_found};
use super::file::SqliteFile;
use crate::clock::Clock;
use crate::fs::{Fs, OpenOptions, parent_dir};

/// Milliseconds from the Julian-day epoch (noon, 24 November 4714 BC) to the
/// Unix epoch: what SQLite's `xCurrentTimeInt64` counts from.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;

/// How many temp-file names to try before giving up (unix tries 11).
const TEMP_NAME_ATTEMPTS: u32 = 100;

/// Everything one registration serves SQLite from.
#[derive(Debug)]
pub(crate) struct VfsState {
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    options: VfsOptions,
    rng: Mutex<ChaCha20Rng>,
    temp_files_named: AtomicU64,
    /// The directory of the main database most recently opened, where temp
    /// files go unless [`VfsOptions::temp_dir`] says otherwise.
    last_db_dir: Mutex<Option<PathBuf>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VfsState {
    pub(crate) fn new(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, options: VfsOptions) -> Self {
        Self {
            fs,
            clock,
            rng: Mutex::new(ChaCha20Rng::seed_from_u64(options.randomness_seed)),
            options,
            temp_files_named: AtomicU64::new(0),
            last_db_dir: Mutex::new(None),
        }
    }

    pub(crate) fn fs(&self) -> &dyn Fs {
        &*self.fs
    }

    pub(crate) fn options(&self) -> &VfsOptions {
        &self.options
    }

    /// Opens a file for SQLite (`xOpen`): `name` is `None` for a temp file,
    /// which gets a fresh name in the temp directory. A file opened with
    /// `SQLITE_OPEN_DELETEONCLOSE` is unlinked at once, as unix does (the
    /// handle keeps working; a crash leaves nothing behind). Any failure to
    /// open is `SQLITE_CANTOPEN`.
    pub(crate) fn open(&self, name: Option<&Path>, flags: c_int) -> Result<SqliteFile, Code> {
        let mut options = if flags & ffi::SQLITE_OPEN_READONLY != 0 {
            OpenOptions::read_only()
        } else {
            OpenOptions::read_write()
        };
        options.create = flags & ffi::SQLITE_OPEN_CREATE != 0;
        options.create_new = flags & ffi::SQLITE_OPEN_EXCLUSIVE != 0;
        let (path, handle) = match name {
            Some(path) => {
                let handle = self.fs.open(path, &options).map_err(|_| ffi::SQLITE_CANTOPEN)?;
                (path.to_path_buf(), handle)
            }
            None => self.open_temp()?,
        };
        if flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0 {
            let _ = self.fs.remove_file(&path);
        }
        if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            let dir = parent_dir(&path).map(Path::to_path_buf).ok();
            *lock(&self.last_db_dir) = dir;
        }
        let new_journal = options.create
            && flags & (ffi::SQLITE_OPEN_MAIN_JOURNAL | ffi::SQLITE_OPEN_SUPER_JOURNAL | ffi::SQLITE_OPEN_WAL) != 0;
        let checksums = (self.options.page_checksums && flags & ffi::SQLITE_OPEN_MAIN_DB != 0)
            .then(super::checksum::PageChecksums::default);
        Ok(SqliteFile::new(handle, path, new_journal, checksums))
    }

    /// Creates `etilqs_<n>` in the temp directory, `n` counting up per
    /// registration (deterministic), skipping names that exist.
    fn open_temp(&self) -> Result<(PathBuf, Box<dyn crate::fs::FileHandle>), Code> {
        let dir = match &self.options.temp_dir {
            Some(dir) => dir.clone(),
            None => lock(&self.last_db_dir).clone().ok_or(ffi::SQLITE_CANTOPEN)?,
        };
        for _ in 0..TEMP_NAME_ATTEMPTS {
            let n = self.temp_files_named.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("etilqs_{n:016x}"));
            match self.fs.open(&path, &OpenOptions::create_new()) {
                Ok(handle) => return Ok((path, handle)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => return Err(ffi::SQLITE_CANTOPEN),
            }
        }
        Err(ffi::SQLITE_CANTOPEN)
    }

    /// Removes a file (`xDelete`), then syncs its directory if `sync_dir`
    /// (SQLite asks for that with `synchronous=EXTRA`) unless `skip_sync`.
    pub(crate) fn delete(&self, path: &Path, sync_dir: bool) -> Result<(), Code> {
        match self.fs.remove_file(path) {
            Ok(()) => {}
            Err(err) if is_not_found(&err) => return Err(ffi::SQLITE_IOERR_DELETE_NOENT),
            Err(_) => return Err(ffi::SQLITE_IOERR_DELETE),
        }
        if sync_dir && !self.options.skip_sync {
            let dir = parent_dir(path).map_err(|_| ffi::SQLITE_IOERR_DIR_FSYNC)?;
            self.fs.sync_dir(dir).map_err(|_| ffi::SQLITE_IOERR_DIR_FSYNC)?;
        }
        Ok(())
    }

    /// `xAccess`. As unix, a zero-length regular file does not "exist" (an
    /// empty journal is not hot); there are no permissions, so READ and
    /// READWRITE mean "exists". Unlike unix, a failure other than "not
    /// found" is reported (`SQLITE_IOERR_ACCESS`) instead of read as "no".
    pub(crate) fn access(&self, path: &Path, flags: c_int) -> Result<bool, Code> {
        match self.fs.metadata(path) {
            Ok(meta) => Ok(flags != ffi::SQLITE_ACCESS_EXISTS || !meta.is_file() || meta.len > 0),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(_) => Err(ffi::SQLITE_IOERR_ACCESS),
        }
    }

    /// `xRandomness`: the next bytes of this registration's seeded stream.
    pub(crate) fn randomness(&self, buf: &mut [u8]) {
        lock(&self.rng).fill_bytes(buf);
    }

    /// `xSleep`, on the clock (a virtual clock just advances).
    pub(crate) fn sleep(&self, micros: u64) {
        self.clock.sleep(Duration::from_micros(micros));
    }

    /// `xCurrentTimeInt64`: the clock's time in milliseconds since the
    /// Julian-day epoch.
    pub(crate) fn now_julian_ms(&self) -> i64 {
        let unix_ms = match self.clock.now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
        };
        UNIX_EPOCH_JULIAN_MS.saturating_add(unix_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::real::RealFs;

    fn state(dir: &Path) -> VfsState {
        let options = VfsOptions {
            temp_dir: Some(dir.to_path_buf()),
            ..VfsOptions::default()
        };
        VfsState::new(Arc::new(RealFs), Arc::new(SimClock::new()), options)
    }

    #[test]
    fn time_is_the_clock_in_julian_milliseconds() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 2020-01-01T00:00:00Z is Julian day 2458849.5.
        assert_eq!(state(dir.path()).now_julian_ms(), 212_444_596_800_000); // 2458849.5 * 86_400_000
    }

    #[test]
    fn an_empty_file_does_not_exist_for_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = state(dir.path());
        let path = dir.path().join("journal");
        assert_eq!(vfs.access(&path, ffi::SQLITE_ACCESS_EXISTS), Ok(false));
        std::fs::write(&path, b"").expect("write");
        assert_eq!(vfs.access(&path, ffi::SQLITE_ACCESS_EXISTS), Ok(false));
        assert_eq!(vfs.access(&path, ffi::SQLITE_ACCESS_READWRITE), Ok(true));
        std::fs::write(&path, b"x").expect("write");
        assert_eq!(vfs.access(&path, ffi::SQLITE_ACCESS_EXISTS), Ok(true));
        assert_eq!(vfs.access(dir.path(), ffi::SQLITE_ACCESS_EXISTS), Ok(true));
    }

    #[test]
    fn temp_names_count_up_and_skip_existing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("etilqs_0000000000000000"), b"taken").expect("write");
        let vfs = state(dir.path());
        let flags = ffi::SQLITE_OPEN_TEMP_DB | ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE;
        let first = vfs.open(None, flags).expect("first");
        let second = vfs.open(None, flags).expect("second");
        assert_eq!(first.path(), dir.path().join("etilqs_0000000000000001"));
        assert_eq!(second.path(), dir.path().join("etilqs_0000000000000002"));
    }

    #[test]
    fn deleting_a_missing_file_is_delete_noent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = state(dir.path());
        assert_eq!(
            vfs.delete(&dir.path().join("nope"), true),
            Err(ffi::SQLITE_IOERR_DELETE_NOENT)
        );
    }
}
