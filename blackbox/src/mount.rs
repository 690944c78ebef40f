//! [`SimMount`]: a directory of an [`Fs`] (normally one [`tearline_sim_fs::SimFs`]
//! process view) served at a real mountpoint over FUSE, so a program in any
//! language does its I/O on the simulated filesystem.
//!
//! # What reaches the simulator, and in what order
//!
//! Every FUSE request that touches the filesystem becomes one (or a few) `Fs`
//! calls, made in the order the kernel delivers the requests:
//!
//! - Entry and attribute TTLs are zero, so every path walk is a `lookup`
//!   (one `Fs::metadata`) and every `stat` a `getattr`.
//! - Every open file gets `FOPEN_DIRECT_IO`: no page cache, no readahead, no
//!   writeback cache; each `write(2)` of the program is one `Fs::write_at`,
//!   in order, and each `read(2)` one `Fs::read_at`.
//! - One session thread serves the requests one at a time; inode numbers are
//!   assigned in first-seen order; directory listings are sorted.
//!
//! # Mapping
//!
//! | request | `Fs` call |
//! |---|---|
//! | lookup, getattr | `metadata` (getattr of an open, unlinked file: `len` of its handle) |
//! | setattr (size) | `set_len` on the handle (or on a fresh handle of the path); mode, owner and times are ignored |
//! | open, create | `open` (a handle per FUSE file handle, dropped at release) |
//! | read, write | `read_at`, `write_at` (one call each; a short write reaches the program) |
//! | fsync | `sync_data` if datasync, else `sync_all` |
//! | opendir + readdir | one `read_dir` at opendir, served from that snapshot |
//! | fsyncdir | `sync_dir` |
//! | mkdir, rmdir, unlink, link | `create_dir`, `remove_dir`, `remove_file`, `hard_link` |
//! | rename | `rename` (`RENAME_NOREPLACE` checked with `metadata` first; `RENAME_EXCHANGE` → `EINVAL`) |
//! | statfs | `free_space` |
//! | whole-file exclusive lock (`F_SETLK`/`lockf`/`flock`) | `lock_range` (exclusive, whole file) on the handle, then `try_lock(path)`; held until unlock, the owner's close (`fcntl` locks) or release (`flock`) |
//! | other byte-range locks | `lock_range` on the request's handle |
//! | getlk | a probe: `lock_range` on a fresh handle, undone at once |
//!
//! Lock conflicts answer `EAGAIN` at once; a blocking request (`F_SETLKW`,
//! `flock` without `LOCK_NB`) answers `EAGAIN` too instead of waiting, since
//! the single session thread must never block.
//!
//! # Halts
//!
//! When an `Fs` call reports a simulated halt (power cut or process crash,
//! [`tearline_sim_fs::halted`]), the mount records it ([`SimMount::halted`])
//! and from then on answers every request with `EIO` without calling the
//! `Fs` again. The program sees I/O errors; whoever runs it should kill it.
//!
//! # Known gaps
//!
//! - Hard links get one inode number per path (the kernel sees two inodes).
//! - A `getlk` probe sees the caller's own locks held through another open
//!   file as conflicts.
//! - A partial unlock of a whole-file exclusive lock keeps the `try_lock`.
//! - `mmap` is allowed where the kernel offers `FUSE_DIRECT_IO_ALLOW_MMAP`
//!   (SQLite's WAL `-shm`), and mapped pages bypass the ordering above.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session, TimeOrNow,
    WriteFlags,
};
use tearline_sim_fs::{
    ByteRange, FileHandle, FileKind, Fs, Halted, LockGuard, Metadata, OpenOptions, RangeLockMode, halted,
};

/// Attributes and entries are never cached by the kernel.
const TTL: Duration = Duration::ZERO;
/// The kernel's `OFFSET_MAX`: a lock range ending here runs to the end of the file.
const OFFSET_MAX: u64 = i64::MAX as u64;
/// Block size reported by `stat` and `statfs`.
const BLOCK_SIZE: u32 = 4096;

