//! Configuration of external MCP servers: rows in the Store (`mcp_servers`), secret env values
//! and HTTP headers in the vault (`mcp.server.<name>`), and the `/api/mcp/servers` routes. A change
//! is announced on the bus; the manager (one per instance) picks it up and (re)starts the server.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::{SEPARATOR, Spec, Transport};
use super::manager;
use crate::api::{ApiError, ApiJson, ApiResult};
use crate::app::AppState;
use crate::store::{StoreError, now_ms};

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Headers the MCP transport sets itself.
const RESERVED_HEADERS: &[&str] =
    &["accept", "content-type", "mcp-session-id", "mcp-protocol-version", "last-event-id"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Stdio,
    Http,
}

/// A server as sent to the API. `env` and `headers` are secrets: stored encrypted, never returned;
/// on PUT, leaving one out keeps the stored values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerBody {
    /// Required on POST; on PUT it must match the path when given. `[a-z0-9_-]`, 1–32, no `__`.
    pub name: Option<String>,
    pub transport: TransportKind,
    /// stdio: the program to run.
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: environment of the program (secret).
    pub env: Option<BTreeMap<String, String>>,
    /// http: the streamable-HTTP endpoint.
    pub url: Option<String>,
    /// http: extra request headers such as Authorization (secret).
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Limit of one tool call and of connecting, 1000–600000 ms (default 30000).
    pub timeout_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

/// A server as the API shows it: secrets only by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    pub name: String,
    pub transport: TransportKind,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub url: Option<String>,
    pub env_keys: Vec<String>,
    pub header_keys: Vec<String>,
    pub enabled: bool,
    pub timeout_ms: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// What the manager last reported (`state`, `tools`, `error`, `restarts`).
    #[schema(value_type = Object)]
    pub status: Value,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    name: String,
    transport: String,
    command: Option<String>,
    args: String,
    url: Option<String>,
    enabled: i64,
    timeout_ms: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Secrets {
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn secret_name(server: &str) -> String {
    format!("mcp.server.{server}")
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.contains(SEPARATOR)
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with(['-', '_'])
}

fn validate(body: &ServerBody) -> Result<(), ApiError> {
    let bad = |m: &str| Err(ApiError::validation(m.to_string()));
    if let Some(t) = body.timeout_ms
        && !(1_000..=600_000).contains(&t)
    {
        return bad("timeout_ms must be between 1000 and 600000.");
    }
    match body.transport {
        TransportKind::Stdio => {
            if body.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return bad("A stdio server needs a command.");
            }
            if body.url.is_some() || body.headers.is_some() {
                return bad("url and headers belong to http servers.");
            }
            if let Some(env) = &body.env
                && env.keys().any(|k| k.is_empty() || k.contains(['=', '\0']))
            {
                return bad("env names must be non-empty without '=' or NUL.");
            }
        }
        TransportKind::Http => {
            let url = body.url.as_deref().unwrap_or("");
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return bad("An http server needs an http(s) url."),
            }
            if body.command.is_some() || !body.args.is_empty() || body.env.is_some() {
                return bad("command, args and env belong to stdio servers.");
            }
            for (k, v) in body.headers.iter().flatten() {
                let lower = k.to_ascii_lowercase();
                if RESERVED_HEADERS.contains(&lower.as_str()) {
                    return bad(&format!("The header {k} is set by the MCP transport itself."));
                }
                if http::HeaderName::try_from(k.as_str()).is_err() || http::HeaderValue::try_from(v.as_str()).is_err() {
                    return bad(&format!("The header {k} is not a valid HTTP header."));
                }
            }
        }
    }
    Ok(())
}

