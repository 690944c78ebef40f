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
//! | setlk (`F_SETLK`/`F_SETLKW`, `flock`) | the mount's lock table (per lock owner), mirrored by `lock_range` on one handle per owner; `try_lock(path)` while an owner holds one exclusive lock over the whole file |
//! | getlk | the lock table; where no owner of the mount locks the range, a probe: `lock_range` on a fresh handle, undone at once |
//! | flush (every `close(2)`) | drops the POSIX locks of the closing process on that file |
//! | release (last close of an open file) | drops the locks taken through it (`flock`, OFD) |
//!
//! # Locks
//!
//! Locks are kept as the kernel keeps them, in a table of the mount
//! (`locks.rs`): byte ranges per (inode, lock owner), shared or
//! exclusive, conflicting only between different owners. The owner is the
//! `lock_owner` the kernel sends with each request (the `FUSE_POSIX_LOCKS`
//! and `FUSE_FLOCK_LOCKS` capabilities, asked for in `init`, make the kernel
//! send locks here instead of keeping them itself):
//!
//! - classic POSIX `fcntl` locks (`F_SETLK`, `lockf`, SQLite): the process
//!   (its table of open files), so two connections of one process never
//!   conflict, and a lock taken through one descriptor is upgraded, split or
//!   dropped through another. They go when the process closes *any*
//!   descriptor of the file: the kernel sends `flush` with the process as
//!   owner at every `close(2)`.
//! - OFD locks (`F_OFD_SETLK`) and `flock`: the open file description. They
//!   go at its `release` (its last close), not at a `flush`.
//!
//! A blocking request (`F_SETLKW`, `flock` without `LOCK_NB`) that conflicts
//! is parked with its reply (the session thread never blocks) and answered
//! when a lock is released (unlock, flush, release, a downgrade), in the
//! order the requests came (FIFO); a request whose owner would then wait in
//! a cycle of waiting owners is answered `EDEADLK` at once. A release on one
//! mount wakes the requests parked on every other mount of the process
//! (another simulated process). A killed process cannot leave a request the
//! kernel already sent: [`LockWaiters::cancel`] answers them `EINTR`.
//!
//! Each owner's ranges reach the simulator through one handle (the open
//! file it first locked through), so the trace shows every lock that was
//! granted (`fcntl_lock`) and the simulator sees another simulated process's
//! locks (through another mount) as conflicts. A request refused by another
//! owner on this mount never reaches the simulator (it is not traced). The
//! store's whole-file exclusive lock is `try_lock(path)` as well, so the
//! no-wipe-without-lock invariant reads who holds it off the trace
//! (`flock`/`funlock` lines).
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
//! - `flock` and `fcntl` locks share one table: fuser 0.18 does not pass
//!   the request's `FUSE_LK_FLOCK` flag, so a `flock` reads as an OFD lock
//!   (owned by its open file). It conflicts with another owner's `fcntl`
//!   lock on the same file, where Linux keeps the two kinds apart; and a
//!   `flock` conversion is atomic here (Linux drops the old lock first).
//! - Deadlocks are detected for every owner (Linux detects them for POSIX
//!   locks only; a `flock` deadlock waits forever there).
//! - A `getlk` where an owner of this mount locks part of the range does
//!   not see another simulated process's locks there.
//! - A process that passed a descriptor to another before closing its own
//!   loses the locks it took through that open file at its release.
//! - `mmap` is allowed where the kernel offers `FUSE_DIRECT_IO_ALLOW_MMAP`
//!   (SQLite's WAL `-shm`), and mapped pages bypass the ordering above.
//! - A name that is not UTF-8 is listed as the simulator lists it (U+FFFD
//!   for its bad bytes), so the program cannot open it by the listed name
//!   (on Linux it would get the bytes).
//! - A symbolic link the harness planted is served as one (`readlink`), and
//!   the kernel follows it: an absolute target leads out of the mount, to
//!   the host's path, where the simulator would follow it inside itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, Weak};
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

use crate::locks::{Held, Request as LockRequest, Table, would_deadlock};

/// The source every simulated mount shows in the mount table.
const FS_NAME: &str = "tearline-simfs";

