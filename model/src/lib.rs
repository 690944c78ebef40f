//! What Tearline holds a store to.
//!
//! - [`contract`]: the traits a store implements to be tested
//!   ([`StoreFactory`], [`StoreUnderTest`]), the abstract [`Operation`]s, the
//!   canonical [`Observation`] of a store's state, and its [`Capabilities`].
//! - [`model`]: what the state must be after each operation, keeping the
//!   acknowledged state apart from the operation in flight.
//! - [`invariants`]: the named invariants, one file each
//!   (`invariants/committed_durable.rs`, ...) holding its definition, its
//!   check and the evidence it gives; `invariants/mod.rs` maps each
//!   [`Invariant`] to its file and composes the checks of an observation
//!   ([`invariants::check_recovered`]).
//! - [`guard`]: store calls under guard: a panic is a clean-error violation
//!   ([`invariants::clean_error`]).
//!
//! Of the workspace it depends only on `tearline-sim-fs` (for the trace the
//! lock invariant is read from).

pub mod contract;
pub mod guard;
pub mod invariants;
pub mod model;

pub use contract::{
    Access, Capabilities, DerivedFile, Env, FailureKind, FileRole, NamedStore, Observation, Operation, RebuildKind,
    ReconcileKind, RemoteFault, SchemaObservation, SchemaStamp, StoreFactory, StoreFailure, StoreUnderTest,
};
pub use invariants::{Invariant, Violation};
pub use model::{Model, content_hash};
