//! The fault plan: what goes wrong, and at which syscall.
//!
//! Fault model. A simulated syscall can, instead of doing its work:
//! - **power cut** ([`Fault::PowerCut`]): the machine stops before the call
//!   completes; everything not durable is subject to the persistence model at
//!   the next boot;
//! - **process crash** ([`Fault::ProcessCrash`]): the calling process is killed
//!   (SIGKILL) before the call completes; its handles and locks go, the page
//!   cache stays;
//! - **errno** ([`Fault::Errno`]): fail with that error (`ENOSPC`, `EIO`,
//!   `EXDEV`, ... exactly as the kernel reports them), changing nothing —
//!   except at a file's `fsync`/`fdatasync`, where by default Linux's rule
//!   holds ([`super::durability::FsyncFailure::DropsDirtyData`]): the
//!   writeback error marks the file's dirty pages clean without their
//!   reaching the disk, the error is reported once, and a retried sync
//!   succeeds without making them durable;
//! - **short write** ([`Fault::ShortWrite`]): a write stores only a prefix of
//!   its buffer and returns the shorter count, as the kernel may;
//! - **torn write** ([`Fault::TornWrite`]): a write stores a sector-aligned
//!   prefix of its buffer which reaches the disk, then the power is cut;
//! - **clock steps** ([`Fault::ClockJumpBack`], [`Fault::ClockJumpForward`]):
//!   the wall clock steps backwards or forwards (an NTP correction, a VM
//!   resumed, a dead RTC battery), and the call then proceeds normally;
//! - **vanish** ([`Fault::Vanish`]): another process unlinks the file an
//!   `open` names just before it, durably (a file listed a moment ago is
//!   gone when it is read), and the open then proceeds: `ENOENT`, unless it
//!   creates.
//!
//! Faults at rest: the medium, not the call, goes wrong. They strike reads and
//! writes of every file, SQLite's included (through the VFS), as a drive and
//! its firmware do (TigerBeetle's simulator injects the same three):
//! - **latent sector error** ([`Fault::LatentSector`]): a 512-byte sector the
//!   read covers goes bad: this read and every later read of it (across
//!   reboots) fail with `EIO`, until a write covers it (a drive remaps a
//!   sector on write);
//! - **bit rot** ([`Fault::BitRot`]): one bit of what the read covers flips on
//!   the medium (and in the page cache): this read and every later one
//!   return the flipped byte;
//! - **bit flip** ([`Fault::BitFlip`]): this read alone returns one bit
//!   flipped (a transfer error); what is stored is unchanged;
//! - **misdirected write** ([`Fault::MisdirectedWrite`]): the write lands at
//!   another sector-aligned offset of the same file and reports success; the
//!   bytes it was meant to replace stay as they were.
//!
//! Which byte, bit or sector is drawn from the fault RNG, so the same seed
//! strikes the same place. After a power cut, an extended region whose data
//! was not synced may read as zeros: that is the persistence model
//! [`super::persistence::PersistenceModel::Zeroed`], not a fault.
//!
//! Each rule of a [`FaultPlan`] pairs a fault with a [`Trigger`]: a syscall
//! index, the n-th syscall matching a [`SyscallFilter`] (e.g. the first fsync
//! of a path matching `*.db`), or a seeded probability per matching syscall.
//! The first rule that triggers at a syscall, among those whose fault applies
//! to that syscall ([`Fault::applies_to`]), fires.

use std::fmt;
use std::time::Duration;

use rand::Rng;

use super::trace::SyscallKind;
use crate::errno::{errno_from_name, errno_name};

/// Something that goes wrong at a syscall. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The power is cut before the syscall completes.
    PowerCut,
    /// The calling process is killed before the syscall completes.
    ProcessCrash,
    /// The syscall fails with this raw OS error code and changes nothing.
    Errno(i32),
    /// A write stores only part of its buffer and says so.
    ShortWrite,
    /// A write stores a sector-aligned part of its buffer durably, then the
    /// power is cut.
    TornWrite,
    /// The wall clock steps back by this much; the syscall then proceeds.
    ClockJumpBack(Duration),
    /// The wall clock steps forward by this much; the syscall then proceeds.
    ClockJumpForward(Duration),
    /// A sector the read covers goes bad: `EIO` now and at every later
    /// read of it until it is rewritten.
    LatentSector,
    /// One bit the read covers flips on the medium, for good.
    BitRot,
    /// This read returns one bit flipped; the medium is unchanged.
    BitFlip,
    /// The write lands at another sector-aligned offset of the file and
    /// reports success.
    MisdirectedWrite,
    /// Another process unlinks the file this `open` names just before it;
    /// the open then proceeds.
    Vanish,
}

