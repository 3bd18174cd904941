//! The REST API under `/api/v1/`: one module per resource. Handlers parse, make one engine
//! call, and answer with the engine's view types (the CLI's `-o json`); warnings a view
//! carries go in `Vfpool-Warning` headers.

use axum::Router;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vfpool_engine::view::Shown;

use crate::state::AppState;

pub mod events;
pub mod nics;

/// Every API route.
pub fn router() -> Router<AppState> {
    Router::new().merge(nics::router()).merge(events::router())
}

/// A view as JSON, its warnings as `Vfpool-Warning` headers.
pub fn shown<T: Serialize>(s: Shown<T>) -> Response {
    let mut r = axum::Json(s.view).into_response();
    for w in s.warnings {
        if let Ok(v) = HeaderValue::from_str(&w.replace(['\r', '\n'], " ")) {
            r.headers_mut().append("vfpool-warning", v);
        }
    }
    r
}
