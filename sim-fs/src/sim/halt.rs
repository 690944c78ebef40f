//! Why a simulated process stopped: [`Halted`], the error every syscall of a
//! stopped process returns, and [`halted`], which finds it in an `io::Error`.

use std::fmt;
use std::io;

/// Why a simulated process stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HaltKind {
    /// The machine lost power.
    PowerCut,
    /// The process was killed.
    ProcessCrash,
}

/// The error every syscall of a stopped process returns. It is not an errno:
/// a real process would not run at all; this only unwinds the workload. Find
/// it with [`halted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Halted {
    /// Power cut or process crash.
    pub kind: HaltKind,
    /// The index of the syscall at which it happened.
    pub at_syscall: u64,
}

impl fmt::Display for Halted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            HaltKind::PowerCut => "the simulated machine lost power",
            HaltKind::ProcessCrash => "the simulated process was killed",
        };
        write!(f, "{what} at syscall {}", self.at_syscall)
    }
}

impl std::error::Error for Halted {}

/// If `err` is a simulated halt (power cut or process crash), which one.
pub fn halted(err: &io::Error) -> Option<Halted> {
    err.get_ref()?.downcast_ref::<Halted>().copied()
}

pub(super) fn halt_error(halt: Halted) -> io::Error {
    io::Error::other(halt)
}