impl Fault {
    /// `ENOSPC`: no space left on device.
    pub const ENOSPC: Fault = Fault::Errno(libc::ENOSPC);
    /// `EIO`: input/output error.
    pub const EIO: Fault = Fault::Errno(libc::EIO);
    /// `EXDEV`: cross-device link.
    pub const EXDEV: Fault = Fault::Errno(libc::EXDEV);

    /// Whether the kernel could produce this fault at this syscall: `ENOSPC`
    /// where space is allocated (writes, creates, syncs of delayed
    /// allocations), `EXDEV` only for rename and link, `EIO` for any I/O but
    /// locks, short, torn and misdirected writes only for writes, latent
    /// sector errors and bit flips only for reads, a vanishing file only
    /// for opens; power cuts, crashes and clock steps anywhere.
    pub fn applies_to(&self, op: SyscallKind) -> bool {
        use SyscallKind::*;
        if matches!(op, Reboot | Unlock) {
            return false;
        }
        match self {
            Fault::PowerCut | Fault::ProcessCrash | Fault::ClockJumpBack(_) | Fault::ClockJumpForward(_) => true,
            Fault::ShortWrite | Fault::TornWrite | Fault::MisdirectedWrite => op == Write,
            Fault::LatentSector | Fault::BitRot | Fault::BitFlip => op == Read,
            Fault::Vanish => op == Open,
            Fault::Errno(code) if *code == libc::ENOSPC => matches!(
                op,
                Open | Write | SetLen | SyncAll | SyncData | SyncDir | Rename | HardLink | CreateDir | Lock
            ),
            Fault::Errno(code) if *code == libc::EXDEV => matches!(op, Rename | HardLink),
            Fault::Errno(code) if *code == libc::EIO => !matches!(op, Lock | LockRange | FreeSpace),
            Fault::Errno(_) => true,
        }
    }

    /// Parses the names printed by `Display`: `power-cut`, `crash`, `ENOSPC`
    /// (any errno name), `short-write`, `torn-write`, `misdirected-write`,
    /// `latent-sector`, `bit-rot`, `bit-flip`, `vanish`, `clock-back-<ms>ms`,
    /// `clock-forward-<ms>ms`.
    pub fn parse(text: &str) -> Option<Fault> {
        let millis = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix("ms"))
                .filter(|digits| !digits.starts_with('+'))
                .and_then(|digits| digits.parse().ok())
                .map(Duration::from_millis)
        };
        match text {
            "power-cut" => Some(Fault::PowerCut),
            "crash" => Some(Fault::ProcessCrash),
            "short-write" => Some(Fault::ShortWrite),
            "torn-write" => Some(Fault::TornWrite),
            "misdirected-write" => Some(Fault::MisdirectedWrite),
            "latent-sector" => Some(Fault::LatentSector),
            "bit-rot" => Some(Fault::BitRot),
            "bit-flip" => Some(Fault::BitFlip),
            "vanish" => Some(Fault::Vanish),
            other => {
                if let Some(by) = millis("clock-back-") {
                    return Some(Fault::ClockJumpBack(by));
                }
                if let Some(by) = millis("clock-forward-") {
                    return Some(Fault::ClockJumpForward(by));
                }
                errno_from_name(other).map(Fault::Errno)
            }
        }
    }

    /// Whether this is a fault at rest (the medium goes wrong, not the call).
    pub fn is_at_rest(&self) -> bool {
        matches!(
            self,
            Fault::LatentSector | Fault::BitRot | Fault::BitFlip | Fault::MisdirectedWrite
        )
    }

    /// Whether a read fault strikes what is stored, so that a second read
    /// of the same place meets it again (a latent sector error, bit rot),
    /// rather than one transfer alone (a bit flip: the next read of the
    /// same place is right again).
    pub fn strikes_the_medium(&self) -> bool {
        matches!(self, Fault::LatentSector | Fault::BitRot)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::PowerCut => f.write_str("power-cut"),
            Fault::ProcessCrash => f.write_str("crash"),
            Fault::Errno(code) => f.write_str(&errno_name(*code)),
            Fault::ShortWrite => f.write_str("short-write"),
            Fault::TornWrite => f.write_str("torn-write"),
            Fault::ClockJumpBack(by) => write!(f, "clock-back-{}ms", by.as_millis()),
            Fault::ClockJumpForward(by) => write!(f, "clock-forward-{}ms", by.as_millis()),
            Fault::LatentSector => f.write_str("latent-sector"),
            Fault::BitRot => f.write_str("bit-rot"),
            Fault::BitFlip => f.write_str("bit-flip"),
            Fault::MisdirectedWrite => f.write_str("misdirected-write"),
            Fault::Vanish => f.write_str("vanish"),
        }
    }
}

