//! MCP both ways: the server on `MCP_PORT` that offers the tool registry to MCP clients
//! (`server`, with bearer tokens from `tokens`), and the client manager that runs external MCP
//! servers and adds their tools to the registry (`client`, `manager`).

pub mod client;
pub mod manager;
pub mod server;
pub mod servers;
pub mod tokens;

use std::net::SocketAddr;

use utoipa_axum::router::OpenApiRouter;

use crate::app::{AppState, StartError};

/// The `/api/mcp/*` routes (tokens, external servers).
pub fn api() -> OpenApiRouter<AppState> {
    tokens::routes().merge(servers::routes())
}

/// Starts the MCP listener and the external servers; returns the MCP listener's address.
pub async fn start(state: &AppState) -> Result<SocketAddr, StartError> {
    let addr = SocketAddr::new(state.config.host, state.config.mcp_port);
    let bound = server::start(state).await.map_err(|source| StartError::McpListen { addr, source })?;
    manager::start(state).await?;
    Ok(bound)
}
