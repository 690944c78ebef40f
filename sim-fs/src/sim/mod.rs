//! [`SimFs`]: an in-memory filesystem that models what a kernel promises about
//! durability and no more, fails where a [`FaultPlan`] says, and records every
//! syscall in a [`Trace`].
//!
//! # Model
//!
//! - **One machine, several processes.** A [`SimFs`] value is one simulated
//!   process's view of one simulated machine; [`SimFs::spawn_process`] starts
//!   another process on the same machine. Each process has its own open files
//!   and locks.
//! - **Durability** (see [`durability`]): the page cache, the durable image
//!   and the pending operations between them are kept apart. `fsync` makes a
//!   file's bytes durable, directory fsync makes names durable.
//! - **Process crash** ([`SimFs::crash_process`] or [`Fault::ProcessCrash`]):
//!   the process's handles and locks vanish; the page cache, and so every write
//!   it made, stays.
//! - **Power cut** ([`SimFs::power_cut`] or [`Fault::PowerCut`]): every process
//!   stops. [`SimFs::reboot`] then builds the disk from the durable image plus
//!   the pending operations a [`PersistenceModel`] lets survive, with coin flips
//!   from an RNG seeded per crash point.
//! - **Devices**: the root device and any [`Mount`]s, chosen by longest path
//!   prefix. Rename and hard link across devices fail with `EXDEV`; a write
//!   that would exceed a device's capacity fails with `ENOSPC` and changes
//!   nothing.
//! - **Time**: a [`SimClock`] starting at a fixed epoch, advanced by a fixed
//!   cost per syscall.
//! - **Determinism**: the only randomness is [`SimConfig::seed`], split into
//!   one stream for faults and one for crash outcomes. Same seed, same
//!   workload: same trace, byte for byte.
//! - **Snapshots** ([`SimFs::snapshot`], [`SimFs::record_snapshots`]): the state
//!   is held in persistent (structurally shared) maps, so a snapshot is O(1)
//!   and the disk after a power cut at syscall k can be derived from the
//!   snapshot taken at k, without re-running the workload up to k.
//!
//! Not modelled: symlinks, permissions, `..` in paths, file holes (gaps read
//! as zeros and count as used space), and `mmap`.

mod config;
pub mod durability;
pub mod faults;
mod halt;
mod image;
mod locks;
pub mod persistence;
mod seeds;
mod snapshot;
pub mod trace;
mod world;

use std::fmt;
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;

use crate::clock::{Clock, SimClock};
use crate::errno;
use crate::fs::{
    ByteRange, DirEntry, FileHandle, FileIdentity, FileKind, Fs, LockGuard, Metadata, OpenOptions, RangeLockMode,
};
pub use config::{Mount, SimConfig};
use durability::PendingOp;
use faults::{Fault, FaultPlan};
use halt::halt_error;
pub use halt::{HaltKind, Halted, halted};
use image::{Ino, NewNode, Node, ROOT_INO};
use locks::{FileLock, SimLock};
use persistence::{CrashChoice, PersistenceModel};
use seeds::crash_seed;
pub use snapshot::SimSnapshot;
use snapshot::fingerprint;
use trace::{Outcome, SyscallArgs, SyscallKind, Trace};
use world::{Call, HandleId, OpenFile, Pid, PowerCut, World, lock_world};

/// Splits an absolute path into its names; `EINVAL` for relative paths, `..`
/// or names that are not UTF-8.
fn components(path: &Path) -> io::Result<Vec<&str>> {
    if !path.is_absolute() {
        return Err(errno::einval());
    }
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(name.to_str().ok_or_else(errno::einval)?),
            Component::ParentDir | Component::Prefix(_) => return Err(errno::einval()),
        }
    }
    Ok(names)
}

impl World {
    /// Creates an empty file named `name` in `dir` (reached as `path`).
    fn create_file(&mut self, dir: Ino, name: &str, path: &Path) -> Ino {
        let device = self.device_of(path);
        let ino = self.alloc_ino();
        self.state.record(PendingOp::Link {
            dir,
            name: name.to_string(),
            ino,
            kind: NewNode::File(device),
        });
        ino
    }

