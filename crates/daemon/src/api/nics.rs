//! `/api/v1/nics`: the physical NICs and their VFs; split and restore.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vfpool_engine::{NicChangeView, NicShow, NicView, NicsOutcome, SplitRequest, parse_timeout};

use super::{Body, shown, with_warnings};
use crate::error::ApiError;
use crate::state::AppState;

/// The default wait for VFs, as the CLI's `--timeout`.
const DEFAULT_TIMEOUT: u64 = 180;

/// `POST /api/v1/nics/{nic}/split`: as `vfpool nic split NIC --vfs N`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBody {
    /// How many VFs (1..=sriov_totalvfs).
    pub vfs: u64,
    /// Whether new VFs get their kernel driver at once (`sriov_drivers_autoprobe`);
    /// default: as the NIC has it.
    #[serde(default)]
    pub autoprobe: Option<bool>,
    /// Change the count even when VFs are leased (their leases become stale).
    #[serde(default)]
    pub force: bool,
    /// Leave the PF's link as it is (by default a PF that is down is brought up).
    #[serde(default)]
    pub keep_link: bool,
    /// Seconds to wait for the VFs and their netdevs (1..=86400, default 180).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// `POST /api/v1/nics/{nic}/restore`: as `vfpool nic restore NIC`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// Remove the VFs even when some are leased (their leases become stale); without it a
    /// NIC with leased VFs is refused, naming the leases.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for the VFs to go (1..=86400, default 180).
    #[serde(default)]
    pub timeout: Option<u64>,
}

fn timeout(t: Option<u64>) -> Result<std::time::Duration, ApiError> {
    Ok(parse_timeout(&t.unwrap_or(DEFAULT_TIMEOUT).to_string())?)
}

/// `GET /api/v1/nics`: as `vfpool nic list -o json`, from the snapshot kept until the next
/// change ([`crate::snapshot`]).
#[utoipa::path(get, path = "/api/v1/nics", tag = "nics",
    responses((status = 200, description = "Every physical NIC", body = Vec<NicView>)))]
pub async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(s.snapshots().nics(&s).await?.response())
}

/// `GET /api/v1/nics/{nic}`: as `vfpool nic show NIC -o json` (a PF with its VFs, or a VF).
#[utoipa::path(get, path = "/api/v1/nics/{nic}", tag = "nics",
    params(("nic" = String, Path, description = "A PF or a VF: netdev name or PCI address")),
    responses((status = 200, description = "The NIC", body = NicShow)))]
pub async fn show(
    State(s): State<AppState>,
    Path(nic): Path<String>,
) -> Result<Response, ApiError> {
    Ok(shown(s.with_host(move |h| h.nic(&nic)).await?))
}

/// `POST /api/v1/nics/{nic}/split`: as `vfpool nic split NIC --vfs N -o json` (its one
/// element).
#[utoipa::path(post, path = "/api/v1/nics/{nic}/split", tag = "nics",
    params(("nic" = String, Path, description = "A PF: netdev name or PCI address")),
    request_body = SplitBody,
    responses((status = 200, description = "What changed", body = NicChangeView)))]
pub async fn split(
    State(s): State<AppState>,
    Path(nic): Path<String>,
    Body(b): Body<SplitBody>,
) -> Result<Response, ApiError> {
    let req = SplitRequest {
        nics: vec![nic],
        vfs: b.vfs.to_string(),
        autoprobe: b.autoprobe,
        timeout: timeout(b.timeout)?,
        force: b.force,
        keep_link: b.keep_link,
    };
    let out = s
        .engine(move |_, e| e.split_nics(&req, &|_, _, _| {}))
        .await?;
    one(&s, out)
}

/// `POST /api/v1/nics/{nic}/restore`: as `vfpool nic restore NIC -o json` (its one
/// element).
#[utoipa::path(post, path = "/api/v1/nics/{nic}/restore", tag = "nics",
    params(("nic" = String, Path, description = "A PF: netdev name or PCI address")),
    request_body = RestoreBody,
    responses((status = 200, description = "What changed", body = NicChangeView)))]
pub async fn restore(
    State(s): State<AppState>,
    Path(nic): Path<String>,
    Body(b): Body<RestoreBody>,
) -> Result<Response, ApiError> {
    let t = timeout(b.timeout)?;
    let out = s
        .engine(move |_, e| e.restore_nics(&[nic], t, b.force))
        .await?;
    one(&s, out)
}

/// The outcome for one NIC: its change, or its error.
fn one(s: &AppState, mut out: NicsOutcome) -> Result<Response, ApiError> {
    if let Some(f) = out.failed.pop() {
        if !out.changed.is_empty() {
            s.changed();
        }
        return Err(f.error.into());
    }
    s.changed();
    let mut warnings = out.warnings;
    if let Some(e) = &out.not_recorded {
        warnings.push(format!(
            "the VF counts were changed but not recorded for the next boot ({}); run `vfpool host persist` again",
            vfpool_engine::chain(e)
        ));
    }
    let view: Option<NicChangeView> = out.changed.first().map(Into::into);
    match view {
        Some(v) => Ok(with_warnings(axum::Json(v).into_response(), &warnings)),
        None => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            vfpool_engine::ErrorKind::Io.as_str(),
            "the engine reported neither a change nor a failure",
        )),
    }
}
