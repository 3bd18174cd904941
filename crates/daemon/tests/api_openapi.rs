#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The OpenAPI document keeps honest: it parses, it lists exactly the route table's
//! routes and the router serves each of them, and real answers (views and errors) validate
//! against the schemas it gives for them. The views read back (`Deserialize`) into the
//! engine's types and write out the same JSON (the CLI's `--api` client reads them).
//!
//! Seen failing: a route registered with a plain `.route` (not in the document); PciAddr's
//! schema as an integer (a real answer does not validate); a view field left out without
//! `serde(default)` (does not read back).

mod support;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vfpool_daemon::error::ErrorResponse;
use vfpool_engine::{
    CheckView, GcView, IommuChangeView, IommuStatusView, L2View, L3View, LeaseView, NicChangeView,
    NicShow, NicView, PoolDeleted, PoolDetail, PoolView, VmView,
};

use support::{Answer, Daemon};

/// The route table (/work/api-routes.md) without the live parts (events, metrics, the
/// console) and `/healthz`, which are not under the document.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/host/check"),
    ("get", "/api/v1/host/iommu"),
    ("post", "/api/v1/host/iommu"),
    ("get", "/api/v1/nics"),
    ("get", "/api/v1/nics/{nic}"),
    ("post", "/api/v1/nics/{nic}/split"),
    ("post", "/api/v1/nics/{nic}/restore"),
    ("get", "/api/v1/pools"),
    ("post", "/api/v1/pools"),
    ("get", "/api/v1/pools/{pool}"),
    ("delete", "/api/v1/pools/{pool}"),
    ("get", "/api/v1/leases"),
    ("post", "/api/v1/leases"),
    ("get", "/api/v1/leases/{owner}"),
    ("delete", "/api/v1/leases/{owner}"),
    ("post", "/api/v1/gc"),
    ("get", "/api/v1/l2"),
    ("post", "/api/v1/l2"),
    ("get", "/api/v1/l2/{name}"),
    ("patch", "/api/v1/l2/{name}"),
    ("delete", "/api/v1/l2/{name}"),
    ("get", "/api/v1/l3"),
    ("post", "/api/v1/l3"),
    ("get", "/api/v1/l3/{name}"),
    ("delete", "/api/v1/l3/{name}"),
    ("get", "/api/v1/vms"),
    ("post", "/api/v1/vms"),
    ("get", "/api/v1/vms/{vm}"),
    ("delete", "/api/v1/vms/{vm}"),
    ("post", "/api/v1/vms/{vm}/start"),
    ("post", "/api/v1/vms/{vm}/stop"),
    ("post", "/api/v1/vms/{vm}/nics"),
    ("delete", "/api/v1/vms/{vm}/nics/{index}"),
    ("patch", "/api/v1/vms/{vm}/nics/{index}"),
];

async fn document(d: &Daemon) -> Value {
    let a = d.get("/api/v1/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.headers["content-type"], "application/json",
        "{:?}",
        a.headers
    );
    a.json
}

fn fill(path: &str) -> String {
    path.replace("{nic}", "eno49")
        .replace("{pool}", "nope")
        .replace("{owner}", "vm/nope/nic0")
        .replace("{name}", "nope")
        .replace("{vm}", "nope")
        .replace("{index}", "0")
}

#[tokio::test]
async fn the_document_lists_every_route_and_the_router_serves_each() {
    let d = support::daemon();
    let doc = document(&d).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    // It parses as OpenAPI, not only as JSON.
    let _: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).unwrap();

    let mut listed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&m.as_str()) {
                continue;
            }
            listed.insert((m.clone(), path.clone()));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{m} {path}: no success response"
            );
            if path != vfpool_daemon::api::OPENAPI_PATH {
                assert!(
                    responses.contains_key("401"),
                    "{m} {path}: errors not documented"
                );
            }
        }
    }
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, table, "the document against the route table");

    // The router serves every documented route: a handler answers (JSON), never the
    // router's own empty 404 or its 405.
    for (m, p) in &listed {
        let a = d.send(&m.to_uppercase(), &fill(p), json!({})).await;
        assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
        assert!(
            a.json.is_object() || a.json.is_array(),
            "{m} {p}: {} {}",
            a.status,
            a.text
        );
        if a.status.is_client_error() || a.status.is_server_error() {
            assert!(a.json["error"]["kind"].is_string(), "{m} {p}: {}", a.text);
        }
    }
    // And an undocumented path is the router's plain 404.
    let a = d.get("/api/v1/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json.is_null(), "{}", a.text);
}

/// Checks `a` against the schema the document gives for `method path` and its status.
fn validate(doc: &Value, method: &str, path: &str, a: &Answer) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} not in the document");
    let status = a.status.as_u16().to_string();
    let mut resp = op["responses"][&status].clone();
    assert!(
        resp.is_object(),
        "{method} {path}: status {status} not documented: {}",
        a.text
    );
    if let Some(r) = resp["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        resp = doc["components"]["responses"][name].clone();
    }
    let schema = &resp["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: bad schema: {e}"));
    let errors: Vec<String> = v
        .iter_errors(&a.json)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{}",
        a.text
    );
}

/// The JSON read back into `T` and written out again is the same JSON.
fn round_trip<T: DeserializeOwned + Serialize>(a: &Answer) -> T {
    let t: T = serde_json::from_value(a.json.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<T>()));
    assert_eq!(
        serde_json::to_value(&t).unwrap(),
        a.json,
        "{}",
        std::any::type_name::<T>()
    );
    t
}

struct Checked<'a> {
    d: &'a Daemon,
    doc: Value,
}

impl Checked<'_> {
    async fn call(&self, method: &str, template: &str, path: &str, body: Value) -> Answer {
        let a = if method == "get" {
            self.d.get(path).await
        } else {
            self.d.send(&method.to_uppercase(), path, body).await
        };
        validate(&self.doc, method, template, &a);
        a
    }
}

