//! `/api/v1/leases`: VFs leased to owners; `/api/v1/gc`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vfpool_engine::{AcquireInput, GcView, LeaseView, ReleaseTarget};

use super::{Body, created, on_off, text};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/leases`: as `vfpool lease acquire --pool P --owner O ...`. Each value is
/// checked by the engine as the CLI's option is (`invalid vlan '5000': 0..=4094`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    /// The pool to take a VF from.
    pub pool: String,
    /// Who holds the lease (1..=256 visible characters; one lease per owner).
    pub owner: String,
    /// `container`, `vm` or `manual` (default).
    #[serde(default)]
    pub owner_kind: Option<String>,
    /// This VF of the pool (PCI address, `0000:03:10.0`) rather than the policy's choice.
    #[serde(default)]
    pub vf: Option<String>,
    /// The VF's MAC address, set on the PF side (unicast).
    #[serde(default)]
    pub mac: Option<String>,
    /// Port VLAN, 0..=4094 (0: none).
    #[serde(default)]
    pub vlan: Option<u64>,
    /// 802.1p priority of the port VLAN, 0..=7 (needs `vlan`).
    #[serde(default)]
    pub qos: Option<u64>,
    /// `802.1q` (default) or `802.1ad` (needs `vlan`).
    #[serde(default)]
    pub vlan_proto: Option<String>,
    /// MAC spoof checking on the PF side.
    #[serde(default)]
    pub spoofchk: Option<bool>,
    /// Trusted VF.
    #[serde(default)]
    pub trust: Option<bool>,
    /// `auto`, `enable` or `disable`.
    #[serde(default)]
    pub link_state: Option<String>,
    /// Minimum TX rate in Mbit/s, 0..=4294967295.
    #[serde(default)]
    pub min_rate: Option<u64>,
    /// Maximum TX rate in Mbit/s, 0..=4294967295.
    #[serde(default)]
    pub max_rate: Option<u64>,
    /// MTU of the VF netdev in bytes.
    #[serde(default)]
    pub mtu: Option<u64>,
    /// `netdevice` or `vfio-pci`.
    #[serde(default)]
    pub driver: Option<String>,
    /// Prefer a VF on this NUMA node.
    #[serde(default)]
    pub numa: Option<u64>,
    /// The container's network namespace (`/run/netns/NAME`); `owner_kind` container only.
    #[serde(default)]
    pub netns: Option<String>,
}

impl AcquireBody {
    fn input(self) -> AcquireInput {
        AcquireInput {
            pool: self.pool,
            owner: self.owner,
            owner_kind: self.owner_kind,
            vf: self.vf,
            mac: self.mac,
            vlan: text(self.vlan),
            qos: text(self.qos),
            vlan_proto: self.vlan_proto,
            spoofchk: on_off(self.spoofchk),
            trust: on_off(self.trust),
            link_state: self.link_state,
            min_rate: text(self.min_rate),
            max_rate: text(self.max_rate),
            mtu: text(self.mtu),
            driver: self.driver,
            numa: text(self.numa),
            netns: self.netns.map(Into::into),
        }
    }
}

/// `GET /api/v1/leases`: as `vfpool lease list -o json`.
#[utoipa::path(get, path = "/api/v1/leases", tag = "leases",
    responses((status = 200, description = "Every lease", body = Vec<LeaseView>)))]
pub async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    let leases = s.engine(|_, e| e.leases()).await?;
    let views: Vec<LeaseView> = leases.iter().map(Into::into).collect();
    Ok(axum::Json(views).into_response())
}

/// `POST /api/v1/leases`: as `vfpool lease acquire -o json`.
#[utoipa::path(post, path = "/api/v1/leases", tag = "leases", request_body = AcquireBody,
    responses((status = 201, description = "The lease", body = LeaseView)))]
pub async fn acquire(
    State(s): State<AppState>,
    Body(b): Body<AcquireBody>,
) -> Result<Response, ApiError> {
    let req = b.input().request()?;
    let lease = s.engine(move |_, e| e.acquire(&req)).await?;
    s.changed();
    Ok(created(LeaseView::from(&lease)))
}

/// `GET /api/v1/leases/{owner}`: one lease, as `lease list` shows it.
#[utoipa::path(get, path = "/api/v1/leases/{owner}", tag = "leases",
    params(("owner" = String, Path, description = "The lease's owner; may contain '/' (`vm/web/nic0`)")),
    responses((status = 200, description = "The lease", body = LeaseView)))]
pub async fn show(
    State(s): State<AppState>,
    Path(owner): Path<String>,
) -> Result<Response, ApiError> {
    let lease = s.engine(move |_, e| e.lease(&owner)).await?;
    Ok(axum::Json(LeaseView::from(&lease)).into_response())
}

/// `DELETE /api/v1/leases/{owner}`: as `vfpool lease release OWNER -o json`.
#[utoipa::path(delete, path = "/api/v1/leases/{owner}", tag = "leases",
    params(("owner" = String, Path, description = "The lease's owner; may contain '/' (`vm/web/nic0`)")),
    responses((status = 200, description = "The lease given back (`state`: `released`)", body = LeaseView)))]
pub async fn release(
    State(s): State<AppState>,
    Path(owner): Path<String>,
) -> Result<Response, ApiError> {
    let lease = s
        .engine(move |_, e| e.release(&ReleaseTarget::Owner(owner)))
        .await?;
    s.changed();
    Ok(axum::Json(LeaseView::released(&lease)).into_response())
}

/// `POST /api/v1/gc`: as `vfpool lease gc -o json` (the daemon also runs it on its own).
#[utoipa::path(post, path = "/api/v1/gc", tag = "leases",
    responses((status = 200, description = "What gc did", body = GcView)))]
pub async fn gc(State(s): State<AppState>) -> Result<Response, ApiError> {
    let rep = s.engine(|_, e| e.gc()).await?;
    if !rep.actions.is_empty() {
        s.changed();
    }
    Ok(axum::Json(GcView::from(&rep)).into_response())
}