/// Attributes and entries are never cached by the kernel.
const TTL: Duration = Duration::ZERO;
/// The kernel's `OFFSET_MAX`: a lock range ending here runs to the end of the file.
const OFFSET_MAX: u64 = i64::MAX as u64;
/// How long an unmount waits for the request loop to end.
const UNMOUNT_WAIT: Duration = Duration::from_secs(1);
/// Block size reported by `stat` and `statfs`.
const BLOCK_SIZE: u32 = 4096;

/// Every mount alive in this process, so a lock released on one wakes the
/// blocking requests parked on the others (a lock held through another
/// mount is another simulated process's).
static MOUNTS: Mutex<Vec<Weak<Core>>> = Mutex::new(Vec::new());

/// What the mount, its request loop and its owner share.
struct Core {
    /// What the mount serves: a directory of a filesystem, replaced between
    /// the children that reuse the mount ([`SimMount::rebind`]).
    backing: RwLock<Backing>,
    mountpoint: PathBuf,
    halted: Mutex<Option<Halted>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("root", &self.backing().root)
            .finish_non_exhaustive()
    }
}

/// The directory a mount serves, and the filesystem it is in.
struct Backing {
    fs: Arc<dyn Fs>,
    root: PathBuf,
}

/// The mountpoints of every mount alive in this process, and of every
/// other process's simulated mount visible here (another `certify --jobs`
/// worker's): a child given a mount namespace of its own unmounts their
/// copies there, so their unmounts need not wait for it to die.
pub(crate) fn mountpoints() -> Vec<PathBuf> {
    let mut all: BTreeSet<PathBuf> = MOUNTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .map(|core| core.mountpoint.clone())
        .collect();
    if let Ok(table) = std::fs::read_to_string("/proc/self/mounts") {
        all.extend(simulated_mounts(&table));
    }
    all.into_iter().collect()
}

/// The mountpoints of the simulated filesystem (source [`FS_NAME`], type
/// `fuse` or `fuse.*`) in a mount table as `/proc/self/mounts` gives it
/// (fields separated by spaces, with a space, tab, newline or backslash in
/// a path written as its octal escape).
fn simulated_mounts(table: &str) -> Vec<PathBuf> {
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (source, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (source == FS_NAME && (kind == "fuse" || kind.starts_with("fuse.")))
                .then(|| PathBuf::from(OsString::from_vec(unescape_octal(path))))
        })
        .collect()
}

