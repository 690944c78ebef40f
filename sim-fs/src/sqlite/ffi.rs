//! The C side of the bridge: the `sqlite3_vfs` and `sqlite3_io_methods`
//! tables and their callbacks. All `unsafe` code of the bridge is here.
//!
//! Each callback is a thin shim: it turns SQLite's pointers into Rust values,
//! calls the safe logic ([`VfsState`], [`SqliteFile`]) inside
//! `catch_unwind`, and turns the result back into a result code. A panic
//! becomes `SQLITE_IOERR` (a panic must not unwind into C: that aborts).
//!
//! Lifetime: a [`Registration`] (the `sqlite3_vfs` struct, its name and the
//! [`VfsState`]) is reference-counted. The `SqliteVfs` handle holds one
//! reference and every open file holds one, so the struct outlives every
//! connection that has a file open through it, and is freed (with the `Fs`)
//! when the handle is gone and the last file is closed.

use std::cell::UnsafeCell;
use std::ffi::{CStr, CString, OsStr, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::ffi;

use super::errors::Code;
use super::file::SqliteFile;
use super::locks::LockLevel;
use super::vfs::VfsState;

/// The longest path SQLite may hand this VFS, in bytes.
const MAX_PATHNAME: c_int = 1024;

/// A registered `sqlite3_vfs` and the state its callbacks serve.
pub(crate) struct Registration {
    /// SQLite links registered VFSes through `pNext`, so it writes here.
    raw: UnsafeCell<ffi::sqlite3_vfs>,
    name: CString,
    state: VfsState,
}

// SAFETY: the raw struct only holds pointers to the name and to this
// Registration, which are immutable and live as long as it; SQLite writes
// `pNext` under its own global mutex and Rust never reads it. `VfsState` is
// Send + Sync.
unsafe impl Send for Registration {}
// SAFETY: as above.
unsafe impl Sync for Registration {}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("state", &self.state)
            .finish()
    }
}

impl Registration {
    /// Registers a new VFS named `name` (not as the default).
    pub(crate) fn register(name: CString, state: VfsState) -> Result<Arc<Self>, Code> {
        let z_name = name.as_ptr();
        let registration = Arc::new_cyclic(|me: &std::sync::Weak<Self>| Self {
            raw: UnsafeCell::new(vfs_table(z_name, me.as_ptr().cast_mut().cast())),
            name,
            state,
        });
        // SAFETY: the struct is fully initialised; its name and `pAppData`
        // point into `registration`, which stays alive until after
        // `unregister` (the handle calls it before dropping its reference).
        let rc = unsafe { ffi::sqlite3_vfs_register(registration.raw.get(), 0) };
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
        Ok(registration)
    }

    /// Removes the VFS from SQLite's list: no new connection can find it.
    /// Connections already open keep using it.
    pub(crate) fn unregister(&self) {
        // SAFETY: the struct was registered by `register` and is alive.
        unsafe { ffi::sqlite3_vfs_unregister(self.raw.get()) };
    }

    pub(crate) fn state(&self) -> &VfsState {
        &self.state
    }
}

fn vfs_table(name: *const c_char, app_data: *mut c_void) -> ffi::sqlite3_vfs {
    ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: c_int::try_from(size_of::<FileSlot>()).unwrap_or(c_int::MAX),
        mxPathname: MAX_PATHNAME,
        pNext: ptr::null_mut(),
        zName: name,
        pAppData: app_data,
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }
}

/// Version 2: the shared-memory methods, no memory-mapped I/O.
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

/// What SQLite allocates `szOsFile` bytes for, per open file.
#[repr(C)]
struct FileSlot {
    /// Must come first: SQLite sees a `sqlite3_file`.
    base: ffi::sqlite3_file,
    /// From `Box::into_raw` in `x_open`; taken back in `x_close`.
    open: *mut OpenFile,
}

struct OpenFile {
    /// Keeps the VFS (struct, state, `Fs`) alive while the file is open.
    registration: Arc<Registration>,
    file: Mutex<SqliteFile>,
}

impl OpenFile {
    fn file(&self) -> MutexGuard<'_, SqliteFile> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> &VfsState {
        &self.registration.state
    }
}

/// Runs `body`, turning a panic into `SQLITE_IOERR`.
fn guard(body: impl FnOnce() -> c_int) -> c_int {
    panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(ffi::SQLITE_IOERR)
}

fn code(result: Result<(), Code>) -> c_int {
    result.err().unwrap_or(ffi::SQLITE_OK)
}

