//! `/api/v1/vms`: VMs, their NICs and their life cycle over leases.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vfpool_engine::{NicType, PoolDeleted, VmNicSpec, VmView, parse_nic_ref};

use super::{Body, created, invalid_at};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/vms`: as `vfpool vm create NAME --nic ...`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmBody {
    /// 1 to 63 letters, digits, '-', '_' or '.'.
    pub name: String,
    /// Its NICs, `nic0` first.
    #[serde(default)]
    pub nics: Vec<VmNicBody>,
    /// Memory in MiB, 64..=4194304 (default 1024).
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// vCPUs, 1..=4096 (default 1).
    #[serde(default)]
    pub vcpus: Option<u32>,
}

/// `?libvirt=URI` on start and stop: as `vfpool vm start|stop --libvirt URI`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LibvirtQuery {
    /// Also define and start (stop: destroy, and undefine what vfpool defined) the VM's
    /// libvirt domain at this URI (`qemu:///system`); refused by a daemon built without
    /// libvirt's API.
    pub libvirt: Option<String>,
}

/// One VM NIC: the CLI's `l3=L3[,sriov][,mac=MAC]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmNicBody {
    /// The L3 network it is on.
    pub l3: String,
    /// `vf` (a VF passed through; an SR-IOV L3 only) or `vnic` (default).
    #[serde(default, rename = "type")]
    pub nic_type: Option<String>,
    /// Its MAC (unicast); generated, stable and locally administered, when not given.
    #[serde(default)]
    pub mac: Option<String>,
}

impl VmNicBody {
    fn spec(&self) -> Result<VmNicSpec, vfpool_model::InvalidValue> {
        VmNicSpec::from_parts(&self.l3, self.nic_type.as_deref(), self.mac.as_deref())
    }
}

/// `PATCH /api/v1/vms/{vm}/nics/{index}`: as `vfpool vm nic set-type VM NIC vf|vnic`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmNicPatch {
    /// `vf` or `vnic`.
    #[serde(rename = "type")]
    pub nic_type: String,
}

/// `GET /api/v1/vms`: as `vfpool vm list -o json`.
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms",
    responses((status = 200, description = "Every VM", body = Vec<VmView>)))]
pub async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(axum::Json(s.engine(|_, e| e.vm_list()).await?).into_response())
}

/// `POST /api/v1/vms`: as `vfpool vm create -o json` (a stopped VM).
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms", request_body = VmBody,
    responses((status = 201, description = "The VM", body = VmView)))]
pub async fn create(
    State(s): State<AppState>,
    Body(b): Body<VmBody>,
) -> Result<Response, ApiError> {
    let specs = b
        .nics
        .iter()
        .enumerate()
        .map(|(i, n)| n.spec().map_err(|e| invalid_at(&format!("nics[{i}]"), &e)))
        .collect::<Result<Vec<_>, _>>()?;
    let d = vfpool_engine::VmResources::default();
    let res = vfpool_engine::VmResources::new(
        b.memory_mib.unwrap_or(d.memory_mib),
        b.vcpus.unwrap_or(d.vcpus),
    )?;
    let v = s
        .engine(move |_, e| e.vm_create_with(&b.name, &specs, res))
        .await
        .map_err(|e| e.field_renamed("vm", "name"))?;
    s.changed();
    Ok(created(v))
}

/// `GET /api/v1/vms/{vm}`: as `vfpool vm show -o json`.
#[utoipa::path(get, path = "/api/v1/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "The VM's name")),
    responses((status = 200, description = "The VM", body = VmView)))]
pub async fn show(State(s): State<AppState>, Path(vm): Path<String>) -> Result<Response, ApiError> {
    Ok(axum::Json(s.engine(move |_, e| e.vm_show(&vm)).await?).into_response())
}

/// `DELETE /api/v1/vms/{vm}`: as `vfpool vm delete -o json` (a stopped VM only).
#[utoipa::path(delete, path = "/api/v1/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "The VM's name")),
    responses((status = 200, description = "Deleted", body = PoolDeleted)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(vm): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = vm.clone();
    s.engine(move |_, e| e.vm_delete(&vm)).await?;
    s.changed();
    Ok(axum::Json(PoolDeleted { deleted }).into_response())
}

