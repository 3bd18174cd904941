//! The API-server stand-in: a small HTTP server that speaks the part of the Kubernetes API
//! vfpool uses (`resource.k8s.io/v1` ResourceSlices: list with field selectors, create,
//! replace with resourceVersion, delete; `v1` Node get; ResourceClaim get), checks every
//! ResourceSlice body against Kubernetes 1.34's types strictly (it must deserialize as
//! k8s-openapi's `ResourceSlice` and serialize back to exactly what was received: an unknown
//! or misspelt field fails) and against the API server's validation rules for
//! ResourceSlices, and records every request.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use vfpool_k8s::k8s_openapi::api::resource::v1::ResourceSlice;
use vfpool_k8s::kube;

pub const NODE: &str = "worker-1";
pub const NODE_UID: &str = "6b1f3c2e-0000-4000-8000-000000000001";
pub const SLICES: &str = "/apis/resource.k8s.io/v1/resourceslices";

#[derive(Default)]
pub struct Inner {
    pub slices: BTreeMap<String, Value>,
    pub rv: u64,
    /// Answers to give instead of the real one: (method, status), the first that matches
    /// the request's method (or any method: `None`) is used once.
    pub faults: VecDeque<(Option<Method>, u16)>,
    /// Every request to the ResourceSlice API: method, path, status answered.
    pub log: Vec<(Method, String, u16)>,
    /// Bodies refused by the checks, with why.
    pub rejected: Vec<String>,
    /// ResourceClaims by namespace and name (served as given), and how often each was read.
    pub claims: BTreeMap<(String, String), Value>,
    pub claim_reads: usize,
}

#[derive(Clone, Default)]
pub struct ApiServer(pub Arc<Mutex<Inner>>);

pub fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

