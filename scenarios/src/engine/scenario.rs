//! What a store scenario is: a setup run fault-free, a workload run under
//! faults, the machine it needs, and the capabilities it requires.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tearline_model::{Capabilities, FileRole, Operation, RemoteFault, SchemaStamp};

/// One step of a setup or a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Apply an operation through the open store.
    Op(Operation),
    /// The harness writes (or, with `None`, deletes) a source file behind
    /// the store's back, durably (under [`tearline_model::StoreFactory::source_dir`]).
    /// Its syscalls are the harness's, never a fault point.
    EditSource {
        /// The document name (the file name under the source directory).
        name: String,
        /// The new content, or `None` to delete it.
        content: Option<String>,
    },
    /// The harness puts something hostile in the source directory behind
    /// the store's back, durably (see [`Plant`]). Its syscalls are the
    /// harness's, never a fault point.
    PlantSource {
        /// The file name under the source directory.
        name: String,
        /// What it puts there.
        plant: Plant,
    },
    /// Close the store and open it writable again (recovery runs).
    Reopen,
    /// Another process opens the store read-only and observes it, while
    /// this one keeps it open: it must take no lock, change nothing, and
    /// see the acknowledged state.
    OpenReadOnly,
    /// Another process tries to open the store writable while this one
    /// holds it: a store with an exclusive lock must refuse it.
    SecondWriter,
    /// The harness closes the store and makes its index look written by
    /// another build ([`tearline_model::StoreFactory::stamp_schema`]). Its
    /// syscalls are the harness's; the store stays closed until a
    /// [`Step::Reopen`].
    StampSchema(SchemaStamp),
    /// The store's remote dependency starts misbehaving (or recovers), for
    /// stores that have one ([`tearline_model::StoreUnderTest::set_remote_fault`]).
    /// Makes no syscall.
    RemoteFault(RemoteFault),
    /// Another process removes or replaces the store's lock
    /// ([`tearline_model::StoreFactory::lock_file`]) behind the writer's
    /// back, while the writer keeps the store open. The harness's syscalls,
    /// never a fault point; a [`Step::SecondWriter`] after it must still be
    /// refused.
    LockFile(LockAttack),
    /// A stale lock: the store is closed; another process opens it writable
    /// and is killed (`kill -9`) while it holds it, leaving its lock file
    /// behind, held by nobody; then the store is opened writable again, and
    /// must open. The store's syscalls (both opens): fault points.
    StaleLock,
    /// The store is closed, and the harness damages one of the files it
    /// derives from its sources ([`tearline_model::StoreFactory::derived_files`]:
    /// the first of that role, in path order) at rest, as a disk, an
    /// operator or a crashed tool would. The next writable open must bring
    /// the store back from its sources (rebuildable-from-source). The
    /// harness's syscalls, never a fault point; the store stays closed until
    /// a [`Step::Reopen`].
    Damage {
        /// Which file.
        role: FileRole,
        /// What happens to it.
        damage: Damage,
    },
    /// The store is closed; another process opens it writable, starts
    /// `op`, and is killed (`kill -9`) at its `at_source_change`-th syscall
    /// that changes the source directory (a rename, link or unlink there):
    /// the operation is left half done, with whatever record of it the
    /// store keeps (its journal) for the next writable open. If the
    /// operation finishes first it is acknowledged. The store stays closed
    /// until a [`Step::Reopen`]. For setups: the killed process's syscalls
    /// are not fault points.
    KilledMidway {
        /// The operation left half done.
        op: Operation,
        /// Which change of the source directory the process dies at (1-based).
        at_source_change: u64,
    },
}

/// What happens to the lock in a [`Step::LockFile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockAttack {
    /// Removes the lock (an operator "cleaning a stale lock"): `unlink` of a
    /// lock file, `rmdir` of a lock directory. A removal the filesystem
    /// refuses (a directory that holds files) is what the attack found, not
    /// an error.
    Remove,
    /// Replaces the lock with a new one of its kind (a new file, or a new
    /// directory, renamed over it).
    Replace,
}

