//! One CPU for a child and its mount's request thread.
//!
//! Every request the child makes through the mount wakes the mount's
//! request thread, and its answer wakes the child again. Across two CPUs
//! each wakeup is an inter-processor interrupt, which a virtual machine
//! pays dearly for; on one CPU it is a local context switch. Measured on
//! this project's 2-core VM: a `pread` through the mount took 45 us with
//! the two on any CPU and 8 us with both on one.

use std::io;

use crate::exec::CpuPlacement;

/// A set of one CPU, as the kernel takes it.
#[derive(Clone, Copy)]
pub(crate) struct OneCpu(libc::cpu_set_t);

impl std::fmt::Debug for OneCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpu = (0..libc::CPU_SETSIZE as usize).find(|&c| {
            // SAFETY: `c` is below CPU_SETSIZE, the set's size.
            unsafe { libc::CPU_ISSET(c, &self.0) }
        });
        f.debug_tuple("OneCpu").field(&cpu).finish()
    }
}

/// The CPUs the calling thread may run on, in order.
fn allowed() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `set`, which outlives the call.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the set's size.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// The CPU `placement` asks for: the one the calling thread runs on now,
/// or the `index`-th (modulo their number) of those it may run on. `None`
/// for [`CpuPlacement::Anywhere`], and where the kernel says neither.
pub(crate) fn choose(placement: CpuPlacement) -> Option<OneCpu> {
    let cpu = match placement {
        // SAFETY: no arguments; returns -1 on failure.
        CpuPlacement::Current => usize::try_from(unsafe { libc::sched_getcpu() }).ok()?,
        CpuPlacement::Index(index) => {
            let allowed = allowed();
            *allowed.get(index % allowed.len().max(1))?
        }
        CpuPlacement::Anywhere => return None,
    };
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the kernel (below CPU_SETSIZE).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    Some(OneCpu(set))
}

impl OneCpu {
    /// Moves the calling thread (or, between fork and exec, process) to
    /// this CPU. Async-signal-safe: one system call.
    pub(crate) fn enter(&self) -> io::Result<()> {
        // SAFETY: the pointer and size describe `self.0`.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const self.0) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Runs `f` on this CPU, so the threads it starts stay there, and then
    /// gives the calling thread back the CPUs it had.
    pub(crate) fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: a zeroed cpu_set_t is an empty set.
        let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer and size describe `before`.
        let saved = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut before) } == 0;
        let moved = saved && self.enter().is_ok();
        let result = f();
        if moved {
            let _ = OneCpu(before).enter();
        }
        result
    }
}
