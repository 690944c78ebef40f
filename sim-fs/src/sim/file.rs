//! Open files: [`SimFile`], the handle [`crate::Fs::open`] returns on a
//! [`SimFs`](super::SimFs), and its [`FileHandle`] syscalls (read, write,
//! set_len, fstat, fsync, fdatasync, byte-range locks, identity). Short and
//! torn writes strike here; a handle closes (dropping its byte-range locks)
//! when it drops or its process dies.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rand::Rng;

use super::SimFs;
use super::dispatch::{CallFault, ok};
use super::durability::{FsyncFailure, MEDIUM_SECTOR, PendingOp};
use super::halt::{HaltKind, Halted, halt_error};
use super::image::{Ino, Node};
use super::locks;
use super::trace::{Outcome, SyscallArgs, SyscallKind};
use super::world::{HandleId, OpenFile, PowerCut, World};
use crate::clock::Clock;
use crate::errno;
use crate::fs::{ByteRange, FileHandle, FileIdentity, RangeLockMode};

impl World {
    /// The length of the file open as `handle`, if it is open.
    pub(super) fn handle_len(&self, handle: HandleId) -> Option<u64> {
        let ino = self.handles.get(&handle)?.ino;
        Some(self.state.current.file(ino)?.len())
    }
}

impl SimFs {
    /// Registers a new open handle of this process on `ino`, opened as `path`.
    pub(super) fn handle(&self, path: &Path, ino: Ino, writable: bool) -> Box<dyn FileHandle> {
        let mut world = self.world();
        let id = world.next_handle;
        world.next_handle += 1;
        world.handles.insert(
            id,
            OpenFile {
                pid: self.pid,
                ino,
                path: path.display().to_string(),
                writable,
            },
        );
        Box::new(SimFile { fs: self.clone(), id })
    }
}

/// An open simulated file.
struct SimFile {
    fs: SimFs,
    id: HandleId,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("handle", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.fs.world().close(self.id);
    }
}

impl SimFile {
    /// The path this handle was opened as (for the trace), or empty if it is gone.
    fn path(&self) -> String {
        self.fs
            .world()
            .handles
            .get(&self.id)
            .map(|h| h.path.clone())
            .unwrap_or_default()
    }

    /// Runs a syscall on this handle's inode. A handle of a dead process
    /// reports the process's halt; `EBADF` if closed otherwise.
    fn call<T>(
        &self,
        op: SyscallKind,
        args: impl FnOnce(&World) -> SyscallArgs,
        body: impl FnOnce(&mut World, &OpenFileView, Option<CallFault>) -> io::Result<T>,
        describe: impl FnOnce(&T) -> Outcome,
    ) -> io::Result<T> {
        let path = self.path();
        let id = self.id;
        self.fs.syscall(
            op,
            &path,
            args,
            |world, fault| {
                let view = world
                    .handles
                    .get(&id)
                    .map(|h| OpenFileView {
                        ino: h.ino,
                        writable: h.writable,
                    })
                    .ok_or_else(errno::ebadf)?;
                body(world, &view, fault)
            },
            describe,
        )
    }
}

/// A file sync the fault plan fails: under [`FsyncFailure::DropsDirtyData`]
/// the file's dirty data is dropped (Linux), then the error is returned.
fn failed_sync(world: &mut World, ino: Ino, fault: Option<CallFault>) -> io::Result<()> {
    let Some(CallFault::FailedSync(code)) = fault else {
        return Ok(());
    };
    if world.config.fsync_failure == FsyncFailure::DropsDirtyData {
        world.state.drop_dirty_data(ino);
    }
    Err(io::Error::from_raw_os_error(code))
}

/// Where a misdirected write of `len` bytes meant for `offset` lands: another
/// sector-aligned offset within the file (or just past its end).
fn misdirect(rng: &mut impl Rng, offset: u64, len: usize, file_len: u64) -> u64 {
    let sectors = file_len.max(offset + len as u64).div_ceil(MEDIUM_SECTOR) + 1;
    let meant = offset / MEDIUM_SECTOR;
    let other = rng.random_range(0..sectors - 1);
    // Every sector but the one meant, each equally likely.
    let sector = if other >= meant { other + 1 } else { other };
    sector * MEDIUM_SECTOR
}

/// The parts of an open file a syscall body needs.
struct OpenFileView {
    ino: Ino,
    writable: bool,
}

