//! The HTTP listener on `API_PORT`: health, readiness, metrics, and the `/api` routes that each
//! feature module contributes. Cross-cutting layers live here: request tracing, metrics, body
//! limits, security headers, JSON errors for unknown routes.

mod audit;
mod error;
mod health;
pub mod metrics;
pub mod openapi;

pub use error::{ApiError, ApiResult, ErrorBody};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// A JSON body whose rejection answers in the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Every `/api` route that needs an authenticated caller. Each feature adds its own router here
/// with one line; handlers carry `#[utoipa::path]` so the OpenAPI document lists them. The auth
/// layer wraps this whole set (see [`router`]), and the document marks each of them as needing
/// one of the three credentials.
pub fn protected_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(crate::auth::protected_routes())
        .merge(crate::settings::routes())
        .merge(crate::subagents::routes())
        .merge(crate::schedules::routes())
        .merge(audit::routes())
        .merge(crate::agent::api::routes())
        .merge(crate::mcp::api())
        .merge(crate::channels::api::routes())
}

/// `/api` routes reachable without credentials: first-run setup, login, the OpenAPI document.
fn public_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(crate::auth::public_routes()).merge(openapi::routes())
}

/// The `/api` router and its OpenAPI document.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let protected = protected_api();
    let protected_paths: Vec<String> = protected.get_openapi().paths.paths.keys().map(|p| format!("/api{p}")).collect();
    let protected = protected.route_layer(middleware::from_fn_with_state(state.clone(), crate::auth::require_auth));
    let (router, mut doc) =
        OpenApiRouter::with_openapi(openapi::base()).nest("/api", public_api().merge(protected)).split_for_parts();
    openapi::require_auth_on(&mut doc, &protected_paths);
    (router, doc)
}

/// The whole HTTP application of `API_PORT`.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let security_headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'; frame-ancestors 'none'"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        // Answers carry tokens and settings: never cached by a browser or a proxy.
        (header::CACHE_CONTROL, "no-store"),
    ];
    let (api, doc) = api(&state);
    let doc = Arc::new(serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into()));
    let mut app = Router::new()
        .merge(health::routes())
        .merge(api)
        .fallback(|| async { ApiError::not_found("No such route.") })
        .with_state(state.clone())
        .layer(axum::Extension(doc))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), record_request));
    for (name, value) in security_headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value)));
    }
    if let Some(cors) = cors(&state.config.cors_origins) {
        app = app.layer(cors);
    }
    app.layer(
        TraceLayer::new_for_http().make_span_with(
            |req: &Request| tracing::info_span!("http", method = %req.method(), path = %req.uri().path()),
        ),
    )
}

/// CORS only for the configured origins (`NEXUS_CORS_ORIGINS`); none by default, so browsers
/// keep other sites from calling the API.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-api-key")])
            .allow_credentials(true)
            .max_age(Duration::from_secs(600)),
    )
}

/// Counts each request and its latency under its route pattern (never the raw path, which
/// would let a scanner create unbounded label values).
async fn record_request(State(_state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    metrics::record_http(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// How long a request may take before the client is told 503; streams are exempt (they set their own).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
