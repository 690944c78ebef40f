//! How a simulation is set up: [`SimConfig`] and the [`Mount`]s it lists.

use std::path::PathBuf;
use std::time::Duration;

#[cfg(doc)]
use super::SimFs;
use super::durability::{FsyncFailure, SyncDataPolicy};
use super::persistence::PersistenceModel;

/// A device mounted at a path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (absolute). The directory is created at start.
    pub path: PathBuf,
    /// Its capacity in bytes (the sum of its files' lengths may not exceed it).
    pub capacity_bytes: u64,
}

/// How a simulation is set up. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The one seed everything random derives from. Default 0.
    pub seed: u64,
    /// What survives a power cut when [`SimFs::reboot`] chooses. Default
    /// [`PersistenceModel::Prefix`].
    pub persistence: PersistenceModel,
    /// What `fdatasync` makes durable. Default [`SyncDataPolicy::Linux`].
    pub sync_data: SyncDataPolicy,
    /// What a failed `fsync`/`fdatasync` does to the file's dirty data.
    /// Default [`FsyncFailure::DropsDirtyData`] (Linux).
    pub fsync_failure: FsyncFailure,
    /// Capacity of the root device in bytes. Default `u64::MAX` (unlimited).
    pub root_capacity_bytes: u64,
    /// Further devices. Default none.
    pub mounts: Vec<Mount>,
    /// Virtual time each syscall takes. Default 10 µs.
    pub syscall_time: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            persistence: PersistenceModel::Prefix,
            sync_data: SyncDataPolicy::Linux,
            fsync_failure: FsyncFailure::DropsDirtyData,
            root_capacity_bytes: u64::MAX,
            mounts: Vec::new(),
            syscall_time: Duration::from_micros(10),
        }
    }
}

impl SimConfig {
    /// The default configuration with this seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }
}