/// What the mount and its owner share.
#[derive(Debug, Default)]
struct Shared {
    halted: Mutex<Option<Halted>>,
}

impl Shared {
    fn halted(&self) -> Option<Halted> {
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A directory of an [`Fs`] mounted at a real path over FUSE. Unmounted on
/// drop (or by [`SimMount::unmount`]).
#[derive(Debug)]
pub struct SimMount {
    session: Option<BackgroundSession>,
    shared: Arc<Shared>,
    mountpoint: PathBuf,
}

impl SimMount {
    /// Serves the directory `root` of `fs` at `mountpoint` (an existing, empty
    /// real directory) until the returned value is dropped. The request loop
    /// runs on one background thread.
    ///
    /// Errors: whatever mounting fails with (no `/dev/fuse`, no permission to
    /// mount, `mountpoint` missing).
    pub fn mount(fs: Arc<dyn Fs>, root: PathBuf, mountpoint: &Path) -> io::Result<SimMount> {
        let shared = Arc::new(Shared::default());
        let server = Server {
            fs,
            root,
            shared: Arc::clone(&shared),
            state: Mutex::new(State::new()),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("tearline-simfs".to_string()),
            MountOption::Subtype("tearline".to_string()),
            MountOption::RW,
            MountOption::NoAtime,
        ];
        config.n_threads = Some(1);
        let session = Session::new(server, mountpoint, &config)?.spawn()?;
        Ok(SimMount {
            session: Some(session),
            shared,
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// The simulated halt (power cut, process crash) an `Fs` call reported,
    /// if one did. From then on every request answers `EIO`.
    pub fn halted(&self) -> Option<Halted> {
        self.shared.halted()
    }

    /// Unmounts now and waits for the request loop to end. If the mount is
    /// busy (a process still has files open there), it is detached lazily
    /// instead and the loop left to end by itself.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(err) => {
                // Busy or already gone: detach so nothing hangs on it.
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                Err(err)
            }
        }
    }
}

impl Drop for SimMount {
    fn drop(&mut self) {
        let _ = self.unmount_inner();
    }
}

/// One open file.
#[derive(Debug)]
struct OpenFile {
    handle: Box<dyn FileHandle>,
    /// Whether a byte-range lock was ever taken through it (so a close
    /// must release the owner's range locks).
    range_locked: bool,
}

/// A whole-file exclusive lock held for one lock owner.
#[derive(Debug)]
struct WholeLock {
    fh: u64,
    _guard: Box<dyn LockGuard>,
}

/// The inode table and open files. Every map is ordered: nothing here
/// depends on hashing.
#[derive(Debug)]
struct State {
    /// Inode → path relative to the root (`""` for the root).
    paths: BTreeMap<u64, PathBuf>,
    /// Path → inode.
    inodes: BTreeMap<PathBuf, u64>,
    next_ino: u64,
    files: BTreeMap<u64, OpenFile>,
    /// Directory listings taken at opendir: (name, inode, kind), sorted.
    dirs: BTreeMap<u64, Vec<(OsString, u64, FileType)>>,
    next_fh: u64,
    /// Whole-file exclusive locks by (inode, lock owner).
    whole_locks: BTreeMap<(u64, u64), WholeLock>,
}

impl State {
    fn new() -> Self {
        let mut paths = BTreeMap::new();
        let mut inodes = BTreeMap::new();
        paths.insert(INodeNo::ROOT.0, PathBuf::new());
        inodes.insert(PathBuf::new(), INodeNo::ROOT.0);
        State {
            paths,
            inodes,
            next_ino: INodeNo::ROOT.0 + 1,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            next_fh: 1,
            whole_locks: BTreeMap::new(),
        }
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/') {
            return Err(Errno::EINVAL);
        }
        Ok(self.path(parent)?.join(name))
    }

    /// The inode of `rel`, assigning the next number on first sight.
    fn ino(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.inodes.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(rel.to_path_buf(), ino);
        self.paths.insert(ino, rel.to_path_buf());
        ino
    }

    /// Forgets the name `rel` (and every name under it); open handles of
    /// its inode keep working.
    fn forget(&mut self, rel: &Path) {
        let gone: Vec<PathBuf> = self.inodes.keys().filter(|p| p.starts_with(rel)).cloned().collect();
        for path in gone {
            if let Some(ino) = self.inodes.remove(&path) {
                self.paths.remove(&ino);
            }
        }
    }

    /// Moves the name `from` (and every name under it) to `to`.
    fn rename(&mut self, from: &Path, to: &Path) {
        self.forget(to);
        let moved: Vec<(PathBuf, u64)> = self
            .inodes
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &ino)| (p.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.inodes.remove(&old);
            let rest = old.strip_prefix(from).unwrap_or(Path::new(""));
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.inodes.insert(new.clone(), ino);
            self.paths.insert(ino, new);
        }
    }