/// `name` is an RFC 1123 label (`label`) or subdomain.
pub fn dns(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    !name.is_empty()
        && name.len() <= max
        && (!label || !name.contains('.'))
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// What Kubernetes 1.34 accepts as a ResourceSlice (the rules of
/// `pkg/apis/resource/validation` the publisher can run into), after the strict type check.
pub fn check(body: &Value) -> Result<ResourceSlice, String> {
    let slice: ResourceSlice =
        serde_json::from_value(body.clone()).map_err(|e| format!("does not decode: {e}"))?;
    let again = serde_json::to_value(&slice).unwrap();
    if &again != body {
        return Err(format!(
            "fields the 1.34 type does not have (or of another type): sent {body}, type keeps {again}"
        ));
    }
    let name = slice.metadata.name.as_deref().unwrap_or("");
    if !dns(name, false) {
        return Err(format!("metadata.name '{name}' is not a DNS subdomain"));
    }
    let spec = &slice.spec;
    if !(spec.driver.len() <= 63 && dns(&spec.driver, false)) {
        return Err(format!("spec.driver '{}'", spec.driver));
    }
    if spec.pool.name.is_empty() || spec.pool.generation < 0 || spec.pool.resource_slice_count < 1 {
        return Err(format!("spec.pool {:?}", spec.pool));
    }
    let placements = [
        spec.node_name.is_some(),
        spec.node_selector.is_some(),
        spec.all_nodes == Some(true),
        spec.per_device_node_selection == Some(true),
    ];
    if placements.iter().filter(|p| **p).count() != 1 {
        return Err(
            "exactly one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection".into(),
        );
    }
    let devices = spec.devices.as_deref().unwrap_or(&[]);
    if devices.len() > 128 {
        return Err(format!("spec.devices: {} > 128", devices.len()));
    }
    let mut seen = BTreeSet::new();
    for d in devices {
        if !dns(&d.name, true) || !seen.insert(&d.name) {
            return Err(format!("device name '{}' (a unique DNS label)", d.name));
        }
        let attrs = d.attributes.as_ref().map(|a| a.len()).unwrap_or(0);
        let caps = d.capacity.as_ref().map(|a| a.len()).unwrap_or(0);
        if attrs + caps > 32 {
            return Err(format!(
                "device {}: {} attributes and capacities",
                d.name,
                attrs + caps
            ));
        }
        for (k, v) in d.attributes.iter().flatten() {
            let (domain, id) = k.split_once('/').unwrap_or(("", k));
            let c_ident = !id.is_empty()
                && id.len() <= 32
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !id.as_bytes()[0].is_ascii_digit();
            let domain_ok = domain.is_empty() || (domain.len() <= 63 && dns(domain, false));
            if !c_ident || !domain_ok {
                return Err(format!("attribute name '{k}'"));
            }
            let set = [
                v.bool.is_some(),
                v.int.is_some(),
                v.string.is_some(),
                v.version.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(format!("attribute '{k}' must have exactly one value"));
            }
            if v.string.as_ref().is_some_and(|s| s.len() > 64) {
                return Err(format!("attribute '{k}': string over 64 bytes"));
            }
        }
    }
    Ok(slice)
}

impl ApiServer {
    pub fn fault(&self, method: &Method) -> Option<u16> {
        let mut st = self.0.lock().unwrap();
        let at = st
            .faults
            .iter()
            .position(|(m, _)| m.as_ref().is_none_or(|m| m == method))?;
        st.faults.remove(at).map(|(_, c)| c)
    }

    pub fn record(&self, method: Method, path: String, code: u16) {
        self.0.lock().unwrap().log.push((method, path, code));
    }

    pub fn writes(&self) -> usize {
        let st = self.0.lock().unwrap();
        st.log
            .iter()
            .filter(|(m, _, c)| *m != Method::GET && *c < 300)
            .count()
    }

    pub fn log_of(&self, code: u16) -> usize {
        let st = self.0.lock().unwrap();
        st.log.iter().filter(|(_, _, c)| *c == code).count()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.0.lock().unwrap().rejected.clone()
    }

    /// Stores `v` (checked) as the current version of its slice.
    pub fn put(&self, mut v: Value) {
        let mut st = self.0.lock().unwrap();
        st.rv += 1;
        v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let name = v["metadata"]["name"].as_str().unwrap().to_owned();
        st.slices.insert(name, v);
    }

    /// The slices of `node` now, checked, by name.
    pub fn slices_of(&self, node: &str) -> BTreeMap<String, ResourceSlice> {
        let st = self.0.lock().unwrap();
        st.slices
            .iter()
            .filter(|(_, v)| v["spec"]["nodeName"] == node)
            .map(|(k, v)| (k.clone(), check(v).unwrap()))
            .collect()
    }

    pub fn names_of(&self, node: &str) -> BTreeSet<String> {
        self.slices_of(node)
            .values()
            .flat_map(|s| s.spec.devices.clone().unwrap_or_default())
            .map(|d| d.name)
            .collect()
    }
}

pub async fn list(
    State(api): State<ApiServer>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(code) = api.fault(&Method::GET) {
        api.record(Method::GET, SLICES.into(), code);
        return status(code, "InternalError", "injected");
    }
    let mut want: Vec<(String, String)> = Vec::new();
    for term in q
        .get("fieldSelector")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
    {
        if term.is_empty() {
            continue;
        }
        let Some((k, v)) = term.split_once('=') else {
            return status(400, "BadRequest", "bad fieldSelector");
        };
        let path = match k {
            "spec.nodeName" => "nodeName",
            "spec.driver" => "driver",
            _ => {
                return status(
                    400,
                    "BadRequest",
                    &format!("field label not supported: {k}"),
                );
            }
        };
        want.push((path.into(), v.into()));
    }
    let st = api.0.lock().unwrap();
    let items: Vec<Value> = st
        .slices
        .values()
        .filter(|v| want.iter().all(|(k, val)| v["spec"][k] == val.as_str()))
        .cloned()
        .collect();
    let rv = st.rv.to_string();
    drop(st);
    api.record(Method::GET, SLICES.into(), 200);
    Json(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList",
        "metadata": {"resourceVersion": rv}, "items": items,
    }))
    .into_response()
}

pub async fn create(State(api): State<ApiServer>, Json(body): Json<Value>) -> Response {
    let code = match api.fault(&Method::POST) {
        Some(code) => status(code, "InternalError", "injected"),
        None => match check(&body) {
            Err(why) => {
                api.0.lock().unwrap().rejected.push(why.clone());
                status(422, "Invalid", &why)
            }
            Ok(_) if body["metadata"].get("resourceVersion").is_some() => status(
                400,
                "BadRequest",
                "resourceVersion should not be set on objects to be created",
            ),
            Ok(_) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if api.0.lock().unwrap().slices.contains_key(&name) {
                    status(
                        409,
                        "AlreadyExists",
                        &format!("resourceslices \"{name}\" already exists"),
                    )
                } else {
                    api.put(body);
                    let st = api.0.lock().unwrap();
                    (StatusCode::CREATED, Json(st.slices[&name].clone())).into_response()
                }
            }
        },
    };
    api.record(Method::POST, SLICES.into(), code.status().as_u16());
    code
}

