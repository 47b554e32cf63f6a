//! `GET|POST /api/schedules`, `DELETE /api/schedules/{id}` (the id is the subagent's).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{TOPIC, validate_cron, validate_timezone};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::auth::{ClientIp, Principal};
use crate::subagents::{self, Status, Subagent, store};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(remove))
}

#[derive(Serialize, ToSchema)]
pub struct Schedule {
    subagent_id: String,
    subagent_name: String,
    cron: String,
    /// IANA time zone (`UTC` when none was given).
    timezone: String,
    task: String,
    /// The subagent's status: only `active` ones run.
    status: Status,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    #[serde(alias = "subagentId")]
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)]
    subagent_id: String,
    /// 5 fields (minute hour day month weekday), 6 with seconds first, or `@daily` style.
    cron: String,
    /// What the subagent does when the schedule fires.
    #[schema(min_length = 1, max_length = 10000, pattern = "\\S")]
    task: String,
    /// IANA time zone, default `UTC`.
    #[serde(default)]
    timezone: Option<String>,
}

fn view(s: Subagent) -> Option<Schedule> {
    Some(Schedule {
        cron: s.schedule?,
        timezone: s.timezone.unwrap_or_else(|| "UTC".into()),
        task: s.scheduled_task.unwrap_or_default(),
        status: s.status,
        subagent_name: s.name,
        subagent_id: s.id,
    })
}

/// Every subagent schedule.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    responses((status = 200, body = Vec<Schedule>), (status = 401, body = ErrorBody)))]
async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<Vec<Schedule>>> {
    Ok(axum::Json(store::list(&state.store).await?.into_iter().filter_map(view).collect()))
}

/// Sets (or replaces) the schedule of a subagent.
#[utoipa::path(post, path = "/schedules", tag = "schedules", request_body = NewSchedule,
    responses((status = 201, body = Schedule), (status = 400, body = ErrorBody, description = "a bad cron expression or time zone, said what is wrong"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    who: Principal,
    ip: ClientIp,
    ApiJson(body): ApiJson<NewSchedule>,
) -> ApiResult<(StatusCode, axum::Json<Schedule>)> {
    let cron = body.cron.trim().to_string();
    let timezone =
        body.timezone.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).unwrap_or_else(|| "UTC".into());
    let mut problems = Vec::new();
    if let Err(e) = validate_cron(&cron) {
        problems.push(e);
    }
    if let Err(e) = validate_timezone(&timezone) {
        problems.push(e);
    }
    let task = body.task.trim().to_string();
    if task.is_empty() || task.chars().count() > 10_000 {
        problems.push("`task` must be 1 to 10000 characters: what should the subagent do when it fires?".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.join(" ")));
    }
    let id = body.subagent_id.trim().to_string();
    let unknown = || ApiError::not_found(format!("No subagent with id `{id}`; create it first (POST /api/subagents)."));
    if subagents::model::validate_id(&id).is_err() {
        return Err(unknown());
    }
    let mut subagent = store::get(&state.store, &id).await?.ok_or_else(unknown)?;
    subagent.schedule = Some(cron);
    subagent.timezone = Some(timezone);
    subagent.scheduled_task = Some(task);
    subagent.updated_at = crate::store::now_ms();
    if !store::update(&state.store, &subagent).await? {
        return Err(unknown());
    }
    if let Err(e) =
        state.store.audit(&who.actor(), "schedule.set", &format!("subagent {id}"), Some(&ip.0.to_string())).await
    {
        tracing::warn!(error = %e, "audit write failed");
    }
    subagents::announce(&state, TOPIC, json!({ "subagent_id": id })).await;
    let schedule = view(subagent).ok_or_else(|| ApiError::internal("schedule vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(schedule)))
}

/// Removes the schedule of a subagent (the subagent stays).
#[utoipa::path(delete, path = "/schedules/{id}", tag = "schedules", params(("id" = String, Path, description = "the subagent's id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let none = || ApiError::not_found(format!("No schedule for a subagent `{id}`."));
    if subagents::model::validate_id(&id).is_err() {
        return Err(none());
    }
    let mut subagent = store::get(&state.store, &id).await?.ok_or_else(none)?;
    if subagent.schedule.is_none() {
        return Err(none());
    }
    subagent.schedule = None;
    subagent.scheduled_task = None;
    subagent.updated_at = crate::store::now_ms();
    store::update(&state.store, &subagent).await?;
    if let Err(e) =
        state.store.audit(&who.actor(), "schedule.removed", &format!("subagent {id}"), Some(&ip.0.to_string())).await
    {
        tracing::warn!(error = %e, "audit write failed");
    }
    subagents::announce(&state, TOPIC, json!({ "subagent_id": id })).await;
    Ok(StatusCode::NO_CONTENT)
}
