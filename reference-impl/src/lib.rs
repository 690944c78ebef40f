//! The reference store.
//!
//! A document index (source files as the truth, a versioned SQLite index and a
//! separate non-transactional vector store) written only against the `Fs` and
//! `Clock` traits of `tearline-sim-fs`, so it runs unchanged on the real
//! filesystem in production and on the simulated one under the harness.

pub mod vectors;
