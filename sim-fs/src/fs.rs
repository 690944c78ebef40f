//! The syscall surface a store may use: the [`Fs`] and [`FileHandle`] traits.
//!
//! A store written against these traits runs unchanged on [`crate::RealFs`]
//! (std and the kernel, in production) and on [`crate::SimFs`] (under the
//! harness). The traits are deliberately small and object-safe; convenience
//! built from them lives in [`FsExt`], which every implementor gets for free.
//!
//! Every method reports failure as [`std::io::Error`] carrying the kernel's
//! raw OS error code (see [`crate::errno`]), so `kind()` and `raw_os_error()`
//! are the same whether the error came from a real disk or an injected fault.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// How to open a file. Mirrors the subset of `std::fs::OpenOptions` a store needs.
///
/// The default opens an existing file for reading only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpenOptions {
    /// Open for reading. Default `true`.
    pub read: bool,
    /// Open for writing. Default `false`.
    pub write: bool,
    /// Create the file if it does not exist (needs `write`). Default `false`.
    pub create: bool,
    /// Fail with `EEXIST` if the file exists (implies `create`). Default `false`.
    pub create_new: bool,
    /// Truncate the file to length 0 on open (needs `write`). Default `false`.
    pub truncate: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::read_only()
    }
}

impl OpenOptions {
    /// Open an existing file for reading.
    pub const fn read_only() -> Self {
        Self {
            read: true,
            write: false,
            create: false,
            create_new: false,
            truncate: false,
        }
    }

    /// Open an existing file for reading and writing.
    pub const fn read_write() -> Self {
        Self {
            write: true,
            ..Self::read_only()
        }
    }

    /// Open for reading and writing, creating the file if it is missing.
    pub const fn create() -> Self {
        Self {
            create: true,
            ..Self::read_write()
        }
    }

    /// Create a new file for reading and writing; `EEXIST` if it exists.
    pub const fn create_new() -> Self {
        Self {
            create_new: true,
            ..Self::create()
        }
    }

    /// Open for reading and writing, creating it if missing and truncating it to 0.
    pub const fn create_truncate() -> Self {
        Self {
            truncate: true,
            ..Self::create()
        }
    }

    /// Checks the combination is meaningful; `EINVAL` otherwise (as `open(2)` would).
    pub fn validate(&self) -> io::Result<()> {
        if (self.create || self.create_new || self.truncate) && !self.write {
            return Err(crate::errno::einval());
        }
        if !self.read && !self.write {
            return Err(crate::errno::einval());
        }
        Ok(())
    }
}

/// What kind of object a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else a real directory can hold: a symbolic link (never
    /// followed by a listing), a socket, a FIFO, a device. The simulator
    /// makes none.
    Other,
}

/// What [`Fs::metadata`] reports about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// File or directory.
    pub kind: FileKind,
    /// Length in bytes (0 for a directory).
    pub len: u64,
    /// Last modification time, from the filesystem's clock.
    pub modified: SystemTime,
    /// Number of hard links to the file (1 for a directory).
    pub links: u64,
}

impl Metadata {
    /// `true` for a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }

    /// `true` for a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// One entry of [`Fs::read_dir`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DirEntry {
    /// The entry's name within its directory (no separators).
    pub name: String,
    /// File or directory.
    pub kind: FileKind,
}

/// An exclusive advisory lock, held until this guard is dropped.
///
/// The lock is also released when the process that took it dies (a crash of a
/// simulated process, or the end of a real one), as `flock(2)` locks are.
pub trait LockGuard: Send + fmt::Debug {
    /// The path of the file or directory this guard holds locked.
    fn path(&self) -> &Path;
}

