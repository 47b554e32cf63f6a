//! `/api/channels`: each channel's live status, config (token write-only, kept in the vault),
//! a real connection check, sending, pairings, and the WhatsApp QR code.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ChannelConfig, ChannelError, ChannelKind, ChannelStatus, Hub, Policy, discord, telegram, whatsapp};
use crate::api::{ApiError, ApiJson, ApiResult};
use crate::app::AppState;
use crate::inbox::access::{self, Pairing};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels))
        .routes(routes!(get_channel, put_channel))
        .routes(routes!(test_channel))
        .routes(routes!(send_message))
        .routes(routes!(list_pairings))
        .routes(routes!(approve_pairing))
        .routes(routes!(whatsapp_qr))
        .routes(routes!(whatsapp_qr_png))
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Store(e) => e.into(),
            ChannelError::Vault(e) => e.into(),
            ChannelError::Bus(e) => e.into(),
        }
    }
}

fn hub(state: &AppState) -> ApiResult<Arc<Hub>> {
    super::hub(state).ok_or_else(|| ApiError::unavailable("The channels are not running on this instance."))
}

fn kind(name: &str) -> ApiResult<ChannelKind> {
    ChannelKind::parse(name)
        .ok_or_else(|| ApiError::not_found(format!("No channel '{name}': use telegram, discord or whatsapp.")))
}

/// A channel as the API shows it. The token itself is never returned.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    pub enabled: bool,
    pub token_set: bool,
    pub allow_from: Vec<String>,
    pub policy: Policy,
    pub status: ChannelStatus,
}

async fn view(hub: &Hub, kind: ChannelKind) -> ApiResult<ChannelView> {
    let config = hub.config(kind);
    Ok(ChannelView {
        kind,
        enabled: config.enabled,
        token_set: hub.token_is_set(kind).await?,
        allow_from: config.allow_from,
        policy: config.policy,
        status: hub.status(kind),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelView>,
}

/// Every channel with its live status and last error.
#[utoipa::path(get, path = "/channels", tag = "channels", responses((status = 200, body = ChannelList)))]
async fn list_channels(State(state): State<AppState>) -> ApiResult<ApiJson<ChannelList>> {
    let hub = hub(&state)?;
    let mut channels = Vec::new();
    for kind in ChannelKind::ALL {
        channels.push(view(&hub, kind).await?);
    }
    Ok(ApiJson(ChannelList { channels }))
}

#[utoipa::path(get, path = "/channels/{type}", tag = "channels",
    params(("type" = String, Path, description = "telegram, discord or whatsapp")),
    responses((status = 200, body = ChannelView), (status = 404, body = crate::api::ErrorBody)))]
async fn get_channel(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<ApiJson<ChannelView>> {
    let kind = kind(&name)?;
    let hub = hub(&state)?;
    Ok(ApiJson(view(&hub, kind).await?))
}

/// A change of a channel's config; absent fields stay as they are. `token` is write-only; an
/// empty token removes it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelUpdate {
    pub enabled: Option<bool>,
    pub token: Option<String>,
    pub allow_from: Option<Vec<String>>,
    pub policy: Option<Policy>,
}

/// Stores a channel's config and applies it at once on every instance (no restart).
#[utoipa::path(put, path = "/channels/{type}", tag = "channels", request_body = ChannelUpdate,
    params(("type" = String, Path, description = "telegram, discord or whatsapp")),
    responses((status = 200, body = ChannelView), (status = 400, body = crate::api::ErrorBody)))]
async fn put_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<ChannelUpdate>,
) -> ApiResult<ApiJson<ChannelView>> {
    let kind = kind(&name)?;
    let hub = hub(&state)?;
    if let Some(token) = &update.token {
        validate_token(kind, token)?;
    }
    if let Some(allow) = &update.allow_from
        && let Some(bad) = allow.iter().find(|a| a.trim().is_empty() || a.len() > 200)
    {
        return Err(ApiError::validation(format!(
            "allow_from entry '{bad}' must be a sender id of 1 to 200 characters."
        )));
    }
    if update.policy.as_ref().is_some_and(|p| p.rate_per_minute == 0 || p.rate_per_minute > 10_000) {
        return Err(ApiError::validation("policy.rate_per_minute must be between 1 and 10000."));
    }
    let mut config: ChannelConfig = state.store.get_setting(&kind.setting_key()).await?.unwrap_or_default();
    if let Some(enabled) = update.enabled {
        config.enabled = enabled;
    }
    if let Some(allow) = update.allow_from {
        config.allow_from = allow.into_iter().map(|a| a.trim().to_string()).collect();
    }
    if let Some(policy) = update.policy {
        config.policy = policy;
    }
    hub.save(kind, &config, update.token.as_deref().map(str::trim)).await?;
    // Applied here at once too, so the answer shows the new state (other instances hear the topic).
    hub.reload(kind).await?;
    state.store.audit("api", "channel.update", &format!("{} enabled={}", kind.as_str(), config.enabled), None).await?;
    Ok(ApiJson(view(&hub, kind).await?))
}