    fn new_fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }
}

/// The FUSE filesystem.
struct Server {
    fs: Arc<dyn Fs>,
    root: PathBuf,
    shared: Arc<Shared>,
    state: Mutex<State>,
}

fn kind_of(kind: FileKind) -> FileType {
    match kind {
        // The simulator makes no other kind; served as a file if one came.
        FileKind::File | FileKind::Other => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
    }
}

fn attr(ino: u64, kind: FileType, len: u64, modified: SystemTime, links: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: len,
        blocks: len.div_ceil(512),
        atime: modified,
        mtime: modified,
        ctime: modified,
        crtime: modified,
        kind,
        perm: if kind == FileType::Directory { 0o755 } else { 0o644 },
        nlink: u32::try_from(links).unwrap_or(u32::MAX),
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

fn meta_attr(ino: u64, meta: &Metadata) -> FileAttr {
    attr(ino, kind_of(meta.kind), meta.len, meta.modified, meta.links)
}

fn open_options(flags: i32) -> OpenOptions {
    let mut options = match OpenFlags(flags).acc_mode() {
        OpenAccMode::O_RDONLY => OpenOptions::read_only(),
        OpenAccMode::O_WRONLY => OpenOptions {
            read: false,
            ..OpenOptions::read_write()
        },
        OpenAccMode::O_RDWR => OpenOptions::read_write(),
    };
    if flags & libc::O_TRUNC != 0 && options.write {
        options.truncate = true;
    }
    options
}

impl Server {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, or `EIO` once the simulated process has halted.
    fn gate(&self) -> Result<MutexGuard<'_, State>, Errno> {
        if self.shared.halted().is_some() {
            return Err(Errno::EIO);
        }
        Ok(self.state())
    }

    /// The errno for an `Fs` error; a halt is recorded and answers `EIO`.
    fn errno(&self, err: &io::Error) -> Errno {
        if let Some(halt) = halted(err) {
            self.shared
                .halted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(halt);
            return Errno::EIO;
        }
        Errno::from_i32(err.raw_os_error().unwrap_or(libc::EIO))
    }

    fn io<T>(&self, result: io::Result<T>) -> Result<T, Errno> {
        result.map_err(|e| self.errno(&e))
    }

    /// The absolute path in the `Fs` of a path relative to the root.
    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn lookup_inner(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.gate()?;
        let rel = st.child(parent, name)?;
        let meta = self.io(self.fs.metadata(&self.abs(&rel)))?;
        let ino = st.ino(&rel);
        Ok(meta_attr(ino, &meta))
    }

    fn getattr_inner(&self, st: &State, ino: INodeNo, fh: Option<u64>) -> Result<FileAttr, Errno> {
        if let Some(file) = fh.and_then(|fh| st.files.get(&fh)) {
            // fstat: the handle works even after its name is gone.
            if !st.paths.contains_key(&ino.0) {
                let len = self.io(file.handle.len())?;
                return Ok(attr(ino.0, FileType::RegularFile, len, SystemTime::UNIX_EPOCH, 0));
            }
        }
        let rel = st.path(ino)?;
        let meta = self.io(self.fs.metadata(&self.abs(&rel)))?;
        Ok(meta_attr(ino.0, &meta))
    }

    fn setattr_inner(&self, ino: INodeNo, size: Option<u64>, fh: Option<u64>) -> Result<FileAttr, Errno> {
        let st = self.gate()?;
        if let Some(len) = size {
            match fh.and_then(|fh| st.files.get(&fh)) {
                Some(file) => self.io(file.handle.set_len(len))?,
                None => {
                    let rel = st.path(ino)?;
                    let handle = self.io(self.fs.open(&self.abs(&rel), &OpenOptions::read_write()))?;
                    self.io(handle.set_len(len))?;
                }
            }
        }
        self.getattr_inner(&st, ino, fh)
    }

    fn create_inner(&self, parent: INodeNo, name: &OsStr, flags: i32) -> Result<(FileAttr, u64), Errno> {
        let mut st = self.gate()?;
        let rel = st.child(parent, name)?;
        let mut options = open_options(flags);
        if !options.write {
            // O_CREAT|O_RDONLY: create it through a writable handle.
            options = OpenOptions::read_write();
        }
        options.create = true;
        options.create_new = flags & libc::O_EXCL != 0;
        let handle = self.io(self.fs.open(&self.abs(&rel), &options))?;
        let len = if options.create_new || options.truncate {
            0
        } else {
            self.io(handle.len())?
        };
        let ino = st.ino(&rel);
        let fh = st.new_fh();
        st.files.insert(
            fh,
            OpenFile {
                handle,
                range_locked: false,
            },
        );
        Ok((attr(ino, FileType::RegularFile, len, SystemTime::UNIX_EPOCH, 1), fh))
    }

    fn open_inner(&self, ino: INodeNo, flags: i32) -> Result<u64, Errno> {
        let mut st = self.gate()?;
        let rel = st.path(ino)?;
        let handle = self.io(self.fs.open(&self.abs(&rel), &open_options(flags)))?;
        let fh = st.new_fh();
        st.files.insert(
            fh,
            OpenFile {
                handle,
                range_locked: false,
            },
        );
        Ok(fh)
    }

    fn opendir_inner(&self, ino: INodeNo) -> Result<u64, Errno> {
        let mut st = self.gate()?;
        let rel = st.path(ino)?;
        let entries = self.io(self.fs.read_dir(&self.abs(&rel)))?;
        let parent_ino = rel
            .parent()
            .and_then(|p| st.inodes.get(p).copied())
            .unwrap_or(INodeNo::ROOT.0);
        let mut listing = vec![
            (OsString::from("."), ino.0, FileType::Directory),
            (OsString::from(".."), parent_ino, FileType::Directory),
        ];
        for entry in entries {
            let child = st.ino(&rel.join(&entry.name));
            listing.push((OsString::from(entry.name), child, kind_of(entry.kind)));
        }
        let fh = st.new_fh();
        st.dirs.insert(fh, listing);
        Ok(fh)
    }

    fn mkdir_inner(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.gate()?;
        let rel = st.child(parent, name)?;
        self.io(self.fs.create_dir(&self.abs(&rel)))?;
        let ino = st.ino(&rel);
        Ok(attr(ino, FileType::Directory, 0, SystemTime::UNIX_EPOCH, 1))
    }

    fn remove_inner(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut st = self.gate()?;
        let rel = st.child(parent, name)?;
        let abs = self.abs(&rel);
        if dir {
            self.io(self.fs.remove_dir(&abs))?;
        } else {
            self.io(self.fs.remove_file(&abs))?;
        }
        st.forget(&rel);
        Ok(())
    }

    fn rename_inner(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let mut st = self.gate()?;
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let from = st.child(parent, name)?;
        let to = st.child(newparent, newname)?;
        let (abs_from, abs_to) = (self.abs(&from), self.abs(&to));
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            match self.fs.metadata(&abs_to) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.errno(&e)),
            }
        }
        self.io(self.fs.rename(&abs_from, &abs_to))?;
        st.rename(&from, &to);
        Ok(())
    }

    fn link_inner(&self, ino: INodeNo, newparent: INodeNo, newname: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.gate()?;
        let original = st.path(ino)?;
        let link = st.child(newparent, newname)?;
        let abs_link = self.abs(&link);
        self.io(self.fs.hard_link(&self.abs(&original), &abs_link))?;
        let meta = self.io(self.fs.metadata(&abs_link))?;
        let new_ino = st.ino(&link);
        Ok(meta_attr(new_ino, &meta))
    }

    /// Drops the whole-file locks of `(ino, owner)` and, if the handle took
    /// range locks, releases them: a process's `fcntl` locks on a file go
    /// when it closes any descriptor of it.
    fn release_owner(&self, st: &mut State, ino: u64, fh: u64, owner: u64) -> Result<(), Errno> {
        st.whole_locks.remove(&(ino, owner));
        if let Some(file) = st.files.get_mut(&fh).filter(|f| f.range_locked) {
            file.range_locked = false;
            let whole = ByteRange::new(0, u64::MAX);
            self.io(file.handle.lock_range(whole, RangeLockMode::Unlock))?;
        }
        Ok(())
    }

    fn setlk_inner(&self, ino: INodeNo, fh: u64, owner: u64, start: u64, end: u64, typ: i32) -> Result<(), Errno> {
        let mut st = self.gate()?;
        let whole = start == 0 && end >= OFFSET_MAX;
        let range = ByteRange::new(start, end.saturating_sub(start).saturating_add(1));
        if typ == libc::F_UNLCK {
            if whole {
                st.whole_locks.remove(&(ino.0, owner));
            }
            if let Some(file) = st.files.get(&fh).filter(|f| f.range_locked) {
                self.io(file.handle.lock_range(range, RangeLockMode::Unlock))?;
            }
            return Ok(());
        }
        let mode = if typ == libc::F_WRLCK {
            RangeLockMode::Exclusive
        } else {
            RangeLockMode::Shared
        };
        if whole && mode == RangeLockMode::Exclusive && st.whole_locks.contains_key(&(ino.0, owner)) {
            return Ok(());
        }
        let Some(file) = st.files.get_mut(&fh) else {
            return Err(Errno::EBADF);
        };
        self.io(file.handle.lock_range(range, mode))?;
        file.range_locked = true;
        if !(whole && mode == RangeLockMode::Exclusive) {
            // A shared whole-file lock, or a downgrade: no longer exclusive.
            if whole {
                st.whole_locks.remove(&(ino.0, owner));
            }
            return Ok(());
        }
        let rel = st.path(ino)?;
        match self.fs.try_lock(&self.abs(&rel)) {
            Ok(guard) => {
                st.whole_locks.insert((ino.0, owner), WholeLock { fh, _guard: guard });
                Ok(())
            }
            Err(err) => {
                let errno = self.errno(&err);
                if let Some(file) = st.files.get(&fh) {
                    self.io(file.handle.lock_range(range, RangeLockMode::Unlock))?;
                }
                Err(errno)
            }
        }
    }

    fn getlk_inner(&self, ino: INodeNo, owner: u64, start: u64, end: u64, typ: i32) -> Result<i32, Errno> {
        let st = self.gate()?;
        if typ == libc::F_UNLCK {
            return Ok(libc::F_UNLCK);
        }
        if st.whole_locks.keys().any(|&(i, o)| i == ino.0 && o != owner) {
            return Ok(libc::F_WRLCK);
        }
        let rel = st.path(ino)?;
        let probe = self.io(self.fs.open(&self.abs(&rel), &OpenOptions::read_only()))?;
        let range = ByteRange::new(start, end.saturating_sub(start).saturating_add(1));
        let mode = if typ == libc::F_WRLCK {
            RangeLockMode::Exclusive
        } else {
            RangeLockMode::Shared
        };
        match probe.lock_range(range, mode) {
            Ok(()) => {
                self.io(probe.lock_range(range, RangeLockMode::Unlock))?;
                Ok(libc::F_UNLCK)
            }
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(libc::F_WRLCK),
            Err(e) => Err(self.errno(&e)),
        }
    }
}

