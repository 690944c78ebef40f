//! The syscall trace: every syscall a simulation makes, in order, with its
//! index, process, operation, path, typed arguments ([`SyscallArgs`]),
//! result and any fault injected there.
//!
//! The trace has a stable text form (one line per entry, see [`TraceEntry`]'s
//! `Display`) and a hash of that text: the same seed and workload give the
//! same text, byte for byte, and so the same hash.

use std::fmt;

use super::faults::Fault;
use super::persistence::{CrashChoice, Fate, PersistenceModel};
use crate::fs::{ByteRange, OpenOptions, RangeLockMode};

/// Which syscall (or simulator event) a trace entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyscallKind {
    /// `open(2)`, maybe creating the file.
    Open,
    /// `pread(2)`.
    Read,
    /// `pwrite(2)`.
    Write,
    /// `ftruncate(2)`.
    SetLen,
    /// `fstat(2)` for a length or an identity.
    Fstat,
    /// `fsync(2)` of a file.
    SyncAll,
    /// `fdatasync(2)`.
    SyncData,
    /// `rename(2)`.
    Rename,
    /// `link(2)`.
    HardLink,
    /// `unlink(2)`.
    RemoveFile,
    /// `mkdir(2)`.
    CreateDir,
    /// `rmdir(2)`.
    RemoveDir,
    /// `getdents(2)`.
    ReadDir,
    /// `stat(2)`.
    Metadata,
    /// `fsync(2)` of a directory.
    SyncDir,
    /// `flock(2)` (open + exclusive lock).
    Lock,
    /// `fcntl(2)` byte-range lock.
    LockRange,
    /// `statvfs(2)`.
    FreeSpace,
    /// Not a syscall: the machine booted again after a power cut.
    Reboot,
    /// A whole-file lock released (its guard dropped). Traced so lock
    /// holding can be read off the trace; never a fault point.
    Unlock,
}

impl SyscallKind {
    /// Every syscall kind a fault can be injected at (all but `Reboot`).
    pub const SYSCALLS: [SyscallKind; 18] = [
        SyscallKind::Open,
        SyscallKind::Read,
        SyscallKind::Write,
        SyscallKind::SetLen,
        SyscallKind::Fstat,
        SyscallKind::SyncAll,
        SyscallKind::SyncData,
        SyscallKind::Rename,
        SyscallKind::HardLink,
        SyscallKind::RemoveFile,
        SyscallKind::CreateDir,
        SyscallKind::RemoveDir,
        SyscallKind::ReadDir,
        SyscallKind::Metadata,
        SyscallKind::SyncDir,
        SyscallKind::Lock,
        SyscallKind::LockRange,
        SyscallKind::FreeSpace,
    ];

    /// Whether a syscall of this kind, when it succeeds, changes the
    /// namespace or a file's content or length (an `Open` may too, when it
    /// creates or truncates: see [`SyscallArgs::Open`]).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            SyscallKind::Write
                | SyscallKind::SetLen
                | SyscallKind::Rename
                | SyscallKind::HardLink
                | SyscallKind::RemoveFile
                | SyscallKind::CreateDir
                | SyscallKind::RemoveDir
        )
    }

    /// The short name used in the trace text.
    pub fn name(&self) -> &'static str {
        match self {
            SyscallKind::Open => "open",
            SyscallKind::Read => "read",
            SyscallKind::Write => "write",
            SyscallKind::SetLen => "set_len",
            SyscallKind::Fstat => "fstat",
            SyscallKind::SyncAll => "fsync",
            SyscallKind::SyncData => "fdatasync",
            SyscallKind::Rename => "rename",
            SyscallKind::HardLink => "link",
            SyscallKind::RemoveFile => "unlink",
            SyscallKind::CreateDir => "mkdir",
            SyscallKind::RemoveDir => "rmdir",
            SyscallKind::ReadDir => "readdir",
            SyscallKind::Metadata => "stat",
            SyscallKind::SyncDir => "fsync_dir",
            SyscallKind::Lock => "flock",
            SyscallKind::LockRange => "fcntl_lock",
            SyscallKind::FreeSpace => "statvfs",
            SyscallKind::Reboot => "reboot",
            SyscallKind::Unlock => "funlock",
        }
    }
}

