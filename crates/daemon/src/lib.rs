//! `vfpool serve`: one long-lived process over the engine (issue 13).
//!
//! - [`state`]: what every request shares: the [`vfpool_engine::Host`], a pool of open
//!   engines (the ledger stays open: no WAL recovery per request), the auth tokens and the
//!   change counter that live views follow.
//! - [`api`]: the REST API under `/api/v1/`, one module per resource, each a thin layer:
//!   parse, one engine call, the engine's own view types as the body.
//! - [`error`]: engine errors as JSON with an HTTP status from their [`vfpool_engine::ErrorKind`].
//! - [`auth`]: bearer tokens (a read-only one apart), compared in constant time.
//! - [`cni`]: `POST /api/v1/cni`, the CNI plugin's verbs for `vfpool-cni` (unix socket only).
//! - [`server`]: the listeners (a unix socket, mode 0600, and loopback TCP unless a token is
//!   set) and the router.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cni;
pub mod error;
pub mod server;
pub mod state;

pub use error::{ApiError, DaemonError};
pub use server::{ServeConfig, router, serve};
pub use state::AppState;