async fn load_row(state: &AppState, name: &str) -> Result<Option<Row>, StoreError> {
    Ok(sqlx::query_as::<_, Row>(
        "SELECT name, transport, command, args, url, enabled, timeout_ms, created_at, updated_at \
         FROM mcp_servers WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(state.store.pool())
    .await?)
}

async fn load_rows(state: &AppState) -> Result<Vec<Row>, StoreError> {
    Ok(sqlx::query_as::<_, Row>(
        "SELECT name, transport, command, args, url, enabled, timeout_ms, created_at, updated_at \
         FROM mcp_servers ORDER BY name",
    )
    .fetch_all(state.store.pool())
    .await?)
}

async fn load_secrets(state: &AppState, name: &str) -> Result<Secrets, ApiError> {
    match state.vault.get(&secret_name(name)).await.map_err(ApiError::internal)? {
        Some(secret) => serde_json::from_str(secret.expose()).map_err(ApiError::internal),
        None => Ok(Secrets::default()),
    }
}

fn spec_of(row: &Row, secrets: Secrets) -> Spec {
    let transport = if row.transport == "http" {
        Transport::Http { url: row.url.clone().unwrap_or_default(), headers: secrets.headers }
    } else {
        let args = serde_json::from_str(&row.args).unwrap_or_default();
        Transport::Stdio { command: row.command.clone().unwrap_or_default(), args, env: secrets.env }
    };
    Spec { name: row.name.clone(), transport, timeout: Duration::from_millis(row.timeout_ms.max(1_000) as u64) }
}

/// The spec of an enabled server, or None when it is gone or disabled (for the manager).
pub async fn enabled_spec(state: &AppState, name: &str) -> Result<Option<Spec>, ApiError> {
    match load_row(state, name).await? {
        Some(row) if row.enabled != 0 => Ok(Some(spec_of(&row, load_secrets(state, name).await?))),
        _ => Ok(None),
    }
}

/// Names of every configured server (for the manager at boot).
pub async fn names(state: &AppState) -> Result<Vec<String>, StoreError> {
    Ok(load_rows(state).await?.into_iter().map(|r| r.name).collect())
}

async fn view(state: &AppState, row: Row) -> Result<ServerView, ApiError> {
    let secrets = load_secrets(state, &row.name).await?;
    let status = manager::status(state, &row.name, row.enabled != 0).await;
    Ok(ServerView {
        transport: if row.transport == "http" { TransportKind::Http } else { TransportKind::Stdio },
        args: serde_json::from_str(&row.args).unwrap_or_default(),
        env_keys: secrets.env.into_keys().collect(),
        header_keys: secrets.headers.into_keys().collect(),
        enabled: row.enabled != 0,
        timeout_ms: row.timeout_ms as u64,
        name: row.name,
        command: row.command,
        url: row.url,
        created_at: row.created_at,
        updated_at: row.updated_at,
        status,
    })
}

/// Writes the row (insert or update) and the secrets; `existing` decides which.
async fn save(state: &AppState, name: &str, body: ServerBody, existing: Option<&Row>) -> Result<Row, ApiError> {
    validate(&body)?;
    let now = now_ms();
    let transport = match body.transport {
        TransportKind::Stdio => "stdio",
        TransportKind::Http => "http",
    };
    let args = serde_json::to_string(&body.args).map_err(ApiError::internal)?;
    let timeout = body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS) as i64;
    // Secrets first: a row must never point at secrets that were not written.
    if body.env.is_some() || body.headers.is_some() || existing.is_none() {
        let mut secrets = if existing.is_some() { load_secrets(state, name).await? } else { Secrets::default() };
        if let Some(env) = body.env {
            secrets.env = env;
        }
        if let Some(headers) = body.headers {
            secrets.headers = headers;
        }
        // A transport switch leaves no stale secrets of the other kind behind.
        match body.transport {
            TransportKind::Stdio => secrets.headers.clear(),
            TransportKind::Http => secrets.env.clear(),
        }
        let text = serde_json::to_string(&secrets).map_err(ApiError::internal)?;
        state.vault.set(&secret_name(name), &text).await.map_err(ApiError::internal)?;
    }
    let sql = if existing.is_some() {
        "UPDATE mcp_servers SET transport = $2, command = $3, args = $4, url = $5, enabled = $6, timeout_ms = $7, \
         updated_at = $8 WHERE name = $1 \
         RETURNING name, transport, command, args, url, enabled, timeout_ms, created_at, updated_at"
    } else {
        "INSERT INTO mcp_servers (name, transport, command, args, url, enabled, timeout_ms, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         RETURNING name, transport, command, args, url, enabled, timeout_ms, created_at, updated_at"
    };
    let row = sqlx::query_as::<_, Row>(sql)
        .bind(name)
        .bind(transport)
        .bind(body.command.map(|c| c.trim().to_string()))
        .bind(args)
        .bind(body.url)
        .bind(i64::from(body.enabled))
        .bind(timeout)
        .bind(now)
        .fetch_optional(&mut *state.store.write().await?)
        .await
        .map_err(|e| {
            let e = StoreError::from(e);
            if e.is_unique_violation() {
                ApiError::conflict("exists", format!("An MCP server named {name} exists already."))
            } else {
                ApiError::from(e)
            }
        })?;
    row.ok_or_else(|| ApiError::not_found(format!("No MCP server named {name}.")))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_servers, create_server))
        .routes(routes!(update_server, delete_server))
        .routes(routes!(restart_server))
        .routes(routes!(server_status))
}