impl fmt::Display for SyscallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a syscall returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Success.
    Ok,
    /// Success with a count (bytes read or written, a length, entries).
    Count(u64),
    /// Failure with this raw OS error code.
    Errno(i32),
    /// The machine lost power at this syscall: it did not complete.
    PowerCut,
    /// The calling process was killed at this syscall: it did not complete.
    ProcessCrash,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Count(n) => write!(f, "ok {n}"),
            Outcome::Errno(code) => f.write_str(&errno_name(*code)),
            Outcome::PowerCut => f.write_str("POWER-CUT"),
            Outcome::ProcessCrash => f.write_str("PROCESS-CRASH"),
        }
    }
}

/// The errno names the trace prints, from the one table in [`crate::errno`].
pub use crate::errno::{errno_from_name, errno_name};

/// A syscall's arguments as the trace records them. `Display` gives the
/// short text of the trace line (`off=4096 len=512`, `to=/a/b`, ...); the
/// path the call acted on is the entry's [`TraceEntry::path`], not here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SyscallArgs {
    /// Nothing beyond the path (`mkdir`, `unlink`, `fsync`, `readdir`, `stat`,
    /// `statvfs`, `funlock`, ...). Prints nothing.
    None,
    /// `open`: the options asked for, and the length of the file already at
    /// the path before the call (`None` if there was none, or not a file).
    /// Prints the flags: `r`/`rw`, then `,excl` or `,create`, then `,trunc`.
    Open {
        /// The options passed to [`crate::Fs::open`].
        options: OpenOptions,
        /// The length of the file the path named before the call, if any.
        existing_len: Option<u64>,
    },
    /// `pread`: `off=… len=…`.
    Read {
        /// Where the read starts, in bytes.
        offset: u64,
        /// How many bytes were asked for.
        len: u64,
    },
    /// `pwrite`: `off=… len=…`.
    Write {
        /// Where the write starts, in bytes.
        offset: u64,
        /// How many bytes were offered.
        len: u64,
    },
    /// `ftruncate`: `len=…` (the new length).
    SetLen {
        /// The new length in bytes.
        len: u64,
        /// The file's length before the call (`None` if the handle was
        /// closed or its file gone).
        old_len: Option<u64>,
    },
    /// `fstat` for the length: `len`.
    FstatLen,
    /// `fstat` for the identity: `identity`.
    FstatIdentity,
    /// `rename`: `to=…`.
    Rename {
        /// The new path.
        to: String,
        /// Whether a file or directory stood at `to` before the call (the
        /// rename replaces it); not printed.
        replaces: bool,
    },
    /// `link`: `link=…`.
    HardLink {
        /// The path of the new name.
        link: String,
    },
    /// `flock`: an exclusive whole-file lock (the only kind there is):
    /// `exclusive`.
    ExclusiveLock,
    /// `fcntl` byte-range lock: `Shared start=… len=…`.
    LockRange {
        /// Shared, exclusive or unlock.
        mode: RangeLockMode,
        /// The byte range.
        range: ByteRange,
    },
    /// A reboot after a power cut: `model=… survived=K/N choice=…`.
    Reboot {
        /// The persistence model the surviving writes were chosen under.
        model: PersistenceModel,
        /// The fate of every pending operation.
        choice: CrashChoice,
    },
}

impl SyscallArgs {
    /// The target path of a rename, if this is one.
    pub fn rename_target(&self) -> Option<&str> {
        match self {
            SyscallArgs::Rename { to, .. } => Some(to),
            _ => None,
        }
    }

    /// The path a rename replaced (its target, when something stood there).
    pub fn replaced_target(&self) -> Option<&str> {
        match self {
            SyscallArgs::Rename { to, replaces: true } => Some(to),
            _ => None,
        }
    }

    /// `true` if the call asked to cut bytes off an existing file: an `open`
    /// with truncate of a non-empty file, or a `set_len` shorter than the file
    /// was. (Whether the call succeeded is the entry's outcome.)
    pub fn truncates(&self) -> bool {
        match self {
            SyscallArgs::Open { options, existing_len } => options.truncate && existing_len.is_some_and(|len| len > 0),
            SyscallArgs::SetLen { len, old_len } => old_len.is_some_and(|old| *len < old),
            _ => false,
        }
    }

    /// `true` for [`SyscallArgs::None`], which prints nothing.
    pub fn is_none(&self) -> bool {
        matches!(self, SyscallArgs::None)
    }
}

