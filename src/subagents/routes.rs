//! `/api/subagents` and `/api/subagents/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{NewSubagent, Status, Subagent, SubagentPatch, validate_id};
use super::{TOPIC, announce, store};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::auth::{ClientIp, Principal};
use crate::settings::Tier;
use crate::store::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get_one, update, delete))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No subagent with id `{id}`."))
}

/// An id from the path: unknown-looking ids are simply not found.
fn path_id(id: &str) -> ApiResult<()> {
    validate_id(id).map_err(|_| not_found(id))
}

async fn audit(state: &AppState, who: &Principal, ip: ClientIp, action: &str, id: &str) {
    if let Err(e) = state.store.audit(&who.actor(), action, &format!("subagent {id}"), Some(&ip.0.to_string())).await {
        tracing::warn!(error = %e, "audit write failed");
    }
}

/// All subagents, by id.
#[utoipa::path(get, path = "/subagents", tag = "subagents",
    responses((status = 200, body = Vec<Subagent>), (status = 401, body = ErrorBody)))]
async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<Vec<Subagent>>> {
    Ok(axum::Json(store::list(&state.store).await?))
}

/// Creates a subagent.
#[utoipa::path(post, path = "/subagents", tag = "subagents", request_body = NewSubagent,
    responses((status = 201, body = Subagent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    who: Principal,
    ip: ClientIp,
    ApiJson(body): ApiJson<NewSubagent>,
) -> ApiResult<(StatusCode, axum::Json<Subagent>)> {
    let now = now_ms();
    let subagent = Subagent {
        id: body.id.trim().to_string(),
        name: body.name.trim().to_string(),
        description: body.description,
        skills: body.skills,
        system_prompt: body.system_prompt,
        schedule: body.schedule.map(|s| s.trim().to_string()),
        timezone: body.timezone.map(|s| s.trim().to_string()),
        scheduled_task: body.scheduled_task,
        loop_config: body.loop_config,
        tier: body.tier.unwrap_or(Tier::Sonnet),
        max_turns: body.max_turns.unwrap_or(15),
        status: body.status.unwrap_or(Status::Active),
        created_by: body.created_by.unwrap_or_else(|| who.actor()),
        created_at: now,
        updated_at: now,
        last_run_at: None,
        last_result: None,
        run_count: 0,
    };
    let problems = subagent.problems();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.join(" ")));
    }
    match store::insert(&state.store, &subagent).await {
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::conflict("already_exists", format!("A subagent with id `{}` exists.", subagent.id)));
        }
        other => other?,
    }
    audit(&state, &who, ip, "subagent.created", &subagent.id).await;
    announce(&state, TOPIC, json!({ "id": subagent.id, "action": "created" })).await;
    if subagent.schedule.is_some() {
        announce(&state, crate::schedules::TOPIC, json!({ "subagent_id": subagent.id })).await;
    }
    Ok((StatusCode::CREATED, axum::Json(subagent)))
}

/// One subagent.
#[utoipa::path(get, path = "/subagents/{id}", tag = "subagents", params(("id" = String, Path, description = "kebab-case id")),
    responses((status = 200, body = Subagent), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<axum::Json<Subagent>> {
    path_id(&id)?;
    Ok(axum::Json(store::get(&state.store, &id).await?.ok_or_else(|| not_found(&id))?))
}

/// Changes some fields; the others keep their value, `null` clears an optional one.
#[utoipa::path(put, path = "/subagents/{id}", tag = "subagents", request_body = SubagentPatch,
    params(("id" = String, Path, description = "kebab-case id")),
    responses((status = 200, body = Subagent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<SubagentPatch>,
) -> ApiResult<axum::Json<Subagent>> {
    path_id(&id)?;
    let mut subagent = store::get(&state.store, &id).await?.ok_or_else(|| not_found(&id))?;
    let schedule_before = (subagent.schedule.clone(), subagent.timezone.clone(), subagent.scheduled_task.clone());
    subagent.apply(patch);
    subagent.updated_at = now_ms();
    let problems = subagent.problems();
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.join(" ")));
    }
    if !store::update(&state.store, &subagent).await? {
        return Err(not_found(&id));
    }
    audit(&state, &who, ip, "subagent.updated", &id).await;
    announce(&state, TOPIC, json!({ "id": id, "action": "updated" })).await;
    if schedule_before != (subagent.schedule.clone(), subagent.timezone.clone(), subagent.scheduled_task.clone()) {
        announce(&state, crate::schedules::TOPIC, json!({ "subagent_id": id })).await;
    }
    Ok(axum::Json(subagent))
}

/// Deletes a subagent (and its schedule).
#[utoipa::path(delete, path = "/subagents/{id}", tag = "subagents", params(("id" = String, Path, description = "kebab-case id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    path_id(&id)?;
    let existing = store::get(&state.store, &id).await?.ok_or_else(|| not_found(&id))?;
    if !store::delete(&state.store, &id).await? {
        return Err(not_found(&id));
    }
    audit(&state, &who, ip, "subagent.deleted", &id).await;
    announce(&state, TOPIC, json!({ "id": id, "action": "deleted" })).await;
    if existing.schedule.is_some() {
        announce(&state, crate::schedules::TOPIC, json!({ "subagent_id": id })).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
