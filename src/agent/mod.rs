//! The agent loop: one turn of a conversation — history, provider call, tool rounds, reply.
//!
//! CONTRACT between the brain issue (which implements this module) and the channels / chat / MCP
//! code (which call it). Keep these names and shapes; add freely around them.

pub mod api;
mod history;
pub mod record;
mod turn;

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::tools::{Caller, Risk};

/// One user message to answer.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    /// Stable key of the conversation: `telegram:<chat id>`, `discord:<channel id>`,
    /// `whatsapp:<jid>`, or a dashboard conversation id. The same key continues the same history.
    pub conversation_key: String,
    pub text: String,
    /// `flash`, `haiku`, `sonnet` or `opus`; `None` = the configured default.
    pub tier: Option<String>,
    pub think: crate::brain::Think,
    pub caller: Caller,
    /// Tools above this risk are not run; the turn ends with `pending_confirmation` instead.
    pub max_risk: Risk,
    /// Tool names the user confirmed for this turn (after a `!yes`).
    pub approved_tools: Vec<String>,
}

/// Progress while a turn runs (streamed to the dashboard, summarised on channels).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    Token { text: String },
    ToolCall { id: String, name: String, arguments: Value },
    ToolResult { id: String, name: String, ok: bool, output: Value },
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingTool {
    pub name: String,
    pub arguments: Value,
    pub risk: Risk,
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnReply {
    pub conversation_id: String,
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub provider: String,
    pub model: String,
    pub pending_confirmation: Option<PendingTool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No provider is configured or every provider failed: the message is one sentence for the user.
    #[error("{0}")]
    Unavailable(String),
    #[error("the turn was cancelled")]
    Cancelled,
    #[error("the turn took longer than {0} s")]
    TimedOut(u64),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Runs one turn to completion. `events` (optional) receives progress as it happens; `cancel`
/// stops the turn (client gone, shutdown) without writing a half reply.
pub async fn run_turn(
    state: &AppState,
    request: TurnRequest,
    events: Option<tokio::sync::mpsc::Sender<AgentEvent>>,
    cancel: CancellationToken,
) -> Result<TurnReply, AgentError> {
    let settings = crate::brain::BrainSettings::load(&state.store).await;
    let limit = settings.turn_timeout();
    let started = std::time::Instant::now();
    let work = turn::run(state, &settings, &request, events.as_ref(), &cancel);
    // Cancellation and the time bound drop the turn's future: everything it would write is
    // written in one transaction at its very end, so nothing half-done remains.
    let result = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(AgentError::Cancelled),
        outcome = tokio::time::timeout(limit, work) => outcome.unwrap_or(Err(AgentError::TimedOut(limit.as_secs()))),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(AgentError::Cancelled) => "cancelled",
        Err(AgentError::TimedOut(_)) => "timeout",
        Err(_) => "error",
    };
    metrics::counter!("nexus_agent_turns_total", "outcome" => outcome).increment(1);
    metrics::histogram!("nexus_agent_turn_duration_seconds").record(started.elapsed().as_secs_f64());
    result
}
