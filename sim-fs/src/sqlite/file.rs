//! One file SQLite opened through the bridge: the safe half of the
//! `sqlite3_io_methods`, as the unix VFS implements them.

use std::os::raw::c_int;
use std::path::PathBuf;

use rusqlite::ffi;

use super::checksum::PageChecksums;
use super::errors::{Code, read_error, write_error};
use super::locks::{DbLock, LockLevel};
use super::shm::Shm;
use crate::fs::{FileHandle, FileHandleExt, Fs, parent_dir};

/// An open file: the handle, and what SQLite's protocol needs beside it.
#[derive(Debug)]
pub(crate) struct SqliteFile {
    handle: Box<dyn FileHandle>,
    path: PathBuf,
    /// Set for a journal, super-journal or WAL file this open may have
    /// created: its directory entry is made durable on its first sync
    /// (unix `UNIXFILE_DIRSYNC`).
    sync_dir_on_first_sync: bool,
    lock: DbLock,
    shm: Option<Shm>,
    /// For a main database file with [`super::VfsOptions::page_checksums`].
    checksums: Option<PageChecksums>,
}

impl SqliteFile {
    pub(crate) fn new(
        handle: Box<dyn FileHandle>,
        path: PathBuf,
        sync_dir_on_first_sync: bool,
        checksums: Option<PageChecksums>,
    ) -> Self {
        Self {
            handle,
            path,
            sync_dir_on_first_sync,
            lock: DbLock::default(),
            shm: None,
            checksums,
        }
    }

    /// Fills `buf` from `offset`. Past the end of the file the rest of `buf`
    /// is zeroed and the result is `SQLITE_IOERR_SHORT_READ`, which SQLite
    /// expects and handles. A whole page of a checksummed database whose
    /// checksum does not match is `SQLITE_IOERR_DATA`.
    pub(crate) fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Code> {
        let read = self
            .handle
            .read_exact_at_most(buf, offset)
            .map_err(|e| read_error(&e))?;
        if read == buf.len() {
            if let Some(checksums) = &self.checksums
                && !checksums.verify(buf, offset)
            {
                return Err(ffi::SQLITE_IOERR_DATA);
            }
            return Ok(());
        }
        buf[read..].fill(0);
        Err(ffi::SQLITE_IOERR_SHORT_READ)
    }

    /// Writes all of `buf` at `offset`, retrying short writes; a whole page
    /// of a checksummed database with its checksum in place.
    pub(crate) fn write(&self, buf: &[u8], offset: u64) -> Result<(), Code> {
        let sealed = self.checksums.as_ref().and_then(|c| c.seal(buf, offset));
        let buf = sealed.as_deref().unwrap_or(buf);
        self.handle.write_all_at(buf, offset).map_err(|e| write_error(&e))
    }

    pub(crate) fn truncate(&self, len: u64) -> Result<(), Code> {
        self.handle.set_len(len).map_err(|_| ffi::SQLITE_IOERR_TRUNCATE)
    }

    pub(crate) fn size(&self) -> Result<u64, Code> {
        self.handle.len().map_err(|_| ffi::SQLITE_IOERR_FSTAT)
    }

    /// `fdatasync` for `SQLITE_SYNC_DATAONLY`, else `fsync`; then, once, the
    /// parent directory if this file is a new journal. As unix, a failure to
    /// sync the directory is ignored. Nothing at all with `skip_sync`.
    pub(crate) fn sync(&mut self, fs: &dyn Fs, flags: c_int, skip_sync: bool) -> Result<(), Code> {
        if skip_sync {
            return Ok(());
        }
        let synced = if flags & ffi::SQLITE_SYNC_DATAONLY != 0 {
            self.handle.sync_data()
        } else {
            self.handle.sync_all()
        };
        synced.map_err(|_| ffi::SQLITE_IOERR_FSYNC)?;
        if self.sync_dir_on_first_sync {
            self.sync_dir_on_first_sync = false;
            if let Ok(dir) = parent_dir(&self.path) {
                let _ = fs.sync_dir(dir);
            }
        }
        Ok(())
    }

    pub(crate) fn lock(&mut self, level: LockLevel) -> Result<(), Code> {
        self.lock.lock(&*self.handle, level)
    }

    pub(crate) fn unlock(&mut self, level: LockLevel) -> Result<(), Code> {
        self.lock.unlock(&*self.handle, level)
    }

    pub(crate) fn check_reserved_lock(&self) -> Result<bool, Code> {
        self.lock.check_reserved(&*self.handle)
    }

    /// Maps WAL-index region `index`, joining the shared memory of
    /// `<path>-shm` on first use. See [`Shm::map`].
    pub(crate) fn shm_map(
        &mut self,
        fs: &dyn Fs,
        index: usize,
        size: usize,
        extend: bool,
    ) -> Result<Option<*mut u8>, Code> {
        let shm = match &mut self.shm {
            Some(shm) => shm,
            shm => shm.insert(Shm::open(fs, &self.path)?),
        };
        shm.map(index, size, extend)
    }

    /// See [`Shm::lock`]. `SQLITE_IOERR_SHMLOCK` if nothing is mapped.
    pub(crate) fn shm_lock(&self, offset: c_int, n: c_int, flags: c_int) -> Result<(), Code> {
        match &self.shm {
            Some(shm) => shm.lock(offset, n, flags),
            None => Err(ffi::SQLITE_IOERR_SHMLOCK),
        }
    }

    /// See [`Shm::unmap`].
    pub(crate) fn shm_unmap(&mut self, fs: &dyn Fs, delete: bool) {
        if let Some(shm) = self.shm.take() {
            shm.unmap(fs, delete);
        }
    }

    /// The path this file was opened at (a generated one for a temp file).
    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}