/// `\ooo` escapes undone.
fn unescape_octal(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

impl Core {
    fn backing(&self) -> RwLockReadGuard<'_, Backing> {
        self.backing.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The filesystem served now.
    fn fs(&self) -> Arc<dyn Fs> {
        Arc::clone(&self.backing().fs)
    }

    fn halted(&self) -> Option<Halted> {
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A directory of an [`Fs`] mounted at a real path over FUSE. Unmounted on
/// drop (or by [`SimMount::unmount`]).
#[derive(Debug)]
pub struct SimMount {
    session: Option<BackgroundSession>,
    core: Arc<Core>,
    mountpoint: PathBuf,
}

/// The blocking lock requests parked on one mount, as a handle that outlives
/// borrowing the mount ([`SimMount::lock_waiters`]).
#[derive(Clone, Debug)]
pub struct LockWaiters {
    core: Arc<Core>,
}

impl LockWaiters {
    /// Answers every parked blocking lock request (`F_SETLKW`, `flock`
    /// without `LOCK_NB`) with `EINTR`, as a signal would. Call it after
    /// killing a process that may wait in one: the kernel keeps a killed
    /// process waiting for the filesystem's answer to a request it already
    /// sent (the mount cannot be interrupted), so it cannot die until then.
    pub fn cancel(&self) {
        let mut st = self.core.state();
        for waiter in std::mem::take(&mut st.waiting) {
            waiter.reply.error(Errno::EINTR);
        }
    }
}

impl SimMount {
    /// Serves the directory `root` of `fs` at `mountpoint` (an existing, empty
    /// real directory) until the returned value is dropped. The request loop
    /// runs on one background thread.
    ///
    /// Errors: whatever mounting fails with (no `/dev/fuse`, no permission to
    /// mount, `mountpoint` missing).
    pub fn mount(fs: Arc<dyn Fs>, root: PathBuf, mountpoint: &Path) -> io::Result<SimMount> {
        let core = Arc::new(Core {
            backing: RwLock::new(Backing { fs, root }),
            mountpoint: mountpoint.to_path_buf(),
            halted: Mutex::new(None),
            state: Mutex::new(State::new()),
        });
        let server = Server {
            core: Arc::clone(&core),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FS_NAME.to_string()),
            MountOption::Subtype("tearline".to_string()),
            MountOption::RW,
            MountOption::NoAtime,
        ];
        config.n_threads = Some(1);
        let session = Session::new(server, mountpoint, &config)?.spawn()?;
        {
            let mut mounts = MOUNTS.lock().unwrap_or_else(PoisonError::into_inner);
            mounts.retain(|m| m.strong_count() > 0);
            mounts.push(Arc::downgrade(&core));
        }
        Ok(SimMount {
            session: Some(session),
            core,
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// The simulated halt (power cut, process crash) an `Fs` call reported,
    /// if one did. From then on every request answers `EIO`.
    pub fn halted(&self) -> Option<Halted> {
        self.core.halted()
    }

    /// The blocking lock requests parked on this mount, to cancel after a
    /// kill ([`LockWaiters::cancel`]).
    pub fn lock_waiters(&self) -> LockWaiters {
        LockWaiters {
            core: Arc::clone(&self.core),
        }
    }

    /// Whether nothing is open or locked on the mount: no open file, no
    /// directory listing, no lock, no blocking request waiting. The kernel
    /// sends the last close of a file (`release`) asynchronously, so this
    /// can turn true a moment after the program closed everything.
    pub fn is_idle(&self) -> bool {
        self.core.state().is_idle()
    }

    /// Serves the directory `root` of `fs` from now on, in place of what the
    /// mount served, for a program that stays in the mount (its working
    /// directory) and has closed everything on it ([`SimMount::is_idle`]):
    /// the halt is forgotten and every name gets a new inode number (the
    /// root keeps its own), so nothing the kernel remembers of the old
    /// filesystem matches the new one.
    ///
    /// Errors: the mount is not idle (nothing changes then).
    pub fn rebind(&self, fs: Arc<dyn Fs>, root: PathBuf) -> io::Result<()> {
        let mut st = self.core.state();
        if !st.is_idle() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "files are still open or locked on the mount",
            ));
        }
        // The names the kernel may remember: every name it was given an
        // inode for and has not seen go. Dropping those under the root
        // drops the whole tree.
        let top: BTreeSet<OsString> = st
            .inodes
            .keys()
            .filter_map(|path| path.components().next())
            .map(|first| first.as_os_str().to_os_string())
            .collect();
        let mut fresh = State::new();
        fresh.next_ino = st.next_ino;
        fresh.next_fh = st.next_fh;
        *st = fresh;
        *self.core.backing.write().unwrap_or_else(PoisonError::into_inner) = Backing { fs, root };
        *self.core.halted.lock().unwrap_or_else(PoisonError::into_inner) = None;
        drop(st);
        // Without this the kernel would check each remembered name with a
        // lookup before looking it up again: syscalls a new mount does not
        // make. (A name it has dropped meanwhile answers ENOENT: fine.)
        if let Some(session) = &self.session {
            let notifier = session.notifier();
            for name in &top {
                let _ = notifier.inval_entry(INodeNo::ROOT, name);
            }
        }
        // A new child's `chdir` into the mount makes the kernel look at the
        // root once (a `getattr`, traced as a `stat`); a child that stays
        // makes no `chdir`, so the same look is made here.
        let _ = std::fs::metadata(&self.mountpoint);
        Ok(())
    }

    /// Unmounts now and waits for the request loop to end. If the mount is
    /// busy (a process still has files open there), it is detached lazily
    /// instead and the loop left to end by itself. Blocking lock requests
    /// still parked are answered `EINTR` first.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.lock_waiters().cancel();
        let result = match nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(err) => {
                // Busy or already gone: detach so nothing hangs on it.
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                Err(io::Error::from(err))
            }
        };
        // The request loop ends when the kernel lets go of the filesystem:
        // at once, unless a copy of the mount lives on in a child's mount
        // namespace (one made while this mount was up). Wait a little for
        // the requests the kernel sends after the last close, then leave
        // the loop to end by itself.
        let deadline = std::time::Instant::now() + UNMOUNT_WAIT;
        while !session.guard.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if session.guard.is_finished() {
            let _ = session.join();
        }
        result
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
}

/// What the mount keeps for one lock owner that holds locks on one inode.
#[derive(Debug)]
struct Owner {
    /// The open file whose simulator handle mirrors the owner's ranges (the
    /// first it locked through), so the simulator sees one holder per owner.
    anchor: u64,
    /// Every open file the owner locked through since it last held nothing.
    fhs: BTreeSet<u64>,
    /// The simulator's whole-file lock (`Fs::try_lock`), held while the
    /// owner's locks are one exclusive lock over the whole file.
    whole: Option<Box<dyn LockGuard>>,
}

/// A blocking lock request that must wait: answered when it can be granted.
#[derive(Debug)]
struct Waiter {
    request: LockRequest,
    fh: u64,
    pid: u32,
    reply: ReplyEmpty,
}

/// The inode table, open files and locks. Every map is ordered: nothing
/// here depends on hashing.
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
    /// Every lock held, by (inode, owner).
    locks: Table,
    /// The owners holding locks, by (inode, owner).
    owners: BTreeMap<(u64, u64), Owner>,
    /// Blocking requests waiting, first come first served.
    waiting: VecDeque<Waiter>,
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
            locks: Table::default(),
            owners: BTreeMap::new(),
            waiting: VecDeque::new(),
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

    fn is_idle(&self) -> bool {
        self.files.is_empty()
            && self.dirs.is_empty()
            && self.owners.is_empty()
            && self.waiting.is_empty()
            && self.locks.is_empty()
    }

    fn new_fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }
}