/// Which syscalls a trigger looks at.
#[derive(Clone, Debug, Default)]
pub struct SyscallFilter {
    ops: Vec<SyscallKind>,
    path: Option<glob::Pattern>,
}

impl SyscallFilter {
    /// Every syscall.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only syscalls of these kinds.
    pub fn ops(ops: &[SyscallKind]) -> Self {
        Self {
            ops: ops.to_vec(),
            path: None,
        }
    }

    /// Only fsyncs and fdatasyncs of files (not directories).
    pub fn file_syncs() -> Self {
        Self::ops(&[SyscallKind::SyncAll, SyscallKind::SyncData])
    }

    /// Also require the path to match a glob (`*` matches across `/`, so
    /// `*.db` matches `/data/main.db`). `EINVAL` for a malformed glob.
    pub fn path(mut self, glob: &str) -> std::io::Result<Self> {
        self.path = Some(glob::Pattern::new(glob).map_err(|_| crate::errno::einval())?);
        Ok(self)
    }

    /// Whether a syscall matches.
    pub fn matches(&self, op: SyscallKind, path: &str) -> bool {
        (self.ops.is_empty() || self.ops.contains(&op)) && self.path.as_ref().is_none_or(|p| p.matches(path))
    }
}

/// When a rule fires.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// At the syscall with this index (once).
    AtSyscall(u64),
    /// At the `n`-th (1-based) syscall matching the filter (once).
    Nth {
        /// Which syscalls count.
        filter: SyscallFilter,
        /// Which one fires.
        n: u64,
    },
    /// At each matching syscall, with this probability (drawn from the
    /// simulation's fault RNG, so the same seed fires at the same calls).
    Random {
        /// Which syscalls may fire.
        filter: SyscallFilter,
        /// Chance per matching syscall, in `[0, 1]`.
        probability: f64,
    },
}

#[derive(Clone, Debug)]
struct Rule {
    trigger: Trigger,
    fault: Fault,
    matched: u64,
    fired: bool,
}