fn validate_token(kind: ChannelKind, token: &str) -> ApiResult<()> {
    let token = token.trim();
    match kind {
        ChannelKind::Whatsapp if !token.is_empty() => {
            Err(ApiError::validation("WhatsApp takes no token: the bridge is linked with its QR code."))
        }
        ChannelKind::Telegram if !token.is_empty() && !token.contains(':') => {
            Err(ApiError::validation("A Telegram bot token looks like 123456:ABC-DEF… (from @BotFather)."))
        }
        _ if token.len() > 500 || token.chars().any(char::is_whitespace) => {
            Err(ApiError::validation("The token must be one line without spaces."))
        }
        _ => Ok(()),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub ok: bool,
    pub detail: String,
    pub bot_name: Option<String>,
    pub bot_id: Option<String>,
}

/// A real check: Telegram getMe, the Discord gateway handshake, or a read of the bridge's status.
#[utoipa::path(post, path = "/channels/{type}/test", tag = "channels",
    params(("type" = String, Path, description = "telegram, discord or whatsapp")),
    responses((status = 200, body = CheckResult)))]
async fn test_channel(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<ApiJson<CheckResult>> {
    let kind = kind(&name)?;
    let hub = hub(&state)?;
    let failed = |detail: String| CheckResult { ok: false, detail, bot_name: None, bot_id: None };
    let result = match kind {
        ChannelKind::Telegram | ChannelKind::Discord => match hub.token(kind).await? {
            None => failed(format!("No token is set: PUT /api/channels/{} with a token.", kind.as_str())),
            Some(token) => {
                let checked = if kind == ChannelKind::Telegram {
                    telegram::check(&state.config.telegram_api_url, &token).await
                } else {
                    discord::check(state.config.discord_api_url.as_deref(), &token).await
                };
                match checked {
                    Ok((name, id)) => CheckResult {
                        ok: true,
                        detail: format!("Connected as {name}."),
                        bot_name: Some(name),
                        bot_id: Some(id),
                    },
                    Err(e) => failed(e),
                }
            }
        },
        ChannelKind::Whatsapp => match &state.config.redis_url {
            None => failed(whatsapp::NEEDS_REDIS.into()),
            Some(url) => match whatsapp::bridge_state(url).await {
                Ok((Some(status), _)) => {
                    CheckResult { ok: true, detail: format!("Bridge status: {status}"), bot_name: None, bot_id: None }
                }
                Ok((None, qr)) => failed(if qr.is_some() {
                    "The bridge waits for its QR code to be scanned.".into()
                } else {
                    "No bridge status in Redis: is the WhatsApp bridge running?".into()
                }),
                Err(e) => failed(e),
            },
        },
    };
    Ok(ApiJson(result))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Chat id (Telegram chat id, Discord channel id, WhatsApp JID).
    pub chat_id: String,
    pub text: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SendAccepted {
    /// The outbox row; the message goes out as soon as the channel can take it.
    pub id: String,
}

/// Queues a message to a chat through the outbox.
#[utoipa::path(post, path = "/channels/{type}/send", tag = "channels", request_body = SendRequest,
    params(("type" = String, Path, description = "telegram, discord or whatsapp")),
    responses((status = 202, body = SendAccepted), (status = 400, body = crate::api::ErrorBody)))]
async fn send_message(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<SendRequest>,
) -> ApiResult<(StatusCode, ApiJson<SendAccepted>)> {
    let kind = kind(&name)?;
    let chat_id = request.chat_id.trim();
    if chat_id.is_empty() || chat_id.len() > 200 {
        return Err(ApiError::validation("chat_id must be 1 to 200 characters."));
    }
    if request.text.trim().is_empty() || request.text.chars().count() > 50_000 {
        return Err(ApiError::validation("text must be 1 to 50000 characters."));
    }
    let id = crate::inbox::send(&state, kind.as_str(), chat_id, &request.text)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((StatusCode::ACCEPTED, ApiJson(SendAccepted { id })))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PairingList {
    pub pairings: Vec<Pairing>,
}

/// Open pairing codes of unknown senders.
#[utoipa::path(get, path = "/channels/{type}/pairings", tag = "channels",
    params(("type" = String, Path, description = "telegram, discord or whatsapp")),
    responses((status = 200, body = PairingList)))]