impl Step {
    /// A short description for traces and reports.
    pub fn describe(&self) -> String {
        match self {
            Step::Op(op) => op.describe(),
            Step::EditSource { name, content: Some(_) } => format!("edit source {name}"),
            Step::EditSource { name, content: None } => format!("delete source {name}"),
            Step::PlantSource { name, plant } => format!("plant {} as source {name}", plant.describe()),
            Step::Reopen => "reopen".to_string(),
            Step::OpenReadOnly => "open read-only in another process".to_string(),
            Step::SecondWriter => "open writable in another process".to_string(),
            Step::StampSchema(SchemaStamp::Newer) => "stamp the index as from a newer build".to_string(),
            Step::StampSchema(SchemaStamp::OlderInPlace) => "stamp the index as from an older build".to_string(),
            Step::RemoteFault(fault) => format!("remote dependency: {fault:?}"),
            Step::LockFile(LockAttack::Remove) => "another process removes the lock file".to_string(),
            Step::LockFile(LockAttack::Replace) => "another process replaces the lock file".to_string(),
            Step::StaleLock => {
                "a process holding the store writable is killed, leaving its lock file; reopen".to_string()
            }
            Step::Damage { role, damage } => format!("damage the {} file: {}", role.name(), damage.describe()),
            Step::KilledMidway { op, at_source_change } => format!(
                "`{}` in another process, killed at its source change {at_source_change}",
                op.describe()
            ),
        }
    }

    /// Whether the store makes this step's syscalls (so they are fault points).
    pub fn is_store_call(&self) -> bool {
        !matches!(
            self,
            Step::EditSource { .. }
                | Step::PlantSource { .. }
                | Step::StampSchema(_)
                | Step::RemoteFault(_)
                | Step::LockFile(_)
                | Step::Damage { .. }
                | Step::KilledMidway { .. }
        )
    }
}

/// What [`Step::Damage`] does to a file at rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Damage {
    /// 16 bytes of garbage over the middle of the file (`dd conv=notrunc`).
    Garbage,
    /// One bit in the middle of the file flips (bit rot).
    FlipBit,
    /// The sector in the middle of the file reads as `EIO` until it is
    /// rewritten (a latent sector error).
    UnreadableSector,
    /// The file is cut to zero bytes.
    Truncate,
    /// The file holds this text instead (a pointer to a generation that
    /// does not exist, say).
    Text(String),
}

impl Damage {
    /// In a few words.
    pub fn describe(&self) -> String {
        match self {
            Damage::Garbage => "16 bytes of garbage in the middle".to_string(),
            Damage::FlipBit => "a bit in the middle flipped".to_string(),
            Damage::UnreadableSector => "a sector in the middle unreadable".to_string(),
            Damage::Truncate => "cut to zero bytes".to_string(),
            Damage::Text(text) => format!("replaced by {text:?}"),
        }
    }
}

/// What [`Step::PlantSource`] puts in the source directory: what a user's
/// tree holds that a store must survive. A document (an empty or a large
/// file) must be indexed; a store may index or skip the rest (the model
/// does not judge those names), but an operation that meets them must not
/// fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Plant {
    /// An empty file: a document with no text.
    Empty,
    /// A text file of this many bytes (it spans many pages).
    Large(usize),
    /// Bytes that are not UTF-8 text.
    NotText,
    /// A directory, holding one file, under a document's name.
    Directory,
    /// A text file whose name is not UTF-8: the document's name with its
    /// non-ASCII characters written as Latin-1 bytes (`café.md` as
    /// `caf\xe9.md`, copied from an older system). Linux lists it as
    /// [`Plant::listed_name`], which does not open it.
    NameNotUtf8,
    /// A symbolic link under a document's name to a text file outside the
    /// store (which the harness writes first, at `/outside/<name>`).
    SymlinkOut,
    /// A symbolic link under a document's name to itself: every open of it
    /// is `ELOOP`.
    SymlinkLoop,
}

impl Plant {
    /// In a few words.
    pub fn describe(&self) -> String {
        match self {
            Plant::Empty => "an empty file".to_string(),
            Plant::Large(bytes) => format!("a text file of {bytes} bytes"),
            Plant::NotText => "a file that is not UTF-8".to_string(),
            Plant::Directory => "a directory".to_string(),
            Plant::NameNotUtf8 => "a file whose name is not UTF-8".to_string(),
            Plant::SymlinkOut => "a symbolic link to a file outside the store".to_string(),
            Plant::SymlinkLoop => "a symbolic link to itself".to_string(),
        }
    }

