//! `vfpool serve`: one long-lived process over the engine (issue 13).
//!
//! - [`state`]: what every request shares: the [`vfpool_engine::Host`], a pool of open
//!   engines (the ledger stays open: no WAL recovery per request), the auth tokens and the
//!   change counter that live views follow.
//! - [`api`]: the REST API under `/api/v1/`, one module per resource ([`api::host`],
//!   [`api::nics`], [`api::pools`], [`api::leases`], [`api::net`] for L2 and L3,
//!   [`api::vms`]), each a thin layer: a body read by [`api::Body`] (unknown fields
//!   refused, a bad body a 400 naming the field), parsed by the engine's own parsers (the
//!   CLI's), one engine call, the engine's view types as the answer, then
//!   [`AppState::changed`] after a change. Each route is declared once with its
//!   `#[utoipa::path]`: utoipa-axum registers it and documents it, and [`api::openapi`] is
//!   the OpenAPI 3 document served at `GET /api/v1/openapi.json` (the views' schemas come
//!   from the engine's, host's and model's `openapi` feature). `tests/api_openapi.rs`
//!   keeps it honest: every route of the table in it and served, real answers valid
//!   against it; `scripts/api-fuzz.sh` fuzzes the API from it.
//! - [`error`]: engine errors as JSON with an HTTP status from their [`vfpool_engine::ErrorKind`].
//! - [`auth`]: bearer tokens (a read-only one apart), compared in constant time.
//! - [`console`]: the web console (server-rendered HTML, one script, live from the events).
//! - [`cni`]: `POST /api/v1/cni`, the CNI plugin's verbs for `vfpool-cni` (unix socket only).
//! - [`server`]: the listeners (a unix socket, mode 0600, and loopback TCP unless a token is
//!   set) and the router.
//! - [`metrics`]: `GET /metrics` and the layer that times lease operations and splits.
//! - [`snapshot`]: the last `GET /api/v1/nics` answer, kept until the next change.
//! - [`watch`]: change detection without polling (inotify on the ledger and the demo host,
//!   rtnetlink and uevents on a real host), coalesced into one bump of the change counter.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cni;
pub mod console;
pub mod error;
pub mod k8s;
pub mod metrics;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod watch;

pub use error::{ApiError, DaemonError};
pub use server::{ServeConfig, router, serve};
pub use state::AppState;