/// An open file. Positional I/O only: there is no shared cursor to get wrong.
///
/// Dropping the handle closes the file.
// `len` is a syscall (`fstat`) here, not a collection size: an `is_empty`
// beside it would only be a second way to make the same call.
#[allow(clippy::len_without_is_empty)]
pub trait FileHandle: Send + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at or past the end of the file). Never reads past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes `buf` at `offset`, extending the file (zero-filling any gap) if
    /// needed; returns how many bytes were written. A short count is legal
    /// (the kernel may return one); use [`FileHandleExt::write_all_at`] to
    /// retry the rest. `EBADF` if the handle was not opened for writing.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    /// Truncates or zero-extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Makes the file's data and metadata (including its length) durable, as
    /// `fsync(2)`. Does NOT make the file's name durable: that needs
    /// [`Fs::sync_dir`] of its parent directory.
    fn sync_all(&self) -> io::Result<()>;

    /// Makes the file's data durable, as `fdatasync(2)`. Whether a change of
    /// length is made durable too depends on the filesystem (Linux says yes);
    /// portable code uses [`FileHandle::sync_all`] after changing the length.
    fn sync_data(&self) -> io::Result<()>;

    /// Sets, changes or removes an advisory byte-range lock owned by this
    /// handle, as `fcntl(F_OFD_SETLK)`: locks belong to the open file (not
    /// the process), so two handles conflict even within one process, and a
    /// handle's locks are released when it is closed or its process dies.
    /// Setting a range this handle already covers replaces that part.
    /// `EWOULDBLOCK` if another handle holds a conflicting lock (a shared lock
    /// conflicts only with exclusive ones). Never waits.
    fn lock_range(&self, range: ByteRange, mode: RangeLockMode) -> io::Result<()>;

    /// The identity of the underlying file (like `st_dev`/`st_ino`): two
    /// handles have equal identities exactly when they reach the same file.
    fn identity(&self) -> io::Result<FileIdentity>;
}

/// A byte range of a file, for [`FileHandle::lock_range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteRange {
    /// First byte of the range.
    pub start: u64,
    /// Number of bytes; must be at least 1.
    pub len: u64,
}

impl ByteRange {
    /// The range `[start, start + len)`.
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, len }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }

    /// `true` if the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &ByteRange) -> bool {
        self.start < other.end() && other.start < self.end()
    }
}

/// What [`FileHandle::lock_range`] does to a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeLockMode {
    /// A read lock: any number of handles may share it.
    Shared,
    /// A write lock: no other handle may hold any lock on the range.
    Exclusive,
    /// Releases this handle's locks on the range.
    Unlock,
}

/// The identity of a file, as `(st_dev, st_ino)`.
///
/// On [`crate::SimFs`] the device part also names the simulated machine and
/// its boot, so files of two simulations (or of one before and after a power
/// cut) never compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileIdentity {
    /// The device (and, on `SimFs`, the machine and boot).
    pub device: u64,
    /// The inode number within the device.
    pub inode: u64,
}

/// The filesystem a store runs on. Object-safe: stores hold a `&dyn Fs` or an
/// `Arc<dyn Fs>`.
///
/// Paths are interpreted as given (absolute paths are recommended); `..` and
/// symlinks are not supported by [`crate::SimFs`].
pub trait Fs: Send + Sync + fmt::Debug {
    /// Opens (and maybe creates) a file. `ENOENT` if it is missing and not
    /// created, or if the parent directory is missing; `EEXIST` for
    /// `create_new` on an existing path; `EISDIR` for a directory.
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<Box<dyn FileHandle>>;

    /// Renames `from` to `to`, atomically replacing a file at `to`. The change
    /// is durable only after [`Fs::sync_dir`] of both parent directories.
    /// `EXDEV` across devices; `ENOENT` if `from` is missing.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Creates `link` as a new name for the file `original`. `EEXIST` if `link`
    /// exists; `EXDEV` across devices; `EPERM` for a directory.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()>;

    /// Removes a name of a file. Open handles keep working. Durable only after
    /// [`Fs::sync_dir`] of the parent. `EISDIR` for a directory.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Creates one directory. `EEXIST` if the path exists; `ENOENT` if the
    /// parent is missing. Durable only after [`Fs::sync_dir`] of the parent.
    fn create_dir(&self, path: &Path) -> io::Result<()>;

    /// Creates one directory only its owner may enter (mode 0700 where
    /// there are modes), as [`Fs::create_dir`] does otherwise: for what a
    /// user sends, staged in a shared directory. The default creates it as
    /// [`Fs::create_dir`] does.
    fn create_private_dir(&self, path: &Path) -> io::Result<()> {
        self.create_dir(path)
    }

    /// Removes an empty directory. `ENOTEMPTY` if it has entries.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;

    /// Lists a directory, sorted by name (a deterministic order on every
    /// implementation; `.` and `..` are not listed).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;

    /// Describes a path without following symlinks. `ENOENT` if missing.
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;