/// Lists the external MCP servers with their status.
#[utoipa::path(get, path = "/mcp/servers", tag = "mcp", responses((status = 200, body = [ServerView])))]
async fn list_servers(State(state): State<AppState>) -> ApiResult<Json<Vec<ServerView>>> {
    let mut out = Vec::new();
    for row in load_rows(&state).await? {
        out.push(view(&state, row).await?);
    }
    Ok(Json(out))
}

/// Adds an external MCP server; it starts at once when enabled.
#[utoipa::path(post, path = "/mcp/servers", tag = "mcp", request_body = ServerBody,
    responses((status = 201, body = ServerView), (status = 400, body = crate::api::ErrorBody),
              (status = 409, body = crate::api::ErrorBody)))]
async fn create_server(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ServerBody>,
) -> ApiResult<(StatusCode, Json<ServerView>)> {
    let name = body.name.clone().unwrap_or_default();
    if !valid_name(&name) {
        return Err(ApiError::validation("name: 1–32 of a-z, 0-9, '-', '_', not starting with - or _, no '__'."));
    }
    if load_row(&state, &name).await?.is_some() {
        return Err(ApiError::conflict("exists", format!("An MCP server named {name} exists already.")));
    }
    let row = save(&state, &name, body, None).await?;
    state.store.audit("api", "mcp.server.create", &name, None).await?;
    manager::announce(&state, manager::Change::Changed, &name).await;
    Ok((StatusCode::CREATED, Json(view(&state, row).await?)))
}

/// Replaces an external MCP server's configuration and restarts it.
#[utoipa::path(put, path = "/mcp/servers/{name}", tag = "mcp", request_body = ServerBody,
    params(("name" = String, Path)),
    responses((status = 200, body = ServerView), (status = 400, body = crate::api::ErrorBody),
              (status = 404, body = crate::api::ErrorBody)))]
async fn update_server(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ServerBody>,
) -> ApiResult<Json<ServerView>> {
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::validation("The name in the body differs from the path; servers cannot be renamed."));
    }
    let existing = load_row(&state, &name).await?.ok_or_else(|| ApiError::not_found("No such MCP server."))?;
    let row = save(&state, &name, body, Some(&existing)).await?;
    state.store.audit("api", "mcp.server.update", &name, None).await?;
    manager::announce(&state, manager::Change::Changed, &name).await;
    Ok(Json(view(&state, row).await?))
}

/// Removes an external MCP server: it stops and its tools leave the registry.
#[utoipa::path(delete, path = "/mcp/servers/{name}", tag = "mcp", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::api::ErrorBody)))]
async fn delete_server(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let done = sqlx::query("DELETE FROM mcp_servers WHERE name = $1")
        .bind(&name)
        .execute(&mut *state.store.write().await?)
        .await;
    if done.map_err(StoreError::from)?.rows_affected() == 0 {
        return Err(ApiError::not_found("No such MCP server."));
    }
    state.vault.delete(&secret_name(&name)).await.map_err(ApiError::internal)?;
    state.store.audit("api", "mcp.server.delete", &name, None).await?;
    manager::announce(&state, manager::Change::Changed, &name).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Restarts an external MCP server (asynchronously: watch its status).
#[utoipa::path(post, path = "/mcp/servers/{name}/restart", tag = "mcp", params(("name" = String, Path)),
    responses((status = 202), (status = 404, body = crate::api::ErrorBody)))]
async fn restart_server(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    load_row(&state, &name).await?.ok_or_else(|| ApiError::not_found("No such MCP server."))?;
    manager::announce(&state, manager::Change::Restart, &name).await;
    Ok(StatusCode::ACCEPTED)
}

/// The manager's last report on a server: `state` (starting, running, backoff, disabled),
/// its tools, the last error, how often it was restarted.
#[utoipa::path(get, path = "/mcp/servers/{name}/status", tag = "mcp", params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::api::ErrorBody)))]
async fn server_status(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let row = load_row(&state, &name).await?.ok_or_else(|| ApiError::not_found("No such MCP server."))?;
    Ok(Json(manager::status(&state, &name, row.enabled != 0).await))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names() {
        assert!(valid_name("files") && valid_name("my-srv_2"));
        for bad in ["", "Files", "a__b", "-x", "_x", "a b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
