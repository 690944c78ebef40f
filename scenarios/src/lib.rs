//! Tearline's harness: the scenario catalogue, the crash-matrix engine and
//! its reports, and the `tearline` binary.
//!
//! - [`engine`]: the crash matrix over any [`engine::Subject`] (a store
//!   through the contract, [`tearline_model::StoreFactory`], or SQLite's own
//!   atomic-commit workload): probe, every fault at every syscall, recovery
//!   checks, shrinking, parallel workers.
//! - [`catalogue`]: every scenario by name, with what it must show.
//! - [`certify`]: certification of any store against the catalogue, and
//!   its [`certify::Certificate`].
//! - [`fuzz`]: the fuzz targets (journal, segments, damage at rest, repro
//!   lines, black-box answers, operation sequences with a fault), run by
//!   cargo-fuzz from `fuzz/` and replayed from its corpora in `cargo test`.
//! - [`net`]: the network scenarios: the store as a service on a simulated
//!   host, a client on another, turmoil's network between them.
//! - [`case`]: a case and its repro line (the syscall grammar; a network
//!   case's is [`net::case`]).
//! - [`replay`]: replaying a case from its line, and the trace printer.
//! - [`report`]: the JSON and JUnit reports.
//! - [`map`]: the crash map, one self-contained HTML page per run.
//! - [`run`]: running catalogue entries, split, merged, shrunk and judged.
//! - [`stores`]: the stores the `tearline` binary knows by name (today a
//!   tiny file-per-document store and a deliberately broken copy).

pub mod case;
pub mod catalogue;
pub mod certify;
pub mod engine;
pub mod fuzz;
pub mod map;
pub mod net;
pub mod replay;
pub mod report;
pub mod run;
pub mod stores;
