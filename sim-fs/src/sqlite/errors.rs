//! How an `io::Error` from the [`crate::Fs`] becomes a SQLite result code.
//!
//! The mapping follows the unix VFS (`os_unix.c`): which errno values mean
//! "busy", "disk full" or "corrupt filesystem" is decided there, per call.

use std::io;
use std::os::raw::c_int;

use rusqlite::ffi;

/// A SQLite result code other than `SQLITE_OK`, returned by the safe half of
/// the bridge and handed to SQLite unchanged by the C callbacks.
pub(crate) type Code = c_int;

/// A write that failed: `ENOSPC`, or a write that made no progress, is
/// `SQLITE_FULL`; anything else `SQLITE_IOERR_WRITE` (as `unixWrite`).
pub(crate) fn write_error(err: &io::Error) -> Code {
    if err.raw_os_error() == Some(libc::ENOSPC) || err.kind() == io::ErrorKind::WriteZero {
        ffi::SQLITE_FULL
    } else {
        ffi::SQLITE_IOERR_WRITE
    }
}

/// A read that failed: errno values that mean the device or filesystem is
/// damaged are `SQLITE_IOERR_CORRUPTFS`, the rest `SQLITE_IOERR_READ` (as
/// `unixRead`).
pub(crate) fn read_error(err: &io::Error) -> Code {
    match err.raw_os_error() {
        Some(libc::EIO | libc::ENXIO | libc::ERANGE) => ffi::SQLITE_IOERR_CORRUPTFS,
        _ => ffi::SQLITE_IOERR_READ,
    }
}

/// A lock call that failed: a conflict (or a transient lock failure) is
/// `SQLITE_BUSY`, `EPERM` is `SQLITE_PERM`, the rest `otherwise` (as
/// `sqliteErrorFromPosixError`).
pub(crate) fn lock_error(err: &io::Error, otherwise: Code) -> Code {
    if err.kind() == io::ErrorKind::WouldBlock {
        return ffi::SQLITE_BUSY;
    }
    match err.raw_os_error() {
        Some(libc::EACCES | libc::EBUSY | libc::EINTR | libc::ENOLCK | libc::ETIMEDOUT) => ffi::SQLITE_BUSY,
        Some(libc::EPERM) => ffi::SQLITE_PERM,
        _ => otherwise,
    }
}

/// `true` if `err` says the path does not exist.
pub(crate) fn is_not_found(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno;

    #[test]
    fn enospc_is_full_and_other_write_errors_are_ioerr_write() {
        assert_eq!(write_error(&errno::enospc()), ffi::SQLITE_FULL);
        assert_eq!(
            write_error(&io::Error::from(io::ErrorKind::WriteZero)),
            ffi::SQLITE_FULL
        );
        assert_eq!(write_error(&errno::eio()), ffi::SQLITE_IOERR_WRITE);
        assert_eq!(write_error(&errno::exdev()), ffi::SQLITE_IOERR_WRITE);
    }

    #[test]
    fn eio_on_read_is_corruptfs() {
        assert_eq!(read_error(&errno::eio()), ffi::SQLITE_IOERR_CORRUPTFS);
        assert_eq!(read_error(&errno::ebadf()), ffi::SQLITE_IOERR_READ);
    }

    #[test]
    fn a_lock_conflict_is_busy() {
        assert_eq!(
            lock_error(&errno::ewouldblock(), ffi::SQLITE_IOERR_LOCK),
            ffi::SQLITE_BUSY
        );
        assert_eq!(lock_error(&errno::eperm(), ffi::SQLITE_IOERR_LOCK), ffi::SQLITE_PERM);
        assert_eq!(
            lock_error(&errno::eio(), ffi::SQLITE_IOERR_LOCK),
            ffi::SQLITE_IOERR_LOCK
        );
    }
}
