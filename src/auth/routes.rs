//! `/api/auth/*`: first-run setup, login, logout, the caller, password change, TOTP.

use axum::http::header::{HeaderMap, HeaderValue, SET_COOKIE};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::users::{self, UserInfo, UserRow};
use super::{ClientIp, Principal, SESSION_COOKIE, SessionUser, password, token, totp};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::store::now_ms;

/// Setup and login: reachable without credentials.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(setup)).routes(routes!(login))
}

/// The rest of `/api/auth`: behind the auth layer.
pub fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(totp_setup))
        .routes(routes!(totp_enable))
        .routes(routes!(totp_disable))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// 1–64 of letters, digits, `.`, `_`, `-` (stored lower-case).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    username: String,
    /// At least 10 characters, 4 different ones, not containing the username.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
    /// The 6-digit code, required when two-factor authentication is on.
    #[serde(default)]
    totp: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; the same token is set as the session cookie.
    token: String,
    /// Unix milliseconds.
    expires_at: i64,
    user: UserInfo,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// `session` or `api_key`.
    auth: String,
    user: Option<UserInfo>,
    /// Unix milliseconds; absent for the API key.
    session_expires_at: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    current_password: String,
    new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TotpSetupResponse {
    /// Base32 secret, for manual entry.
    secret: String,
    otpauth_url: String,
    /// A PNG QR code of `otpauth_url`, base64.
    qr_png_base64: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// The 6-digit code shown by the authenticator app.
    #[schema(pattern = "^[0-9]{6}$")]
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct TotpStatus {
    totp_enabled: bool,
}

fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

fn session_cookie(token: &str, max_age_secs: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

async fn audit(state: &AppState, actor: &str, action: &str, detail: &str, ip: ClientIp) {
    if let Err(e) = state.store.audit(actor, action, detail, Some(&ip.0.to_string())).await {
        tracing::warn!(error = %e, action, "audit write failed");
    }
}

/// Creates a session and its token, answered with the cookie set.
async fn issue_login(state: &AppState, user: &UserRow, ip: ClientIp, headers: &HeaderMap) -> ApiResult<Response> {
    let ttl_ms = i64::try_from(state.auth.session_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let expires_at = now_ms() + ttl_ms;
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let sid = users::create_session(&state.store, user.id, expires_at, Some(&ip.0.to_string()), agent).await?;
    let claims = token::Claims { sub: user.id.to_string(), sid, iat: now_ms() / 1000, exp: expires_at / 1000 };
    let token = state.auth.keys.sign(&claims).map_err(ApiError::internal)?;
    let mut response =
        axum::Json(LoginResponse { token: token.clone(), expires_at, user: UserInfo::from(user) }).into_response();
    if let Some(cookie) = session_cookie(&token, ttl_ms / 1000, is_https(headers)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// First-run setup: creates the first user. Only while no user exists; never with the API key.
#[utoipa::path(post, path = "/auth/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn setup(
    axum::extract::State(state): axum::extract::State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, axum::Json<UserInfo>)> {
    state.auth.limiter.check_ip(ip.0).map_err(ApiError::too_many)?;
    let username = users::normalize_username(&body.username).map_err(ApiError::validation)?;
    password::check_rules(&username, &body.password).map_err(ApiError::validation)?;
    let taken = || ApiError::conflict("already_set_up", "A user exists already; log in, or use `nexus user add`.");
    if users::count(&state.store).await? > 0 {
        return Err(taken());
    }
    let phc = password::hash(&body.password).await.map_err(ApiError::internal)?;
    let user = users::insert_first(&state.store, &username, &phc).await?.ok_or_else(taken)?;
    audit(&state, &format!("user:{username}"), "auth.setup", "first user created", ip).await;
    Ok((StatusCode::CREATED, axum::Json(UserInfo::from(&user))))
}

/// Logs in; answers a token and sets the session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody, description = "invalid_credentials, totp_required, invalid_totp or totp_replayed"),
              (status = 429, body = ErrorBody)))]
async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let name = body.username.trim().to_lowercase();
    let name: String = name.chars().take(64).collect();
    if let Err(wait) = state.auth.limiter.check(ip.0, &name) {
        audit(&state, &format!("user:{name}"), "auth.login_rate_limited", "too many attempts", ip).await;
        return Err(ApiError::too_many(wait));
    }
    let user = match users::normalize_username(&body.username) {
        Ok(n) => users::by_name(&state.store, &n).await?,
        Err(_) => None,
    };
    let ok = password::verify(&body.password, user.as_ref().map(|u| u.password_hash.as_str())).await;
    let user = match user {
        Some(user) if ok => user,
        _ => {
            audit(&state, &format!("user:{name}"), "auth.login_failed", "wrong username or password", ip).await;
            return Err(ApiError::unauthorized("invalid_credentials", "Wrong username or password."));
        }
    };
    if user.totp_enabled != 0 {
        let code = body.totp.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
            ApiError::unauthorized(
                "totp_required",
                "This account uses two-factor authentication: send the 6-digit code as `totp`.",
            )
        })?;
        let generator = totp::load(&state.vault, user.id, &user.username)
            .await?
            .ok_or_else(|| ApiError::internal("TOTP enabled but its secret is missing"))?;
        let Some(step) = totp::check(&generator, code) else {
            audit(&state, &format!("user:{name}"), "auth.login_failed", "wrong TOTP code", ip).await;
            return Err(ApiError::unauthorized("invalid_totp", "The two-factor code is wrong or too old."));
        };
        if !users::claim_totp_step(&state.store, user.id, step).await? {
            audit(&state, &format!("user:{name}"), "auth.login_failed", "replayed TOTP code", ip).await;
            return Err(ApiError::unauthorized(
                "totp_replayed",
                "This two-factor code was used already; wait for the next one.",
            ));
        }
    }
    let response = issue_login(&state, &user, ip, &headers).await?;
    audit(&state, &format!("user:{}", user.username), "auth.login", "logged in", ip).await;
    Ok(response)
}