async fn list_pairings(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<ApiJson<PairingList>> {
    let kind = kind(&name)?;
    Ok(ApiJson(PairingList { pairings: access::list_pairings(&state.store, kind.as_str()).await? }))
}

/// Lets the sender of a pairing code in: adds them to the allowlist and tells them.
#[utoipa::path(post, path = "/channels/{type}/pairings/{code}/approve", tag = "channels",
    params(("type" = String, Path, description = "telegram, discord or whatsapp"), ("code" = String, Path)),
    responses((status = 200, body = Pairing), (status = 404, body = crate::api::ErrorBody)))]
async fn approve_pairing(
    State(state): State<AppState>,
    Path((name, code)): Path<(String, String)>,
) -> ApiResult<ApiJson<Pairing>> {
    let kind = kind(&name)?;
    let hub = hub(&state)?;
    let pairing = access::take_pairing(&state.store, kind.as_str(), &code)
        .await?
        .ok_or_else(|| ApiError::not_found("No open pairing with this code (codes expire after an hour)."))?;
    admit(&hub, kind, &pairing).await?;
    state
        .store
        .audit("api", "channel.pairing.approve", &format!("{} {}", kind.as_str(), pairing.sender_id), None)
        .await?;
    Ok(ApiJson(pairing))
}

/// Adds the paired sender to the allowlist and tells them in their chat.
pub(crate) async fn admit(hub: &Hub, kind: ChannelKind, pairing: &Pairing) -> Result<(), ChannelError> {
    hub.allow(kind, &pairing.sender_id).await?;
    crate::inbox::send(hub.state(), kind.as_str(), &pairing.chat_id, "You're approved — I'm listening now.")
        .await
        .map_err(|e| match e {
            crate::inbox::InboxError::Bus(e) => ChannelError::Bus(e),
            crate::inbox::InboxError::Store(e) => ChannelError::Store(e),
            crate::inbox::InboxError::Shutdown => ChannelError::Store(crate::store::StoreError::Data(e.to_string())),
        })?;
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QrView {
    /// The bridge's QR code as it stored it (base64 PNG or a data URL), or null once linked.
    pub qr: Option<String>,
    pub status: Option<String>,
}

fn whatsapp_only(name: &str) -> ApiResult<()> {
    match kind(name)? {
        ChannelKind::Whatsapp => Ok(()),
        _ => Err(ApiError::not_found("Only WhatsApp links with a QR code.")),
    }
}

/// The WhatsApp bridge's linking QR code and status.
#[utoipa::path(get, path = "/channels/{type}/qr", tag = "channels",
    params(("type" = String, Path, description = "whatsapp")),
    responses((status = 200, body = QrView), (status = 503, body = crate::api::ErrorBody)))]
async fn whatsapp_qr(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<ApiJson<QrView>> {
    whatsapp_only(&name)?;
    let url = state.config.redis_url.as_deref().ok_or_else(|| ApiError::unavailable(whatsapp::NEEDS_REDIS))?;
    let (status, qr) = whatsapp::bridge_state(url).await.map_err(ApiError::unavailable)?;
    Ok(ApiJson(QrView { qr, status }))
}

/// The QR code as a PNG image for the dashboard.
#[utoipa::path(get, path = "/channels/{type}/qr.png", tag = "channels",
    params(("type" = String, Path, description = "whatsapp")),
    responses((status = 200, content_type = "image/png", body = Vec<u8>), (status = 404, body = crate::api::ErrorBody)))]
async fn whatsapp_qr_png(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    whatsapp_only(&name)?;
    let url = state.config.redis_url.as_deref().ok_or_else(|| ApiError::unavailable(whatsapp::NEEDS_REDIS))?;
    let (_, qr) = whatsapp::bridge_state(url).await.map_err(ApiError::unavailable)?;
    let qr = qr.ok_or_else(|| ApiError::not_found("No QR code: the bridge is linked or not running."))?;
    let b64 = qr.trim().split_once("base64,").map(|(_, b)| b).unwrap_or(qr.trim());
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .filter(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_an_image",
                "The bridge stored a QR code that is not a base64 PNG; read it from /qr instead.",
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], png).into_response())
}
