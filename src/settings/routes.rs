//! `GET|PUT /api/nexus/config`, `POST /api/nexus/config/validate`, `POST /api/nexus/config/reset`.

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{self, AgentSettings, Heartbeat, NexusConfig, RetrySettings, SubagentLimits, Tier, TierModels};
use super::{SECRET_FIELDS, SETTING_KEY, TOPIC, current};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::auth::{ClientIp, Principal};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_config, put_config)).routes(routes!(validate)).routes(routes!(reset))
}

/// The configuration as shown: every setting, and for each provider key only whether it is set.
#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    // The fields of `NexusConfig`, listed (not flattened) so the document stays exact.
    models: TierModels,
    fallback_enabled: bool,
    fallback_order: Vec<Tier>,
    agent: AgentSettings,
    subagents: SubagentLimits,
    heartbeat: Heartbeat,
    retry: RetrySettings,
    gemini_api_key_set: bool,
    anthropic_api_key_set: bool,
    openai_api_key_set: bool,
}

/// A partial update: any subset of the settings (objects merge; `null` keeps the current value),
/// plus the write-only provider keys (a string sets one, `""` or `null` removes it).
#[derive(ToSchema)]
#[allow(dead_code)] // documents the body; the handler reads it as JSON to merge it
pub struct ConfigUpdate {
    models: Option<TierModels>,
    fallback_enabled: Option<bool>,
    fallback_order: Option<Vec<Tier>>,
    agent: Option<AgentSettings>,
    subagents: Option<SubagentLimits>,
    heartbeat: Option<Heartbeat>,
    retry: Option<RetrySettings>,
    gemini_api_key: Option<String>,
    anthropic_api_key: Option<String>,
    openai_api_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Validation {
    valid: bool,
    /// One sentence per problem.
    errors: Vec<String>,
}

async fn view(state: &AppState, config: NexusConfig) -> ApiResult<ConfigView> {
    let mut set = [false; 3];
    for (flag, field) in set.iter_mut().zip(SECRET_FIELDS) {
        *flag = super::provider_key(state, field).await.is_some();
    }
    let NexusConfig { models, fallback_enabled, fallback_order, agent, subagents, heartbeat, retry } = config;
    Ok(ConfigView {
        models,
        fallback_enabled,
        fallback_order,
        agent,
        subagents,
        heartbeat,
        retry,
        gemini_api_key_set: set[0],
        anthropic_api_key_set: set[1],
        openai_api_key_set: set[2],
    })
}

/// Splits the provider keys off a body; checks their types and lengths.
type SecretChanges = Vec<(&'static str, Option<String>)>;

fn split_secrets(body: &Value) -> Result<(Value, SecretChanges), Vec<String>> {
    let Some(object) = body.as_object() else {
        return Err(vec!["The configuration must be a JSON object.".into()]);
    };
    let mut rest = object.clone();
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for field in SECRET_FIELDS {
        match rest.remove(field) {
            None => {}
            Some(Value::Null) => changes.push((field, None)),
            Some(Value::String(s)) if s.trim().is_empty() => changes.push((field, None)),
            Some(Value::String(s)) if s.len() <= 4096 && !s.chars().any(char::is_control) => {
                changes.push((field, Some(s.trim().to_string())))
            }
            Some(Value::String(_)) => {
                errors.push(format!("`{field}` must be at most 4096 characters, without control characters."))
            }
            Some(_) => errors.push(format!("`{field}` must be a string (or null to remove it).")),
        }
    }
    if errors.is_empty() { Ok((Value::Object(rest), changes)) } else { Err(errors) }
}

fn check(base: &NexusConfig, body: &Value) -> Result<(NexusConfig, SecretChanges), Vec<String>> {
    let (rest, secrets) = split_secrets(body)?;
    let config = model::apply_patch(base, &rest)?;
    Ok((config, secrets))
}

async fn announce(state: &AppState) {
    if let Err(e) = state.bus.publish(TOPIC, &serde_json::json!({ "key": SETTING_KEY }).to_string()).await {
        tracing::warn!(error = %e, "config.updated not published");
    }
}

/// The configuration, with provider keys shown only as set / not set.
#[utoipa::path(get, path = "/nexus/config", tag = "config",
    responses((status = 200, body = ConfigView), (status = 401, body = ErrorBody)))]
async fn get_config(State(state): State<AppState>) -> ApiResult<axum::Json<ConfigView>> {
    let config = current(&state).await?;
    Ok(axum::Json(view(&state, config).await?))
}

/// Changes some settings and/or provider keys. All or nothing: one bad field and nothing changes.
#[utoipa::path(put, path = "/nexus/config", tag = "config", request_body = ConfigUpdate,
    responses((status = 200, body = ConfigView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn put_config(
    State(state): State<AppState>,
    who: Principal,
    ip: ClientIp,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<axum::Json<ConfigView>> {
    let (config, secrets) = check(&current(&state).await?, &body).map_err(|e| ApiError::validation(e.join(" ")))?;
    state.store.put_setting(SETTING_KEY, &config).await?;
    let mut changed: Vec<String> = body
        .as_object()
        .map(|o| o.keys().filter(|k| !SECRET_FIELDS.contains(&k.as_str())).cloned().collect())
        .unwrap_or_default();
    for (field, value) in secrets {
        match value {
            Some(v) => state.vault.set(field, &v).await?,
            None => {
                state.vault.delete(field).await?;
            }
        }
        changed.push(field.to_string());
    }
    let detail = format!("changed: {}", changed.join(", "));
    if let Err(e) = state.store.audit(&who.actor(), "config.updated", &detail, Some(&ip.0.to_string())).await {
        tracing::warn!(error = %e, "audit write failed");
    }
    announce(&state).await;
    Ok(axum::Json(view(&state, config).await?))
}

/// Checks a would-be update without saving it.
#[utoipa::path(post, path = "/nexus/config/validate", tag = "config", request_body = ConfigUpdate,
    responses((status = 200, body = Validation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn validate(State(state): State<AppState>, ApiJson(body): ApiJson<Value>) -> ApiResult<axum::Json<Validation>> {
    let result = check(&current(&state).await?, &body);
    Ok(axum::Json(match result {
        Ok(_) => Validation { valid: true, errors: Vec::new() },
        Err(errors) => Validation { valid: false, errors },
    }))
}

/// Back to the defaults. Provider keys are kept (remove them with PUT `{"<name>": null}`).
#[utoipa::path(post, path = "/nexus/config/reset", tag = "config",
    responses((status = 200, body = ConfigView), (status = 401, body = ErrorBody)))]
async fn reset(State(state): State<AppState>, who: Principal, ip: ClientIp) -> ApiResult<axum::Json<ConfigView>> {
    state.store.delete_setting(SETTING_KEY).await?;
    if let Err(e) = state.store.audit(&who.actor(), "config.reset", "defaults restored", Some(&ip.0.to_string())).await
    {
        tracing::warn!(error = %e, "audit write failed");
    }
    announce(&state).await;
    Ok(axum::Json(view(&state, NexusConfig::defaults(&state.config)).await?))
}
