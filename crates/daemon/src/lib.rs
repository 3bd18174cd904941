//! `vfpool serve`: one long-lived process over the engine (issue 13).
//!
//! - [`state`]: what every request shares: the [`vfpool_engine::Host`], a pool of open
//!   engines (the ledger stays open: no WAL recovery per request), the auth tokens and the
//!   change counter that live views follow.
//! - [`api`]: the REST API under `/api/v1/`, one module per resource, each a thin layer:
//!   parse, one engine call, the engine's own view types as the body.
//! - [`error`]: engine errors as JSON with an HTTP status from their [`vfpool_engine::ErrorKind`].
//! - [`auth`]: bearer tokens (a read-only one apart), compared in constant time.
//! - [`server`]: the listeners (a unix socket, mode 0600, and loopback TCP unless a token is
//!   set) and the router.
//! - [`metrics`]: `GET /metrics` and the layer that times lease operations and splits.
//! - [`snapshot`]: the last `GET /api/v1/nics` answer, kept until the next change.
//! - [`watch`]: change detection without polling (inotify on the ledger and the demo host,
//!   rtnetlink and uevents on a real host), coalesced into one bump of the change counter.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod watch;

pub use error::{ApiError, DaemonError};
pub use server::{ServeConfig, router, serve};
pub use state::AppState;
