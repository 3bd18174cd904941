//! `/api/v1/l2` and `/api/v1/l3`: the networks VM NICs are on.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vfpool_engine::{L2Request, L2Type, L2View, L3Request, L3View, PoolDeleted};

use super::{Body, created};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/l2`: as `vfpool l2 create NAME --nic NIC ...`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct L2Body {
    /// 1 to 63 letters, digits, '-', '_' or '.'.
    pub name: String,
    /// The physical NIC: a PF's netdev name or PCI address.
    pub nic: String,
    /// The VLAN id (1..=4094; a vxlan L2's VNI, 1..=16777215).
    #[serde(default)]
    pub vlan: Option<u32>,
    /// `novlan`, `vlan` or `vxlan` (default: vlan with `vlan`, else novlan).
    #[serde(default, rename = "type")]
    pub l2_type: Option<String>,
    /// VF NICs on its L3 networks get VFs of the NIC.
    #[serde(default)]
    pub sriov: bool,
}

/// `PATCH /api/v1/l2/{name}`: as `vfpool l2 set NAME --sriov on|off`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct L2Patch {
    /// Off is refused while a VM NIC on it is a VF NIC.
    pub sriov: bool,
}

/// `POST /api/v1/l3`: as `vfpool l3 create NAME --l2 L2 --cidr ... --gateway ...`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct L3Body {
    /// 1 to 63 letters, digits, '-', '_' or '.'.
    pub name: String,
    /// The L2 it is on.
    pub l2: String,
    /// `ADDRESS/PREFIX` (`192.168.10.0/24`); must not overlap another L3 of the L2.
    pub cidr: String,
    /// The gateway, inside the CIDR.
    pub gateway: String,
    /// `FIRST-LAST` inside the CIDR (default: every host address).
    #[serde(default)]
    pub range: Option<String>,
    /// A DNS server for the VMs.
    #[serde(default)]
    pub dns: Option<String>,
}

/// `GET /api/v1/l2`: as `vfpool l2 list -o json`.
#[utoipa::path(get, path = "/api/v1/l2", tag = "networks",
    responses((status = 200, description = "Every L2 network", body = Vec<L2View>)))]
pub async fn l2_list(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(axum::Json(s.engine(|_, e| e.l2_list()).await?).into_response())
}

/// `POST /api/v1/l2`: as `vfpool l2 create -o json`.
#[utoipa::path(post, path = "/api/v1/l2", tag = "networks", request_body = L2Body,
    responses((status = 201, description = "The L2", body = L2View)))]
pub async fn l2_create(
    State(s): State<AppState>,
    Body(b): Body<L2Body>,
) -> Result<Response, ApiError> {
    let req = L2Request {
        name: b.name,
        nic: b.nic,
        l2_type: b.l2_type.map(|t| t.parse::<L2Type>()).transpose()?,
        vlan: b.vlan,
        sriov: b.sriov,
    };
    let v = s
        .engine(move |_, e| e.l2_create(&req))
        .await
        .map_err(|e| e.field_renamed("l2", "name"))?;
    s.changed();
    Ok(created(v))
}

/// `GET /api/v1/l2/{name}`: as `vfpool l2 show -o json`.
#[utoipa::path(get, path = "/api/v1/l2/{name}", tag = "networks",
    params(("name" = String, Path, description = "The L2's name")),
    responses((status = 200, description = "The L2", body = L2View)))]
pub async fn l2_show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(s.engine(move |_, e| e.l2_show(&name)).await?).into_response())
}

/// `PATCH /api/v1/l2/{name}`: as `vfpool l2 set NAME --sriov on|off -o json`.
#[utoipa::path(patch, path = "/api/v1/l2/{name}", tag = "networks",
    params(("name" = String, Path, description = "The L2's name")),
    request_body = L2Patch,
    responses((status = 200, description = "The L2", body = L2View)))]
pub async fn l2_set(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Body(b): Body<L2Patch>,
) -> Result<Response, ApiError> {
    let v = s.engine(move |_, e| e.l2_set_sriov(&name, b.sriov)).await?;
    s.changed();
    Ok(axum::Json(v).into_response())
}

/// `DELETE /api/v1/l2/{name}`: as `vfpool l2 delete -o json` (refused while an L3 is on
/// it).
#[utoipa::path(delete, path = "/api/v1/l2/{name}", tag = "networks",
    params(("name" = String, Path, description = "The L2's name")),
    responses((status = 200, description = "Deleted", body = PoolDeleted)))]
pub async fn l2_delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = name.clone();
    s.engine(move |_, e| e.l2_delete(&name)).await?;
    s.changed();
    Ok(axum::Json(PoolDeleted { deleted }).into_response())
}

/// `GET /api/v1/l3`: as `vfpool l3 list -o json`.
#[utoipa::path(get, path = "/api/v1/l3", tag = "networks",
    responses((status = 200, description = "Every L3 network", body = Vec<L3View>)))]
pub async fn l3_list(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(axum::Json(s.engine(|_, e| e.l3_list()).await?).into_response())
}

/// `POST /api/v1/l3`: as `vfpool l3 create -o json`.
#[utoipa::path(post, path = "/api/v1/l3", tag = "networks", request_body = L3Body,
    responses((status = 201, description = "The L3", body = L3View)))]
pub async fn l3_create(
    State(s): State<AppState>,
    Body(b): Body<L3Body>,
) -> Result<Response, ApiError> {
    let req = L3Request {
        name: b.name,
        l2: b.l2,
        cidr: b.cidr,
        gateway: b.gateway,
        range: b.range,
        dns: b.dns,
    };
    let v = s
        .engine(move |_, e| e.l3_create(&req))
        .await
        .map_err(|e| e.field_renamed("l3", "name"))?;
    s.changed();
    Ok(created(v))
}

/// `GET /api/v1/l3/{name}`: as `vfpool l3 show -o json`.
#[utoipa::path(get, path = "/api/v1/l3/{name}", tag = "networks",
    params(("name" = String, Path, description = "The L3's name")),
    responses((status = 200, description = "The L3 and who holds its addresses", body = L3View)))]
pub async fn l3_show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(s.engine(move |_, e| e.l3_show(&name)).await?).into_response())
}

/// `DELETE /api/v1/l3/{name}`: as `vfpool l3 delete -o json` (refused while a VM NIC is
/// on it or a pod holds an address).
#[utoipa::path(delete, path = "/api/v1/l3/{name}", tag = "networks",
    params(("name" = String, Path, description = "The L3's name")),
    responses((status = 200, description = "Deleted", body = PoolDeleted)))]
pub async fn l3_delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = name.clone();
    s.engine(move |_, e| e.l3_delete(&name)).await?;
    s.changed();
    Ok(axum::Json(PoolDeleted { deleted }).into_response())
}
