//! Errors: the daemon's own ([`DaemonError`], starting up) and a request's ([`ApiError`],
//! a JSON body with an HTTP status from the engine's [`ErrorKind`]).

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vfpool_engine::{EngineError, ErrorKind};
use vfpool_model::InvalidValue;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use TLS file {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error("cannot reach the Kubernetes API server: {0}")]
    Kubernetes(String),
    #[error("cannot serve: {0}")]
    Serve(#[source] std::io::Error),
}

/// A failed request: `{"error": {"kind": ..., "message": ..., "field": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

/// The JSON of a failed request: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The engine's error kind (`invalid-input`, `not-found`, `conflict`, `busy`,
    /// `exhausted`, `refused`, `io`, `corrupt-state`), or `unauthorized`, `forbidden`,
    /// `too-large` (413), `unsupported-media-type` (415).
    pub kind: String,
    /// The one-line message, as the CLI prints it.
    pub message: String,
    /// The field of the request that is wrong, for `invalid-input` (a body's field by its
    /// path, `nics[0].type`; `body` for the body as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                kind: kind.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    /// A bad value in the request, naming its field.
    pub fn invalid(e: &InvalidValue) -> Self {
        let mut err = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidInput.as_str(),
            e.to_string(),
        );
        err.body.field = Some(e.field.to_string());
        err
    }

    /// The engine names a field after what it is (`l2 create NAME`'s name is `l2`); a
    /// body names it `name`: `from` becomes `to`.
    #[must_use]
    pub fn field_renamed(mut self, from: &str, to: &str) -> Self {
        if self.body.field.as_deref() == Some(from) {
            self.body.field = Some(to.to_owned());
        }
        self
    }

    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Io.as_str(),
            format!("the request's worker failed: {e}"),
        )
    }
}

/// The HTTP status of an engine error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Exhausted => StatusCode::CONFLICT,
        ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Io | ErrorKind::CorruptState => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        if let EngineError::Invalid(v) = &e {
            return Self::invalid(v);
        }
        let kind = e.kind();
        Self::new(
            status_of(kind),
            kind.as_str(),
            vfpool_engine::error::chain(&e),
        )
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        Self::invalid(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Wrapped<'a> {
            error: &'a ErrorBody,
        }
        let mut r = (self.status, Json(Wrapped { error: &self.body })).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}
