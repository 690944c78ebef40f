//! The syscall dispatcher: every syscall of every process goes through
//! [`SimFs::syscall`](super::SimFs), which checks the process may run,
//! calls the machine's hook if it has one, numbers the call, advances the
//! clock, records a snapshot if asked,
//! consults the fault plan, runs the call's body unless a fault pre-empts it,
//! and traces the outcome.

use std::io;
use std::path::Path;

use super::SimFs;
use super::faults::Fault;
use super::halt::{HaltKind, Halted, halt_error};
use super::trace::{Outcome, SyscallArgs, SyscallKind};
use super::world::{Call, PowerCut, World};

/// What a fault does to the one syscall it strikes, once the generic faults
/// (power cut, crash, errno, clock steps) are handled: the call's body
/// carries these out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallFault {
    /// A write stores part of its buffer.
    Short,
    /// A write stores a sector-aligned part, then the power goes.
    Torn,
    /// A write lands at another sector-aligned offset.
    Misdirected,
    /// A file sync fails with this errno (what it does to the dirty data
    /// is [`super::durability::FsyncFailure`]).
    FailedSync(i32),
    /// A read makes a sector it covers go bad.
    LatentSector,
    /// A read flips a bit on the medium.
    BitRot,
    /// A read returns a bit flipped.
    BitFlip,
}

impl SimFs {
    /// Runs one syscall: checks the process may run, numbers it, advances the
    /// clock, consults the fault plan, runs `body` unless a fault pre-empts
    /// it, and traces the result. `args` reads the call's arguments off the
    /// state before the call; `describe` renders a successful result.
    pub(super) fn syscall<T>(
        &self,
        op: SyscallKind,
        path: &str,
        args: impl FnOnce(&World) -> SyscallArgs,
        body: impl FnOnce(&mut World, Option<CallFault>) -> io::Result<T>,
        describe: impl FnOnce(&T) -> Outcome,
    ) -> io::Result<T> {
        let mut guard = self.world();
        if let Some(halt) = guard.stopped(self.pid) {
            return Err(halt_error(halt));
        }
        if let Some(hook) = guard.hook.clone() {
            let index = guard.syscall_index;
            drop(guard);
            hook(self, index);
            guard = self.world();
            if let Some(halt) = guard.stopped(self.pid) {
                return Err(halt_error(halt));
            }
        }
        let world = &mut *guard;
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
        let call_fault = match fault {
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
            Some(Fault::Errno(code)) if matches!(op, SyscallKind::SyncAll | SyscallKind::SyncData) => {
                Some(CallFault::FailedSync(code))
            }
            Some(Fault::Errno(code)) => {
                world.log(&call, Outcome::Errno(code), fault);
                return Err(io::Error::from_raw_os_error(code));
            }
            Some(Fault::ClockJumpBack(by)) => {
                world.clock.jump_back(by);
                None
            }
            Some(Fault::ClockJumpForward(by)) => {
                world.clock.advance(by);
                None
            }
            Some(Fault::ShortWrite) => Some(CallFault::Short),
            Some(Fault::TornWrite) => Some(CallFault::Torn),
            Some(Fault::MisdirectedWrite) => Some(CallFault::Misdirected),
            Some(Fault::LatentSector) => Some(CallFault::LatentSector),
            Some(Fault::BitRot) => Some(CallFault::BitRot),
            Some(Fault::BitFlip) => Some(CallFault::BitFlip),
            Some(Fault::Vanish) => {
                world.vanish(Path::new(path));
                None
            }
            None => None,
        };
        let result = body(world, call_fault);
        let outcome = match (&result, world.power_cut) {
            (_, Some(cut)) if cut.halt.at_syscall == index => Outcome::PowerCut,
            (Ok(value), _) => describe(value),
            (Err(e), _) => Outcome::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        world.log(&call, outcome, fault);
        result
    }

    /// A syscall on one path, with no other arguments, traced as `ok` on success.
    pub(super) fn path_call<T>(
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
}

/// Renders any successful result as `ok`.
pub(super) fn ok<T>(_: &T) -> Outcome {
    Outcome::Ok
}
