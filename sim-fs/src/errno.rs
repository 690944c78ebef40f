//! `io::Error`s exactly as the kernel returns them.
//!
//! Each constructor builds the error from the raw OS code, so `kind()` and
//! `raw_os_error()` of an injected fault match those of a real one, and code
//! written against [`crate::Fs`] cannot tell them apart.
//!
//! One table below lists every errno the simulator knows: its code, its
//! symbolic name, its constructor and what it means. The constructors,
//! [`errno_name`] and [`errno_from_name`] (used by the trace and by fault
//! names such as `ENOSPC`) are all generated from it.

use std::io;

macro_rules! errno_table {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name() -> io::Error {
                io::Error::from_raw_os_error(libc::$code)
            }
        )*

        /// Every errno in the table: its raw code and symbolic name, in table order.
        pub const KNOWN: &[(i32, &str)] = &[$((libc::$code, stringify!($code)),)*];
    };
}

errno_table! {
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
    /// Too many levels of symbolic links.
    eloop => ELOOP;
}

/// The symbolic name of an errno (`ENOSPC`), or `errno N` for codes not in
/// the table.
pub fn errno_name(code: i32) -> String {
    KNOWN
        .iter()
        .find(|(known, _)| *known == code)
        .map_or_else(|| format!("errno {code}"), |(_, name)| (*name).to_string())
}

/// The errno for a symbolic name (the inverse of [`errno_name`]).
pub fn errno_from_name(name: &str) -> Option<i32> {
    KNOWN.iter().find(|(_, known)| *known == name).map(|(code, _)| *code)
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

    #[test]
    fn every_name_parses_back_to_its_code() {
        for (code, name) in KNOWN {
            assert_eq!(errno_name(*code), *name);
            assert_eq!(errno_from_name(name), Some(*code));
        }
        assert_eq!(errno_from_name("ENOSUCH"), None);
    }
}
