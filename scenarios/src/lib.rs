//! Tearline's harness: the scenario catalogue, the crash-matrix engine and
//! its reports, and the `tearline` binary.
//!
//! Today the catalogue holds SQLite's own atomic-commit matrix
//! ([`sqlite_atomic_commit`]), the first use of the simulated filesystem.

pub mod catalogue;
pub mod sqlite_atomic_commit;
