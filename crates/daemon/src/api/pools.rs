//! `/api/v1/pools`: named sets of VFs.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vfpool_engine::{Policy, PoolDeleted, PoolDetail, PoolSelector, PoolView};

use super::{Body, created, invalid_in};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /api/v1/pools`: as `vfpool pool create NAME --select ... --policy ...`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    /// 1 to 63 letters, digits, '.', '_' or '-' (not first).
    pub name: String,
    /// `eno49`, `eno49#0-3,6`, `0000:03:00.0#0-1`, `vendor=8086`, `device=1520`,
    /// `driver=igb`, `numa=0`, `link=ether`: the same kind OR, different kinds AND.
    pub select: Vec<String>,
    /// `first-fit` (default), `spread` or `pack`.
    #[serde(default)]
    pub policy: Option<String>,
}

/// `GET /api/v1/pools`: as `vfpool pool list -o json`.
#[utoipa::path(get, path = "/api/v1/pools", tag = "pools",
    responses((status = 200, description = "Every pool", body = Vec<PoolView>)))]
pub async fn list(State(s): State<AppState>) -> Result<Response, ApiError> {
    let list = s.engine(|_, e| e.pool_list()).await?;
    let views: Vec<PoolView> = list.iter().map(Into::into).collect();
    Ok(axum::Json(views).into_response())
}

/// `POST /api/v1/pools`: as `vfpool pool create -o json`.
#[utoipa::path(post, path = "/api/v1/pools", tag = "pools", request_body = PoolBody,
    responses((status = 201, description = "The pool", body = PoolView)))]
pub async fn create(
    State(s): State<AppState>,
    Body(b): Body<PoolBody>,
) -> Result<Response, ApiError> {
    let policy: Policy = b.policy.as_deref().unwrap_or("first-fit").parse()?;
    if b.select.is_empty() {
        return Err(vfpool_model::InvalidValue::new(
            "select",
            "[]",
            "at least one selector (eno49, eno49#0-3, vendor=8086, ...)",
        )
        .into());
    }
    let selectors = b
        .select
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<PoolSelector>()
                .map_err(|e| invalid_in(format!("select[{i}]"), &e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let st = s
        .engine(move |_, e| e.pool_create(&b.name, selectors, policy))
        .await
        .map_err(|e| e.field_renamed("pool", "name"))?;
    s.changed();
    Ok(created(PoolView::from(&st)))
}

/// `GET /api/v1/pools/{pool}`: as `vfpool pool show -o json`.
#[utoipa::path(get, path = "/api/v1/pools/{pool}", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name")),
    responses((status = 200, description = "The pool and each of its VFs", body = PoolDetail)))]
pub async fn show(
    State(s): State<AppState>,
    Path(pool): Path<String>,
) -> Result<Response, ApiError> {
    let (status, vfs) = s.engine(move |_, e| e.pool_show(&pool)).await?;
    Ok(axum::Json(PoolDetail::new(&status, &vfs)).into_response())
}

/// `DELETE /api/v1/pools/{pool}`: as `vfpool pool delete -o json` (refused while a VF of
/// it is leased).
#[utoipa::path(delete, path = "/api/v1/pools/{pool}", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name")),
    responses((status = 200, description = "Deleted", body = PoolDeleted)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(pool): Path<String>,
) -> Result<Response, ApiError> {
    let name = pool.clone();
    s.engine(move |_, e| e.pool_delete(&pool)).await?;
    s.changed();
    Ok(axum::Json(PoolDeleted { deleted: name }).into_response())
}
