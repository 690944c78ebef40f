//! The world: one simulated machine's whole state behind one mutex: the
//! durability [`State`], its processes and their open files and locks, the
//! devices and the bytes used on each, the power, the fault plan and its RNG,
//! the clock, the trace and the recorded snapshots. Processes are killed,
//! handles closed and the machine rebooted here; unreachable inodes are
//! garbage-collected whenever a name or a handle goes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::SimConfig;
use super::durability::{PendingOp, State};
use super::faults::{Fault, FaultPlan};
use super::halt::{HaltKind, Halted};
use super::image::{DeviceId, Ino, NewNode, ROOT_INO, StateKey};
use super::locks::{FileLock, RangeLock};
use super::namespace::components;
use super::persistence::{CrashChoice, PersistenceModel};
use super::seeds;
use super::snapshot::SimSnapshot;
use super::trace::{Outcome, SyscallArgs, SyscallKind, Trace, TraceEntry};
use crate::clock::{Clock, SimClock};
use crate::errno;

pub(super) type Pid = u32;
pub(super) type HandleId = u64;

#[derive(Clone, Debug)]
pub(super) struct Process {
    pub(super) death: Option<Halted>,
}

#[derive(Clone, Debug)]
pub(super) struct OpenFile {
    pub(super) pid: Pid,
    pub(super) ino: Ino,
    pub(super) path: String,
    pub(super) writable: bool,
}

/// Gives each simulated machine an identity for [`crate::FileIdentity`] only; it
/// never reaches a trace or a report.
static NEXT_MACHINE: AtomicU64 = AtomicU64::new(1);

/// One syscall being made, for the trace.
pub(super) struct Call<'a> {
    pub(super) index: u64,
    pub(super) pid: Pid,
    pub(super) op: SyscallKind,
    pub(super) path: &'a str,
    pub(super) args: SyscallArgs,
}

pub(super) struct World {
    pub(super) machine: u64,
    pub(super) config: Arc<SimConfig>,
    pub(super) state: State,
    pub(super) boot: u32,
    pub(super) syscall_index: u64,
    pub(super) next_ino: Ino,
    pub(super) next_pid: Pid,
    pub(super) next_handle: HandleId,
    pub(super) processes: imbl::OrdMap<Pid, Process>,
    pub(super) handles: imbl::OrdMap<HandleId, OpenFile>,
    pub(super) file_locks: imbl::OrdMap<Ino, FileLock>,
    pub(super) range_locks: imbl::OrdMap<Ino, Vec<RangeLock>>,
    pub(super) power_cut: Option<PowerCut>,
    pub(super) used: BTreeMap<DeviceId, u64>,
    pub(super) trace: Trace,
    pub(super) faults: FaultPlan,
    pub(super) fault_rng: ChaCha8Rng,
    pub(super) clock: SimClock,
    pub(super) snapshots: Option<Vec<SimSnapshot>>,
    pub(super) hook: Option<SyscallHook>,
}

/// Called before each syscall of a machine is numbered, with the index it
/// will get ([`crate::SimFs::set_syscall_hook`]).
pub type SyscallHook = Arc<dyn Fn(&crate::SimFs, u64) + Send + Sync>;

