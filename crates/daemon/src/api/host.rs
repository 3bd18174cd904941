//! `/api/v1/host`: is the host ready (`host check`), and the IOMMU's kernel arguments.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vfpool_engine::{CheckView, IommuChangeView, IommuStatusView};
use vfpool_host::iommu::{EnableRequest, Vendor};
use vfpool_model::InvalidValue;

use super::{Body, shown, with_warnings};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/host/iommu`: as `vfpool host iommu enable|disable`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IommuBody {
    /// `true`: write the IOMMU's kernel arguments for the next boot; `false`: remove
    /// exactly what enabling added.
    pub enabled: bool,
    /// `intel` or `amd` (default: from /proc/cpuinfo); with `enabled: true` only.
    #[serde(default)]
    pub vendor: Option<Vendor>,
    /// Without interrupt remapping: allow VFIO's unsafe interrupts; with `enabled: true`
    /// only.
    #[serde(default)]
    pub allow_unsafe_interrupts: bool,
}

/// `GET /api/v1/host/check`: as `vfpool host check -o json`.
#[utoipa::path(get, path = "/api/v1/host/check", tag = "host",
    responses((status = 200, description = "Readiness for VFs in VMs and containers", body = CheckView)))]
pub async fn check(State(s): State<AppState>) -> Result<Response, ApiError> {
    let report = s.with_host(|h| h.check(None)).await?;
    Ok(shown(vfpool_engine::Shown {
        view: CheckView::from(&report),
        warnings: vec![],
    }))
}

/// `GET /api/v1/host/iommu`: as `vfpool host iommu status -o json`.
#[utoipa::path(get, path = "/api/v1/host/iommu", tag = "host",
    responses((status = 200, description = "The IOMMU: enabled for the next boot, ready now", body = IommuStatusView)))]
pub async fn iommu_status(State(s): State<AppState>) -> Result<Response, ApiError> {
    let st = s.with_host(|h| h.iommu_status(None)).await?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        IommuStatusView::from(&st),
    )))
}

/// `POST /api/v1/host/iommu`: as `vfpool host iommu enable|disable -o json` (effective
/// after a reboot).
#[utoipa::path(post, path = "/api/v1/host/iommu", tag = "host",
    request_body = IommuBody,
    responses((status = 200, description = "What was written or removed", body = IommuChangeView)))]
pub async fn iommu_change(
    State(s): State<AppState>,
    Body(b): Body<IommuBody>,
) -> Result<Response, ApiError> {
    if !b.enabled {
        if let Some(v) = b.vendor {
            return Err(InvalidValue::new(
                "vendor",
                format!("{v:?}").to_lowercase(),
                "only with \"enabled\": true",
            )
            .into());
        }
        if b.allow_unsafe_interrupts {
            return Err(InvalidValue::new(
                "allow_unsafe_interrupts",
                true,
                "only with \"enabled\": true",
            )
            .into());
        }
    }
    let change = s
        .with_host(move |h| {
            if b.enabled {
                h.iommu_enable(
                    None,
                    &EnableRequest {
                        vendor: b.vendor,
                        allow_unsafe_interrupts: b.allow_unsafe_interrupts,
                    },
                )
            } else {
                h.iommu_disable(None)
            }
        })
        .await?;
    s.changed();
    let view = IommuChangeView::from(&change);
    let warnings = view.warnings.clone();
    Ok(with_warnings(
        axum::response::IntoResponse::into_response(axum::Json(view)),
        &warnings,
    ))
}