/// `POST /api/v1/vms/{vm}/start`: as `vfpool vm start -o json`: a VF for each VF NIC, an
/// address for each NIC, all or nothing.
#[utoipa::path(post, path = "/api/v1/vms/{vm}/start", tag = "vms",
    params(("vm" = String, Path, description = "The VM's name"), LibvirtQuery),
    responses((status = 200, description = "The running VM", body = VmView)))]
pub async fn start(
    State(s): State<AppState>,
    Path(vm): Path<String>,
    Query(q): Query<LibvirtQuery>,
) -> Result<Response, ApiError> {
    let v = s
        .engine(move |_, e| e.vm_start_on(&vm, q.libvirt.as_deref()))
        .await?;
    s.changed();
    Ok(axum::Json(v).into_response())
}

/// `POST /api/v1/vms/{vm}/stop`: as `vfpool vm stop -o json`: its VFs and addresses given
/// back.
#[utoipa::path(post, path = "/api/v1/vms/{vm}/stop", tag = "vms",
    params(("vm" = String, Path, description = "The VM's name"), LibvirtQuery),
    responses((status = 200, description = "The stopped VM", body = VmView)))]
pub async fn stop(
    State(s): State<AppState>,
    Path(vm): Path<String>,
    Query(q): Query<LibvirtQuery>,
) -> Result<Response, ApiError> {
    let v = s
        .engine(move |_, e| e.vm_stop_on(&vm, q.libvirt.as_deref()))
        .await?;
    s.changed();
    Ok(axum::Json(v).into_response())
}

/// `POST /api/v1/vms/{vm}/nics`: as `vfpool vm nic add VM l3=...` (the VM stopped).
#[utoipa::path(post, path = "/api/v1/vms/{vm}/nics", tag = "vms",
    params(("vm" = String, Path, description = "The VM's name")),
    request_body = VmNicBody,
    responses((status = 200, description = "The VM", body = VmView)))]
pub async fn nic_add(
    State(s): State<AppState>,
    Path(vm): Path<String>,
    Body(b): Body<VmNicBody>,
) -> Result<Response, ApiError> {
    let spec = b.spec()?;
    let v = s.engine(move |_, e| e.vm_nic_add(&vm, &spec)).await?;
    s.changed();
    Ok(axum::Json(v).into_response())
}

/// `DELETE /api/v1/vms/{vm}/nics/{index}`: as `vfpool vm nic remove VM NIC` (the VM
/// stopped).
#[utoipa::path(delete, path = "/api/v1/vms/{vm}/nics/{index}", tag = "vms",
    params(
        ("vm" = String, Path, description = "The VM's name"),
        ("index" = String, Path, description = "The NIC: `nicN` or `N`"),
    ),
    responses((status = 200, description = "The VM", body = VmView)))]
pub async fn nic_remove(
    State(s): State<AppState>,
    Path((vm, index)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let index = parse_nic_ref(&index)?;
    let v = s.engine(move |_, e| e.vm_nic_remove(&vm, index)).await?;
    s.changed();
    Ok(axum::Json(v).into_response())
}

/// `PATCH /api/v1/vms/{vm}/nics/{index}`: as `vfpool vm nic set-type VM NIC vf|vnic` (the
/// VM stopped).
#[utoipa::path(patch, path = "/api/v1/vms/{vm}/nics/{index}", tag = "vms",
    params(
        ("vm" = String, Path, description = "The VM's name"),
        ("index" = String, Path, description = "The NIC: `nicN` or `N`"),
    ),
    request_body = VmNicPatch,
    responses((status = 200, description = "The VM", body = VmView)))]
pub async fn nic_set_type(
    State(s): State<AppState>,
    Path((vm, index)): Path<(String, String)>,
    Body(b): Body<VmNicPatch>,
) -> Result<Response, ApiError> {
    let index = parse_nic_ref(&index)?;
    let t: NicType = b.nic_type.parse()?;
    let v = s
        .engine(move |_, e| e.vm_nic_set_type(&vm, index, t))
        .await?;
    s.changed();
    Ok(axum::Json(v).into_response())
}
