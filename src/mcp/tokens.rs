//! Bearer tokens for MCP clients. A token is 32 random bytes shown once at creation; the Store
//! keeps only its SHA-256 (a fast hash is enough for a secret with 256 bits of entropy, and it lets
//! every request look the token up directly). Deleting a token revokes it at once: every MCP
//! request looks its token up again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiError, ApiJson, ApiResult};
use crate::app::AppState;
use crate::store::{Store, StoreError, now_ms};

/// Prefix that makes a leaked token recognisable (secret scanners, logs).
const TOKEN_PREFIX: &str = "nxm_";

/// Who is calling the MCP server, as established by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpIdentity {
    /// `api-key` for LIV_API_KEY, else `token:<name>`.
    pub label: String,
    /// Whether Write/Admin tools may run for this caller.
    pub allow_risky: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    #[serde(serialize_with = "as_bool")]
    #[schema(value_type = bool)]
    pub allow_risky: i64,
    pub created_at: i64,
}

fn as_bool<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*v != 0)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A label for the client that will use the token (1–64 characters).
    pub name: String,
    /// Allow tools that change things (risk write/admin). Off by default.
    #[serde(default)]
    pub allow_risky: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token. Shown only in this response; store it now.
    pub token: String,
}

fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn create(store: &Store, name: &str, allow_risky: bool) -> Result<CreatedToken, StoreError> {
    let secret: [u8; 32] = rand::random();
    let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let info = sqlx::query_as::<_, TokenInfo>(
        "INSERT INTO mcp_tokens (id, name, token_hash, allow_risky, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, allow_risky, created_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(name)
    .bind(hash(&token))
    .bind(i64::from(allow_risky))
    .bind(now_ms())
    .fetch_one(&mut *store.write().await?)
    .await?;
    Ok(CreatedToken { info, token })
}

pub async fn list(store: &Store) -> Result<Vec<TokenInfo>, StoreError> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "SELECT id, name, allow_risky, created_at FROM mcp_tokens ORDER BY created_at, id",
    )
    .fetch_all(store.pool())
    .await?)
}

pub async fn revoke(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM mcp_tokens WHERE id = $1").bind(id).execute(&mut *store.write().await?).await?;
    Ok(done.rows_affected() > 0)
}

/// Resolves a bearer value to an identity: LIV_API_KEY (full rights) or a live MCP token.
pub async fn authenticate(state: &AppState, bearer: &str) -> Result<Option<McpIdentity>, StoreError> {
    if let Some(key) = &state.config.liv_api_key
        && bool::from(key.expose().as_bytes().ct_eq(bearer.as_bytes()))
    {
        return Ok(Some(McpIdentity { label: "api-key".into(), allow_risky: true }));
    }
    if !bearer.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row: Option<(String, i64)> = sqlx::query_as("SELECT name, allow_risky FROM mcp_tokens WHERE token_hash = $1")
        .bind(hash(bearer))
        .fetch_optional(state.store.pool())
        .await?;
    Ok(row.map(|(name, risky)| McpIdentity { label: format!("token:{name}"), allow_risky: risky != 0 }))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(delete_token))
}

/// Creates an MCP token; the token itself is returned only here.
#[utoipa::path(post, path = "/mcp/tokens", tag = "mcp", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = crate::api::ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::validation("name must be 1 to 64 characters."));
    }
    let created = create(&state.store, name, body.allow_risky).await?;
    let detail = format!("token {} ({name}), allow_risky={}", created.info.id, body.allow_risky);
    state.store.audit("api", "mcp.token.create", &detail, None).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists MCP tokens (never the tokens themselves).
#[utoipa::path(get, path = "/mcp/tokens", tag = "mcp", responses((status = 200, body = [TokenInfo])))]
async fn list_tokens(State(state): State<AppState>) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(list(&state.store).await?))
}

/// Revokes an MCP token; requests carrying it are refused from now on.
#[utoipa::path(delete, path = "/mcp/tokens/{id}", tag = "mcp", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::api::ErrorBody)))]
async fn delete_token(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if !revoke(&state.store, &id).await? {
        return Err(ApiError::not_found("No MCP token with that id."));
    }
    state.store.audit("api", "mcp.token.revoke", &id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(super::hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