    /// The target of the symbolic link at `path`, as it was given
    /// (`readlink(2)`); `EINVAL` if `path` is not a symbolic link. A store
    /// rarely needs it; a FUSE mount serving the filesystem does.
    fn read_link(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        let _ = path;
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Makes the directory's entries (creates, renames, unlinks in it) durable:
    /// `fsync(2)` on the directory.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Takes an exclusive advisory lock on the file or directory at `path`,
    /// creating an empty file if nothing is there. Does not wait:
    /// `EWOULDBLOCK` (`ErrorKind::WouldBlock`) if another process (or another
    /// open of it in this process) holds it.
    ///
    /// The lock is on the inode, not the name: if the file is unlinked or
    /// replaced while held, the next `try_lock` of the path locks whatever is
    /// there now. A directory that holds files cannot be unlinked or
    /// replaced, which makes it the lock to take when the name must be
    /// trusted.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;

    /// Bytes free on the device holding `path`.
    fn free_space(&self, path: &Path) -> io::Result<u64>;
}

/// Conveniences built from [`Fs`]; every implementor gets them for free.
pub trait FsExt: Fs {
    /// `true` if `path` exists; errors other than `ENOENT` are returned.
    fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates `path` and every missing ancestor, as `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut cursor = Some(path);
        while let Some(dir) = cursor {
            if dir.as_os_str().is_empty() {
                break;
            }
            match self.metadata(dir) {
                Ok(meta) if meta.is_dir() => break,
                Ok(_) => return Err(crate::errno::enotdir()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(dir),
                Err(e) => return Err(e),
            }
            cursor = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            match self.create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates `path` and every missing ancestor, then fsyncs it and every
    /// ancestor up to the root, so the whole path survives a power cut. (An
    /// ancestor may exist only in the page cache, left by a crashed process:
    /// a name is durable only once its parent directory is synced.)
    fn create_dir_all_durable(&self, path: &Path) -> io::Result<()> {
        self.create_dir_all(path)?;
        let mut cursor = Some(path);
        while let Some(dir) = cursor.filter(|p| !p.as_os_str().is_empty()) {
            self.sync_dir(dir)?;
            cursor = dir.parent();
        }
        Ok(())
    }

    /// Reads a whole file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, &OpenOptions::read_only())?;
        let len = file.len()?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| crate::errno::efbig())?];
        let read = file.read_exact_at_most(&mut buf, 0)?;
        buf.truncate(read);
        Ok(buf)
    }

    /// Creates or truncates `path` and writes `data` to it, without any sync.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let file = self.open(path, &OpenOptions::create_truncate())?;
        file.write_all_at(data, 0)
    }

    /// Durably replaces `path` with `data`: write a temp file beside it
    /// (`.<name>.tmp`), fsync it, rename it over `path`, fsync the directory. A crash at any point
    /// leaves either the old or the new content at `path`, never a mix.
    fn write_file_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let parent = parent_dir(path)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(path.file_name().ok_or_else(crate::errno::einval)?);
        tmp_name.push(".tmp");
        let tmp = parent.join(tmp_name);
        {
            let file = self.open(&tmp, &OpenOptions::create_truncate())?;
            file.write_all_at(data, 0)?;
            file.sync_all()?;
        }
        self.rename(&tmp, path)?;
        self.sync_dir(parent)
    }

    /// Lists a directory as [`Fs::read_dir`] does, except that a missing
    /// directory (`ENOENT`, including a missing ancestor) lists as empty.
    /// Every other error (`ENOTDIR` for a file, `EIO`, ...) is returned as is.
    /// One `read_dir` call.
    fn read_dir_or_empty(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        match self.read_dir(dir) {
            Ok(entries) => Ok(entries),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Removes a name of a file as [`Fs::remove_file`] does; `Ok(false)` if
    /// there was nothing to remove (`ENOENT`), `Ok(true)` if it was removed.
    /// `EISDIR` for a directory. One `remove_file` call; the caller syncs the
    /// parent to make the removal durable.
    fn remove_file_if_exists(&self, path: &Path) -> io::Result<bool> {
        match self.remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the directory `dir` and everything in it, as `rm -r`: lists it,
    /// removes each file and (depth first, in name order) each subdirectory,
    /// then the directory itself. `Ok(false)` if `dir` does not exist
    /// (`ENOENT` from its first listing), `Ok(true)` once it is gone.
    ///
    /// Edge cases: `ENOTDIR` if `dir` is a file (nothing is removed); an
    /// entry that vanishes while the tree is removed gives `ENOENT`; the first
    /// error stops the removal and leaves the rest in place. Nothing is
    /// synced: the removal is durable only after [`Fs::sync_dir`] of the
    /// parent (see [`FsExt::remove_tree_durable`] for the inner directories).
    fn remove_tree(&self, dir: &Path) -> io::Result<bool> {
        let entries = match self.read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = dir.join(&entry.name);
            match entry.kind {
                FileKind::Dir => {
                    self.remove_tree(&path)?;
                }
                // A symlink is unlinked, never followed.
                FileKind::File | FileKind::Other => self.remove_file(&path)?,
            }
        }
        self.remove_dir(dir)?;
        Ok(true)
    }

    /// [`FsExt::remove_tree`], but every directory that had entries is synced
    /// after its entries are unlinked and before it is removed itself, so a
    /// power cut never brings back a half-removed inner directory's entries
    /// under a surviving name. An entry that vanished meanwhile is fine
    /// (files are removed with [`FsExt::remove_file_if_exists`]). `Ok(false)`
    /// if `dir` does not exist. The caller syncs the parent of `dir`.
    fn remove_tree_durable(&self, dir: &Path) -> io::Result<bool> {
        let entries = match self.read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let had_entries = !entries.is_empty();
        for entry in entries {
            let path = dir.join(&entry.name);
            match entry.kind {
                FileKind::Dir => {
                    self.remove_tree_durable(&path)?;
                }
                FileKind::File | FileKind::Other => {
                    self.remove_file_if_exists(&path)?;
                }
            }
        }
        if had_entries {
            self.sync_dir_named(dir)?;
        }
        self.remove_dir(dir)?;
        Ok(true)
    }

    /// [`Fs::sync_dir`], with an error that names the directory: its
    /// `Display` is `syncing <dir>: <error>`, its [`io::Error::kind`] is the
    /// original's, and the original error (with its raw OS code) is the
    /// [`PathError`] inside it (`get_ref`, `into_inner`, or `source()`).
    /// One `sync_dir` call.
    fn sync_dir_named(&self, dir: &Path) -> io::Result<()> {
        self.sync_dir(dir)
            .map_err(|source| PathError::wrap(format!("syncing {}", dir.display()), source))
    }
}

impl<T: Fs + ?Sized> FsExt for T {}

/// Conveniences built from [`FileHandle`]; every implementor gets them for free.
pub trait FileHandleExt: FileHandle {
    /// Writes all of `buf` at `offset`, retrying short writes.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads until `buf` is full or the end of the file; returns the count read.
    fn read_exact_at_most(&self, buf: &mut [u8], mut offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_at(&mut buf[filled..], offset) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl<T: FileHandle + ?Sized> FileHandleExt for T {}

/// The parent directory of `path`; `EINVAL` for a root or an empty path.
pub fn parent_dir(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => Ok(parent),
        Some(_) => Ok(Path::new(".")),
        None => Err(crate::errno::einval()),
    }
}

/// An [`io::Error`] that says what was being done to which path, wrapped
/// around the kernel's error (see [`FsExt::sync_dir_named`]). Its `Display`
/// is `<doing>: <source>`.
#[derive(Debug)]
pub struct PathError {
    /// What was being done, naming the path (`syncing /store/source`).
    pub doing: String,
    /// The error the syscall returned, with its raw OS code.
    pub source: io::Error,
}

impl PathError {
    /// An `io::Error` of `source`'s kind that carries this `PathError`.
    pub fn wrap(doing: String, source: io::Error) -> io::Error {
        io::Error::new(source.kind(), PathError { doing, source })
    }

    /// The `PathError` inside `error`, if it carries one; `error` back otherwise.
    pub fn unwrap_from(error: io::Error) -> Result<PathError, io::Error> {
        // `into_inner` gives nothing back for an OS error: look before taking.
        if !error.get_ref().is_some_and(|inner| inner.is::<PathError>()) {
            return Err(error);
        }
        let kind = error.kind();
        match error.into_inner().map(|inner| inner.downcast::<PathError>()) {
            Some(Ok(path_error)) => Ok(*path_error),
            Some(Err(other)) => Err(io::Error::new(kind, other)),
            None => Err(io::Error::from(kind)),
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doing, self.source)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