    /// The bytes of the file name the plant is written under, for the
    /// document `name`: its own UTF-8, but Latin-1 for a name that is not
    /// UTF-8 ([`Plant::NameNotUtf8`]; characters beyond Latin-1 become `?`).
    pub fn file_name(&self, name: &str) -> Vec<u8> {
        match self {
            Plant::NameNotUtf8 => name
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            _ => name.as_bytes().to_vec(),
        }
    }

    /// The name a directory listing shows for the plant of document
    /// `name` (each byte that is not UTF-8 as U+FFFD): the name the model
    /// leaves to the store.
    pub fn listed_name(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.file_name(name)).into_owned()
    }

    /// The document's text, if the plant is a document.
    pub fn text(&self) -> Option<String> {
        match self {
            Plant::Empty => Some(String::new()),
            Plant::Large(bytes) => {
                let line = "a line of a large document, repeated to fill it\n";
                Some(line.repeat(bytes / line.len() + 1)[..*bytes].to_string())
            }
            Plant::NotText | Plant::Directory | Plant::NameNotUtf8 | Plant::SymlinkOut | Plant::SymlinkLoop => None,
        }
    }
}

/// How big the root device is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capacity {
    /// Unlimited.
    #[default]
    Unlimited,
    /// The bytes in use after the setup, times `percent` / 100: a device the
    /// workload can fill. (Measured on a fault-free run of the setup, so it
    /// fits any store.)
    SetupSizePercent(u64),
    /// The bytes in use after the setup, plus this many: a device with
    /// exactly this much room left for the workload.
    SetupSizePlus(u64),
}

/// A device mounted under the store's root (e.g. `staging` on its own
/// device, so a publish by rename fails with `EXDEV`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountUnderRoot {
    /// The path relative to the store's root.
    pub relative: String,
    /// Its capacity in bytes.
    pub capacity_bytes: u64,
}

/// A scenario run against a store through the contract.
#[derive(Clone, Debug)]
pub struct StoreScenario {
    /// Its name, used on the command line and in repro lines.
    pub name: String,
    /// What it does and which failure it is named after.
    pub description: String,
    /// Steps run fault-free after `init` and a writable open.
    pub setup: Vec<Step>,
    /// Steps run under faults.
    pub workload: Vec<Step>,
    /// The root device's size.
    pub capacity: Capacity,
    /// Further devices under the root.
    pub mounts: Vec<MountUnderRoot>,
    /// Capabilities the store must have for the scenario to apply (the
    /// `true` fields).
    pub requires: Capabilities,
    /// The fault-free workload may stop at a step that fails cleanly (a
    /// rebuild on a device too small for it). Otherwise such a stop is a
    /// harness error (the matrix needs a workload that runs to its end),
    /// unless it broke an invariant: then that violation is reported.
    pub fault_free_failure_allowed: bool,
    /// A cause of failure that outlives the fault, if the scenario has one:
    /// after every case's last recovery the engine checks stays-serviceable
    /// while the cause persists, and again once it is cleared.
    pub persists: Option<PersistentCause>,
    /// Faults the matrix does not inject into this scenario, with why (a
    /// known limit of what the scenario checks, said in its description).
    pub spared: Vec<tearline_sim_fs::Fault>,
}

/// A cause of failure that outlives the fault and the store's processes,
/// until an operator clears it (stays-serviceable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistentCause {
    /// The root device stays full (its capacity is not
    /// [`Capacity::Unlimited`]). While it is: a read serves, and a removal
    /// succeeds (the one command that frees space); once it has room, an
    /// add succeeds.
    DeviceFull,
    /// The store's remote dependency is down from the first workload step
    /// on, for every open and across crashes ([`tearline_model::Env::remote`]
    /// is [`tearline_model::RemoteFault::Unavailable`]). While it is: a
    /// writable open succeeds or refuses with
    /// [`tearline_model::FailureKind::Unavailable`], and a read serves; once
    /// it is back, an add succeeds.
    RemoteDown,
    /// The store's remote dependency is up for the whole workload and goes
    /// down at the fault, for every later open, across crashes: the outage
    /// that begins in the middle of an operation (a crash in the middle of
    /// an import, and the vector store gone when the store restarts).
    /// While it is down, and once it is back, as [`PersistentCause::RemoteDown`].
    RemoteDownAtFault,
}

