//! The reference store.
//!
//! A document index (source files as the truth, a versioned SQLite index and a
//! separate non-transactional vector store) written only against the `Fs` and
//! `Clock` traits of `tearline-sim-fs`, so it runs unchanged on the real
//! filesystem in production and on the simulated one under the harness.
//!
//! - [`store`]: opening (lock, generation, schema, recovery), reading, search, verify.
//! - [`dual_write`]: the two-phase protocol across index and vector store, and recovery.
//! - [`reconcile`]: audit / sync / clean / full against the source files (the filesystem wins).
//! - [`journal`]: journaled mutations (add, remove, import): all or nothing, drained on open.
//! - [`owner`]: a document's owner, and reconcile scoped to one owner.
//! - [`schema`]: the versioned schema and its migration registry.
//! - [`lock`]: the write lock and the permission to wipe only it hands out.
//! - [`rebuild`]: full (a new, verified generation, switched atomically, the
//!   old one kept as a backup) and incremental rebuilds, and backup retention.
//! - `repair`: finding a damaged live generation before anything changes,
//!   and rebuilding it from the source files (keeping the damaged one aside).
//! - `generation`: building an index beside the live one, switching
//!   atomically, removing leftovers and old backups.
//! - [`vectors`]: the vector store contract and its local, segment-file implementation.
//! - [`embed`]: summaries, chunks and the deterministic embedder.
//! - [`layout`]: where everything lives under the root.
//! - `under_test` (with the `tearline-contract` feature): the store under
//!   Tearline's contract (`tearline-model`), with the known-bad designs of the
//!   origin documents as test-only variants.

/// `true` when the store runs with the known-bad design `$flaw` (a
/// [`flawed::Flaw`] variant); always `false` without the `flawed-variants`
/// feature, where `$selected` (the store's `Option<Flaw>`) is not even
/// compiled.
macro_rules! flaw {
    ($selected:expr, $flaw:ident) => {{
        #[cfg(feature = "flawed-variants")]
        let on = $selected == Some(crate::flawed::Flaw::$flaw);
        #[cfg(not(feature = "flawed-variants"))]
        let on = false;
        on
    }};
}

pub mod dual_write;
pub mod embed;
pub mod error;
#[cfg(feature = "flawed-variants")]
pub mod flawed;
pub(crate) mod generation;
mod index;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod owner;
pub mod rebuild;
pub mod reconcile;
pub(crate) mod repair;
pub mod reserve;
pub mod schema;
pub mod share;
mod sidecar;
pub mod store;
#[cfg(feature = "tearline-contract")]
pub mod under_test;
pub mod vectors;

pub use dual_write::{AddOutcome, RecoveryReport};
pub use error::{FailureEffect, StoreError};
#[cfg(feature = "flawed-variants")]
pub use flawed::Flaw;
pub use index::FileRow;
pub use journal::{ImportProgress, ImportStats, JournalReport, QuarantinedJournal};
pub use layout::{DocName, Generation, Layout};
pub use rebuild::{RebuildMode, RebuildProgress, RebuildStats, RetentionPolicy};
pub use reconcile::{ReconcileMode, ReconcileOptions, ReconcileStats};
pub use repair::Repair;
pub use store::{
    Access, Document, Dump, DumpedDocument, Hit, OpenReport, SkippedSource, Status, Store, StoreOptions, VerifyReport,
};
#[cfg(feature = "tearline-contract")]
pub use under_test::{RefStore, RefStoreFactory};
