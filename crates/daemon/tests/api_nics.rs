#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `/api/v1/nics` and the daemon's error and auth rules over it.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use vfpool_daemon::auth::Auth;

#[tokio::test]
async fn nics_list_and_show_answer_as_the_cli_json() {
    let d = support::daemon();
    let a = d.get("/api/v1/nics").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let names: Vec<&str> = a
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"eno49"), "{names:?}");

    let a = d.get("/api/v1/nics/eno49").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["state"], "virtualizable");
    assert_eq!(a.json["vfs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_unknown_nic_is_a_json_404() {
    let d = support::daemon();
    let a = d.get("/api/v1/nics/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json["error"]["kind"], "not-found");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'nope'"),
        "{}",
        a.text
    );
}

#[tokio::test]
async fn with_a_token_every_api_call_needs_it() {
    let d = support::daemon_with(Auth::with_tokens(Some("admin-token-0123456789"), None).unwrap());
    let a = d.get("/api/v1/nics").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["error"]["kind"], "unauthorized");
    let a = d
        .call(
            Request::get("/api/v1/nics")
                .header("authorization", "Bearer admin-token-0123456789")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // Health needs no token.
    assert_eq!(d.get("/healthz").await.status, StatusCode::OK);
}
