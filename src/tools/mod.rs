//! The tool registry: every tool is declared once (name, description, JSON schema of its arguments,
//! risk level, timeout, handler) and is then reachable from the agent loop, the MCP server and the
//! REST API. Arguments are validated against the schema before the handler runs, so a bad call
//! from a model comes back as an error it can correct.

pub mod memory;
pub mod system;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much a tool can change. Channels and MCP callers have a policy: the highest level that
/// runs without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Reads facts; changes nothing.
    Read,
    /// Changes the daemon's own data (memory, schedules, subagents).
    Write,
    /// Changes the server or the outside world (containers, commands, messages, e-mail).
    Admin,
}

/// Who is calling, for policy decisions and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Agent { conversation_id: String },
    Mcp { token: String },
    Api { user: String },
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool '{0}'")]
    Unknown(String),
    #[error("invalid arguments for {tool}: {problems}")]
    InvalidArguments { tool: String, problems: String },
    #[error("{tool} did not finish within {secs} s")]
    Timeout { tool: String, secs: u64 },
    #[error("{tool} needs confirmation (risk {risk:?})")]
    NeedsConfirmation { tool: String, risk: Risk },
    #[error("{0}")]
    Failed(String),
}

pub type ToolFuture = BoxFuture<'static, Result<Value, ToolError>>;
pub type Handler = Arc<dyn Fn(Value, Caller) -> ToolFuture + Send + Sync>;

#[derive(Clone)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// JSON Schema (draft 2020-12) of the arguments object.
    pub schema: Value,
    pub risk: Risk,
    pub timeout: Duration,
    handler: Handler,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("name", &self.name).field("risk", &self.risk).finish_non_exhaustive()
    }
}

impl Tool {
    /// Declares a tool. Fails when the schema itself is not a valid JSON Schema.
    pub fn new<F, Fut>(name: &str, description: &str, schema: Value, risk: Risk, handler: F) -> Result<Self, String>
    where
        F: Fn(Value, Caller) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        let validator = jsonschema::validator_for(&schema).map_err(|e| format!("schema of {name}: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            description: description.to_string(),
            schema,
            risk,
            timeout: Duration::from_secs(30),
            handler: Arc::new(move |args, caller| Box::pin(handler(args, caller))),
            validator: Arc::new(validator),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Every schema violation, joined into one sentence a model can act on.
    pub fn validate(&self, args: &Value) -> Result<(), ToolError> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(args)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() { e.to_string() } else { format!("{path}: {e}") }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ToolError::InvalidArguments { tool: self.name.clone(), problems: problems.join("; ") })
        }
    }

    /// Validates, then runs the handler within the tool's timeout.
    pub async fn call(&self, args: Value, caller: Caller) -> Result<Value, ToolError> {
        self.validate(&args)?;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, (self.handler)(args, caller)).await {
            Ok(result) => result,
            Err(_) => Err(ToolError::Timeout { tool: self.name.clone(), secs: self.timeout.as_secs() }),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("nexus_tool_calls_total", "tool" => self.name.clone(), "outcome" => outcome).increment(1);
        metrics::histogram!("nexus_tool_call_duration_seconds", "tool" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The shared set of tools. Cheap to clone; tools may come and go at run time (MCP servers).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Arc<RwLock<BTreeMap<String, Arc<Tool>>>>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a tool by name.
    pub fn register(&self, tool: Tool) {
        self.tools.write().unwrap_or_else(|p| p.into_inner()).insert(tool.name.clone(), Arc::new(tool));
    }

    pub fn unregister(&self, name: &str) -> bool {
        self.tools.write().unwrap_or_else(|p| p.into_inner()).remove(name).is_some()
    }

    /// Removes every tool whose name starts with `prefix` (an external server going away).
    pub fn unregister_prefix(&self, prefix: &str) -> usize {
        let mut tools = self.tools.write().unwrap_or_else(|p| p.into_inner());
        let before = tools.len();
        tools.retain(|name, _| !name.starts_with(prefix));
        before - tools.len()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Tool>> {
        self.tools.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// All tools, sorted by name.
    pub fn list(&self) -> Vec<Arc<Tool>> {
        self.tools.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub async fn call(&self, name: &str, args: Value, caller: Caller) -> Result<Value, ToolError> {
        let tool = self.get(name).ok_or_else(|| ToolError::Unknown(name.to_string()))?;
        tool.call(args, caller).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn echo() -> Tool {
        Tool::new(
            "echo",
            "Echoes its text.",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": false}),
            Risk::Read,
            |args, _| async move { Ok(json!({"echo": args["text"]})) },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn validates_before_running() {
        let registry = ToolRegistry::new();
        registry.register(echo());
        assert_eq!(registry.call("echo", json!({"text": "hi"}), Caller::System).await.unwrap(), json!({"echo": "hi"}));
        let err = registry.call("echo", json!({"text": 5}), Caller::System).await.unwrap_err();
        assert!(matches!(err, ToolError::InvalidArguments { .. }), "{err}");
        let err = registry.call("echo", json!({}), Caller::System).await.unwrap_err();
        assert!(err.to_string().contains("text"), "{err}");
        assert!(matches!(registry.call("nope", json!({}), Caller::System).await, Err(ToolError::Unknown(_))));
    }

    #[tokio::test]
    async fn times_out() {
        let slow = Tool::new("slow", "Sleeps.", json!({"type": "object"}), Risk::Read, |_, _| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Value::Null)
        })
        .unwrap()
        .with_timeout(Duration::from_millis(50));
        assert!(matches!(slow.call(json!({}), Caller::System).await, Err(ToolError::Timeout { .. })));
    }

    #[test]
    fn prefix_removal() {
        let registry = ToolRegistry::new();
        registry.register(echo());
        let mut other = echo();
        other.name = "files__read".into();
        registry.register(other);
        assert_eq!(registry.unregister_prefix("files__"), 1);
        assert_eq!(registry.list().len(), 1);
    }
}
