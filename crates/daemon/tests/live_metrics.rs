#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `GET /metrics`: Prometheus text that parses, with values that move after a split and an
//! acquire; and the layer that times lease operations and splits on their routes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use vfpool_engine::{AcquireRequest, Policy, SplitRequest};

/// A strict reader of the text format: `# HELP`/`# TYPE` lines, samples `name{labels} value`,
/// `# EOF` last. Returns samples keyed by `name{labels}` as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut types = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            assert!(
                ["gauge", "counter", "histogram"].contains(&ty),
                "type {ty} in {line}"
            );
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        let (key, value) = line.rsplit_once(' ').unwrap();
        let name = key.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        if let Some(labels) = key.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        let family = types
            .keys()
            .filter(|t| name.starts_with(t.as_str()))
            .max_by_key(|t| t.len())
            .unwrap_or_else(|| panic!("sample {name} without a # TYPE"));
        assert!(!family.is_empty());
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value {value} in {line}"));
        out.insert(key.to_string(), v);
    }
    out
}

fn split(h: &vfpool_engine::Host, nic: &str, vfs: u32) {
    h.engine()
        .unwrap()
        .split_nics(
            &SplitRequest {
                nics: vec![nic.into()],
                vfs: vfs.to_string(),
                autoprobe: None,
                timeout: Duration::from_secs(5),
                force: true,
                keep_link: false,
            },
            &|_, _, _| {},
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_after_a_split_and_an_acquire() {
    let d = support::daemon();
    let a = d.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let m = parse(&a.text);
    assert_eq!(m[r#"vfpool_nic_vfs{nic="em1",state="total"}"#], 0.0);
    assert_eq!(m["vfpool_change_generation"], 0.0);

    let other = d.other_host();
    split(&other, "em1", 6);
    let mut e = other.engine().unwrap();
    e.pool_create("gold", vec!["em1".parse().unwrap()], Policy::FirstFit)
        .unwrap();
    e.acquire(&AcquireRequest::new("gold", "pod/a")).unwrap();
    d.state.changed();

    let m = parse(&d.get("/metrics").await.text);
    assert_eq!(m[r#"vfpool_nic_vfs{nic="em1",state="total"}"#], 6.0);
    assert_eq!(m[r#"vfpool_nic_vfs{nic="em1",state="leased"}"#], 1.0);
    assert_eq!(m[r#"vfpool_nic_vfs{nic="em1",state="free"}"#], 5.0);
    assert_eq!(m[r#"vfpool_nic_vfs{nic="em1",state="unhealthy"}"#], 0.0);
    assert_eq!(m[r#"vfpool_pool_vfs{pool="gold",state="total"}"#], 6.0);
    assert_eq!(m[r#"vfpool_pool_vfs{pool="gold",state="leased"}"#], 1.0);
    assert_eq!(m[r#"vfpool_pool_vfs{pool="gold",state="free"}"#], 5.0);
    assert_eq!(m["vfpool_change_generation"], 1.0);

    // A PF losing carrier: its VFs are unhealthy.
    use vfpool_netlink::NetOps;
    vfpool_sim::SimNetOps::new(other.sim.as_ref().unwrap().root())
        .set_up("em1", false)
        .unwrap();
    let m = parse(&d.get("/metrics").await.text);
    assert_eq!(m[r#"vfpool_nic_vfs{nic="em1",state="unhealthy"}"#], 6.0);
    assert_eq!(m[r#"vfpool_pool_vfs{pool="gold",state="unhealthy"}"#], 5.0);
}

/// The layer on stand-ins at the API's routes (the handlers are the REST work's): each
/// acquire, release and split is counted and timed by route and status, whatever the path.
#[tokio::test]
async fn lease_operations_and_splits_are_counted_by_route_and_status() {
    let d = support::daemon();
    let stand_ins = Router::new()
        .route(
            "/api/v1/leases",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(3)).await;
                StatusCode::CREATED
            }),
        )
        .route(
            "/api/v1/leases/{*owner}",
            delete(|| async { StatusCode::CONFLICT }),
        )
        .route(
            "/api/v1/nics/{nic}/split",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                StatusCode::OK
            }),
        )
        .route("/api/v1/pools", post(|| async { StatusCode::CREATED }))
        .route_layer(axum::middleware::from_fn_with_state(
            d.state.clone(),
            vfpool_daemon::metrics::track,
        ))
        .route(
            "/metrics",
            axum::routing::get(vfpool_daemon::metrics::scrape),
        )
        .with_state(d.state.clone());
    let d = support::Daemon {
        app: stand_ins,
        ..d
    };
    let body = serde_json::json!({});
    for _ in 0..3 {
        d.send("POST", "/api/v1/leases", body.clone()).await;
    }
    d.send("DELETE", "/api/v1/leases/pod/a/b", body.clone())
        .await;
    d.send("POST", "/api/v1/nics/em1/split", body.clone()).await;
    d.send("POST", "/api/v1/pools", body.clone()).await;
    let m = parse(&d.get("/metrics").await.text);
    assert_eq!(
        m[r#"vfpool_lease_operations_total{op="acquire",status="201"}"#],
        3.0
    );
    assert_eq!(
        m[r#"vfpool_lease_operations_total{op="release",status="409"}"#],
        1.0
    );
    assert_eq!(
        m[r#"vfpool_lease_operation_duration_seconds_count{op="acquire",outcome="ok"}"#],
        3.0
    );
    assert!(
        m[r#"vfpool_lease_operation_duration_seconds_sum{op="acquire",outcome="ok"}"#] >= 0.009
    );
    assert_eq!(
        m[r#"vfpool_lease_operation_duration_seconds_count{op="release",outcome="error"}"#],
        1.0
    );
    assert_eq!(
        m[r#"vfpool_split_duration_seconds_count{outcome="ok"}"#],
        1.0
    );
    assert!(m[r#"vfpool_split_duration_seconds_sum{outcome="ok"}"#] >= 0.03);
    // 30 ms or more is above the 20 ms bucket (10, 20, 40, ...), and in +Inf.
    assert_eq!(
        m[r#"vfpool_split_duration_seconds_bucket{le="0.02",outcome="ok"}"#],
        0.0
    );
    assert_eq!(
        m[r#"vfpool_split_duration_seconds_bucket{le="+Inf",outcome="ok"}"#],
        1.0
    );
    // Only those three operations.
    let ops: usize = m
        .keys()
        .filter(|k| k.starts_with("vfpool_lease_operations_total{"))
        .count();
    assert_eq!(ops, 2, "{m:#?}");
}

#[tokio::test]
async fn a_mutating_request_drops_the_snapshot() {
    let d = support::daemon();
    let computed = || {
        d.state
            .snapshots()
            .computed
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    d.get("/api/v1/nics").await;
    d.get("/api/v1/nics").await;
    assert_eq!(computed(), 1);
    // Any method but GET/HEAD/OPTIONS on a matched route (here refused: no such method).
    let a = d
        .send("POST", "/api/v1/nics/eno49", serde_json::json!({}))
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    d.get("/api/v1/nics").await;
    assert_eq!(computed(), 2);
}

/// The same counts through the real API handlers: a split, a pool, two acquires (one
/// refused: the owner holds a lease) and a release of the owner (its path has slashes).
#[tokio::test]
async fn the_real_handlers_are_counted() {
    use serde_json::json;
    let d = support::daemon();
    let a = d
        .send("POST", "/api/v1/nics/eno49/split", json!({"vfs": 2}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = d
        .send(
            "POST",
            "/api/v1/pools",
            json!({"name": "p", "select": ["eno49"]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let acquire = json!({"pool": "p", "owner": "cni/net/c1/eth0"});
    assert_eq!(
        d.send("POST", "/api/v1/leases", acquire.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        d.send("POST", "/api/v1/leases", acquire).await.status,
        StatusCode::CONFLICT
    );
    let a = d
        .send("DELETE", "/api/v1/leases/cni/net/c1/eth0", json!(null))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let m = parse(&d.get("/metrics").await.text);
    assert_eq!(
        m[r#"vfpool_lease_operations_total{op="acquire",status="201"}"#],
        1.0
    );
    assert_eq!(
        m[r#"vfpool_lease_operations_total{op="acquire",status="409"}"#],
        1.0
    );
    assert_eq!(
        m[r#"vfpool_lease_operations_total{op="release",status="200"}"#],
        1.0
    );
    assert_eq!(
        m[r#"vfpool_split_duration_seconds_count{outcome="ok"}"#],
        1.0
    );
    assert_eq!(
        m[r#"vfpool_pool_vfs{pool="p",state="free"}"#], 2.0,
        "{m:#?}"
    );
}
