//! The machine: [`SimFs`], one simulated process's handle on one simulated
//! machine, and the operations on the machine itself that are not syscalls:
//! spawning and crashing processes, cutting the power and rebooting, device
//! capacity, the fault plan, snapshots, the trace and fingerprints.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::SimConfig;
use super::faults::FaultPlan;
use super::halt::{HaltKind, Halted};
use super::persistence::{self, CrashChoice, PersistenceModel};
use super::seeds::crash_seed;
use super::snapshot::{SimSnapshot, fingerprint};
use super::trace::Trace;
use super::world::{Pid, PowerCut, World, lock_world};
use crate::clock::SimClock;

/// One simulated process on a simulated machine. Cloning gives another handle
/// to the same process; [`SimFs::spawn_process`] starts a new one.
#[derive(Clone)]
pub struct SimFs {
    pub(super) world: Arc<Mutex<World>>,
    pub(super) pid: Pid,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs").field("pid", &self.pid).finish_non_exhaustive()
    }
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

    pub(super) fn world(&self) -> MutexGuard<'_, World> {
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

    /// A latent sector error at rest: the sector holding byte `offset` of the
    /// file at `path` reads as `EIO` from now on, across reboots, until a
    /// write covers it (as [`crate::Fault::LatentSector`] leaves it). No
    /// process did anything, so no syscall is traced. `ENOENT` if there is
    /// no such file.
    pub fn damage_sector(&self, path: &Path, offset: u64) -> std::io::Result<()> {
        let mut world = self.world();
        let ino = world.resolve(path)?;
        let sector = offset / super::durability::MEDIUM_SECTOR;
        world.state.bad_sectors.insert((ino, sector));
        Ok(())
    }

    /// Another process (the harness, standing for a user) makes `link` a
    /// symbolic link to `target` (a path, absolute or from the link's
    /// directory; it need not exist), as `symlink(2)` does: a new name,
    /// durable once its directory is synced. Not a call of the store, so
    /// not traced. `SimFs` follows links in every path it resolves (the
    /// last name's too, but for `metadata`, which describes the link, and
    /// for unlink and rename, which act on it), and lists one as
    /// [`crate::FileKind::Other`]. `EEXIST` if `link` exists.
    pub fn plant_symlink(&self, link: &Path, target: &Path) -> std::io::Result<()> {
        let mut world = self.world();
        let (dir, name) = world.resolve_parent(link)?;
        if world.state.current.lookup(dir, &name).is_some() {
            return Err(crate::errno::eexist());
        }
        let ino = world.alloc_ino();
        let name = name.into_owned();
        world.state.record(super::durability::PendingOp::Link {
            dir,
            name,
            ino,
            kind: super::image::NewNode::Symlink(target.to_string_lossy().into()),
        });
        Ok(())
    }

    /// Replaces the fault plan. Rules see syscalls from now on.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.world().faults = plan;
    }

    /// Sets (or, with `None`, removes) the machine's syscall hook: before
    /// each syscall of any of its processes is numbered, the hook is called
    /// with the calling process's handle and the index the syscall will get,
    /// outside the machine's lock, so it may call into the machine (change
    /// the fault plan, say) before the syscall runs. The harness forks its
    /// worker there to branch a case off the fault-free run. A syscall the
    /// hook makes itself is numbered first and runs the hook again.
    pub fn set_syscall_hook(&self, hook: Option<super::world::SyscallHook>) {
        self.world().hook = hook;
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

    /// A copy of the whole machine, independent of this one from here on,
    /// and this process's twin on it. The copy goes on exactly as this
    /// machine would: the same disk, page cache and writes not yet durable,
    /// the same processes with their open files and locks, the same time
    /// (on a clock of its own), trace, syscall numbering and fault plan;
    /// not the syscall hook. For running one setup once and each case from
    /// a copy of it. Open files and locks are copied as entries only: no
    /// handle object refers to them on the copy, so they stay open and
    /// held until their process dies or the copy reboots.
    pub fn duplicate_machine(&self) -> SimFs {
        let world = self.world().duplicate();
        SimFs {
            world: Arc::new(Mutex::new(world)),
            pid: self.pid,
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

    /// Runs `read` on the trace so far, without copying it. The machine is
    /// locked meanwhile: `read` must not call into it.
    pub fn with_trace<R>(&self, read: impl FnOnce(&Trace) -> R) -> R {
        read(&self.world().trace)
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
}