/// # Safety
/// `vfs` must be the struct of a live [`Registration`] (SQLite only calls
/// through structs that are registered or used by an open connection).
unsafe fn registration<'a>(vfs: *mut ffi::sqlite3_vfs) -> &'a Registration {
    // SAFETY: `pAppData` was set to the Registration holding this struct,
    // which is alive per the caller's contract.
    unsafe { &*(*vfs).pAppData.cast::<Registration>() }
}

/// # Safety
/// `file` must have been opened by [`x_open`] and not closed yet.
unsafe fn open_file<'a>(file: *mut ffi::sqlite3_file) -> &'a OpenFile {
    // SAFETY: `x_open` succeeded on this slot (SQLite calls io methods only
    // then), so `open` is a live `Box<OpenFile>` until `x_close`.
    unsafe { &*(*file.cast::<FileSlot>()).open }
}

/// # Safety
/// `name` must be a valid NUL-terminated string that outlives `'a`.
unsafe fn path_from_c<'a>(name: *const c_char) -> &'a Path {
    // SAFETY: per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    Path::new(OsStr::from_bytes(bytes))
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let slot = file.cast::<FileSlot>();
    // SAFETY: SQLite passes `szOsFile` writable bytes, aligned for any
    // pointer-sized field. Writing the slot first leaves `pMethods` null if
    // the open fails, so SQLite will not call `x_close` on it.
    unsafe {
        slot.write(FileSlot {
            base: ffi::sqlite3_file { pMethods: ptr::null() },
            open: ptr::null_mut(),
        })
    };
    // SAFETY: SQLite calls `xOpen` only through a live registration.
    let registration = unsafe { registration(vfs) };
    // SAFETY: a non-null name is a NUL-terminated string valid for this call.
    let path = (!name.is_null()).then(|| unsafe { path_from_c(name) });
    guard(|| match registration.state.open(path, flags) {
        Ok(sqlite_file) => {
            let open = Box::new(OpenFile {
                registration: registration_arc(registration),
                file: Mutex::new(sqlite_file),
            });
            // SAFETY: `slot` is valid (see above); `out_flags` is null or
            // points to an int SQLite owns.
            unsafe {
                (*slot).open = Box::into_raw(open);
                (*slot).base.pMethods = &IO_METHODS;
                if !out_flags.is_null() {
                    *out_flags = flags;
                }
            }
            ffi::SQLITE_OK
        }
        Err(rc) => rc,
    })
}

/// A new counted reference to a live registration.
fn registration_arc(registration: &Registration) -> Arc<Registration> {
    let raw: *const Registration = registration;
    // SAFETY: every Registration lives in an `Arc` (made in `register`) whose
    // pointer `raw` is, and the caller's reference proves it is alive; the
    // count is incremented before `from_raw` takes ownership of one.
    unsafe {
        Arc::increment_strong_count(raw);
        Arc::from_raw(raw)
    }
}

unsafe extern "C" fn x_delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    // SAFETY: a live registration; `name` is a valid path for this call.
    let (registration, path) = unsafe { (registration(vfs), path_from_c(name)) };
    guard(|| code(registration.state.delete(path, sync_dir != 0)))
}

unsafe extern "C" fn x_access(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    // SAFETY: a live registration; `name` is a valid path for this call.
    let (registration, path) = unsafe { (registration(vfs), path_from_c(name)) };
    let mut exists = false;
    let rc = guard(|| match registration.state.access(path, flags) {
        Ok(found) => {
            exists = found;
            ffi::SQLITE_OK
        }
        Err(rc) => rc,
    });
    // SAFETY: `out` points to an int SQLite owns.
    unsafe { *out = c_int::from(exists) };
    rc
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is a NUL-terminated string valid for this call.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
    if usize::try_from(n_out).is_ok_and(|capacity| bytes.len() <= capacity) {
        // SAFETY: `out` has room for `n_out` >= `bytes.len()` bytes and does
        // not overlap `name` (SQLite allocates it separately).
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len()) };
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_CANTOPEN
    }
}

unsafe extern "C" fn x_dl_open(_vfs: *mut ffi::sqlite3_vfs, _name: *const c_char) -> *mut c_void {
    ptr::null_mut()
}

unsafe extern "C" fn x_dl_error(_vfs: *mut ffi::sqlite3_vfs, n_byte: c_int, out: *mut c_char) {
    const MESSAGE: &CStr = c"loadable extensions are not supported by this VFS";
    let bytes = MESSAGE.to_bytes_with_nul();
    let len = usize::try_from(n_byte).unwrap_or(0).min(bytes.len());
    if len > 0 {
        // SAFETY: `out` has room for `n_byte` >= `len` bytes; the copy ends
        // with a NUL written in the last byte.
        unsafe {
            ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, len);
            *out.add(len - 1) = 0;
        }
    }
}