fn fh_of(fh: fuser::FileHandle) -> u64 {
    fh.0
}

impl fuser::Filesystem for Server {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Locks go to the simulator (so its trace shows who holds them);
        // without these the kernel would keep them to itself.
        for flag in [
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_inner(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<fuser::FileHandle>, reply: ReplyAttr) {
        let result = self.gate().and_then(|st| self.getattr_inner(&st, ino, fh.map(fh_of)));
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<fuser::FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.setattr_inner(ino, size, fh.map(fh_of)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.mkdir_inner(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove_inner(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove_inner(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.rename_inner(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.link_inner(ino, newparent, newname) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_inner(ino, flags.0) {
            Ok(fh) => reply.opened(fuser::FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_inner(parent, name, flags) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                fuser::FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.gate().and_then(|st| {
            let file = st.files.get(&fh.0).ok_or(Errno::EBADF)?;
            let mut buf = vec![0u8; size as usize];
            let n = self.io(file.handle.read_at(&mut buf, offset))?;
            buf.truncate(n);
            Ok(buf)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.gate().and_then(|st| {
            let file = st.files.get(&fh.0).ok_or(Errno::EBADF)?;
            self.io(file.handle.write_at(data, offset))
        });
        match result {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, fh: fuser::FileHandle, lock_owner: LockOwner, reply: ReplyEmpty) {
        let result = self
            .gate()
            .and_then(|mut st| self.release_owner(&mut st, ino.0, fh.0, lock_owner.0));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Runs even after a halt: dropping handles and guards makes no Fs call
        // that can fail (the simulator forgets a dead process's locks itself).
        let mut st = self.state();
        st.whole_locks
            .retain(|&(i, o), lock| !(lock.fh == fh.0 || (i == ino.0 && Some(o) == lock_owner.map(|l| l.0))));
        st.files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: fuser::FileHandle, datasync: bool, reply: ReplyEmpty) {
        let result = self.gate().and_then(|st| {
            let file = st.files.get(&fh.0).ok_or(Errno::EBADF)?;
            if datasync {
                self.io(file.handle.sync_data())
            } else {
                self.io(file.handle.sync_all())
            }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.opendir_inner(ino) {
            Ok(fh) => reply.opened(fuser::FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: fuser::FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let st = match self.gate() {
            Ok(st) => st,
            Err(e) => return reply.error(e),
        };
        let Some(listing) = st.dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (name, ino, kind)) in listing.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: fuser::FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.state().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: fuser::FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let result = self.gate().and_then(|st| {
            let rel = st.path(ino)?;
            self.io(self.fs.sync_dir(&self.abs(&rel)))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let result = self.gate().and_then(|_st| self.io(self.fs.free_space(&self.root)));
        match result {
            Ok(free) => {
                let blocks = free / u64::from(BLOCK_SIZE);
                reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, BLOCK_SIZE, 255, BLOCK_SIZE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // No permissions are modelled: a known inode is accessible. (The
        // kernel looked it up just before, with a zero TTL.)
        match self.gate().and_then(|st| st.path(ino)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: fuser::FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        match self.getlk_inner(ino, lock_owner.0, start, end, typ) {
            Ok(found) => reply.locked(start, end, found, 0),
            Err(e) => reply.error(e),
        }
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: fuser::FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        match self.setlk_inner(ino, fh.0, lock_owner.0, start, end, typ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