    /// The inode a path names.
    fn resolve(&self, path: &Path) -> io::Result<Ino> {
        let mut ino = ROOT_INO;
        for name in components(path)? {
            let entries = self.state.current.dir(ino).ok_or_else(errno::enotdir)?;
            ino = *entries.get(name).ok_or_else(errno::enoent)?;
        }
        Ok(ino)
    }

    /// The directory holding a path's last name, and that name.
    fn resolve_parent<'p>(&self, path: &'p Path) -> io::Result<(Ino, &'p str)> {
        let mut names = components(path)?;
        let name = names.pop().ok_or_else(errno::einval)?;
        let mut dir = ROOT_INO;
        for part in names {
            let entries = self.state.current.dir(dir).ok_or_else(errno::enotdir)?;
            dir = *entries.get(part).ok_or_else(errno::enoent)?;
        }
        if self.state.current.dir(dir).is_none() {
            return Err(errno::enotdir());
        }
        Ok((dir, name))
    }

    /// The length of the file `path` names, if it names one.
    fn file_len_at(&self, path: &Path) -> Option<u64> {
        let ino = self.resolve(path).ok()?;
        Some(self.state.current.file(ino)?.len())
    }

    /// The length of the file open as `handle`, if it is open.
    fn handle_len(&self, handle: HandleId) -> Option<u64> {
        let ino = self.handles.get(&handle)?.ino;
        Some(self.state.current.file(ino)?.len())
    }

    fn is_mount_point(&self, path: &Path) -> bool {
        self.config.mounts.iter().any(|m| m.path == path)
    }

    fn node_kind(&self, ino: Ino) -> NewNode {
        match self.state.current.node(ino) {
            Some(Node::File(data)) => NewNode::File(data.device),
            _ => NewNode::Dir,
        }
    }
}

/// One simulated process on a simulated machine. Cloning gives another handle
/// to the same process; [`SimFs::spawn_process`] starts a new one.
#[derive(Clone)]
pub struct SimFs {
    world: Arc<Mutex<World>>,
    pid: Pid,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// What a fault does to the one syscall it strikes, once the generic faults
/// (power cut, crash, errno, clock jump) are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteFault {
    Short,
    Torn,
}

impl SimFs {
    /// A new machine with an empty root directory, and its first process.
    pub fn new(config: SimConfig) -> Self {
        let mut world = World::new(Arc::new(config), SimClock::new());
        let pid = world.spawn();
        Self {
            world: Arc::new(Mutex::new(world)),
            pid,
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock_world(&self.world)
    }

    /// This process's id (1 for a machine's first process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts another process on the same machine.
    pub fn spawn_process(&self) -> SimFs {
        let pid = self.world().spawn();
        SimFs {
            world: Arc::clone(&self.world),
            pid,
        }
    }

    /// The machine's clock (shared: every clone sees the same time).
    pub fn clock(&self) -> SimClock {
        self.world().clock.clone()
    }

    /// Sets the capacity of the device holding `path` from now on (e.g. to
    /// leave a store little room after its setup ran). Writes that would
    /// exceed it fail with `ENOSPC`; nothing already written is removed.
    pub fn set_capacity(&self, path: &Path, capacity_bytes: u64) {
        let mut world = self.world();
        let device = world.device_of(path);
        let config = Arc::make_mut(&mut world.config);
        match device {
            0 => config.root_capacity_bytes = capacity_bytes,
            d => {
                if let Some(mount) = config.mounts.get_mut(d as usize - 1) {
                    mount.capacity_bytes = capacity_bytes;
                }
            }
        }
    }

    /// Bytes used on the device holding `path`.
    pub fn used_bytes(&self, path: &Path) -> u64 {
        let world = self.world();
        let device = world.device_of(path);
        world.used.get(&device).copied().unwrap_or(0)
    }

    /// Replaces the fault plan. Rules see syscalls from now on.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.world().faults = plan;
    }