fn count(n: &usize) -> Outcome {
    Outcome::Count(*n as u64)
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len();
        self.call(
            SyscallKind::Read,
            |_| SyscallArgs::Read {
                offset,
                len: len as u64,
            },
            |world, file, fault| {
                let len = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?.len();
                // The bytes this read covers; a fault at rest strikes one of them.
                let covered = len.saturating_sub(offset).min(buf.len() as u64);
                // The fault RNG is drawn from only when a fault strikes, so
                // the draws of the other faults stay where they were.
                match fault {
                    Some(CallFault::LatentSector) if covered > 0 => {
                        let struck = offset + world.fault_rng.random_range(0..covered);
                        world.state.bad_sectors.insert((file.ino, struck / MEDIUM_SECTOR));
                    }
                    Some(CallFault::BitRot) if covered > 0 => {
                        let struck = offset + world.fault_rng.random_range(0..covered);
                        let bit = world.fault_rng.random_range(0..8u8);
                        world.state.flip_bit(file.ino, struck, bit);
                    }
                    _ => {}
                }
                if world.state.bad_sector_in(file.ino, offset, covered).is_some() {
                    return Err(errno::eio());
                }
                let data = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?;
                let read = data.read_at(buf, offset);
                if fault == Some(CallFault::BitFlip) && read > 0 {
                    let at = world.fault_rng.random_range(0..read);
                    buf[at] ^= 1 << world.fault_rng.random_range(0..8u8);
                }
                Ok(read)
            },
            count,
        )
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.call(
            SyscallKind::Write,
            |_| SyscallArgs::Write {
                offset,
                len: buf.len() as u64,
            },
            |world, file, fault| {
                if !file.writable {
                    return Err(errno::ebadf());
                }
                let (device, old_len) = {
                    let data = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?;
                    (data.device, data.len())
                };
                let offset = match fault {
                    Some(CallFault::Misdirected) => misdirect(&mut world.fault_rng, offset, buf.len(), old_len),
                    _ => offset,
                };
                let written = match fault {
                    Some(CallFault::Short) if buf.len() > 1 => world.fault_rng.random_range(1..buf.len()),
                    Some(CallFault::Torn) => {
                        let sector = world.config.persistence.sector_size() as usize;
                        let sectors = buf.len().div_ceil(sector);
                        world.fault_rng.random_range(0..sectors.max(1)) * sector
                    }
                    _ => buf.len(),
                };
                let new_len = old_len.max(offset + written as u64);
                world.reserve(device, old_len, new_len)?;
                if written > 0 {
                    let mtime = world.clock.now();
                    world.state.record(PendingOp::Write {
                        ino: file.ino,
                        device,
                        offset,
                        data: Arc::from(&buf[..written]),
                        mtime,
                    });
                    world.account(device, old_len, new_len);
                    world.state.heal_sectors(file.ino, offset, written as u64);
                }
                if fault == Some(CallFault::Torn) {
                    let halt = Halted {
                        kind: HaltKind::PowerCut,
                        at_syscall: world.syscall_index - 1,
                    };
                    world.power_cut = Some(PowerCut {
                        halt,
                        keep_last: written > 0,
                    });
                    return Err(halt_error(halt));
                }
                Ok(written)
            },
            count,
        )
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let id = self.id;
        self.call(
            SyscallKind::SetLen,
            |world| SyscallArgs::SetLen {
                len,
                old_len: world.handle_len(id),
            },
            |world, file, _| {
                if !file.writable {
                    return Err(errno::einval());
                }
                let (device, old_len) = {
                    let data = world.state.current.file(file.ino).ok_or_else(errno::ebadf)?;
                    (data.device, data.len())
                };
                world.reserve(device, old_len, len)?;
                let mtime = world.clock.now();
                world.state.record(PendingOp::SetLen {
                    ino: file.ino,
                    device,
                    len,
                    mtime,
                });
                world.account(device, old_len, len);
                Ok(())
            },
            ok,
        )
    }

    fn len(&self) -> io::Result<u64> {
        self.call(
            SyscallKind::Fstat,
            |_| SyscallArgs::FstatLen,
            |world, file, _| Ok(world.state.current.file(file.ino).ok_or_else(errno::ebadf)?.len()),
            |len: &u64| Outcome::Count(*len),
        )
    }

    fn sync_all(&self) -> io::Result<()> {
        self.call(
            SyscallKind::SyncAll,
            |_| SyscallArgs::None,
            |world, file, fault| {
                failed_sync(world, file.ino, fault)?;
                world.state.sync_file(file.ino);
                Ok(())
            },
            ok,
        )
    }

    fn sync_data(&self) -> io::Result<()> {
        self.call(
            SyscallKind::SyncData,
            |_| SyscallArgs::None,
            |world, file, fault| {
                failed_sync(world, file.ino, fault)?;
                let policy = world.config.sync_data;
                world.state.sync_data(file.ino, policy);
                Ok(())
            },
            ok,
        )
    }

    fn lock_range(&self, range: ByteRange, mode: RangeLockMode) -> io::Result<()> {
        let id = self.id;
        self.call(
            SyscallKind::LockRange,
            |_| SyscallArgs::LockRange { mode, range },
            |world, file, _| {
                let locks = world.range_locks.entry(file.ino).or_default();
                locks::set_range(locks, id, range, mode)
            },
            ok,
        )
    }

    fn identity(&self) -> io::Result<FileIdentity> {
        self.call(
            SyscallKind::Fstat,
            |_| SyscallArgs::FstatIdentity,
            |world, file, _| {
                let device = match world.state.current.node(file.ino) {
                    Some(Node::File(data)) => data.device,
                    _ => 0,
                };
                Ok(FileIdentity {
                    device: (world.machine << 32)
                        | ((u64::from(world.boot) & 0xFF_FFFF) << 8)
                        | u64::from(device & 0xFF),
                    inode: file.ino,
                })
            },
            ok,
        )
    }
}