type DlSym = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn x_dl_sym(_vfs: *mut ffi::sqlite3_vfs, _lib: *mut c_void, _symbol: *const c_char) -> Option<DlSym> {
    None
}

unsafe extern "C" fn x_dl_close(_vfs: *mut ffi::sqlite3_vfs, _lib: *mut c_void) {}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n_byte: c_int, out: *mut c_char) -> c_int {
    // SAFETY: a live registration.
    let registration = unsafe { registration(vfs) };
    let len = usize::try_from(n_byte).unwrap_or(0);
    if len == 0 {
        return 0;
    }
    // SAFETY: `out` has room for `n_byte` bytes; zeroing them first makes
    // the slice initialised.
    let buf = unsafe {
        ptr::write_bytes(out, 0, len);
        std::slice::from_raw_parts_mut(out.cast::<u8>(), len)
    };
    guard(|| {
        registration.state.randomness(buf);
        n_byte
    })
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    // SAFETY: a live registration.
    let registration = unsafe { registration(vfs) };
    guard(|| {
        registration.state.sleep(u64::try_from(micros).unwrap_or(0));
        micros
    })
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: a live registration.
    let registration = unsafe { registration(vfs) };
    let mut julian_ms = 0;
    let rc = guard(|| {
        julian_ms = registration.state.now_julian_ms();
        ffi::SQLITE_OK
    });
    // SAFETY: `out` points to a double SQLite owns.
    unsafe { *out = julian_ms as f64 / 86_400_000.0 };
    rc
}

unsafe extern "C" fn x_current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut ffi::sqlite3_int64) -> c_int {
    // SAFETY: a live registration.
    let registration = unsafe { registration(vfs) };
    let mut julian_ms = 0;
    let rc = guard(|| {
        julian_ms = registration.state.now_julian_ms();
        ffi::SQLITE_OK
    });
    // SAFETY: `out` points to an int64 SQLite owns.
    unsafe { *out = julian_ms };
    rc
}

unsafe extern "C" fn x_get_last_error(_vfs: *mut ffi::sqlite3_vfs, _n_byte: c_int, _out: *mut c_char) -> c_int {
    0
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let slot = file.cast::<FileSlot>();
    // SAFETY: SQLite closes only a slot `x_open` filled; taking the pointer
    // out (leaving null) makes this the only owner of the box.
    let open = unsafe { ptr::replace(&raw mut (*slot).open, ptr::null_mut()) };
    if open.is_null() {
        return ffi::SQLITE_OK;
    }
    // SAFETY: `open` came from `Box::into_raw` in `x_open`.
    let open = unsafe { Box::from_raw(open) };
    // Dropping closes the handle whatever state the `Fs` is in (a simulated
    // crash makes every call fail, but a drop cannot).
    guard(|| {
        drop(open);
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_READ;
    };
    // SAFETY: `buf` has room for `amount` bytes; zeroing them first makes
    // the slice initialised.
    let buf = unsafe {
        ptr::write_bytes(buf.cast::<u8>(), 0, len);
        std::slice::from_raw_parts_mut(buf.cast::<u8>(), len)
    };
    guard(|| code(open.file().read(buf, offset)))
}

unsafe extern "C" fn x_write(file: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let (Ok(len), Ok(offset)) = (usize::try_from(amount), u64::try_from(offset)) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: `buf` holds `amount` initialised bytes for this call.
    let buf = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    guard(|| code(open.file().write(buf, offset)))
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let Ok(size) = u64::try_from(size) else {
        return ffi::SQLITE_IOERR_TRUNCATE;
    };
    guard(|| code(open.file().truncate(size)))
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let state = open.state();
    guard(|| code(open.file().sync(state.fs(), flags, state.options().skip_sync)))
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, out: *mut ffi::sqlite3_int64) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let mut size = 0;
    let rc = guard(|| match open.file().size() {
        Ok(len) => {
            size = i64::try_from(len).unwrap_or(i64::MAX);
            ffi::SQLITE_OK
        }
        Err(rc) => rc,
    });
    // SAFETY: `out` points to an int64 SQLite owns.
    unsafe { *out = size };
    rc
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let Some(level) = LockLevel::from_sqlite(level) else {
        return ffi::SQLITE_IOERR_LOCK;
    };
    guard(|| code(open.file().lock(level)))
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let Some(level) = LockLevel::from_sqlite(level) else {
        return ffi::SQLITE_IOERR_UNLOCK;
    };
    guard(|| code(open.file().unlock(level)))
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let mut reserved = false;
    let rc = guard(|| match open.file().check_reserved_lock() {
        Ok(held) => {
            reserved = held;
            ffi::SQLITE_OK
        }
        Err(rc) => rc,
    });
    // SAFETY: `out` points to an int SQLite owns.
    unsafe { *out = c_int::from(reserved) };
    rc
}