/// A machine's processes at one moment: which are alive, their open files
/// and locks, and the next numbers to give out. Kept in a
/// [`SimSnapshot`], so a process crash can be derived from it.
#[derive(Clone, Debug)]
pub(super) struct Processes {
    next_pid: Pid,
    next_handle: HandleId,
    processes: imbl::OrdMap<Pid, Process>,
    handles: imbl::OrdMap<HandleId, OpenFile>,
    file_locks: imbl::OrdMap<Ino, FileLock>,
    range_locks: imbl::OrdMap<Ino, Vec<RangeLock>>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct PowerCut {
    pub(super) halt: Halted,
    /// A torn write's surviving part: the last pending op, forced to survive.
    pub(super) keep_last: bool,
}

pub(super) fn lock_world(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

impl World {
    pub(super) fn new(config: Arc<SimConfig>, clock: SimClock) -> Self {
        let fault_rng = ChaCha8Rng::seed_from_u64(seeds::fault_seed(config.seed));
        let mut world = Self {
            machine: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
            config,
            state: State::new(),
            boot: 0,
            syscall_index: 0,
            next_ino: ROOT_INO + 1,
            next_pid: 1,
            next_handle: 1,
            processes: imbl::OrdMap::new(),
            handles: imbl::OrdMap::new(),
            file_locks: imbl::OrdMap::new(),
            range_locks: imbl::OrdMap::new(),
            power_cut: None,
            used: BTreeMap::new(),
            trace: Trace::default(),
            faults: FaultPlan::none(),
            fault_rng,
            clock,
            snapshots: None,
            hook: None,
        };
        world.create_mount_points();
        world
    }

    /// A copy of this whole machine that goes its own way from here on: a
    /// new identity, a clock of its own showing the same time, no syscall
    /// hook, and everything else as it is (disk, page cache, unsynced
    /// writes, processes, open files, locks, trace, syscall numbering,
    /// fault plan and its random state, recorded snapshots).
    pub(super) fn duplicate(&self) -> Self {
        Self {
            machine: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
            config: Arc::clone(&self.config),
            state: self.state.clone(),
            boot: self.boot,
            syscall_index: self.syscall_index,
            next_ino: self.next_ino,
            next_pid: self.next_pid,
            next_handle: self.next_handle,
            processes: self.processes.clone(),
            handles: self.handles.clone(),
            file_locks: self.file_locks.clone(),
            range_locks: self.range_locks.clone(),
            power_cut: self.power_cut,
            used: self.used.clone(),
            trace: self.trace.clone(),
            faults: self.faults.clone(),
            fault_rng: self.fault_rng.clone(),
            clock: SimClock::at(self.clock.now()),
            snapshots: self.snapshots.clone(),
            // A hook belongs to whoever set it on this machine (the
            // engine's branching counts this machine's syscalls).
            hook: None,
        }
    }

    /// Creates every mount point directory (and its parents), durably.
    pub(super) fn create_mount_points(&mut self) {
        let mounts: Vec<PathBuf> = self.config.mounts.iter().map(|m| m.path.clone()).collect();
        for mount in mounts {
            let Ok(names) = components(&mount) else { continue };
            let mut dir = ROOT_INO;
            for name in names {
                dir = match self.state.current.lookup(dir, &name) {
                    Some(ino) => ino,
                    None => {
                        let ino = self.alloc_ino();
                        self.state.record(PendingOp::Link {
                            dir,
                            name: name.to_string(),
                            ino,
                            kind: NewNode::Dir,
                        });
                        self.state.sync_dir(dir);
                        ino
                    }
                };
            }
        }
    }

    /// The processes now, for a snapshot.
    pub(super) fn processes(&self) -> Processes {
        Processes {
            next_pid: self.next_pid,
            next_handle: self.next_handle,
            processes: self.processes.clone(),
            handles: self.handles.clone(),
            file_locks: self.file_locks.clone(),
            range_locks: self.range_locks.clone(),
        }
    }

    /// Puts back the processes a snapshot kept.
    pub(super) fn restore_processes(&mut self, kept: Processes) {
        self.next_pid = kept.next_pid;
        self.next_handle = kept.next_handle;
        self.processes = kept.processes;
        self.handles = kept.handles;
        self.file_locks = kept.file_locks;
        self.range_locks = kept.range_locks;
    }

    /// Mixes into `key` the processes alive, their open files (by process,
    /// inode and mode) and locks, and the next process and inode numbers:
    /// what later syscalls can tell apart, not the handles' numbers.
    pub(super) fn mix_processes_into(&self, key: &mut StateKey) {
        key.word(u64::from(self.next_pid));
        key.word(self.next_ino);
        for (pid, process) in &self.processes {
            key.word(u64::from(*pid));
            key.word(u64::from(process.death.is_some()));
        }
        for file in self.handles.values() {
            key.word(u64::from(file.pid));
            key.word(file.ino);
            key.word(u64::from(file.writable));
        }
        for (ino, lock) in &self.file_locks {
            key.word(*ino);
            key.word(u64::from(lock.pid));
        }
        for (ino, locks) in &self.range_locks {
            for lock in locks {
                key.word(*ino);
                key.word(self.handles.get(&lock.handle).map_or(0, |h| u64::from(h.pid)));
                key.word(lock.range.start);
                key.word(lock.range.len);
                key.word(u64::from(lock.exclusive));
            }
        }
    }

    pub(super) fn spawn(&mut self) -> Pid {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.processes.insert(pid, Process { death: None });
        pid
    }

    pub(super) fn alloc_ino(&mut self) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    pub(super) fn device_of(&self, path: &Path) -> DeviceId {
        self.config
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| path.starts_with(&m.path))
            .max_by_key(|(_, m)| m.path.components().count())
            .map_or(0, |(i, _)| DeviceId::try_from(i + 1).unwrap_or(DeviceId::MAX))
    }

    pub(super) fn capacity(&self, device: DeviceId) -> u64 {
        match device {
            0 => self.config.root_capacity_bytes,
            d => self
                .config
                .mounts
                .get(d as usize - 1)
                .map_or(u64::MAX, |m| m.capacity_bytes),
        }
    }

    pub(super) fn refresh_used(&mut self) {
        let devices = 0..=DeviceId::try_from(self.config.mounts.len()).unwrap_or(DeviceId::MAX);
        self.used = devices.map(|d| (d, self.state.current.used_bytes(d))).collect();
    }

    /// `ENOSPC` unless `device` has room for a file to grow from `old` to `new` bytes.
    pub(super) fn reserve(&self, device: DeviceId, old: u64, new: u64) -> io::Result<()> {
        let used = self.used.get(&device).copied().unwrap_or(0);
        if new > old && used.saturating_add(new - old) > self.capacity(device) {
            return Err(errno::enospc());
        }
        Ok(())
    }

    pub(super) fn account(&mut self, device: DeviceId, old: u64, new: u64) {
        let used = self.used.entry(device).or_insert(0);
        *used = used.saturating_add(new).saturating_sub(old);
    }

    /// Drops page-cache inodes that no name and no open handle reaches.
    pub(super) fn collect_garbage(&mut self) {
        let open: std::collections::BTreeSet<Ino> = self.handles.values().map(|h| h.ino).collect();
        self.state.current.collect_garbage(&|ino| open.contains(&ino));
        self.refresh_used();
    }

    /// What [`World::collect_garbage`] does after the handle that opened
    /// `closed` by `path` closed, without building the set of reachable
    /// inodes. Every other inode is still reached by a name or kept by a
    /// handle: every syscall that removes a name collects, a booted disk
    /// has been collected ([`super::durability::State::crash_image`]), and
    /// only files can be open. So `closed` is the only candidate: it goes
    /// if no handle keeps it and no directory entry names it. Most closes
    /// end at the first test, or at the second: the name it was opened by
    /// still names it; only a file renamed or unlinked while open costs a
    /// look at every directory entry ([`super::image::Image::link_count`]).
    fn collect_closed(&mut self, closed: Ino, path: &str) {
        if closed == ROOT_INO || self.handles.values().any(|h| h.ino == closed) {
            return;
        }
        if self.resolve(Path::new(path)).ok() == Some(closed)
            || !self.state.current.contains(closed)
            || self.state.current.link_count(closed) > 0
        {
            return;
        }
        self.state.current.remove(closed);
        self.refresh_used();
    }

    /// Why `pid` cannot make syscalls, if it cannot.
    pub(super) fn stopped(&self, pid: Pid) -> Option<Halted> {
        if let Some(cut) = self.power_cut {
            return Some(cut.halt);
        }
        match self.processes.get(&pid) {
            Some(Process { death: Some(halt) }) => Some(*halt),
            Some(_) => None,
            None => Some(Halted {
                kind: HaltKind::PowerCut,
                at_syscall: self.syscall_index,
            }),
        }
    }

    pub(super) fn kill(&mut self, pid: Pid, halt: Halted) {
        if let Some(process) = self.processes.get_mut(&pid) {
            process.death.get_or_insert(halt);
        }
        let dead: Vec<HandleId> = self
            .handles
            .iter()
            .filter(|(_, h)| h.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for handle in dead {
            self.close(handle);
        }
        let held: Vec<Ino> = self
            .file_locks
            .iter()
            .filter(|(_, lock)| lock.pid == pid)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in held {
            self.file_locks.remove(&ino);
        }
    }

    pub(super) fn close(&mut self, handle: HandleId) {
        if let Some(file) = self.handles.remove(&handle) {
            if let Some(locks) = self.range_locks.get_mut(&file.ino) {
                locks.retain(|l| l.handle != handle);
            }
            self.collect_closed(file.ino, &file.path);
        }
    }

    /// Records a trace entry for `call`.
    pub(super) fn log(&mut self, call: &Call<'_>, outcome: Outcome, fault: Option<Fault>) {
        self.trace.push(TraceEntry {
            index: call.index,
            boot: self.boot,
            pid: call.pid,
            op: call.op,
            path: call.path.to_string(),
            args: call.args.clone(),
            outcome,
            fault,
        });
    }

    /// Boots again after a power cut: the disk becomes `choice` applied to
    /// the state at the cut; every process and handle of the old boot is gone.
    pub(super) fn reboot(&mut self, model: PersistenceModel, choice: &CrashChoice) {
        let image = self.state.crash_image(choice, model.sector_size());
        let halt = self.power_cut.map(|c| c.halt).unwrap_or(Halted {
            kind: HaltKind::PowerCut,
            at_syscall: self.syscall_index,
        });
        let pids: Vec<Pid> = self.processes.keys().copied().collect();
        for pid in pids {
            self.kill(pid, halt);
        }
        let bad_sectors = self.state.bad_sectors.clone();
        self.state = State::from_image(image, bad_sectors);
        self.handles.clear();
        self.file_locks.clear();
        self.range_locks.clear();
        self.power_cut = None;
        self.boot += 1;
        self.refresh_used();
        let args = SyscallArgs::Reboot {
            model,
            choice: choice.clone(),
        };
        let call = Call {
            index: self.syscall_index,
            pid: 0,
            op: SyscallKind::Reboot,
            path: "/",
            args,
        };
        self.log(&call, Outcome::Ok, None);
    }
}
