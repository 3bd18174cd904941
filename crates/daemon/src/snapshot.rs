//! The last answer of `GET /api/v1/nics`, kept until the host or the ledger changes: a read is
//! a copy of bytes in memory instead of an inventory scan (about 20 ms with 1024 VFs).
//!
//! It is keyed by the change generation ([`AppState::generation`], bumped by
//! [`crate::watch`]) and by a local epoch that every mutating request of this daemon moves
//! ([`AppState::invalidate_snapshots`]), so that a client reads its own write at once, before
//! the watchers' bump arrives. The body is exactly what [`vfpool_engine::Host::nics`] returns,
//! serialized as [`crate::api::shown`] does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// One answer, with what it was computed for.
#[derive(Debug)]
pub struct NicsSnapshot {
    /// (generation, epoch) when the computation started.
    pub key: (u64, u64),
    pub body: Bytes,
    pub warnings: Vec<String>,
}

impl NicsSnapshot {
    /// The answer, as [`crate::api::shown`] would build it.
    pub fn response(&self) -> Response {
        let mut r = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body.clone(),
        )
            .into_response();
        for w in &self.warnings {
            if let Ok(v) = HeaderValue::from_str(&w.replace(['\r', '\n'], " ")) {
                r.headers_mut().append("vfpool-warning", v);
            }
        }
        r
    }
}

/// The cache: one slot, filled by one request at a time (the others wait for its answer
/// instead of scanning too).
#[derive(Default)]
pub struct SnapshotCache {
    slot: tokio::sync::Mutex<Option<Arc<NicsSnapshot>>>,
    epoch: AtomicU64,
    /// How many times the answer was computed (for tests and the metrics).
    pub computed: AtomicU64,
}

impl SnapshotCache {
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The answer for now: the kept one if nothing changed since it was computed.
    pub async fn nics(&self, state: &AppState) -> Result<Arc<NicsSnapshot>, ApiError> {
        let mut slot = self.slot.lock().await;
        // Read before the scan: a change during the scan makes the next read scan again.
        let key = (state.generation(), self.epoch.load(Ordering::SeqCst));
        if let Some(s) = &*slot
            && s.key == key
        {
            return Ok(s.clone());
        }
        let shown = state.with_host(|h| h.nics()).await?;
        let body = serde_json::to_vec(&shown.view).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                vfpool_engine::ErrorKind::Io.as_str(),
                format!("cannot serialize the NIC list: {e}"),
            )
        })?;
        self.computed.fetch_add(1, Ordering::Relaxed);
        let s = Arc::new(NicsSnapshot {
            key,
            body: Bytes::from(body),
            warnings: shown.warnings,
        });
        *slot = Some(s.clone());
        Ok(s)
    }
}
