//! The MCP server on `NEXUS_HOST:MCP_PORT`: streamable HTTP at `/mcp` (rmcp), serving the same
//! tool registry the agent uses. Every HTTP request must carry `Authorization: Bearer` with
//! LIV_API_KEY or a live MCP token; anything else gets 401 before rmcp sees it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::Value;
use tokio::net::TcpListener;

use super::tokens::{self, McpIdentity};
use crate::api::ApiError;
use crate::app::AppState;
use crate::tools::{Caller, Risk, Tool};

/// The rmcp handler: one per session (or per request for stateless protocol versions); it only
/// holds the shared state.
#[derive(Clone)]
pub struct NexusMcp {
    state: AppState,
}

/// Whether this caller may run a tool of this risk. Admin tools need an explicit grant; so do
/// Write tools: an MCP client is a program acting for someone, so only reads are free.
pub fn allowed(identity: &McpIdentity, risk: Risk) -> bool {
    risk == Risk::Read || identity.allow_risky
}

fn identity(context: &RequestContext<RoleServer>) -> Option<McpIdentity> {
    context.extensions.get::<http::request::Parts>().and_then(|parts| parts.extensions.get::<McpIdentity>()).cloned()
}

fn describe(tool: &Tool) -> rmcp::model::Tool {
    let schema = match &tool.schema {
        Value::Object(map) => map.clone(),
        // Registry schemas are objects; a non-object would confuse clients, so offer "any object".
        _ => serde_json::Map::from_iter([("type".to_string(), Value::String("object".into()))]),
    };
    let annotations = ToolAnnotations::new().read_only(tool.risk == Risk::Read).destructive(tool.risk == Risk::Admin);
    rmcp::model::Tool::new(tool.name.clone(), tool.description.clone(), Arc::new(schema)).annotate(annotations)
}

fn result_of(value: Value) -> CallToolResult {
    let text = match &value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    // Structured content must be an object; other values travel as text only.
    if value.is_object() {
        result.structured_content = Some(value);
    }
    result
}

impl ServerHandler for NexusMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("nexus", env!("CARGO_PKG_VERSION")))
            .with_instructions("Tools of a Nexus home server: system facts, containers, memory, schedules and more.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let who = identity(&context).ok_or_else(|| McpError::invalid_request("not authenticated", None))?;
        // Only what this caller may run: offering a tool that will be refused wastes a model's turn.
        let tools = self.state.tools.list().iter().filter(|t| allowed(&who, t.risk)).map(|t| describe(t)).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let who = identity(&context).ok_or_else(|| McpError::invalid_request("not authenticated", None))?;
        let name = request.name.to_string();
        let Some(tool) = self.state.tools.get(&name) else {
            count(&name, "unknown");
            return Err(McpError::invalid_params(format!("unknown tool '{name}'"), None));
        };
        if !allowed(&who, tool.risk) {
            count(&name, "refused");
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "{name} has risk {:?}; this MCP token may only run read-only tools \
                 (create a token with allow_risky to permit it)",
                tool.risk
            ))])
            .into());
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        let result = tool.call(args, Caller::Mcp { token: who.label.clone() }).await;
        count(&name, if result.is_ok() { "ok" } else { "error" });
        Ok(match result {
            Ok(value) => result_of(value),
            // Tool errors go back as results so the caller (often a model) can read and correct them.
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        }
        .into())
    }
}

fn count(tool: &str, outcome: &'static str) {
    metrics::counter!("nexus_mcp_server_calls_total", "tool" => tool.to_string(), "outcome" => outcome).increment(1);
}

/// Hosts the `Host` header may name. Loopback and NEXUS_HOST; when bound to every interface the
/// daemon is meant to be reached by whatever name points at it, so the check is off (the bearer
/// token still guards every request; DNS rebinding cannot forge it).
fn allowed_hosts(state: &AppState) -> Option<Vec<String>> {
    let host = state.config.host;
    if host.is_unspecified() {
        return None;
    }
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let own = host.to_string();
    if !hosts.contains(&own) {
        hosts.push(own);
    }
    Some(hosts)
}

/// The axum app of the MCP listener.
pub fn router(state: AppState) -> Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(state.shutdown.child_token())
        .with_max_request_body_bytes(state.config.max_body_bytes);
    config = match allowed_hosts(&state) {
        Some(hosts) => config.with_allowed_hosts(hosts),
        None => config.disable_allowed_hosts(),
    };
    let handler = NexusMcp { state: state.clone() };
    let service =
        StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(LocalSessionManager::default()), config);
    Router::new()
        .nest_service("/mcp", service)
        .fallback(|| async { ApiError::not_found("The MCP endpoint is /mcp.") })
        .layer(middleware::from_fn_with_state(state, require_bearer))
}

/// 401 unless the request carries a valid bearer; the identity rides along in the extensions.
async fn require_bearer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let identity = match bearer {
        Some(bearer) => match tokens::authenticate(&state, &bearer).await {
            Ok(identity) => identity,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    let Some(identity) = identity else {
        metrics::counter!("nexus_mcp_server_unauthorized_total").increment(1);
        let mut response =
            ApiError::unauthorized("unauthorized", "Send Authorization: Bearer <LIV_API_KEY or an MCP token>.")
                .into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"nexus-mcp\""));
        return response;
    };
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// Binds `NEXUS_HOST:MCP_PORT` and serves until shutdown; returns the bound address.
pub async fn start(state: &AppState) -> Result<SocketAddr, std::io::Error> {
    let addr = SocketAddr::new(state.config.host, state.config.mcp_port);
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(state.clone());
    let stop = state.shutdown.clone();
    state.tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "MCP listener failed");
        }
    });
    tracing::info!(mcp = %bound, "MCP server listening at /mcp");
    Ok(bound)
}