/// Who is calling: the logged-in user, or the API key.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
async fn me(
    axum::extract::State(state): axum::extract::State<AppState>,
    who: Principal,
) -> ApiResult<axum::Json<MeResponse>> {
    Ok(axum::Json(match who {
        Principal::ApiKey => MeResponse { auth: "api_key".into(), user: None, session_expires_at: None },
        Principal::User(u) => {
            let row = users::by_id(&state.store, u.id).await?.ok_or_else(|| ApiError::not_found("No such user."))?;
            MeResponse {
                auth: "session".into(),
                user: Some(UserInfo::from(&row)),
                session_expires_at: Some(u.session_expires_at),
            }
        }
    }))
}

/// Ends the caller's session: its token stops working and the cookie is cleared.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn logout(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: SessionUser,
    ip: ClientIp,
    headers: HeaderMap,
) -> ApiResult<Response> {
    users::revoke_session(&state.store, &user.sid).await?;
    audit(&state, &format!("user:{}", user.username), "auth.logout", "session ended", ip).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = session_cookie("", 0, is_https(&headers)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Changes the password. Every session of the user ends (including this one); the answer is a
/// fresh login.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = PasswordRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn change_password(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: SessionUser,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> ApiResult<Response> {
    state.auth.limiter.check(ip.0, &user.username).map_err(ApiError::too_many)?;
    let row = users::by_id(&state.store, user.id).await?.ok_or_else(|| ApiError::not_found("No such user."))?;
    if !password::verify(&body.current_password, Some(&row.password_hash)).await {
        audit(&state, &format!("user:{}", user.username), "auth.password_failed", "wrong current password", ip).await;
        return Err(ApiError::forbidden("The current password is wrong."));
    }
    password::check_rules(&user.username, &body.new_password).map_err(ApiError::validation)?;
    let phc = password::hash(&body.new_password).await.map_err(ApiError::internal)?;
    users::set_password(&state.store, user.id, &phc).await?;
    let ended = users::revoke_all_sessions(&state.store, user.id, None).await?;
    audit(
        &state,
        &format!("user:{}", user.username),
        "auth.password_changed",
        &format!("{ended} session(s) ended"),
        ip,
    )
    .await;
    issue_login(&state, &row, ip, &headers).await
}

/// Starts two-factor setup: a new secret (pending until enabled with a valid code).
#[utoipa::path(post, path = "/auth/totp/setup", tag = "auth",
    responses((status = 200, body = TotpSetupResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn totp_setup(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: SessionUser,
) -> ApiResult<axum::Json<TotpSetupResponse>> {
    let row = users::by_id(&state.store, user.id).await?.ok_or_else(|| ApiError::not_found("No such user."))?;
    if row.totp_enabled != 0 {
        return Err(ApiError::conflict(
            "totp_already_enabled",
            "Two-factor authentication is on already; disable it first.",
        ));
    }
    let secret = totp::generate_secret();
    let generator = totp::totp(&secret, &user.username).ok_or_else(|| ApiError::internal("TOTP build failed"))?;
    let otpauth_url = generator.to_url().map_err(ApiError::internal)?;
    let png = generator.to_qr_png().map_err(ApiError::internal)?;
    state.vault.set(&totp::pending_vault_name(user.id), &secret).await?;
    Ok(axum::Json(TotpSetupResponse {
        secret,
        otpauth_url,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(png),
    }))
}

/// Turns two-factor authentication on with a code from the secret of `/auth/totp/setup`.
#[utoipa::path(post, path = "/auth/totp/enable", tag = "auth", request_body = TotpCode,
    responses((status = 200, body = TotpStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn totp_enable(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: SessionUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<TotpCode>,
) -> ApiResult<axum::Json<TotpStatus>> {
    state.auth.limiter.check(ip.0, &user.username).map_err(ApiError::too_many)?;
    let row = users::by_id(&state.store, user.id).await?.ok_or_else(|| ApiError::not_found("No such user."))?;
    if row.totp_enabled != 0 {
        return Err(ApiError::conflict("totp_already_enabled", "Two-factor authentication is on already."));
    }
    let pending = state.vault.get(&totp::pending_vault_name(user.id)).await?.ok_or_else(|| {
        ApiError::conflict("totp_not_set_up", "Call POST /api/auth/totp/setup first, then enable with a code.")
    })?;
    let generator = totp::totp(pending.expose(), &user.username)
        .ok_or_else(|| ApiError::internal("pending TOTP secret unusable"))?;
    let step = totp::check(&generator, &body.code)
        .ok_or_else(|| ApiError::bad_request("invalid_totp", "The code does not match; check the device's clock."))?;
    state.vault.set(&totp::vault_name(user.id), pending.expose()).await?;
    users::set_totp_enabled(&state.store, user.id, true).await?;
    // The code just shown cannot log in a second time.
    users::claim_totp_step(&state.store, user.id, step).await?;
    state.vault.delete(&totp::pending_vault_name(user.id)).await?;
    audit(&state, &format!("user:{}", user.username), "auth.totp_enabled", "two-factor on", ip).await;
    Ok(axum::Json(TotpStatus { totp_enabled: true }))
}

/// Turns two-factor authentication off; needs a current code.
#[utoipa::path(post, path = "/auth/totp/disable", tag = "auth", request_body = TotpCode,
    responses((status = 200, body = TotpStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn totp_disable(
    axum::extract::State(state): axum::extract::State<AppState>,
    user: SessionUser,
    ip: ClientIp,
    ApiJson(body): ApiJson<TotpCode>,
) -> ApiResult<axum::Json<TotpStatus>> {
    state.auth.limiter.check(ip.0, &user.username).map_err(ApiError::too_many)?;
    let row = users::by_id(&state.store, user.id).await?.ok_or_else(|| ApiError::not_found("No such user."))?;
    if row.totp_enabled == 0 {
        return Err(ApiError::conflict("totp_not_enabled", "Two-factor authentication is off already."));
    }
    let generator = totp::load(&state.vault, user.id, &user.username)
        .await?
        .ok_or_else(|| ApiError::internal("TOTP enabled but its secret is missing"))?;
    let step = totp::check(&generator, &body.code)
        .ok_or_else(|| ApiError::bad_request("invalid_totp", "The code does not match; check the device's clock."))?;
    if !users::claim_totp_step(&state.store, user.id, step).await? {
        return Err(ApiError::bad_request("totp_replayed", "This code was used already; wait for the next one."));
    }
    users::set_totp_enabled(&state.store, user.id, false).await?;
    state.vault.delete(&totp::vault_name(user.id)).await?;
    audit(&state, &format!("user:{}", user.username), "auth.totp_disabled", "two-factor off", ip).await;
    Ok(axum::Json(TotpStatus { totp_enabled: false }))
}
