//! A deterministic simulated filesystem and clock that can fail at any
//! syscall, and a bridge that runs real SQLite on it.
//!
//! - [`Fs`] / [`FileHandle`]: the syscall surface a store may use.
//! - [`RealFs`]: that surface over the kernel, for production.
//! - [`SimFs`]: an in-memory filesystem that models exactly what the kernel
//!   promises about durability, and no more, driven by one seed.
//! - [`Clock`], [`SystemClock`], [`SimClock`]: wall-clock time, real or virtual.
//! - `SqliteVfs` (the default cargo feature `sqlite`): a SQLite VFS over any
//!   [`Fs`], so real SQLite runs on it.

pub mod clock;
pub mod errno;
pub mod fs;
pub mod real;
pub mod sim;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use clock::{Clock, SimClock, SystemClock};
pub use fs::{
    ByteRange, DirEntry, FileHandle, FileHandleExt, FileIdentity, FileKind, Fs, FsExt, LockGuard, Metadata,
    OpenOptions, PathError, RangeLockMode,
};
pub use real::RealFs;
pub use sim::durability::{FsyncFailure, SyncDataPolicy};
pub use sim::faults::{Fault, FaultPlan, SyscallFilter, Trigger};
pub use sim::persistence::{CrashChoice, Fate, PersistenceModel};
pub use sim::trace::{Outcome, SyscallArgs, SyscallKind, Trace, TraceEntry};
pub use sim::{HaltKind, Halted, Mount, PageHashes, SimConfig, SimFs, SimSnapshot, SyscallHook, halted};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteVfs, VfsOptions, reseed_sqlite_prng, reserve_page_checksum_bytes};
