//! The OpenAPI 3 document of every `/api` route, assembled from the handlers' `#[utoipa::path]`
//! annotations. Routes behind the auth layer get the three security schemes (any one suffices);
//! public routes (setup, login, this document) get none.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(info(
    title = "Nexus API",
    description = "REST API of the Nexus daemon. Authenticate with `Authorization: Bearer <token>` \
                   (from POST /api/auth/login), the `nexus_session` cookie, or `X-API-Key`. Errors are \
                   JSON `{\"error\": code, \"message\": sentence}`."
))]
struct ApiDoc;

pub const BEARER: &str = "bearer";
pub const COOKIE: &str = "session_cookie";
pub const API_KEY: &str = "api_key";

/// The base document: info and the security schemes.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    components.add_security_scheme(
        COOKIE,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
    );
    components.add_security_scheme(API_KEY, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    doc
}

/// Marks every operation under `paths` as needing one of the three credentials.
pub fn require_auth_on(doc: &mut utoipa::openapi::OpenApi, paths: &[String]) {
    let requirements = [BEARER, COOKIE, API_KEY].map(|name| SecurityRequirement::new(name, Vec::<String>::new()));
    for (path, item) in doc.paths.paths.iter_mut() {
        if !paths.contains(path) {
            continue;
        }
        for op in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            op.security = Some(requirements.to_vec());
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
async fn openapi_json(Extension(doc): Extension<Arc<String>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_string())
}