unsafe extern "C" fn x_file_control(_file: *mut ffi::sqlite3_file, _op: c_int, _arg: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    c_int::try_from(open.state().options().sector_size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    let mut address = ptr::null_mut();
    let rc = match (usize::try_from(region), usize::try_from(size)) {
        (Ok(region), Ok(size)) => guard(
            || match open.file().shm_map(open.state().fs(), region, size, extend != 0) {
                Ok(mapped) => {
                    address = mapped.unwrap_or(ptr::null_mut());
                    ffi::SQLITE_OK
                }
                Err(rc) => rc,
            },
        ),
        _ => ffi::SQLITE_IOERR_SHMMAP,
    };
    // SAFETY: `out` points to a pointer SQLite owns. The region stays valid
    // until this connection unmaps (the node is kept alive by it).
    unsafe { *out = address.cast() };
    rc
}

unsafe extern "C" fn x_shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    guard(|| code(open.file().shm_lock(offset, n, flags)))
}

unsafe extern "C" fn x_shm_barrier(_file: *mut ffi::sqlite3_file) {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: an open file.
    let open = unsafe { open_file(file) };
    guard(|| {
        open.file().shm_unmap(open.state().fs(), delete != 0);
        ffi::SQLITE_OK
    })
}

/// Asks SQLite to reserve `bytes` at the end of every page of `conn`'s main
/// database (`SQLITE_FCNTL_RESERVE_BYTES`; applied while it has no pages).
pub(crate) fn request_reserve_bytes(conn: &rusqlite::Connection, bytes: usize) -> rusqlite::Result<()> {
    let mut arg = c_int::try_from(bytes).map_err(|_| rusqlite::Error::InvalidQuery)?;
    // SAFETY: `conn.handle()` is a live connection for this call, and
    // RESERVE_BYTES reads and writes the one int `arg` points to.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_RESERVE_BYTES,
            (&mut arg as *mut c_int).cast::<c_void>(),
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None))
    }
}

/// Seeds SQLite's process-global PRNG (`SQLITE_TESTCTRL_PRNG_SEED`). SQLite
/// treats 0 as "no seed" and draws from the default VFS instead.
pub(crate) fn seed_sqlite_prng(seed: c_int) {
    // SAFETY: PRNG_SEED takes an int and a (nullable) connection pointer;
    // with a null connection it only sets the global seed and resets the
    // PRNG under SQLite's own mutex.
    unsafe {
        ffi::sqlite3_test_control(ffi::SQLITE_TESTCTRL_PRNG_SEED, seed, ptr::null_mut::<ffi::sqlite3>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::real::RealFs;
    use crate::sqlite::VfsOptions;

    fn random_bytes(seed: u64) -> Vec<u8> {
        let options = VfsOptions {
            randomness_seed: seed,
            ..VfsOptions::default()
        };
        let state = VfsState::new(Arc::new(RealFs), Arc::new(SimClock::new()), options);
        let registration = Registration::register(c"tearline-ffi-test".into(), state).expect("register");
        let mut bytes = vec![0u8; 48];
        // SAFETY: the struct is registered and alive; `bytes` has 48 bytes.
        let n = unsafe {
            let vfs = registration.raw.get();
            let randomness = (*vfs).xRandomness.expect("xRandomness");
            randomness(vfs, 48, bytes.as_mut_ptr().cast())
        };
        registration.unregister();
        assert_eq!(n, 48);
        bytes
    }

    #[test]
    fn the_same_seed_gives_the_same_randomness() {
        let a = random_bytes(7);
        assert_eq!(a, random_bytes(7));
        assert_ne!(a, random_bytes(8));
        assert_ne!(a, vec![0; 48]);
    }

    #[test]
    fn full_pathname_passes_paths_through_within_bounds() {
        let mut out = [1 as c_char; 8];
        // SAFETY: a NUL-terminated name and an 8-byte buffer.
        let fits = unsafe { x_full_pathname(ptr::null_mut(), c"/a/b".as_ptr(), 8, out.as_mut_ptr()) };
        assert_eq!(fits, ffi::SQLITE_OK);
        // SAFETY: x_full_pathname wrote a NUL-terminated string.
        assert_eq!(unsafe { CStr::from_ptr(out.as_ptr()) }, c"/a/b");
        // SAFETY: as above, with a buffer too small for the name.
        let too_long = unsafe { x_full_pathname(ptr::null_mut(), c"/a/b/c/d".as_ptr(), 8, out.as_mut_ptr()) };
        assert_eq!(too_long, ffi::SQLITE_CANTOPEN);
    }
}
