//! `io::Error`s exactly as the kernel returns them.
//!
//! Each constructor builds the error from the raw OS code, so `kind()` and
//! `raw_os_error()` of an injected fault match those of a real one, and code
//! written against [`crate::Fs`] cannot tell them apart.

use std::io;

macro_rules! errno_fns {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name() -> io::Error {
                io::Error::from_raw_os_error(libc::$code)
            }
        )*
    };
}

errno_fns! {
    /// No such file or directory.
    enoent => ENOENT;
    /// File exists.
    eexist => EEXIST;
    /// No space left on device.
    enospc => ENOSPC;
    /// Invalid cross-device link.
    exdev => EXDEV;
    /// Input/output error.
    eio => EIO;
    /// Is a directory.
    eisdir => EISDIR;
    /// Not a directory.
    enotdir => ENOTDIR;
    /// Directory not empty.
    enotempty => ENOTEMPTY;
    /// Bad file descriptor (e.g. writing a read-only handle).
    ebadf => EBADF;
    /// Invalid argument.
    einval => EINVAL;
    /// Operation not permitted (e.g. hard-linking a directory).
    eperm => EPERM;
    /// Resource temporarily unavailable: a lock is held elsewhere.
    ewouldblock => EWOULDBLOCK;
    /// File too large.
    efbig => EFBIG;
    /// Device or resource busy (e.g. removing a mount point).
    ebusy => EBUSY;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_the_kernel_mapping() {
        assert_eq!(enoent().kind(), io::ErrorKind::NotFound);
        assert_eq!(eexist().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(enospc().kind(), io::ErrorKind::StorageFull);
        assert_eq!(exdev().kind(), io::ErrorKind::CrossesDevices);
        assert_eq!(ewouldblock().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(enotempty().kind(), io::ErrorKind::DirectoryNotEmpty);
        assert_eq!(eio().raw_os_error(), Some(libc::EIO));
    }
}