/// A list of faults and where they strike. Empty by default: nothing fails.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    rules: Vec<Rule>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `fault` at syscall `index`.
    pub fn at(self, index: u64, fault: Fault) -> Self {
        self.with(Trigger::AtSyscall(index), fault)
    }

    /// Adds `fault` at the `n`-th (1-based) syscall matching `filter`.
    pub fn nth(self, filter: SyscallFilter, n: u64, fault: Fault) -> Self {
        self.with(Trigger::Nth { filter, n }, fault)
    }

    /// Adds `fault` at each syscall matching `filter` with `probability`
    /// (clamped to `[0, 1]`).
    pub fn random(self, filter: SyscallFilter, probability: f64, fault: Fault) -> Self {
        let probability = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        self.with(Trigger::Random { filter, probability }, fault)
    }

    /// Adds a rule.
    pub fn with(mut self, trigger: Trigger, fault: Fault) -> Self {
        self.rules.push(Rule {
            trigger,
            fault,
            matched: 0,
            fired: false,
        });
        self
    }

    /// `true` if the plan has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides what happens at syscall `index`. Called once per syscall, in order.
    pub(crate) fn check(&mut self, index: u64, op: SyscallKind, path: &str, rng: &mut impl Rng) -> Option<Fault> {
        let mut chosen = None;
        for rule in &mut self.rules {
            if !rule.fault.applies_to(op) {
                continue;
            }
            let fires = match &rule.trigger {
                Trigger::AtSyscall(at) => !rule.fired && *at == index,
                Trigger::Nth { filter, n } => {
                    if filter.matches(op, path) {
                        rule.matched += 1;
                        !rule.fired && rule.matched == *n
                    } else {
                        false
                    }
                }
                // Draw for every matching syscall, fired or not, so adding a
                // rule later in the plan never shifts this rule's draws.
                Trigger::Random { filter, probability } => filter.matches(op, path) && rng.random_bool(*probability),
            };
            if fires && chosen.is_none() {
                rule.fired = true;
                chosen = Some(rule.fault);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn applicability_follows_the_kernel() {
        assert!(Fault::EXDEV.applies_to(SyscallKind::Rename));
        assert!(!Fault::EXDEV.applies_to(SyscallKind::Write));
        assert!(Fault::ENOSPC.applies_to(SyscallKind::Write));
        assert!(!Fault::ENOSPC.applies_to(SyscallKind::Read));
        assert!(Fault::TornWrite.applies_to(SyscallKind::Write));
        assert!(!Fault::TornWrite.applies_to(SyscallKind::SyncAll));
        assert!(Fault::PowerCut.applies_to(SyscallKind::LockRange));
        for at_rest in [Fault::LatentSector, Fault::BitRot, Fault::BitFlip] {
            assert!(at_rest.applies_to(SyscallKind::Read) && !at_rest.applies_to(SyscallKind::Write));
        }
        assert!(Fault::MisdirectedWrite.applies_to(SyscallKind::Write));
        assert!(!Fault::MisdirectedWrite.applies_to(SyscallKind::Read));
    }

    #[test]
    fn nth_matching_fires_once_on_the_right_call() {
        let filter = SyscallFilter::file_syncs().path("*.db").expect("valid glob");
        let mut plan = FaultPlan::none().nth(filter, 2, Fault::PowerCut);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let calls = [
            (SyscallKind::SyncAll, "/a/x.db-journal"),
            (SyscallKind::SyncAll, "/a/x.db"),
            (SyscallKind::Write, "/a/x.db"),
            (SyscallKind::SyncData, "/a/x.db"),
            (SyscallKind::SyncAll, "/a/x.db"),
        ];
        let fired: Vec<_> = calls
            .iter()
            .enumerate()
            .map(|(i, (op, path))| plan.check(i as u64, *op, path, &mut rng))
            .collect();
        assert_eq!(fired, vec![None, None, None, Some(Fault::PowerCut), None]);
    }

    #[test]
    fn random_trigger_depends_only_on_the_seed() {
        let run = |seed| {
            let mut plan = FaultPlan::none().random(SyscallFilter::any(), 0.3, Fault::EIO);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (0..200)
                .map(|i| plan.check(i, SyscallKind::Read, "/f", &mut rng).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        let fired = run(5).iter().filter(|f| **f).count();
        assert!((30..90).contains(&fired), "expected about 60 of 200, got {fired}");
    }

    #[test]
    fn names_round_trip() {
        for fault in [
            Fault::PowerCut,
            Fault::ProcessCrash,
            Fault::ENOSPC,
            Fault::EIO,
            Fault::EXDEV,
            Fault::ShortWrite,
            Fault::TornWrite,
            Fault::ClockJumpBack(Duration::from_millis(1500)),
            Fault::ClockJumpForward(Duration::from_millis(2500)),
            Fault::LatentSector,
            Fault::BitRot,
            Fault::BitFlip,
            Fault::MisdirectedWrite,
        ] {
            assert_eq!(Fault::parse(&fault.to_string()), Some(fault));
        }
        for bad in ["clock-back-ms", "clock-forward-+5ms", "clock-forward-5", "bit-rots"] {
            assert_eq!(Fault::parse(bad), None, "{bad}");
        }
    }
}