impl fmt::Display for SyscallArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyscallArgs::None => Ok(()),
            SyscallArgs::Open { options, .. } => {
                f.write_str(if options.write { "rw" } else { "r" })?;
                if options.create_new {
                    f.write_str(",excl")?;
                } else if options.create {
                    f.write_str(",create")?;
                }
                if options.truncate {
                    f.write_str(",trunc")?;
                }
                Ok(())
            }
            SyscallArgs::Read { offset, len } | SyscallArgs::Write { offset, len } => {
                write!(f, "off={offset} len={len}")
            }
            SyscallArgs::SetLen { len, .. } => write!(f, "len={len}"),
            SyscallArgs::FstatLen => f.write_str("len"),
            SyscallArgs::FstatIdentity => f.write_str("identity"),
            SyscallArgs::Rename { to, .. } => write!(f, "to={to}"),
            SyscallArgs::HardLink { link } => write!(f, "link={link}"),
            SyscallArgs::ExclusiveLock => f.write_str("exclusive"),
            SyscallArgs::LockRange { mode, range } => write!(f, "{mode:?} start={} len={}", range.start, range.len),
            SyscallArgs::Reboot { model, choice } => {
                let kept = choice.fates().iter().filter(|f| **f != Fate::Lost).count();
                write!(
                    f,
                    "model={model} survived={kept}/{} choice={choice}",
                    choice.fates().len()
                )
            }
        }
    }
}

/// One line of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceEntry {
    /// The syscall's index (for a reboot: the index the next syscall gets).
    pub index: u64,
    /// How many power cuts the machine had been through.
    pub boot: u32,
    /// The simulated process that made the call.
    pub pid: u32,
    /// The syscall.
    pub op: SyscallKind,
    /// The path it acted on (for handle calls, the path the file was opened as).
    pub path: String,
    /// Its arguments (printed in short: `off=4096 len=512`).
    pub args: SyscallArgs,
    /// What it returned.
    pub outcome: Outcome,
    /// The fault injected at this syscall, if any.
    pub fault: Option<Fault>,
}

impl fmt::Display for TraceEntry {
    /// `#000042 b0 p1 write /db/main.db off=4096 len=512 -> ENOSPC [fault=ENOSPC]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:06} b{} p{} {} {}",
            self.index, self.boot, self.pid, self.op, self.path
        )?;
        if !self.args.is_none() {
            write!(f, " {}", self.args)?;
        }
        write!(f, " -> {}", self.outcome)?;
        if let Some(fault) = &self.fault {
            write!(f, " [fault={fault}]")?;
        }
        Ok(())
    }
}

/// A whole trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    entries: Vec<TraceEntry>,
}

impl Trace {
    pub(crate) fn push(&mut self, entry: TraceEntry) {
        self.entries.push(entry);
    }

    /// Every entry, in order.
    pub fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stable text form: one line per entry, each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for entry in &self.entries {
            text.push_str(&entry.to_string());
            text.push('\n');
        }
        text
    }

    /// The 64-bit FNV-1a hash of [`Trace::to_text`]: equal traces, equal hashes,
    /// on every machine and build.
    pub fn hash(&self) -> u64 {
        fnv1a(self.to_text().as_bytes())
    }

    /// The entries whose syscall index lies within `radius` of `index`.
    pub fn around(&self, index: u64, radius: u64) -> impl Iterator<Item = &TraceEntry> {
        self.entries
            .iter()
            .filter(move |e| e.index + radius >= index && e.index <= index + radius)
    }
}

/// The 64-bit FNV-1a hash: stable across platforms and releases.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        for code in [libc::ENOSPC, libc::EXDEV, libc::EIO, libc::ENOENT] {
            assert_eq!(errno_from_name(&errno_name(code)), Some(code));
        }
        assert_eq!(errno_name(9999), "errno 9999");
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn entry_text_is_stable() {
        let entry = TraceEntry {
            index: 42,
            boot: 0,
            pid: 1,
            op: SyscallKind::Write,
            path: "/db/main.db".into(),
            args: SyscallArgs::Write { offset: 4096, len: 512 },
            outcome: Outcome::Errno(libc::ENOSPC),
            fault: Some(Fault::Errno(libc::ENOSPC)),
        };
        assert_eq!(
            entry.to_string(),
            "#000042 b0 p1 write /db/main.db off=4096 len=512 -> ENOSPC [fault=ENOSPC]"
        );
    }
}
