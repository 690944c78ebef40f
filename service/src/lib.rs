//! The reference store's programs: the `refstore` command line
//! (`src/bin/refstore.rs`) and its HTTP service, `refstore serve`, and the
//! remote vector store's server (`src/bin/vector-server.rs`).
//!
//! - [`service`]: the rules (one writer, reads from a published view,
//!   background rebuilds) without HTTP.
//! - [`api`]: the routes under `/v1`, their roles ([`api::ENDPOINTS`]).
//! - [`keys`]: bearer keys and roles.
//! - [`jobs`]: the rebuild jobs.
//! - [`problem`]: the one error shape, RFC 9457 problem documents.
//! - [`vectors`]: the remote vector store, `vector-server` and its client.
//! - [`listen`]: bind, serve, stop on a signal (both servers).
//! - `flawed` (feature `flawed-variants`): known-bad service designs the
//!   tests must catch.

pub mod api;
#[cfg(feature = "flawed-variants")]
pub mod flawed;
pub mod jobs;
pub mod keys;
pub mod listen;
pub mod problem;
pub mod service;
pub mod vectors;

pub use api::{router, router_with};
pub use keys::{Keys, Role};
pub use listen::{Bridge, Offload, WorkKind, capture_log, log};
pub use problem::Problem;
pub use service::{Service, ServiceOptions};
