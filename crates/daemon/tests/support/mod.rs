//! The daemon's router over a demo host in a temporary state directory, called without a
//! network (`tower::ServiceExt::oneshot`), and a second host over the same state
//! directory for changes made beside the daemon.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vfpool_daemon::auth::Auth;
use vfpool_daemon::{AppState, router};
use vfpool_engine::{Host, HostConfig};

pub struct Daemon {
    pub state: AppState,
    pub app: Router,
    pub dir: tempfile::TempDir,
}

/// A daemon over a fresh demo host, no token.
pub fn daemon() -> Daemon {
    daemon_with(Auth::none())
}

pub fn daemon_with(auth: Auth) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(&HostConfig {
        demo: true,
        state: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .unwrap();
    let state = AppState::new(host, auth);
    Daemon {
        app: router(state.clone()),
        state,
        dir,
    }
}

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: serde_json::Value,
    pub text: String,
}

impl Daemon {
    pub async fn call(&self, req: Request<Body>) -> Answer {
        let r = self.app.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn send(&self, method: &str, path: &str, body: serde_json::Value) -> Answer {
        self.call(
            Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// A second host over the same state directory: its engine is another SQLite
    /// connection, as another process (the CLI, the CNI plugin) would have. Tests that
    /// need a real other process live in crates/vfpool/tests (the CLI binary is there).
    pub fn other_host(&self) -> Host {
        Host::open(&HostConfig {
            demo: true,
            state: Some(self.dir.path().to_owned()),
            ..Default::default()
        })
        .unwrap()
    }
}
