#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The API's errors: 400 naming the field (a body that does not parse, a value the engine
//! refuses, with the CLI's one-line message), 404, 409 (conflict, exhausted), 413, 415,
//! and who may call: no token 401 on every API route, the read-only token 403 on every
//! change (the routes walked from the OpenAPI document, so a new route is covered).
//!
//! Seen failing: DELETE not counted as a change by the auth guard (403 test); the missing
//! or unknown field not named (400 tests, and the extractor's unit test).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use vfpool_daemon::auth::Auth;

use support::{Answer, Daemon};

#[track_caller]
fn err(a: &Answer, status: StatusCode, kind: &str) -> (String, String) {
    assert_eq!(a.status, status, "{}", a.text);
    let e = &a.json["error"];
    assert_eq!(e["kind"], kind, "{}", a.text);
    let msg = e["message"].as_str().unwrap().to_owned();
    assert!(!msg.contains('\n'), "one line: {msg}");
    (e["field"].as_str().unwrap_or("").to_owned(), msg)
}

#[track_caller]
fn bad(a: &Answer, field: &str) -> String {
    let (f, m) = err(a, StatusCode::BAD_REQUEST, "invalid-input");
    assert_eq!(f, field, "{m}");
    m
}

async fn split(d: &Daemon, nic: &str, vfs: u32) {
    let a = d
        .send(
            "POST",
            &format!("/api/v1/nics/{nic}/split"),
            json!({"vfs": vfs}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

#[tokio::test]
async fn a_body_that_does_not_parse_is_a_400_naming_the_field() {
    let d = support::daemon();
    let post = |p: &'static str, b: Value| {
        let d = &d;
        async move { d.send("POST", p, b).await }
    };
    // Wrong type, unknown field, missing field, nested.
    bad(
        &post("/api/v1/nics/eno49/split", json!({"vfs": "four"})).await,
        "vfs",
    );
    bad(
        &post("/api/v1/nics/eno49/split", json!({"vfs": -1})).await,
        "vfs",
    );
    let m = bad(
        &post("/api/v1/nics/eno49/split", json!({"vfs": 2, "vf": 1})).await,
        "vf",
    );
    assert!(m.contains("unknown field `vf`"), "{m}");
    bad(&post("/api/v1/nics/eno49/split", json!({})).await, "vfs");
    bad(&post("/api/v1/pools", json!({"name": "p"})).await, "select");
    bad(
        &post("/api/v1/pools", json!({"name": "p", "select": "eno49"})).await,
        "select",
    );
    bad(
        &post(
            "/api/v1/vms",
            json!({"name": "v", "nics": [{"l3": "n"}, {"type": "vf"}]}),
        )
        .await,
        "nics[1].l3",
    );
    bad(
        &post(
            "/api/v1/vms",
            json!({"name": "v", "nics": [{"l3": "n", "type": 1}]}),
        )
        .await,
        "nics[0].type",
    );
    bad(
        &post(
            "/api/v1/leases",
            json!({"pool": "p", "owner": "o", "vlan": "ten"}),
        )
        .await,
        "vlan",
    );
    bad(
        &post(
            "/api/v1/host/iommu",
            json!({"enabled": true, "vendor": "via"}),
        )
        .await,
        "vendor",
    );
    bad(
        &d.send("PATCH", "/api/v1/l2/x", json!({"sriov": "on"}))
            .await,
        "sriov",
    );
    // Not an object, not JSON, nothing at all.
    bad(&post("/api/v1/l2", json!([1, 2])).await, "body");
    let a = d
        .call(
            Request::post("/api/v1/l3")
                .header("content-type", "application/json")
                .body(Body::from("{\"name\": "))
                .unwrap(),
        )
        .await;
    bad(&a, "body");
    let a = d
        .call(Request::post("/api/v1/vms").body(Body::empty()).unwrap())
        .await;
    bad(&a, "body");
}

#[tokio::test]
async fn values_the_engine_refuses_name_their_field_as_the_cli_does() {
    let d = support::daemon();
    split(&d, "eno50", 2).await;
    let a = d
        .send(
            "POST",
            "/api/v1/pools",
            json!({"name": "p", "select": ["eno50"]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    // The CLI's own message (`vfpool lease acquire --vlan 5000`).
    let post = |p: &'static str, b: Value| {
        let d = &d;
        async move { d.send("POST", p, b).await }
    };
    let m = bad(
        &post(
            "/api/v1/leases",
            json!({"pool": "p", "owner": "o", "vlan": 5000}),
        )
        .await,
        "vlan",
    );
    assert_eq!(m, "invalid vlan '5000': 0..=4094");
    bad(
        &post(
            "/api/v1/leases",
            json!({"pool": "p", "owner": "o", "qos": 8, "vlan": 2}),
        )
        .await,
        "qos",
    );
    bad(
        &post(
            "/api/v1/leases",
            json!({"pool": "p", "owner": "o", "mac": "ff:ff:ff:ff:ff:ff"}),
        )
        .await,
        "mac",
    );
    bad(
        &post(
            "/api/v1/leases",
            json!({"pool": "p", "owner": "o", "owner_kind": "robot"}),
        )
        .await,
        "owner-kind",
    );
    bad(
        &post(
            "/api/v1/leases",
            json!({"pool": "p", "owner": "o", "link_state": "up"}),
        )
        .await,
        "link-state",
    );
    bad(
        &post("/api/v1/nics/eno50/split", json!({"vfs": 2, "timeout": 0})).await,
        "timeout",
    );
    bad(
        &post("/api/v1/pools", json!({"name": "-q", "select": ["eno50"]})).await,
        "name",
    );
    bad(
        &post(
            "/api/v1/l3",
            json!({"name": "-n", "l2": "a", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1"}),
        )
        .await,
        "name",
    );
    bad(
        &post(
            "/api/v1/l3",
            json!({"name": "n", "l2": "-a", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1"}),
        )
        .await,
        "l2",
    );
    bad(&post("/api/v1/vms", json!({"name": "-v"})).await, "name");
    bad(
        &post("/api/v1/pools", json!({"name": "q", "select": []})).await,
        "select",
    );
    bad(
        &post(
            "/api/v1/pools",
            json!({"name": "q", "select": ["eno50", "eno50#x"]}),
        )
        .await,
        "select[1]",
    );
    bad(
        &post(
            "/api/v1/pools",
            json!({"name": "q", "select": ["eno50"], "policy": "best"}),
        )
        .await,
        "policy",
    );
    bad(
        &post(
            "/api/v1/l2",
            json!({"name": "x", "nic": "eno50", "type": "ring"}),
        )
        .await,
        "type",
    );
    bad(
        &post("/api/v1/l2", json!({"name": "-x", "nic": "eno50"})).await,
        "name",
    );
    bad(
        &post(
            "/api/v1/vms",
            json!({"name": "v", "nics": [{"l3": "n", "type": "sriov"}]}),
        )
        .await,
        "nics[0].type",
    );
    bad(
        &post(
            "/api/v1/vms",
            json!({"name": "v", "nics": [{"l3": "n", "mac": "01:00:00:00:00:01"}]}),
        )
        .await,
        "nics[0].mac",
    );
    bad(
        &post(
            "/api/v1/vms",
            json!({"name": "v", "nics": [{"l3": "bad name"}]}),
        )
        .await,
        "nics[0].l3",
    );
    bad(
        &post(
            "/api/v1/host/iommu",
            json!({"enabled": false, "vendor": "amd"}),
        )
        .await,
        "vendor",
    );
    bad(
        &d.send("DELETE", "/api/v1/vms/v/nics/eth0", json!(null))
            .await,
        "nic",
    );
    bad(
        &d.send("PATCH", "/api/v1/vms/v/nics/0", json!({"type": "virtio"}))
            .await,
        "type",
    );
}

#[tokio::test]
async fn unknown_things_are_404() {
    let d = support::daemon();
    for p in [
        "/api/v1/pools/nope",
        "/api/v1/leases/nobody",
        "/api/v1/leases/vm/nope/nic0",
        "/api/v1/l2/nope",
        "/api/v1/l3/nope",
        "/api/v1/vms/nope",
        "/api/v1/nics/nope",
    ] {
        let (_, m) = err(&d.get(p).await, StatusCode::NOT_FOUND, "not-found");
        assert!(m.contains("nope") || m.contains("nobody"), "{p}: {m}");
    }
    err(
        &d.send("POST", "/api/v1/vms/nope/start", json!(null)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    err(
        &d.send("DELETE", "/api/v1/leases/nobody", json!(null)).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    err(
        &d.send(
            "POST",
            "/api/v1/leases",
            json!({"pool": "nope", "owner": "o"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
}

#[tokio::test]
async fn conflicts_and_exhaustion_are_409() {
    let d = support::daemon();
    split(&d, "eno50", 1).await;
    let post = |p: &'static str, b: Value| {
        let d = &d;
        async move { d.send("POST", p, b).await }
    };
    let a = post("/api/v1/pools", json!({"name": "p", "select": ["eno50"]})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    // Two pools over the same VF.
    let (_, m) = err(
        &post("/api/v1/pools", json!({"name": "q", "select": ["eno50#0"]})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert!(m.contains('p'), "{m}");
    err(
        &post("/api/v1/pools", json!({"name": "p", "select": ["eno50"]})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    // The one VF leased; a second lease has none.
    let a = post("/api/v1/leases", json!({"pool": "p", "owner": "a"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    err(
        &post("/api/v1/leases", json!({"pool": "p", "owner": "b"})).await,
        StatusCode::CONFLICT,
        "exhausted",
    );
    err(
        &post("/api/v1/leases", json!({"pool": "p", "owner": "a"})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    // Restore of a NIC with a leased VF, without force: refused, naming the lease.
    let (_, m) = err(
        &post("/api/v1/nics/eno50/restore", json!({})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert!(m.contains("a"), "{m}");
    err(
        &d.send("DELETE", "/api/v1/pools/p", json!(null)).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    // With force: done, the lease made stale.
    let a = post("/api/v1/nics/eno50/restore", json!({"force": true})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["stale_leases"], 1);
}

#[tokio::test]
async fn a_body_too_large_is_413_and_not_json_is_415() {
    let d = support::daemon();
    let big = json!({"name": "x".repeat(vfpool_daemon::server::BODY_LIMIT + 1), "select": []});
    let (_, m) = err(
        &d.send("POST", "/api/v1/pools", big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
    );
    assert!(m.contains("65536"), "{m}");
    let a = d
        .call(
            Request::post("/api/v1/pools")
                .header("content-type", "text/plain")
                .body(Body::from(r#"{"name": "p", "select": ["eno49"]}"#))
                .unwrap(),
        )
        .await;
    err(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    assert_eq!(d.get("/api/v1/pools").await.json, json!([]));
}

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";

/// Every operation of the OpenAPI document: (method, path with its parameters filled).
fn operations() -> Vec<(String, String)> {
    let doc = serde_json::to_value(vfpool_daemon::api::openapi()).unwrap();
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path
            .replace("{nic}", "eno49")
            .replace("{pool}", "p")
            .replace("{owner}", "vm/v/nic0")
            .replace("{name}", "n")
            .replace("{vm}", "v")
            .replace("{index}", "0");
        for m in item.as_object().unwrap().keys() {
            if ["get", "post", "patch", "delete", "put"].contains(&m.as_str()) {
                out.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(out.len() > 30, "{out:?}");
    out
}

async fn call_as(d: &Daemon, method: &str, path: &str, token: Option<&str>) -> Answer {
    let mut r = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    d.call(r.body(Body::from("{}")).unwrap()).await
}

#[tokio::test]
async fn no_token_401_and_the_read_only_token_403_on_every_change() {
    let d = support::daemon_with(Auth::with_tokens(Some(ADMIN), Some(READ)).unwrap());
    for (m, p) in operations() {
        if p == vfpool_daemon::api::OPENAPI_PATH {
            continue;
        }
        let a = call_as(&d, &m, &p, None).await;
        err(&a, StatusCode::UNAUTHORIZED, "unauthorized");
        let a = call_as(&d, &m, &p, Some(READ)).await;
        if m == "GET" {
            assert!(
                a.status != StatusCode::FORBIDDEN && a.status != StatusCode::UNAUTHORIZED,
                "{m} {p}: {}",
                a.text
            );
        } else {
            err(&a, StatusCode::FORBIDDEN, "forbidden");
        }
        let a = call_as(&d, &m, &p, Some(ADMIN)).await;
        assert!(
            a.status != StatusCode::FORBIDDEN && a.status != StatusCode::UNAUTHORIZED,
            "{m} {p}: {}",
            a.text
        );
    }
    // Nothing was changed by the refused calls.
    let a = call_as(&d, "GET", "/api/v1/nics/eno49", Some(READ)).await;
    assert_eq!(a.json["num_vfs"], 0, "{}", a.text);
}