pub async fn replace(
    State(api): State<ApiServer>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let r = match api.fault(&Method::PUT) {
        Some(code) => status(code, "Conflict", "injected"),
        None => match check(&body) {
            Err(why) => {
                api.0.lock().unwrap().rejected.push(why.clone());
                status(422, "Invalid", &why)
            }
            Ok(_) if body["metadata"]["name"] != name.as_str() => status(
                400,
                "BadRequest",
                "the name of the object does not match the URL",
            ),
            Ok(_) => {
                let held = api.0.lock().unwrap().slices.get(&name).cloned();
                match held {
                    None => status(
                        404,
                        "NotFound",
                        &format!("resourceslices \"{name}\" not found"),
                    ),
                    Some(old)
                        if old["metadata"]["resourceVersion"]
                            != body["metadata"]["resourceVersion"] =>
                    {
                        status(
                            409,
                            "Conflict",
                            "the object has been modified; please apply your changes to the latest version and try again",
                        )
                    }
                    Some(_) => {
                        api.put(body);
                        let st = api.0.lock().unwrap();
                        Json(st.slices[&name].clone()).into_response()
                    }
                }
            }
        },
    };
    api.record(Method::PUT, format!("{SLICES}/{name}"), r.status().as_u16());
    r
}

pub async fn delete(State(api): State<ApiServer>, Path(name): Path<String>) -> Response {
    let r = match api.fault(&Method::DELETE) {
        Some(code) => status(code, "InternalError", "injected"),
        None => match api.0.lock().unwrap().slices.remove(&name) {
            Some(v) => Json(v).into_response(),
            None => status(
                404,
                "NotFound",
                &format!("resourceslices \"{name}\" not found"),
            ),
        },
    };
    api.record(
        Method::DELETE,
        format!("{SLICES}/{name}"),
        r.status().as_u16(),
    );
    r
}

/// A node without a uid: what no API server sends, which the publisher must not take.
pub const NODE_WITHOUT_UID: &str = "worker-nouid";

pub async fn node(Path(name): Path<String>) -> Response {
    let meta = match name.as_str() {
        NODE => json!({"name": NODE, "uid": NODE_UID, "resourceVersion": "1"}),
        NODE_WITHOUT_UID => json!({"name": NODE_WITHOUT_UID, "resourceVersion": "1"}),
        _ => return status(404, "NotFound", &format!("nodes \"{name}\" not found")),
    };
    Json(json!({"apiVersion": "v1", "kind": "Node", "metadata": meta})).into_response()
}

/// A ResourceClaim, as `GET .../namespaces/NS/resourceclaims/NAME` answers.
pub async fn claim(
    State(api): State<ApiServer>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let mut st = api.0.lock().unwrap();
    st.claim_reads += 1;
    match st.claims.get(&(ns, name.clone())) {
        Some(c) => Json(c.clone()).into_response(),
        None => status(
            404,
            "NotFound",
            &format!("resourceclaims.resource.k8s.io \"{name}\" not found"),
        ),
    }
}

/// Starts the stand-in on a loopback port; a kube client for it.
pub async fn serve(api: &ApiServer) -> kube::Client {
    let url = serve_url(api).await;
    let config = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

/// Starts the stand-in on a loopback port; its URL (`http://127.0.0.1:PORT`).
pub async fn serve_url(api: &ApiServer) -> String {
    let app = Router::new()
        .route(SLICES, get(list).post(create))
        .route(
            &format!("{SLICES}/{{name}}"),
            axum::routing::put(replace).delete(delete),
        )
        .route("/api/v1/nodes/{name}", get(node))
        .route(
            "/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}",
            get(claim),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A kubeconfig file for the stand-in at `url` (what `kube::Client::try_default` reads
/// from `KUBECONFIG`).
pub fn kubeconfig(path: &std::path::Path, url: &str) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {url}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\ncurrent-context: standin\nusers:\n- name: standin\n  user: {{}}\n"
    );
    std::fs::write(path, text).unwrap();
}