    /// Kills this process now (SIGKILL): its handles and locks go, its writes stay.
    pub fn crash_process(&self) {
        let mut world = self.world();
        let halt = Halted {
            kind: HaltKind::ProcessCrash,
            at_syscall: world.syscall_index,
        };
        world.kill(self.pid, halt);
    }

    /// Cuts the power now: every process stops until [`SimFs::reboot`].
    pub fn power_cut(&self) {
        let mut world = self.world();
        let halt = Halted {
            kind: HaltKind::PowerCut,
            at_syscall: world.syscall_index,
        };
        world.power_cut.get_or_insert(PowerCut { halt, keep_last: false });
    }

    /// Why this process cannot run, if it cannot (dead, or the power is off).
    pub fn halted(&self) -> Option<Halted> {
        self.world().stopped(self.pid)
    }

    /// A power-cut outcome under `model`, drawn from the seed mixed with the
    /// crash point and boot: the same one the snapshot taken at that point
    /// draws ([`SimSnapshot::sample_crash`] with the seed [`SimFs::crash_seed`]).
    /// The durable part of a torn write always survives.
    pub fn crash_choice(&self, model: PersistenceModel) -> CrashChoice {
        let world = self.world();
        let mut choice = world.snapshot().sample_crash(model, crash_seed(world.config.seed));
        if world.power_cut.is_some_and(|c| c.keep_last) {
            let mut fates = choice.fates().to_vec();
            if let Some(last) = fates.last_mut() {
                *last = persistence::Fate::Kept;
            }
            choice = CrashChoice::from_fates(fates);
        }
        choice
    }

    /// The seed crash outcomes are drawn from: derived from
    /// [`SimConfig::seed`], separate from the fault stream.
    pub fn crash_seed(&self) -> u64 {
        crash_seed(self.world().config.seed)
    }

    /// Cuts the power (if it is still on) and boots again, keeping what the
    /// configured persistence model and the seed choose. Returns the first
    /// process of the new boot; every older handle is dead.
    pub fn reboot(&self) -> SimFs {
        let model = self.world().config.persistence;
        let choice = self.crash_choice(model);
        self.reboot_with(model, &choice)
    }

    /// Cuts the power (if it is still on) and boots again with an explicit
    /// outcome (torn writes at `model`'s sector size).
    pub fn reboot_with(&self, model: PersistenceModel, choice: &CrashChoice) -> SimFs {
        let mut world = self.world();
        world.reboot(model, choice);
        let pid = world.spawn();
        SimFs {
            world: Arc::clone(&self.world),
            pid,
        }
    }

    /// The machine's state now.
    pub fn snapshot(&self) -> SimSnapshot {
        self.world().snapshot()
    }

    /// Starts (or stops) keeping a snapshot before every syscall, for
    /// [`SimFs::take_snapshots`]. Each is O(1) in time and small in memory.
    pub fn record_snapshots(&self, on: bool) {
        self.world().snapshots = on.then(Vec::new);
    }

    /// The snapshots recorded so far (one per syscall, in order); recording
    /// goes on.
    pub fn take_snapshots(&self) -> Vec<SimSnapshot> {
        self.world().snapshots.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// A copy of the trace so far.
    pub fn trace(&self) -> Trace {
        self.world().trace.clone()
    }

    /// The index the next syscall will get (= syscalls made so far).
    pub fn syscall_count(&self) -> u64 {
        self.world().syscall_index
    }

    /// A stable hash of every name and byte the processes see now (the page
    /// cache), for comparing runs.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.world().state.current)
    }

