//! [`RealFs`]: the [`Fs`] traits over std and the Linux kernel.
//!
//! This is what a store uses in production. Directory fsync opens the
//! directory and calls `fsync(2)` on it; [`Fs::try_lock`] is `flock(2)`
//! (of a file, or of a directory opened read-only);
//! byte-range locks are open-file-description locks (`F_OFD_SETLK`), which
//! belong to the open file like the simulator's, not to the process.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::fs::{
    ByteRange, DirEntry, FileHandle, FileIdentity, FileKind, Fs, LockGuard, Metadata, OpenOptions, RangeLockMode,
};

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile {
    file: fs::File,
}

#[derive(Debug)]
struct RealLock {
    path: PathBuf,
    // Closing the file releases the flock.
    _file: fs::File,
}

impl LockGuard for RealLock {
    fn path(&self) -> &Path {
        &self.path
    }
}

fn kind_of(file_type: fs::FileType) -> FileKind {
    if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

impl FileHandle for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn lock_range(&self, range: ByteRange, mode: RangeLockMode) -> io::Result<()> {
        let l_type = match mode {
            RangeLockMode::Shared => libc::F_RDLCK,
            RangeLockMode::Exclusive => libc::F_WRLCK,
            RangeLockMode::Unlock => libc::F_UNLCK,
        };
        let start = libc::off_t::try_from(range.start).map_err(|_| crate::errno::einval())?;
        let len = libc::off_t::try_from(range.len).map_err(|_| crate::errno::einval())?;
        // SAFETY: `flock` is a plain C struct for which all-zero is a valid value.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = l_type as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = start;
        lock.l_len = len;
        // SAFETY: the descriptor is open for the life of `self.file`, and
        // `lock` is a valid, initialised `flock` that outlives the call.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // fcntl reports a conflict as EACCES or EAGAIN; normalise to EWOULDBLOCK.
        match err.raw_os_error() {
            Some(code) if code == libc::EACCES || code == libc::EAGAIN => Err(crate::errno::ewouldblock()),
            _ => Err(err),
        }
    }

    fn identity(&self) -> io::Result<FileIdentity> {
        let meta = self.file.metadata()?;
        Ok(FileIdentity {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

impl Fs for RealFs {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<Box<dyn FileHandle>> {
        options.validate()?;
        let file = fs::OpenOptions::new()
            .read(options.read)
            .write(options.write)
            .create(options.create)
            .create_new(options.create_new)
            .truncate(options.truncate)
            .open(path)?;
        if file.metadata()?.is_dir() {
            return Err(crate::errno::eisdir());
        }
        Ok(Box::new(RealFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        fs::hard_link(original, link)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn create_private_dir(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            // A name that is not UTF-8 is listed lossily (U+FFFD for each bad
            // byte), never an error: one such name must not make a whole
            // directory unreadable. It cannot be opened by that name.
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(DirEntry {
                name,
                kind: kind_of(entry.file_type()?),
            });
        }
        entries.sort();
        Ok(entries)
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let meta = fs::symlink_metadata(path)?;
        let kind = kind_of(meta.file_type());
        Ok(Metadata {
            kind,
            len: if kind == FileKind::Dir { 0 } else { meta.len() },
            modified: meta.modified()?,
            links: if kind == FileKind::Dir { 1 } else { meta.nlink() },
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        fs::read_link(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let opened = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path);
        // A directory opens read-only; Linux's flock works on its descriptor.
        let file = match opened {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => fs::File::open(path)?,
            other => other?,
        };
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock {
                path: path.to_path_buf(),
                _file: file,
            })),
            Err(fs::TryLockError::WouldBlock) => Err(crate::errno::ewouldblock()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| crate::errno::einval())?;
        // SAFETY: `statvfs` is a plain C struct for which all-zero is valid.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid
        // out-pointer; both outlive the call.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}