/// The FUSE filesystem.
struct Server {
    core: Arc<Core>,
}

fn kind_of(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        // The only other kind the simulator makes: the kernel reads its
        // target (`readlink`) and follows it itself.
        FileKind::Other => FileType::Symlink,
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

impl Core {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, or `EIO` once the simulated process has halted.
    fn gate(&self) -> Result<MutexGuard<'_, State>, Errno> {
        if self.halted().is_some() {
            return Err(Errno::EIO);
        }
        Ok(self.state())
    }

    /// The errno for an `Fs` error; a halt is recorded and answers `EIO`.
    fn errno(&self, err: &io::Error) -> Errno {
        if let Some(halt) = halted(err) {
            self.halted
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
        let backing = self.backing();
        if rel.as_os_str().is_empty() {
            backing.root.clone()
        } else {
            backing.root.join(rel)
        }
    }

    fn lookup_inner(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.gate()?;
        let rel = st.child(parent, name)?;
        let meta = self.io(self.fs().metadata(&self.abs(&rel)))?;
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
        let meta = self.io(self.fs().metadata(&self.abs(&rel)))?;
        Ok(meta_attr(ino.0, &meta))
    }

    fn setattr_inner(&self, ino: INodeNo, size: Option<u64>, fh: Option<u64>) -> Result<FileAttr, Errno> {
        let st = self.gate()?;
        if let Some(len) = size {
            match fh.and_then(|fh| st.files.get(&fh)) {
                Some(file) => self.io(file.handle.set_len(len))?,
                None => {
                    let rel = st.path(ino)?;
                    let handle = self.io(self.fs().open(&self.abs(&rel), &OpenOptions::read_write()))?;
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
        let handle = self.io(self.fs().open(&self.abs(&rel), &options))?;
        let len = if options.create_new || options.truncate {
            0
        } else {
            self.io(handle.len())?
        };
        let ino = st.ino(&rel);
        let fh = st.new_fh();
        st.files.insert(fh, OpenFile { handle });
        Ok((attr(ino, FileType::RegularFile, len, SystemTime::UNIX_EPOCH, 1), fh))
    }

    fn open_inner(&self, ino: INodeNo, flags: i32) -> Result<u64, Errno> {
        let mut st = self.gate()?;
        let rel = st.path(ino)?;
        let handle = self.io(self.fs().open(&self.abs(&rel), &open_options(flags)))?;
        let fh = st.new_fh();
        st.files.insert(fh, OpenFile { handle });
        Ok(fh)
    }

    fn opendir_inner(&self, ino: INodeNo) -> Result<u64, Errno> {
        let mut st = self.gate()?;
        let rel = st.path(ino)?;
        let entries = self.io(self.fs().read_dir(&self.abs(&rel)))?;
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
        self.io(self.fs().create_dir(&self.abs(&rel)))?;
        let ino = st.ino(&rel);
        Ok(attr(ino, FileType::Directory, 0, SystemTime::UNIX_EPOCH, 1))
    }

    fn remove_inner(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut st = self.gate()?;
        let rel = st.child(parent, name)?;
        let abs = self.abs(&rel);
        if dir {
            self.io(self.fs().remove_dir(&abs))?;
        } else {
            self.io(self.fs().remove_file(&abs))?;
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
            match self.fs().metadata(&abs_to) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.errno(&e)),
            }
        }
        self.io(self.fs().rename(&abs_from, &abs_to))?;
        st.rename(&from, &to);
        Ok(())
    }

    fn link_inner(&self, ino: INodeNo, newparent: INodeNo, newname: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.gate()?;
        let original = st.path(ino)?;
        let link = st.child(newparent, newname)?;
        let abs_link = self.abs(&link);
        self.io(self.fs().hard_link(&self.abs(&original), &abs_link))?;
        let meta = self.io(self.fs().metadata(&abs_link))?;
        let new_ino = st.ino(&link);
        Ok(meta_attr(new_ino, &meta))
    }
}

/// How a lock request fared against the table and the simulator.
enum Grant {
    /// Granted: the table, the simulator's ranges and its whole-file lock
    /// agree on it.
    Granted,
    /// Another owner holds a conflicting lock (on this mount, or through
    /// another simulated process); nothing changed.
    Conflict,
}

/// The simulator's byte range for bytes `start..=end`.
fn sim_range(start: u64, end: u64) -> ByteRange {
    ByteRange::new(start, end.saturating_sub(start).saturating_add(1))
}

fn sim_mode(exclusive: bool) -> RangeLockMode {
    if exclusive {
        RangeLockMode::Exclusive
    } else {
        RangeLockMode::Shared
    }
}

impl Core {
    /// Sets `request` (a lock, not an unlock) for its owner through open
    /// file `fh` if nothing conflicts: first against this mount's table,
    /// then in the simulator (through the owner's anchor handle, so another
    /// simulated process's locks are seen), then, when the owner's locks
    /// become one exclusive lock over the whole file, the simulator's
    /// whole-file lock (`try_lock`). On a conflict nothing is changed.
    fn try_grant(&self, st: &mut State, fh: u64, request: &LockRequest, pid: u32) -> Result<Grant, Errno> {
        if st.locks.conflict(request).is_some() {
            return Ok(Grant::Conflict);
        }
        let key = (request.ino, request.owner);
        let anchor = st.owners.get(&key).map_or(fh, |o| o.anchor);
        let range = sim_range(request.start, request.end);
        let before: Vec<Held> = st.locks.held(request.ino, request.owner).to_vec();
        {
            let handle = &st.files.get(&anchor).ok_or(Errno::EBADF)?.handle;
            match handle.lock_range(range, sim_mode(request.exclusive)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(Grant::Conflict),
                Err(e) => return Err(self.errno(&e)),
            }
        }
        st.locks.set(
            request.ino,
            request.owner,
            request.start,
            request.end,
            Some(request.exclusive),
            pid,
        );
        let owner = st.owners.entry(key).or_insert_with(|| Owner {
            anchor,
            fhs: BTreeSet::new(),
            whole: None,
        });
        owner.fhs.insert(fh);
        match self.sync_whole(st, request.ino, request.owner) {
            Ok(true) => Ok(Grant::Granted),
            Ok(false) => {
                // Someone outside the mount holds the whole-file lock: undo.
                st.locks
                    .set(request.ino, request.owner, request.start, request.end, None, pid);
                for held in &before {
                    st.locks.set(
                        request.ino,
                        request.owner,
                        held.start,
                        held.end,
                        Some(held.exclusive),
                        held.pid,
                    );
                }
                let handle = &st.files.get(&anchor).ok_or(Errno::EBADF)?.handle;
                self.io(handle.lock_range(range, RangeLockMode::Unlock))?;
                for held in before
                    .iter()
                    .filter(|h| h.start <= request.end && request.start <= h.end)
                {
                    let part = sim_range(held.start.max(request.start), held.end.min(request.end));
                    self.io(handle.lock_range(part, sim_mode(held.exclusive)))?;
                }
                if before.is_empty() {
                    st.owners.remove(&key);
                }
                Ok(Grant::Conflict)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes or drops the simulator's whole-file lock of `(ino, owner)` to
    /// match the table; `Ok(false)` if it must be taken and another holds it.
    fn sync_whole(&self, st: &mut State, ino: u64, owner: u64) -> Result<bool, Errno> {
        let whole = st.locks.whole_exclusive(ino, owner, OFFSET_MAX);
        let path = st.path(INodeNo(ino)).ok().map(|rel| self.abs(&rel));
        let Some(entry) = st.owners.get_mut(&(ino, owner)) else {
            return Ok(true);
        };
        match (whole, entry.whole.is_some(), path) {
            (true, false, Some(path)) => match self.fs().try_lock(&path) {
                Ok(guard) => entry.whole = Some(guard),
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(false),
                Err(e) => return Err(self.errno(&e)),
            },
            (false, true, _) => entry.whole = None,
            _ => {}
        }
        Ok(true)
    }

    /// Clears `owner`'s locks over bytes `start..=end` of `ino`.
    fn unlock(&self, st: &mut State, ino: u64, owner: u64, start: u64, end: u64) -> Result<(), Errno> {
        let Some(anchor) = st.owners.get(&(ino, owner)).map(|o| o.anchor) else {
            return Ok(());
        };
        if let Some(file) = st.files.get(&anchor) {
            self.io(file.handle.lock_range(sim_range(start, end), RangeLockMode::Unlock))?;
        }
        st.locks.set(ino, owner, start, end, None, 0);
        if st.locks.held(ino, owner).is_empty() {
            st.owners.remove(&(ino, owner));
            return Ok(());
        }
        self.sync_whole(st, ino, owner).map(|_| ())
    }

    /// Drops every lock of `owner` on `ino` (the simulator's ranges through
    /// the anchor unless `anchor_closing`, since closing a handle releases
    /// them anyway).
    fn drop_owner(&self, st: &mut State, ino: u64, owner: u64, anchor_closing: bool) -> Result<(), Errno> {
        let Some(entry) = st.owners.remove(&(ino, owner)) else {
            return Ok(());
        };
        st.locks.clear(ino, owner);
        if !anchor_closing
            && self.halted().is_none()
            && let Some(file) = st.files.get(&entry.anchor)
        {
            self.io(file.handle.lock_range(sim_range(0, OFFSET_MAX), RangeLockMode::Unlock))?;
        }
        Ok(())
    }

    /// Answers the parked requests that can be granted now, first come
    /// first served; after a halt, answers them all `EIO`.
    fn wake(&self, st: &mut State) {
        let waiting = std::mem::take(&mut st.waiting);
        for waiter in waiting {
            if self.halted().is_some() {
                waiter.reply.error(Errno::EIO);
                continue;
            }
            match self.try_grant(st, waiter.fh, &waiter.request, waiter.pid) {
                Ok(Grant::Granted) => waiter.reply.ok(),
                Ok(Grant::Conflict) => st.waiting.push_back(waiter),
                Err(e) => waiter.reply.error(e),
            }
        }
    }

    /// Wakes the parked requests of every other mount of this process
    /// (call it without holding this mount's state: a lock released here
    /// may be what another simulated process waits for).
    fn wake_others(self: &Arc<Self>) {
        let mounts: Vec<Arc<Core>> = MOUNTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for core in mounts.iter().filter(|c| !Arc::ptr_eq(c, self)) {
            let mut st = core.state();
            if !st.waiting.is_empty() {
                core.wake(&mut st);
            }
        }
    }

    /// `F_SETLK`/`F_SETLKW`/`flock`: answers `reply` now, or parks it.
    #[allow(clippy::too_many_arguments)]
    fn setlk(
        &self,
        ino: u64,
        fh: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = match self.gate() {
            Ok(st) => st,
            Err(e) => return reply.error(e),
        };
        if end < start {
            return reply.error(Errno::EINVAL);
        }
        if typ == libc::F_UNLCK {
            let result = self.unlock(&mut st, ino, owner, start, end);
            self.wake(&mut st);
            return match result {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            };
        }
        let request = LockRequest {
            ino,
            owner,
            start,
            end,
            exclusive: typ == libc::F_WRLCK,
        };
        match self.try_grant(&mut st, fh, &request, pid) {
            Ok(Grant::Granted) => {
                // A downgrade may let others in.
                self.wake(&mut st);
                reply.ok();
            }
            Ok(Grant::Conflict) if !sleep => reply.error(Errno::EAGAIN),
            Ok(Grant::Conflict) => {
                let waiting: Vec<LockRequest> = st.waiting.iter().map(|w| w.request).collect();
                if would_deadlock(&st.locks, &waiting, &request) {
                    reply.error(Errno::EDEADLK);
                } else {
                    st.waiting.push_back(Waiter {
                        request,
                        fh,
                        pid,
                        reply,
                    });
                }
            }
            Err(e) => reply.error(e),
        }
    }

    /// `F_GETLK`: the first conflicting lock of another owner on this
    /// mount, as (start, end, type, pid); where no owner here holds a lock
    /// over the range, a probe in the simulator finds another simulated
    /// process's (reported as a write lock over the asked range, pid 0).
    fn getlk(&self, ino: u64, owner: u64, start: u64, end: u64, typ: i32) -> Result<(u64, u64, i32, u32), Errno> {
        let st = self.gate()?;
        if typ == libc::F_UNLCK {
            return Ok((start, end, libc::F_UNLCK, 0));
        }
        let request = LockRequest {
            ino,
            owner,
            start,
            end,
            exclusive: typ == libc::F_WRLCK,
        };
        if let Some((_, held)) = st.locks.conflict(&request) {
            let typ = if held.exclusive { libc::F_WRLCK } else { libc::F_RDLCK };
            return Ok((held.start, held.end, typ, held.pid));
        }
        if st.locks.any_overlapping(ino, start, end) {
            return Ok((start, end, libc::F_UNLCK, 0));
        }
        let rel = st.path(INodeNo(ino))?;
        let probe = self.io(self.fs().open(&self.abs(&rel), &OpenOptions::read_only()))?;
        let range = sim_range(start, end);
        match probe.lock_range(range, sim_mode(request.exclusive)) {
            Ok(()) => {
                self.io(probe.lock_range(range, RangeLockMode::Unlock))?;
                Ok((start, end, libc::F_UNLCK, 0))
            }
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok((start, end, libc::F_WRLCK, 0)),
            Err(e) => Err(self.errno(&e)),
        }
    }

    /// `flush` (every `close(2)`): a process's POSIX locks on a file go
    /// when it closes any descriptor of it; the kernel names the process as
    /// `lock_owner`.
    fn flush(&self, ino: u64, owner: u64) -> Result<(), Errno> {
        let mut st = self.gate()?;
        let result = self.drop_owner(&mut st, ino, owner, false);
        self.wake(&mut st);
        result
    }

    /// `release` (the last close of an open file description): its `flock`
    /// and OFD locks go, and any owner's locks taken through it (a POSIX
    /// owner's went at its `flush` already). Runs even after a halt.
    fn release(&self, fh: u64) {
        let mut st = self.state();
        let keys: Vec<(u64, u64)> = st
            .owners
            .iter()
            .filter(|(_, o)| o.fhs.contains(&fh))
            .map(|(&k, _)| k)
            .collect();
        for (ino, owner) in keys {
            let closing = st.owners.get(&(ino, owner)).is_some_and(|o| o.anchor == fh);
            // An error here is a halt, recorded; the locks go regardless.
            if self.drop_owner(&mut st, ino, owner, closing).is_err() {
                st.owners.remove(&(ino, owner));
                st.locks.clear(ino, owner);
            }
        }
        st.files.remove(&fh);
        self.wake(&mut st);
    }
}

fn fh_of(fh: fuser::FileHandle) -> u64 {
    fh.0
}

impl fuser::Filesystem for Server {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Locks go to the simulator (so its trace shows who holds them);
        // without these the kernel would keep them to itself.core.
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
        match self.core.lookup_inner(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self.core.gate().and_then(|st| {
            let rel = st.path(ino)?;
            self.core.io(self.core.fs().read_link(&self.core.abs(&rel)))
        });
        match result {
            Ok(target) => {
                use std::os::unix::ffi::OsStrExt;
                reply.data(target.as_os_str().as_bytes());
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<fuser::FileHandle>, reply: ReplyAttr) {
        let result = self
            .core
            .gate()
            .and_then(|st| self.core.getattr_inner(&st, ino, fh.map(fh_of)));
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
        match self.core.setattr_inner(ino, size, fh.map(fh_of)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.core.mkdir_inner(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.remove_inner(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.core.remove_inner(parent, name, true) {
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
        match self.core.rename_inner(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.core.link_inner(ino, newparent, newname) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.core.open_inner(ino, flags.0) {
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
        match self.core.create_inner(parent, name, flags) {
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
        let result = self.core.gate().and_then(|st| {
            let file = st.files.get(&fh.0).ok_or(Errno::EBADF)?;
            let mut buf = vec![0u8; size as usize];
            let n = self.core.io(file.handle.read_at(&mut buf, offset))?;
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
        let result = self.core.gate().and_then(|st| {
            let file = st.files.get(&fh.0).ok_or(Errno::EBADF)?;
            self.core.io(file.handle.write_at(data, offset))
        });
        match result {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: fuser::FileHandle, lock_owner: LockOwner, reply: ReplyEmpty) {
        let result = self.core.flush(ino.0, lock_owner.0);
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.core.wake_others();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The owners whose locks were taken through this open file lose them
        // (`flock` and OFD locks are the open file's own; see the module docs).
        self.core.release(fh.0);
        reply.ok();
        self.core.wake_others();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: fuser::FileHandle, datasync: bool, reply: ReplyEmpty) {
        let result = self.core.gate().and_then(|st| {
            let file = st.files.get(&fh.0).ok_or(Errno::EBADF)?;
            if datasync {
                self.core.io(file.handle.sync_data())
            } else {
                self.core.io(file.handle.sync_all())
            }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir_inner(ino) {
            Ok(fh) => reply.opened(fuser::FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: fuser::FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let st = match self.core.gate() {
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
        self.core.state().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: fuser::FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let result = self.core.gate().and_then(|st| {
            let rel = st.path(ino)?;
            self.core.io(self.core.fs().sync_dir(&self.core.abs(&rel)))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let result = self
            .core
            .gate()
            .and_then(|_st| self.core.io(self.core.fs().free_space(&self.core.abs(Path::new("")))));
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
        match self.core.gate().and_then(|st| st.path(ino)) {
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
        match self.core.getlk(ino.0, lock_owner.0, start, end, typ) {
            Ok((start, end, typ, pid)) => reply.locked(start, end, typ, pid),
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
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        self.core
            .setlk(ino.0, fh.0, lock_owner.0, start, end, typ, pid, sleep, reply);
        self.core.wake_others();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_mounts_are_read_off_the_mount_table() {
        let table = "proc /proc proc rw 0 0\n\
                     tearline-simfs /tmp/tearline-mnt-a fuse rw,nosuid 0 0\n\
                     other /mnt/x fuse.sshfs rw 0 0\n\
                     tearline-simfs /tmp/not-fuse tmpfs rw 0 0\n\
                     tearline-simfs /tmp/with\\040space fuse.tearline rw 0 0\n";
        assert_eq!(
            simulated_mounts(table),
            [PathBuf::from("/tmp/tearline-mnt-a"), PathBuf::from("/tmp/with space")]
        );
        assert_eq!(unescape_octal("a\\134b\\9"), b"a\\b\\9");
    }
}
