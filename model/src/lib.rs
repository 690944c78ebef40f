//! The abstract model of a store under test.
//!
//! This crate will hold the store contract (the trait a store implements to be
//! tested by Tearline), the abstract operations and the model that says what a
//! store's state must be after each of them, and the invariant catalogue
//! (complete-database, committed-durable, atomic-op, no-orphan-vectors, ...).
//! It depends only on `tearline-sim-fs`.
