//! `/healthz` (the process serves), `/readyz` (database and bus answer), `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let timeout = std::time::Duration::from_secs(2);
    let database = match tokio::time::timeout(timeout, state.store.ping()).await {
        Ok(Ok(())) => json!({ "ok": true, "backend": state.store.backend().name() }),
        Ok(Err(e)) => json!({ "ok": false, "backend": state.store.backend().name(), "error": e.to_string() }),
        Err(_) => json!({ "ok": false, "backend": state.store.backend().name(), "error": "no answer within 2 s" }),
    };
    let bus = match tokio::time::timeout(timeout, state.bus.ping()).await {
        Ok(Ok(())) => json!({ "ok": true, "backend": state.bus.kind() }),
        Ok(Err(e)) => json!({ "ok": false, "backend": state.bus.kind(), "error": e.to_string() }),
        Err(_) => json!({ "ok": false, "backend": state.bus.kind(), "error": "no answer within 2 s" }),
    };
    let ready = database["ok"] == true && bus["ok"] == true;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({ "ready": ready, "database": database, "bus": bus })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    for queue in state.known_queues() {
        if let Ok(depth) = state.bus.depth(&queue).await {
            crate::api::metrics::set_queue_depth(&queue, depth);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::api::metrics::render())
}
