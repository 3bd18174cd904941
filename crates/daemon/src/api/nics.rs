//! `/api/v1/nics`: the physical NICs and their VFs.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;

use super::shown;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/nics", get(list))
        .route("/api/v1/nics/{nic}", get(show))
}

/// `GET /api/v1/nics`: as `vfpool nic list -o json`, from the snapshot kept until the next
/// change ([`crate::snapshot`]).
async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(s.snapshots().nics(&s).await?.response())
}

/// `GET /api/v1/nics/{nic}`: as `vfpool nic show NIC -o json`.
async fn show(State(s): State<AppState>, Path(nic): Path<String>) -> Result<Response, ApiError> {
    Ok(shown(s.with_host(move |h| h.nic(&nic)).await?))
}