#[tokio::test]
async fn real_answers_validate_against_the_document_and_read_back() {
    let d = support::daemon();
    let c = Checked {
        doc: document(&d).await,
        d: &d,
    };
    let a = c
        .call(
            "get",
            "/api/v1/host/check",
            "/api/v1/host/check",
            json!(null),
        )
        .await;
    round_trip::<CheckView>(&a);
    let a = c
        .call(
            "get",
            "/api/v1/host/iommu",
            "/api/v1/host/iommu",
            json!(null),
        )
        .await;
    round_trip::<IommuStatusView>(&a);
    let a = c
        .call(
            "post",
            "/api/v1/host/iommu",
            "/api/v1/host/iommu",
            json!({"enabled": true}),
        )
        .await;
    round_trip::<IommuChangeView>(&a);

    let a = c
        .call(
            "post",
            "/api/v1/nics/{nic}/split",
            "/api/v1/nics/eno49/split",
            json!({"vfs": 3}),
        )
        .await;
    round_trip::<NicChangeView>(&a);
    let a = c
        .call("get", "/api/v1/nics", "/api/v1/nics", json!(null))
        .await;
    assert!(round_trip::<Vec<NicView>>(&a).len() > 2);
    let a = c
        .call(
            "get",
            "/api/v1/nics/{nic}",
            "/api/v1/nics/eno49",
            json!(null),
        )
        .await;
    assert!(matches!(round_trip::<NicShow>(&a), NicShow::Pf(ref p) if p.vfs.len() == 3));
    let vf = a.json["vfs"][0]["pci"].as_str().unwrap().to_owned();
    let a = c
        .call(
            "get",
            "/api/v1/nics/{nic}",
            &format!("/api/v1/nics/{vf}"),
            json!(null),
        )
        .await;
    assert!(
        matches!(round_trip::<NicShow>(&a), NicShow::Vf(_)),
        "{}",
        a.text
    );

    let a = c
        .call(
            "post",
            "/api/v1/pools",
            "/api/v1/pools",
            json!({"name": "p", "select": ["eno49#0"]}),
        )
        .await;
    round_trip::<PoolView>(&a);
    let a = c
        .call(
            "post",
            "/api/v1/leases",
            "/api/v1/leases",
            json!({"pool": "p", "owner": "c/1", "vlan": 7, "mac": "02:00:00:00:00:07"}),
        )
        .await;
    round_trip::<LeaseView>(&a);
    let a = c
        .call(
            "get",
            "/api/v1/pools/{pool}",
            "/api/v1/pools/p",
            json!(null),
        )
        .await;
    round_trip::<PoolDetail>(&a);
    let a = c
        .call("get", "/api/v1/leases", "/api/v1/leases", json!(null))
        .await;
    round_trip::<Vec<LeaseView>>(&a);
    // Exhausted, as an error the document describes.
    let a = c
        .call(
            "post",
            "/api/v1/leases",
            "/api/v1/leases",
            json!({"pool": "p", "owner": "c/2"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    round_trip::<ErrorResponse>(&a);
    let a = c
        .call(
            "delete",
            "/api/v1/leases/{owner}",
            "/api/v1/leases/c/1",
            json!(null),
        )
        .await;
    round_trip::<LeaseView>(&a);
    let a = c
        .call("post", "/api/v1/gc", "/api/v1/gc", json!(null))
        .await;
    round_trip::<GcView>(&a);
    let a = c
        .call(
            "delete",
            "/api/v1/pools/{pool}",
            "/api/v1/pools/p",
            json!(null),
        )
        .await;
    round_trip::<PoolDeleted>(&a);

    let a = c
        .call(
            "post",
            "/api/v1/l2",
            "/api/v1/l2",
            json!({"name": "a", "nic": "eno49", "vlan": 5, "sriov": true}),
        )
        .await;
    round_trip::<L2View>(&a);
    let a = c
        .call("post", "/api/v1/l3", "/api/v1/l3",
              json!({"name": "n", "l2": "a", "cidr": "10.2.0.0/24", "gateway": "10.2.0.1", "dns": "10.2.0.53"}))
        .await;
    round_trip::<L3View>(&a);
    let a = c
        .call(
            "post",
            "/api/v1/vms",
            "/api/v1/vms",
            json!({"name": "v", "nics": [{"l3": "n", "type": "vf"}, {"l3": "n"}]}),
        )
        .await;
    round_trip::<VmView>(&a);
    let a = c
        .call(
            "post",
            "/api/v1/vms/{vm}/start",
            "/api/v1/vms/v/start",
            json!(null),
        )
        .await;
    let vm = round_trip::<VmView>(&a);
    assert!(
        vm.nics[0].vf.is_some() && vm.nics[1].address.is_some(),
        "{}",
        a.text
    );
    let a = c
        .call("get", "/api/v1/l3/{name}", "/api/v1/l3/n", json!(null))
        .await;
    assert_eq!(round_trip::<L3View>(&a).addresses.len(), 2);
    let a = c
        .call("get", "/api/v1/vms", "/api/v1/vms", json!(null))
        .await;
    round_trip::<Vec<VmView>>(&a);
    // A 400 naming the field, as documented.
    let a = c
        .call(
            "post",
            "/api/v1/vms",
            "/api/v1/vms",
            json!({"name": "w", "nics": [{"l3": 1}]}),
        )
        .await;
    assert_eq!(
        round_trip::<ErrorResponse>(&a).error.field.as_deref(),
        Some("nics[0].l3")
    );
    let a = c
        .call("get", "/api/v1/vms/{vm}", "/api/v1/vms/nope", json!(null))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
