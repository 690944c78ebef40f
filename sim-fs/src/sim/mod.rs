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
//!
//! # Rooms
//!
//! - `config.rs`: [`SimConfig`] and [`Mount`].
//! - `machine.rs`: [`SimFs`] and its operations on the machine as a whole.
//! - `dispatch.rs`: the syscall dispatcher every syscall goes through.
//! - `namespace.rs`: path resolution and the path operations of [`crate::Fs`].
//! - `file.rs`: open files and their [`crate::FileHandle`] syscalls.
//! - `world.rs`: the machine's state: processes, open files, devices, power.
//! - `locks.rs`: whole-file and byte-range locks.
//! - [`durability`], `image.rs`, [`persistence`]: page cache, durable image,
//!   pending operations and what a power cut keeps of them.
//! - [`faults`]: the fault plan; `halt.rs`: how a halted process fails.
//! - `snapshot.rs`: [`SimSnapshot`]s and their recording; `seeds.rs`: the
//!   per-subsystem seeds derived from the run seed.
//! - [`trace`]: the syscall trace.
//!
//! [`FaultPlan`]: faults::FaultPlan
//! [`Trace`]: trace::Trace
//! [`Fault::ProcessCrash`]: faults::Fault::ProcessCrash
//! [`Fault::PowerCut`]: faults::Fault::PowerCut
//! [`PersistenceModel`]: persistence::PersistenceModel
//! [`SimClock`]: crate::SimClock

mod config;
mod dispatch;
pub mod durability;
pub mod faults;
mod file;
mod halt;
mod image;
mod locks;
mod machine;
mod namespace;
pub mod persistence;
mod seeds;
mod snapshot;
pub mod trace;
mod world;

pub use config::{Mount, SimConfig};
pub use halt::{HaltKind, Halted, halted};
pub use image::PageHashes;
pub use machine::SimFs;
pub use snapshot::SimSnapshot;
pub use world::SyscallHook;