    /// Runs one syscall: checks the process may run, numbers it, advances the
    /// clock, consults the fault plan, runs `body` unless a fault pre-empts
    /// it, and traces the result. `args` reads the call's arguments off the
    /// state before the call; `describe` renders a successful result.
    fn syscall<T>(
        &self,
        op: SyscallKind,
        path: &str,
        args: impl FnOnce(&World) -> SyscallArgs,
        body: impl FnOnce(&mut World, Option<WriteFault>) -> io::Result<T>,
        describe: impl FnOnce(&T) -> Outcome,
    ) -> io::Result<T> {
        let mut guard = self.world();
        let world = &mut *guard;
        if let Some(halt) = world.stopped(self.pid) {
            return Err(halt_error(halt));
        }
        let args = args(world);
        let index = world.syscall_index;
        world.syscall_index += 1;
        world.clock.advance(world.config.syscall_time);
        world.record_snapshot(index);
        let fault = world.faults.check(index, op, path, &mut world.fault_rng);
        let call = Call {
            index,
            pid: self.pid,
            op,
            path,
            args,
        };
        let halt = |kind| Halted {
            kind,
            at_syscall: index,
        };
        let write_fault = match fault {
            Some(Fault::PowerCut) => {
                world.power_cut = Some(PowerCut {
                    halt: halt(HaltKind::PowerCut),
                    keep_last: false,
                });
                world.log(&call, Outcome::PowerCut, fault);
                return Err(halt_error(halt(HaltKind::PowerCut)));
            }
            Some(Fault::ProcessCrash) => {
                world.kill(self.pid, halt(HaltKind::ProcessCrash));
                world.log(&call, Outcome::ProcessCrash, fault);
                return Err(halt_error(halt(HaltKind::ProcessCrash)));
            }
            Some(Fault::Errno(code)) => {
                world.log(&call, Outcome::Errno(code), fault);
                return Err(io::Error::from_raw_os_error(code));
            }
            Some(Fault::ClockJumpBack(by)) => {
                world.clock.jump_back(by);
                None
            }
            Some(Fault::ShortWrite) => Some(WriteFault::Short),
            Some(Fault::TornWrite) => Some(WriteFault::Torn),
            None => None,
        };
        let result = body(world, write_fault);
        let outcome = match (&result, world.power_cut) {
            (_, Some(cut)) if cut.halt.at_syscall == index => Outcome::PowerCut,
            (Ok(value), _) => describe(value),
            (Err(e), _) => Outcome::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        world.log(&call, outcome, fault);
        result
    }

    /// A syscall on one path, with no other arguments, traced as `ok` on success.
    fn path_call<T>(
        &self,
        op: SyscallKind,
        path: &Path,
        body: impl FnOnce(&mut World) -> io::Result<T>,
    ) -> io::Result<T> {
        self.syscall(
            op,
            &path.display().to_string(),
            |_| SyscallArgs::None,
            |world, _| body(world),
            ok,
        )
    }

    fn handle(&self, path: &Path, ino: Ino, writable: bool) -> Box<dyn FileHandle> {
        let mut world = self.world();
        let id = world.next_handle;
        world.next_handle += 1;
        world.handles.insert(
            id,
            OpenFile {
                pid: self.pid,
                ino,
                path: path.display().to_string(),
                writable,
            },
        );
        Box::new(SimFile { fs: self.clone(), id })
    }
}

fn ok<T>(_: &T) -> Outcome {
    Outcome::Ok
}

impl Fs for SimFs {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<Box<dyn FileHandle>> {
        let ino = self.syscall(
            SyscallKind::Open,
            &path.display().to_string(),
            |world| SyscallArgs::Open {
                options: *options,
                existing_len: world.file_len_at(path),
            },
            |world, _| {
                options.validate()?;
                let (dir, name) = world.resolve_parent(path)?;
                let ino = match world.state.current.lookup(dir, name) {
                    Some(ino) => {
                        if options.create_new {
                            return Err(errno::eexist());
                        }
                        let file = world.state.current.file(ino).ok_or_else(errno::eisdir)?;
                        if options.truncate && file.len() > 0 {
                            let (device, len) = (file.device, file.len());
                            let mtime = world.clock.now();
                            world.state.record(PendingOp::SetLen {
                                ino,
                                device,
                                len: 0,
                                mtime,
                            });
                            world.account(device, len, 0);
                        }
                        ino
                    }
                    None if options.create || options.create_new => world.create_file(dir, name, path),
                    None => return Err(errno::enoent()),
                };
                Ok(ino)
            },
            ok,
        )?;
        Ok(self.handle(path, ino, options.write))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.syscall(
            SyscallKind::Rename,
            &from.display().to_string(),
            |_| SyscallArgs::Rename {
                to: to.display().to_string(),
            },
            |world, _| {
                let (from_dir, from_name) = world.resolve_parent(from)?;
                let ino = world
                    .state
                    .current
                    .lookup(from_dir, from_name)
                    .ok_or_else(errno::enoent)?;
                let (to_dir, to_name) = world.resolve_parent(to)?;
                if world.device_of(from) != world.device_of(to) || world.is_mount_point(from) {
                    return Err(errno::exdev());
                }
                let moving_dir = world.state.current.dir(ino).is_some();
                if moving_dir && to.starts_with(from) && to != from {
                    return Err(errno::einval());
                }
                if let Some(target) = world.state.current.lookup(to_dir, to_name) {
                    if target == ino {
                        return Ok(());
                    }
                    match (moving_dir, world.state.current.dir(target)) {
                        (false, Some(_)) => return Err(errno::eisdir()),
                        (true, None) => return Err(errno::enotdir()),
                        (true, Some(entries)) if !entries.is_empty() => return Err(errno::enotempty()),
                        _ => {}
                    }
                }
                let kind = world.node_kind(ino);
                world.state.record(PendingOp::Rename {
                    ino,
                    kind,
                    from_dir,
                    from_name: from_name.to_string(),
                    to_dir,
                    to_name: to_name.to_string(),
                    from_pending: true,
                    to_pending: true,
                });
                world.collect_garbage();
                Ok(())
            },
            ok,
        )
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.syscall(
            SyscallKind::HardLink,
            &original.display().to_string(),
            |_| SyscallArgs::HardLink {
                link: link.display().to_string(),
            },
            |world, _| {
                let ino = world.resolve(original)?;
                let device = match world.state.current.node(ino) {
                    Some(Node::File(data)) => data.device,
                    _ => return Err(errno::eperm()),
                };
                let (dir, name) = world.resolve_parent(link)?;
                if world.state.current.lookup(dir, name).is_some() {
                    return Err(errno::eexist());
                }
                if world.device_of(original) != world.device_of(link) {
                    return Err(errno::exdev());
                }
                world.state.record(PendingOp::Link {
                    dir,
                    name: name.to_string(),
                    ino,
                    kind: NewNode::File(device),
                });
                Ok(())
            },
            ok,
        )
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::RemoveFile, path, |world| {
            let (dir, name) = world.resolve_parent(path)?;
            let ino = world.state.current.lookup(dir, name).ok_or_else(errno::enoent)?;
            if world.state.current.dir(ino).is_some() {
                return Err(errno::eisdir());
            }
            world.state.record(PendingOp::Unlink {
                dir,
                name: name.to_string(),
            });
            world.collect_garbage();
            Ok(())
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::CreateDir, path, |world| {
            let (dir, name) = world.resolve_parent(path)?;
            if world.state.current.lookup(dir, name).is_some() {
                return Err(errno::eexist());
            }
            let ino = world.alloc_ino();
            world.state.record(PendingOp::Link {
                dir,
                name: name.to_string(),
                ino,
                kind: NewNode::Dir,
            });
            Ok(())
        })
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::RemoveDir, path, |world| {
            let (dir, name) = world.resolve_parent(path)?;
            let ino = world.state.current.lookup(dir, name).ok_or_else(errno::enoent)?;
            let entries = world.state.current.dir(ino).ok_or_else(errno::enotdir)?;
            if !entries.is_empty() {
                return Err(errno::enotempty());
            }
            if world.is_mount_point(path) {
                return Err(errno::ebusy());
            }
            world.state.record(PendingOp::Unlink {
                dir,
                name: name.to_string(),
            });
            world.collect_garbage();
            Ok(())
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.syscall(
            SyscallKind::ReadDir,
            &path.display().to_string(),
            |_| SyscallArgs::None,
            |world, _| {
                let ino = world.resolve(path)?;
                let entries = world.state.current.dir(ino).ok_or_else(errno::enotdir)?;
                Ok(entries
                    .iter()
                    .map(|(name, child)| DirEntry {
                        name: name.clone(),
                        kind: match world.state.current.node(*child) {
                            Some(Node::Dir(_)) => FileKind::Dir,
                            _ => FileKind::File,
                        },
                    })
                    .collect())
            },
            |entries: &Vec<DirEntry>| Outcome::Count(entries.len() as u64),
        )
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        self.path_call(SyscallKind::Metadata, path, |world| {
            let ino = world.resolve(path)?;
            Ok(match world.state.current.node(ino) {
                Some(Node::File(data)) => Metadata {
                    kind: FileKind::File,
                    len: data.len(),
                    modified: data.mtime,
                    links: world.state.current.link_count(ino),
                },
                _ => Metadata {
                    kind: FileKind::Dir,
                    len: 0,
                    modified: SimClock::epoch(),
                    links: 1,
                },
            })
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.path_call(SyscallKind::SyncDir, path, |world| {
            let ino = world.resolve(path)?;
            if world.state.current.dir(ino).is_none() {
                return Err(errno::enotdir());
            }
            world.state.sync_dir(ino);
            Ok(())
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let pid = self.pid;
        let (ino, guard) = self.syscall(
            SyscallKind::Lock,
            &path.display().to_string(),
            |_| SyscallArgs::ExclusiveLock,
            |world, _| {
                let (dir, name) = world.resolve_parent(path)?;
                let ino = match world.state.current.lookup(dir, name) {
                    Some(ino) if world.state.current.dir(ino).is_some() => return Err(errno::eisdir()),
                    Some(ino) => ino,
                    None => world.create_file(dir, name, path),
                };
                if world.file_locks.contains_key(&ino) {
                    return Err(errno::ewouldblock());
                }
                let guard = world.next_handle;
                world.next_handle += 1;
                world.file_locks.insert(ino, FileLock { pid, guard });
                Ok((ino, guard))
            },
            ok,
        )?;
        Ok(Box::new(SimLock {
            world: Arc::clone(&self.world),
            path: path.to_path_buf(),
            ino,
            guard,
        }))
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        self.syscall(
            SyscallKind::FreeSpace,
            &path.display().to_string(),
            |_| SyscallArgs::None,
            |world, _| {
                world.resolve(path)?;
                let device = world.device_of(path);
                let used = world.used.get(&device).copied().unwrap_or(0);
                Ok(world.capacity(device).saturating_sub(used))
            },
            |free: &u64| Outcome::Count(*free),
        )
    }
}

/// An open simulated file.
struct SimFile {
    fs: SimFs,
    id: HandleId,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("handle", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.fs.world().close(self.id);
    }
}

impl SimFile {
    /// The path this handle was opened as (for the trace), or empty if it is gone.
    fn path(&self) -> String {
        self.fs
            .world()
            .handles
            .get(&self.id)
            .map(|h| h.path.clone())
            .unwrap_or_default()
    }

    /// Runs a syscall on this handle's inode. A handle of a dead process
    /// reports the process's halt; `EBADF` if closed otherwise.
    fn call<T>(
        &self,
        op: SyscallKind,
        args: impl FnOnce(&World) -> SyscallArgs,
        body: impl FnOnce(&mut World, &OpenFileView, Option<WriteFault>) -> io::Result<T>,
        describe: impl FnOnce(&T) -> Outcome,
    ) -> io::Result<T> {
        let path = self.path();
        let id = self.id;
        self.fs.syscall(
            op,
            &path,
            args,
            |world, fault| {
                let view = world
                    .handles
                    .get(&id)
                    .map(|h| OpenFileView {
                        ino: h.ino,
                        writable: h.writable,
                    })
                    .ok_or_else(errno::ebadf)?;
                body(world, &view, fault)
            },
            describe,
        )
    }
}

/// The parts of an open file a syscall body needs.
struct OpenFileView {
    ino: Ino,
    writable: bool,
}

fn count(n: &usize) -> Outcome {
    Outcome::Count(*n as u64)
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len();
        self.call(
            SyscallKind::Read,
            |_| SyscallArgs::Read {
                offset,
                len: len as u64,
            },
            |world, file, _| {
                let data = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?;
                Ok(data.read_at(buf, offset))
            },
            count,
        )
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.call(
            SyscallKind::Write,
            |_| SyscallArgs::Write {
                offset,
                len: buf.len() as u64,
            },
            |world, file, fault| {
                if !file.writable {
                    return Err(errno::ebadf());
                }
                let (device, old_len) = {
                    let data = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?;
                    (data.device, data.len())
                };
                let written = match fault {
                    Some(WriteFault::Short) if buf.len() > 1 => world.fault_rng.random_range(1..buf.len()),
                    Some(WriteFault::Torn) => {
                        let sector = world.config.persistence.sector_size() as usize;
                        let sectors = buf.len().div_ceil(sector);
                        world.fault_rng.random_range(0..sectors.max(1)) * sector
                    }
                    _ => buf.len(),
                };
                let new_len = old_len.max(offset + written as u64);
                world.reserve(device, old_len, new_len)?;
                if written > 0 {
                    let mtime = world.clock.now();
                    world.state.record(PendingOp::Write {
                        ino: file.ino,
                        device,
                        offset,
                        data: Arc::from(&buf[..written]),
                        mtime,
                    });
                    world.account(device, old_len, new_len);
                }
                if fault == Some(WriteFault::Torn) {
                    let halt = Halted {
                        kind: HaltKind::PowerCut,
                        at_syscall: world.syscall_index - 1,
                    };
                    world.power_cut = Some(PowerCut {
                        halt,
                        keep_last: written > 0,
                    });
                    return Err(halt_error(halt));
                }
                Ok(written)
            },
            count,
        )
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let id = self.id;
        self.call(
            SyscallKind::SetLen,
            |world| SyscallArgs::SetLen {
                len,
                old_len: world.handle_len(id),
            },
            |world, file, _| {
                if !file.writable {
                    return Err(errno::einval());
                }
                let (device, old_len) = {
                    let data = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?;
                    (data.device, data.len())
                };
                world.reserve(device, old_len, len)?;
                let mtime = world.clock.now();
                world.state.record(PendingOp::SetLen {
                    ino: file.ino,
                    device,
                    len,
                    mtime,
                });
                world.account(device, old_len, len);
                Ok(())
            },
            ok,
        )
    }

    fn len(&self) -> io::Result<u64> {
        self.call(
            SyscallKind::Fstat,
            |_| SyscallArgs::FstatLen,
            |world, file, _| Ok(world.state.current.file(file.ino).ok_or_else(errno::ebadf)?.len()),
            |len: &u64| Outcome::Count(*len),
        )
    }

    fn sync_all(&self) -> io::Result<()> {
        self.call(
            SyscallKind::SyncAll,
            |_| SyscallArgs::None,
            |world, file, _| {
                world.state.sync_file(file.ino);
                Ok(())
            },
            ok,
        )
    }

    fn sync_data(&self) -> io::Result<()> {
        self.call(
            SyscallKind::SyncData,
            |_| SyscallArgs::None,
            |world, file, _| {
                let policy = world.config.sync_data;
                world.state.sync_data(file.ino, policy);
                Ok(())
            },
            ok,
        )
    }

    fn lock_range(&self, range: ByteRange, mode: RangeLockMode) -> io::Result<()> {
        let id = self.id;
        self.call(
            SyscallKind::LockRange,
            |_| SyscallArgs::LockRange { mode, range },
            |world, file, _| {
                let locks = world.range_locks.entry(file.ino).or_default();
                locks::set_range(locks, id, range, mode)
            },
            ok,
        )
    }

    fn identity(&self) -> io::Result<FileIdentity> {
        self.call(
            SyscallKind::Fstat,
            |_| SyscallArgs::FstatIdentity,
            |world, file, _| {
                let device = match world.state.current.node(file.ino) {
                    Some(Node::File(data)) => data.device,
                    _ => 0,
                };
                Ok(FileIdentity {
                    device: (world.machine << 32)
                        | ((u64::from(world.boot) & 0xFF_FFFF) << 8)
                        | u64::from(device & 0xFF),
                    inode: file.ino,
                })
            },
            ok,
        )
    }
}
