//! `GET /api/audit`: the audit log, newest first, paged backwards by id.

use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, ApiResult, ErrorBody};
use crate::app::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only entries with an id below this one (the next page).
    before: Option<i64>,
}

/// One audit entry.
#[derive(serde::Serialize, ToSchema)]
pub struct AuditEntryBody {
    id: i64,
    /// Unix milliseconds.
    at: i64,
    /// `user:<name>`, `api-key`, or `system`.
    actor: String,
    action: String,
    detail: String,
    ip: Option<String>,
}

/// The audit log: logins (and failures), setup, password and 2FA changes, configuration changes.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntryBody>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<axum::Json<Vec<AuditEntryBody>>> {
    let Query(query) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("`limit` must be between 1 and 1000."));
    }
    let entries = state.store.audit_entries(limit, query.before).await?;
    Ok(axum::Json(
        entries
            .into_iter()
            .map(|e| AuditEntryBody {
                id: e.id,
                at: e.at,
                actor: e.actor,
                action: e.action,
                detail: e.detail,
                ip: e.ip,
            })
            .collect(),
    ))
}
