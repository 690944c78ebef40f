//! Certify a store written in any language.
//!
//! The store runs as a child process whose working directory is a FUSE mount
//! served by the simulated filesystem, and speaks the line-delimited JSON
//! protocol of `blackbox/PROTOCOL.md` on its stdin and stdout.
//!
//! - [`SimMount`] ([`mount`]): a directory of any [`tearline_sim_fs::Fs`]
//!   (one `SimFs` process view) served at a real mountpoint. Every request
//!   becomes `Fs` calls, in order, with no kernel caching; a simulated halt
//!   is recorded ([`SimMount::halted`]) and turns every later request into
//!   `EIO`.
//! - [`ExecStoreFactory`] ([`exec`]): a [`tearline_model::StoreFactory`]
//!   over the protocol. `init`, `open` and `stamp_schema` each mount
//!   `env.fs` at `env.root` on a temporary mountpoint and start the command
//!   there (`sh -c CMD`, `TEARLINE_PROTOCOL=1`); the handle `open` returns
//!   sends `apply`, `observe` and `remote-fault`, and on drop sends `close`
//!   (or, after a halt, kills the child at once) and unmounts.
//! - [`reply`]: what a child's hello, answers and observations mean (pure
//!   functions of a line, fuzzed in `fuzz/`).
//! - [`fuse_available`]: whether this machine can mount FUSE at all, for
//!   callers and tests that must say why they skip.
//! - [`NONDETERMINISM`]: what the black-box path cannot make deterministic.
//!
//! A failure of the child to keep the protocol (it exits, prints a line that
//! is not JSON, or does not answer within [`ExecOptions::timeout`]) is an
//! `Err(StoreFailure)` whose message starts with [`PROTOCOL_BROKEN`]; test
//! for it with [`is_protocol_break`]. An `{"ok":false}` answer is an ordinary
//! clean failure.
//!
//! ```no_run
//! use tearline_blackbox::{ExecOptions, ExecStoreFactory};
//! use tearline_model::StoreFactory;
//!
//! let factory = ExecStoreFactory::new("python3 store.py", ExecOptions::default())?;
//! println!("{} {:?}", factory.name(), factory.capabilities());
//! # Ok::<(), tearline_blackbox::ExecError>(())
//! ```

mod cpu;
pub mod exec;
mod locks;
pub mod mount;
pub mod reply;

pub use exec::{
    ChildStderr, CpuPlacement, DEFAULT_STORE_PATH, ExecError, ExecOptions, ExecStoreFactory, Hello, MAX_LINE_BYTES,
    NONDETERMINISM, PROTOCOL_BROKEN, PROTOCOL_VERSION, StderrLog, fuse_available, fuse_or_skip, is_protocol_break,
};
pub use mount::{LockWaiters, SimMount};
