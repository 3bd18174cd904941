//! `GET /metrics`: Prometheus' text format (OpenMetrics, through `prometheus-client`).
//!
//! - VFs per pool and per NIC (`total`, `free`, `leased`, `unhealthy`), read from the engine at
//!   scrape time;
//! - lease operations through the API (acquire: `POST /api/v1/leases`, release: `DELETE
//!   /api/v1/leases/{*owner}`) counted by HTTP status, with a latency histogram, and split
//!   durations (`POST /api/v1/nics/{nic}/split`): a layer on the matched route, whatever
//!   handler serves it ([`track`]);
//! - the change generation and how often the NIC list was computed.
//!
//! The same layer drops the cached answers ([`AppState::invalidate_snapshots`]) after every
//! request that may change something (any method but GET, HEAD and OPTIONS).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vfpool_engine::HostView;

use crate::error::ApiError;
use crate::state::AppState;

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// What `/metrics` counts between scrapes (clones share the values).
#[derive(Clone)]
pub struct Metrics {
    lease_ops: Family<Labels, Counter>,
    lease_seconds: Histograms,
    split_seconds: Histograms,
}

fn lease_buckets() -> Histogram {
    // 0.5 ms .. ~4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

fn split_buckets() -> Histogram {
    // 10 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            lease_ops: Family::default(),
            lease_seconds: Family::new_with_constructor(lease_buckets),
            split_seconds: Family::new_with_constructor(split_buckets),
        }
    }
}

/// A request the metrics time, from its method and matched route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Acquire,
    Release,
    Split,
}

impl Op {
    pub fn of(method: &Method, route: &str) -> Option<Op> {
        match (method, route) {
            (&Method::POST, "/api/v1/leases") => Some(Op::Acquire),
            (&Method::DELETE, "/api/v1/leases/{*owner}") => Some(Op::Release),
            (&Method::POST, "/api/v1/nics/{nic}/split") => Some(Op::Split),
            _ => None,
        }
    }
}

/// The layer over every matched route (`Router::route_layer`).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let op = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| Op::of(&method, p.as_str()));
    let t = Instant::now();
    let r = next.run(req).await;
    let seconds = t.elapsed().as_secs_f64();
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        state.invalidate_snapshots();
    }
    let m = state.metrics();
    let status = r.status().as_u16().to_string();
    let outcome = if r.status().is_success() {
        "ok"
    } else {
        "error"
    };
    match op {
        Some(op @ (Op::Acquire | Op::Release)) => {
            let name = if op == Op::Acquire {
                "acquire"
            } else {
                "release"
            };
            m.lease_ops
                .get_or_create(&vec![("op".into(), name.into()), ("status".into(), status)])
                .inc();
            m.lease_seconds
                .get_or_create(&vec![
                    ("op".into(), name.into()),
                    ("outcome".into(), outcome.into()),
                ])
                .observe(seconds);
        }
        Some(Op::Split) => {
            m.split_seconds
                .get_or_create(&vec![("outcome".into(), outcome.into())])
                .observe(seconds);
        }
        None => {}
    }
    r
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (pools, nics, unhealthy) = state
        .engine(|h, e| {
            let pools = e.pool_list()?;
            let nics = h.nics()?.view;
            let view = HostView::scan(&h.fs)?;
            let mut unhealthy = std::collections::HashMap::new();
            for vf in view.vfs.values().filter(|v| !v.health.is_healthy()) {
                *unhealthy.entry(vf.pf_pci).or_insert(0i64) += 1;
            }
            Ok((pools, nics, unhealthy))
        })
        .await?;
    let m = state.metrics().clone();
    let mut reg = Registry::default();
    let pool_vfs = Family::<Labels, Gauge>::default();
    for p in &pools {
        for (k, v) in [
            ("total", p.total),
            ("free", p.free),
            ("leased", p.leased),
            ("unhealthy", p.unhealthy),
        ] {
            pool_vfs
                .get_or_create(&vec![
                    ("pool".into(), p.name.clone()),
                    ("state".into(), k.into()),
                ])
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
    }
    let nic_vfs = Family::<Labels, Gauge>::default();
    for n in nics.iter().filter(|n| n.total_vfs > 0) {
        for (k, v) in [
            ("total", i64::from(n.num_vfs)),
            ("free", i64::from(n.free_vfs)),
            ("leased", i64::from(n.num_vfs - n.free_vfs)),
            ("unhealthy", unhealthy.get(&n.pci).copied().unwrap_or(0)),
        ] {
            nic_vfs
                .get_or_create(&vec![
                    ("nic".into(), n.name.clone()),
                    ("state".into(), k.into()),
                ])
                .set(v);
        }
    }
    let generation = Gauge::<i64>::default();
    generation.set(i64::try_from(state.generation()).unwrap_or(i64::MAX));
    let computed = Counter::<u64>::default();
    computed.inc_by(state.snapshots().computed.load(Ordering::Relaxed));
    reg.register(
        "vfpool_pool_vfs",
        "VFs of a pool by state (total, free, leased, unhealthy)",
        pool_vfs,
    );
    reg.register(
        "vfpool_nic_vfs",
        "VFs of a physical NIC by state (total, free, leased, unhealthy)",
        nic_vfs,
    );
    reg.register(
        "vfpool_lease_operations",
        "Lease acquires and releases through the API, by HTTP status",
        m.lease_ops,
    );
    reg.register(
        "vfpool_lease_operation_duration_seconds",
        "Latency of lease acquires and releases through the API",
        m.lease_seconds,
    );
    reg.register(
        "vfpool_split_duration_seconds",
        "Duration of NIC splits through the API",
        m.split_seconds,
    );
    reg.register(
        "vfpool_change_generation",
        "Changes of the host or the ledger seen (the generation of GET /api/v1/events)",
        generation,
    );
    reg.register(
        "vfpool_nic_list_computations",
        "Times the NIC list was computed (not answered from its snapshot)",
        computed,
    );
    let mut body = String::new();
    encode(&mut body, &reg).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            vfpool_engine::ErrorKind::Io.as_str(),
            format!("cannot encode the metrics: {e}"),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}
