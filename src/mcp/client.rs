//! One connection to an external MCP server (rmcp client): stdio (a child process) or streamable
//! HTTP. Its tools become registry tools named `<server>__<tool>` whose handlers call through this
//! connection with a timeout, so a hung server costs a caller at most that long.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::tools::{Risk, Tool, ToolError};

/// Separator between the server name and its tool's name in the registry.
pub const SEPARATOR: &str = "__";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String> },
    Http { url: String, headers: BTreeMap<String, String> },
}

/// Everything needed to reach one server (secrets included: never log this whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub transport: Transport,
    /// Limit of one tool call.
    pub timeout: Duration,
}

/// Starting a server may take longer than one call (interpreters, package downloads by npx/uvx).
const CONNECT_TIMEOUT_MIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot start {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("bad header {0}")]
    Header(String),
    #[error("MCP handshake failed: {0}")]
    Handshake(String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("{0}")]
    Service(#[from] rmcp::ServiceError),
}

/// A live connection and the tools it offered.
pub struct Connection {
    service: Arc<RunningService<RoleClient, ()>>,
    pub tools: Vec<rmcp::model::Tool>,
}

impl Connection {
    pub fn is_closed(&self) -> bool {
        self.service.peer().is_transport_closed()
    }

    /// A cheap liveness probe: the tool list, within `timeout`. Refreshes `tools`.
    pub async fn probe(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let tools = tokio::time::timeout(timeout, self.service.peer().list_all_tools())
            .await
            .map_err(|_| ClientError::Timeout(timeout.as_secs()))??;
        self.tools = tools;
        Ok(())
    }

    /// Closes the session (ending a stdio child). Registry tools may still hold the service
    /// for an in-flight call; cancelling through its token ends the session for them too.
    pub async fn close(self) {
        self.service.cancellation_token().cancel();
        if let Ok(service) = Arc::try_unwrap(self.service) {
            let _ = tokio::time::timeout(Duration::from_secs(3), service.waiting()).await;
        }
    }

    /// Registry tools for this connection, named `<server>__<tool>`.
    pub fn registry_tools(&self, spec: &Spec) -> Vec<Tool> {
        self.tools.iter().filter_map(|t| to_registry_tool(spec, t, self.service.clone())).collect()
    }
}

/// Connects and completes the MCP handshake (within the call timeout, at least 30 s).
pub async fn connect(spec: &Spec) -> Result<Connection, ClientError> {
    let limit = spec.timeout.max(CONNECT_TIMEOUT_MIN);
    let secs = limit.as_secs();
    let service = match &spec.transport {
        Transport::Stdio { command, args, env } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).envs(env).kill_on_drop(true);
            let (child, stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| ClientError::Spawn { command: command.clone(), source })?;
            if let Some(stderr) = stderr {
                let name = spec.name.clone();
                // A server's stderr is its log; keep it, quietly, under our own.
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(server = %name, "{}", line.chars().take(500).collect::<String>());
                    }
                });
            }
            tokio::time::timeout(limit, ().serve(child))
                .await
                .map_err(|_| ClientError::Timeout(secs))?
                .map_err(|e| ClientError::Handshake(e.to_string()))?
        }
        Transport::Http { url, headers } => {
            let mut map = HashMap::new();
            for (k, v) in headers {
                let name = http::HeaderName::try_from(k.as_str()).map_err(|_| ClientError::Header(k.clone()))?;
                let value = http::HeaderValue::try_from(v.as_str()).map_err(|_| ClientError::Header(k.clone()))?;
                map.insert(name, value);
            }
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(map);
            let transport = StreamableHttpClientTransport::from_config(config);
            tokio::time::timeout(limit, ().serve(transport))
                .await
                .map_err(|_| ClientError::Timeout(secs))?
                .map_err(|e| ClientError::Handshake(e.to_string()))?
        }
    };
    let mut connection = Connection { service: Arc::new(service), tools: Vec::new() };
    connection.probe(limit).await?;
    Ok(connection)
}

fn to_registry_tool(
    spec: &Spec,
    tool: &rmcp::model::Tool,
    service: Arc<RunningService<RoleClient, ()>>,
) -> Option<Tool> {
    let remote_name = tool.name.to_string();
    let name = format!("{}{SEPARATOR}{remote_name}", spec.name);
    let description = tool.description.as_deref().unwrap_or("").to_string();
    let schema = Value::Object((*tool.input_schema).clone());
    // What a server declares read-only we treat as Read; everything else could change the world.
    let risk = match &tool.annotations {
        Some(a) if a.read_only_hint == Some(true) => Risk::Read,
        _ => Risk::Admin,
    };
    let server = spec.name.clone();
    let timeout = spec.timeout;
    let handler = move |args: Value, _caller| {
        let service = service.clone();
        let remote_name = remote_name.clone();
        let server = server.clone();
        async move {
            let mut params = CallToolRequestParams::new(remote_name);
            params.arguments = match args {
                Value::Object(map) => Some(map),
                _ => None,
            };
            let outcome = service.peer().call_tool(params).await;
            let label = if matches!(&outcome, Ok(r) if r.is_error != Some(true)) { "ok" } else { "error" };
            metrics::counter!("nexus_mcp_client_calls_total", "server" => server.clone(), "outcome" => label)
                .increment(1);
            let result = outcome.map_err(|e| ToolError::Failed(format!("MCP server {server}: {e}")))?;
            into_value(result)
        }
    };
    match Tool::new(&name, &description, schema, risk, handler) {
        Ok(tool) => Some(tool.with_timeout(timeout)),
        Err(e) => {
            tracing::warn!(server = %spec.name, tool = %name, error = %e, "external tool skipped: bad schema");
            None
        }
    }
}

/// A tool result as the registry's JSON: structured content when given, else the text.
fn into_value(result: CallToolResult) -> Result<Value, ToolError> {
    let text: Vec<String> = result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    if result.is_error == Some(true) {
        return Err(ToolError::Failed(text.join("\n")));
    }
    Ok(match result.structured_content {
        Some(value) => value,
        None if text.len() == 1 => json!({"text": text[0]}),
        None => json!({"text": text.join("\n"), "parts": result.content.len()}),
    })
}
