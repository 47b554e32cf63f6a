//! Authentication: users (argon2id), sessions and JWTs, the session cookie, TOTP, the API key,
//! login rate limits, and the layer that guards every route of [`crate::api::protected_api`].
//!
//! A request is let through with one of:
//! - `Authorization: Bearer <token>` — a JWT from `POST /api/auth/login`;
//! - the `nexus_session` cookie holding the same token (HttpOnly, SameSite=Strict);
//! - `X-API-Key: <LIV_API_KEY>` (compared in constant time), for scripts and other services.
//!
//! Tokens name a session row; the session must be live on every request, so logout and a password
//! change end a token at once. Everything else is answered 401 before any handler runs.

pub mod password;
pub mod ratelimit;
mod routes;
pub mod token;
pub mod totp;
pub mod users;

pub use routes::{protected_routes, public_routes};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api::ApiError;
use crate::app::AppState;
use crate::config::{Config, Secret};

pub use token::TokenError;

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "nexus_session";

/// Shared authentication state (in `AppState::auth`).
pub struct Auth {
    pub keys: token::TokenKeys,
    pub limiter: ratelimit::LoginLimiter,
    api_key: Option<Secret>,
    pub session_ttl: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("api_key_set", &self.api_key.is_some()).finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: &Config) -> Result<Self, TokenError> {
        Ok(Self {
            keys: token::TokenKeys::load(config.jwt_secret.as_ref(), &config.data_dir)?,
            limiter: ratelimit::LoginLimiter::default(),
            api_key: config.liv_api_key.clone(),
            session_ttl: config.session_ttl,
        })
    }

    /// The same, with other login limits (tests use slow refills so bursts are exact).
    pub fn with_limiter(mut self, limiter: ratelimit::LoginLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Constant-time comparison with `LIV_API_KEY`; always false when no key is configured.
    pub fn api_key_matches(&self, given: &str) -> bool {
        match &self.api_key {
            Some(key) => bool::from(key.expose().as_bytes().ct_eq(given.as_bytes())),
            None => false,
        }
    }
}

/// A logged-in user, as seen by handlers.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub id: i64,
    pub username: String,
    pub totp_enabled: bool,
    pub sid: String,
    pub session_expires_at: i64,
}

/// Who made an authenticated request. Put into the request extensions by [`require_auth`].
#[derive(Debug, Clone)]
pub enum Principal {
    User(SessionUser),
    ApiKey,
}

impl Principal {
    /// The actor written to the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::User(u) => format!("user:{}", u.username),
            Principal::ApiKey => "api-key".into(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(unauthenticated)
    }
}

/// Routes that act on the caller's own account need a user session, not the API key.
impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Principal>() {
            Some(Principal::User(user)) => Ok(user.clone()),
            Some(Principal::ApiKey) => Err(ApiError::forbidden(
                "This route acts on a user account: log in as the user instead of the API key.",
            )),
            None => Err(unauthenticated()),
        }
    }
}

/// The client's address: the peer, or — when the peer is a proxy on this machine (Caddy) — the
/// last address it appended to `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(client_ip(peer, &parts.headers)))
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer)
}

fn unauthenticated() -> ApiError {
    ApiError::unauthorized(
        "unauthorized",
        "Log in first: send Authorization: Bearer <token>, the session cookie, or X-API-Key.",
    )
}

/// The token of a request: the bearer token, else the session cookie.
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Who is calling, from the request's credentials.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(given) = headers.get("x-api-key") {
        let given = given.to_str().unwrap_or("");
        return if state.auth.api_key_matches(given) {
            Ok(Principal::ApiKey)
        } else {
            Err(ApiError::unauthorized("invalid_api_key", "The X-API-Key is not valid."))
        };
    }
    let token = request_token(headers).ok_or_else(unauthenticated)?;
    let invalid = || ApiError::unauthorized("invalid_token", "The token is invalid or has expired; log in again.");
    let claims = state.auth.keys.verify(&token).ok_or_else(invalid)?;
    let (session, user) = users::live_session(&state.store, &claims.sid).await?.ok_or_else(|| {
        ApiError::unauthorized("session_ended", "This session has ended (logout or password change); log in again.")
    })?;
    if session.user_id.to_string() != claims.sub {
        return Err(invalid());
    }
    Ok(Principal::User(SessionUser {
        id: user.id,
        username: user.username,
        totp_enabled: user.totp_enabled != 0,
        sid: session.id,
        session_expires_at: session.expires_at,
    }))
}

/// For the MCP listener: `Authorization: Bearer <LIV_API_KEY>` is the API key there; any other
/// credential is checked as on the REST API.
pub async fn authenticate_mcp(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if headers.get("x-api-key").is_none()
        && let Some(token) = request_token(headers)
        && state.auth.api_key_matches(&token)
    {
        return Ok(Principal::ApiKey);
    }
    authenticate(state, headers).await
}

/// The auth layer of every protected route: unauthenticated requests are answered 401 here and
/// never reach a handler.
pub async fn require_auth(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match authenticate(&state, request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Removes expired and long-revoked sessions once an hour until shutdown.
pub fn start_housekeeping(state: &AppState) {
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = users::prune_sessions(&state.store).await {
                        tracing::warn!(error = %e, "session pruning failed");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_come_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(request_token(&h), None);
        h.insert("cookie", HeaderValue::from_static("a=b; nexus_session=tok1; c=d"));
        assert_eq!(request_token(&h).as_deref(), Some("tok1"));
        h.insert("authorization", HeaderValue::from_static("Bearer tok2"));
        assert_eq!(request_token(&h).as_deref(), Some("tok2"));
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(request_token(&h), None, "a non-bearer scheme is not a token");
    }

    #[tokio::test]
    async fn mcp_takes_the_api_key_as_a_bearer_token() {
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            ("NEXUS_DATA_DIR", dir.path().to_str().unwrap().to_string()),
            ("LIV_API_KEY", "mcp-key-0123456789".to_string()),
        ];
        let config = Config::from_vars(&vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).unwrap();
        let state = AppState::connect(config, Duration::from_secs(5)).await.unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer mcp-key-0123456789"));
        assert!(matches!(authenticate_mcp(&state, &h).await, Ok(Principal::ApiKey)));
        assert!(authenticate(&state, &h).await.is_err(), "the REST API takes the key only as X-API-Key");
        h.insert("authorization", HeaderValue::from_static("Bearer wrong"));
        assert_eq!(authenticate_mcp(&state, &h).await.unwrap_err().status, 401);
        state.store.close().await;
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_a_local_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, 5.6.7.8"));
        assert_eq!(client_ip([127, 0, 0, 1].into(), &h), IpAddr::from([5, 6, 7, 8]));
        assert_eq!(client_ip([9, 9, 9, 9].into(), &h), IpAddr::from([9, 9, 9, 9]));
    }
}