impl PersistentCause {
    /// How the remote dependency behaves during the workload, before the
    /// fault.
    pub fn remote_during_workload(cause: Option<PersistentCause>) -> RemoteFault {
        match cause {
            Some(PersistentCause::RemoteDown) => RemoteFault::Unavailable,
            Some(PersistentCause::DeviceFull | PersistentCause::RemoteDownAtFault) | None => RemoteFault::Healthy,
        }
    }

    /// How the remote dependency behaves after the fault, for recovery,
    /// readers and stays-serviceable, until the harness clears the cause.
    pub fn remote_after_fault(cause: Option<PersistentCause>) -> RemoteFault {
        match cause {
            Some(PersistentCause::RemoteDown | PersistentCause::RemoteDownAtFault) => RemoteFault::Unavailable,
            Some(PersistentCause::DeviceFull) | None => RemoteFault::Healthy,
        }
    }

    /// The cause in a few words, for evidence (`the device is full`).
    pub fn describe(&self) -> &'static str {
        match self {
            PersistentCause::DeviceFull => "the device is full",
            PersistentCause::RemoteDown => "the vector store is down",
            PersistentCause::RemoteDownAtFault => "the vector store is down (since the fault)",
        }
    }
}

impl StoreScenario {
    /// The required capabilities the store lacks (empty: the scenario applies).
    pub fn missing(&self, caps: &Capabilities) -> Vec<&'static str> {
        self.requires
            .flags()
            .into_iter()
            .zip(caps.flags())
            .filter(|((_, needed), (_, has))| *needed && !*has)
            .map(|((name, _), _)| name)
            .collect()
    }

    /// Whether the workload ends with an acknowledged rebuild (full or
    /// incremental) or a forced full reconcile of every record, with no source edited behind the store's back
    /// after it: then filesystem-wins and rebuild-idempotent are checked on
    /// the fault-free probe.
    pub fn ends_with_full_sync(&self) -> bool {
        matches!(
            self.workload
                .iter()
                .rev()
                .find(|s| matches!(s, Step::Op(_) | Step::EditSource { .. } | Step::PlantSource { .. })),
            Some(Step::Op(Operation::Rebuild { .. }))
                | Some(Step::Op(Operation::Reconcile {
                    mode: tearline_model::ReconcileKind::Full,
                    force: true,
                    dry_run: false,
                    owner: None,
                }))
        )
    }
}

/// The store's root on every simulated machine.
pub const STORE_ROOT: &str = "/store";

/// The root as a path.
pub fn store_root() -> &'static Path {
    Path::new(STORE_ROOT)
}

#[cfg(test)]
mod tests {
    use tearline_model::{Capabilities, Operation, RebuildKind};

    use super::*;

    fn ending_with(workload: Vec<Step>) -> StoreScenario {
        StoreScenario {
            name: "t".to_string(),
            description: String::new(),
            setup: Vec::new(),
            workload,
            capacity: Capacity::Unlimited,
            mounts: Vec::new(),
            requires: Capabilities::default(),
            fault_free_failure_allowed: false,
            persists: None,
            spared: Vec::new(),
        }
    }

    #[test]
    fn a_source_edit_after_the_last_full_sync_means_the_workload_does_not_end_synced() {
        // Found by the fuzzer (target `operations`): a full rebuild, then an
        // edit behind the store's back, was held to filesystem-wins.
        let rebuild = Step::Op(Operation::Rebuild {
            kind: RebuildKind::Full,
        });
        let edit = Step::EditSource {
            name: "a.md".to_string(),
            content: Some("new".to_string()),
        };
        assert!(ending_with(vec![rebuild.clone(), Step::Reopen]).ends_with_full_sync());
        assert!(ending_with(vec![edit.clone(), rebuild.clone()]).ends_with_full_sync());
        assert!(!ending_with(vec![rebuild.clone(), edit]).ends_with_full_sync());
        let plant = Step::PlantSource {
            name: "x".to_string(),
            plant: Plant::Empty,
        };
        assert!(!ending_with(vec![rebuild, plant]).ends_with_full_sync());
    }
}
