//! The brain: the language-model providers behind one neutral message model.
//!
//! Three hand-written clients share one `reqwest::Client`: Google Gemini (`gemini.rs`), Anthropic
//! Messages (`anthropic.rs`) and any OpenAI-compatible Chat Completions server (`openai.rs`). Each
//! converts the neutral [`Message`] / [`ToolSpec`] model to its wire format and parses its SSE
//! stream back into a [`Collector`]. `failover.rs` runs the chain of configured providers with
//! retries, backoff and a circuit breaker.
//!
//! Why hand-written: rig-core, the broadest multi-provider crate, needs Rust 1.97 (this build has
//! 1.95); the three wire formats are small, and owning them keeps every rule of
//! `provider-wire-facts.md` (thoughtSignature echo, tool_result pairing, usage-only chunks, base
//! URLs) visible and tested against loopback doubles.

pub mod anthropic;
mod failover;
pub mod gemini;
pub mod openai;
mod settings;

pub use failover::{BrainError, complete, complete_in, configured_chain, count_tokens, embed};
pub use settings::{BrainSettings, Think, Tier};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::agent::AgentEvent;
use crate::app::AppState;
use crate::config::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Gemini,
    Anthropic,
    Openai,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Gemini => "gemini",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Openai => "openai",
        }
    }
    /// Vault name written by `PUT /api/nexus/config`.
    pub fn vault_key(self) -> &'static str {
        match self {
            ProviderKind::Gemini => "gemini_api_key",
            ProviderKind::Anthropic => "anthropic_api_key",
            ProviderKind::Openai => "openai_api_key",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message. Tool results live in user messages (as Anthropic and Gemini want them);
/// the OpenAI client turns them into `role: "tool"` messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
        /// Gemini's `thoughtSignature`, echoed back unchanged on the same part.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    ToolResult {
        id: String,
        name: String,
        output: Value,
        is_error: bool,
    },
    /// Anthropic extended thinking, kept so it can go back with the tool results it led to (the
    /// API requires that); `redacted` blocks carry encrypted data in `text`. Other providers skip it.
    Thinking {
        text: String,
        signature: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redacted: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Self { role: Role::User, parts: vec![Part::Text { text: text.into(), signature: None }] }
    }
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolCall { id, name, arguments, .. } => Some((id.as_str(), name.as_str(), arguments)),
            _ => None,
        })
    }
    /// A cheap token estimate (about four characters a token) for history bounding.
    pub fn estimate_tokens(&self) -> u64 {
        let chars: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text { text, .. } => text.len(),
                Part::ToolCall { name, arguments, .. } => name.len() + arguments.to_string().len(),
                Part::ToolResult { output, .. } => output.to_string().len(),
                Part::Thinking { text, .. } => text.len(),
            })
            .sum();
        (chars as u64).div_ceil(4) + 4
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub schema: Value,
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub tier: Tier,
    pub max_tokens: u32,
    pub think: Think,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A finished answer of one provider call.
#[derive(Debug, Clone)]
pub struct Completion {
    pub message: Message,
    pub usage: Usage,
    pub provider: ProviderKind,
    pub model: String,
    pub stop_reason: Option<String>,
}

/// What went wrong with one request to one provider.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String, retry_after: Option<Duration> },
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("error in stream: {message}")]
    Stream { message: String, retryable: bool },
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl ProviderError {
    /// Worth another attempt at the same provider (rate limit, overload, server error, network).
    pub fn retryable(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504 | 529),
            ProviderError::Transport(_) => true,
            ProviderError::Stream { retryable, .. } => *retryable,
            ProviderError::Protocol(_) => false,
        }
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<reqwest::Error> for ProviderError {
    fn from(e: reqwest::Error) -> Self {
        // Without the URL: it may carry `?key=` for some proxies; the message is enough.
        ProviderError::Transport(e.without_url().to_string())
    }
}

/// Where and how to reach one provider, resolved at call time (a key set at run time counts).
#[derive(Clone)]
pub struct Endpoint {
    pub kind: ProviderKind,
    pub base_url: String,
    pub key: Option<Secret>,
}

/// Shared client and per-provider circuit breakers; lives in `AppState`.
#[derive(Clone)]
pub struct Brain {
    pub(crate) http: reqwest::Client,
    breakers: Arc<Mutex<HashMap<ProviderKind, Breaker>>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Default for Brain {
    fn default() -> Self {
        Self::new()
    }
}

impl Brain {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read, not per request: a long streamed answer is fine, a silent peer is not.
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("nexus/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { http, breakers: Arc::default() }
    }

    fn breaker_open(&self, kind: ProviderKind) -> bool {
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        breakers.get(&kind).and_then(|b| b.open_until).is_some_and(|until| Instant::now() < until)
    }

    fn record_success(&self, kind: ProviderKind) {
        self.breakers.lock().unwrap_or_else(|p| p.into_inner()).insert(kind, Breaker::default());
    }

    /// Opens the breaker after `threshold` consecutive failed requests, for `cooldown`. After the
    /// cooldown one call is let through again (half-open); its failure re-opens at once.
    fn record_failure(&self, kind: ProviderKind, threshold: u32, cooldown: Duration) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = breakers.entry(kind).or_default();
        b.failures += 1;
        if b.failures >= threshold.max(1) {
            b.open_until = Some(Instant::now() + cooldown);
            metrics::counter!("nexus_brain_breaker_open_total", "provider" => kind.name()).increment(1);
            tracing::warn!(provider = kind.name(), "circuit breaker open for {} s", cooldown.as_secs());
        }
    }
}

/// Looks up a provider key: configuration first, then the vault (set at run time).
async fn key_for(state: &AppState, kind: ProviderKind) -> Option<Secret> {
    let configured = match kind {
        ProviderKind::Gemini => state.config.gemini_api_key.clone(),
        ProviderKind::Anthropic => state.config.anthropic_api_key.clone(),
        ProviderKind::Openai => state.config.openai_api_key.clone(),
    };
    if configured.is_some() {
        return configured;
    }
    match state.vault.get_cached(kind.vault_key()).await {
        Ok(found) => found.filter(|s| !s.expose().is_empty()),
        Err(e) => {
            tracing::warn!(provider = kind.name(), error = %e, "cannot read provider key from the vault");
            None
        }
    }
}

/// The provider endpoint if it is configured: Gemini and Anthropic need a key; the
/// OpenAI-compatible one needs `OPENAI_BASE_URL` (a local server needs no key) or a key.
pub async fn endpoint(state: &AppState, kind: ProviderKind) -> Option<Endpoint> {
    let key = key_for(state, kind).await;
    let base_url = match kind {
        ProviderKind::Gemini => state.config.gemini_base_url.clone(),
        ProviderKind::Anthropic => state.config.anthropic_base_url.clone(),
        ProviderKind::Openai => match (&state.config.openai_base_url, &key) {
            (Some(url), _) => openai::normalise_base(url),
            (None, Some(_)) => "https://api.openai.com/v1".to_string(),
            (None, None) => return None,
        },
    };
    if kind != ProviderKind::Openai && key.is_none() {
        return None;
    }
    Some(Endpoint { kind, base_url, key })
}

/// Receives one provider response as it streams: forwards text to the client at once and
/// assembles the assistant message.
pub struct Collector<'a> {
    sink: Option<&'a mpsc::Sender<AgentEvent>>,
    pub parts: Vec<Part>,
    pub usage: Usage,
    pub stop_reason: Option<String>,
    /// True once any token reached the client: from then on the call must not be retried.
    pub emitted: bool,
}

impl<'a> Collector<'a> {
    pub fn new(sink: Option<&'a mpsc::Sender<AgentEvent>>) -> Self {
        Self { sink, parts: Vec::new(), usage: Usage::default(), stop_reason: None, emitted: false }
    }

    /// True when a client waits for tokens (else a non-streaming call does as well).
    pub fn streams(&self) -> bool {
        self.sink.is_some()
    }

    pub async fn text(&mut self, text: &str, signature: Option<String>) {
        if !text.is_empty() {
            match self.parts.last_mut() {
                Some(Part::Text { text: t, signature: None }) => t.push_str(text),
                _ => self.parts.push(Part::Text { text: text.to_string(), signature: None }),
            }
            if let Some(sink) = self.sink {
                self.emitted = true;
                // A closed receiver means the client left; the cancel token stops the turn.
                let _ = sink.send(AgentEvent::Token { text: text.to_string() }).await;
            }
        }
        if let Some(sig) = signature {
            match self.parts.last_mut() {
                Some(Part::Text { signature: s @ None, .. }) => *s = Some(sig),
                _ => self.parts.push(Part::Text { text: String::new(), signature: Some(sig) }),
            }
        }
    }

    pub fn thinking(&mut self, text: String, signature: String, redacted: bool) {
        self.parts.push(Part::Thinking { text, signature, redacted });
    }

    pub fn tool_call(&mut self, id: String, name: String, arguments: Value, signature: Option<String>) {
        self.parts.push(Part::ToolCall { id, name, arguments, signature });
    }

    fn finish(self, provider: ProviderKind, model: String) -> Completion {
        // Empty text parts without a signature carry nothing and Gemini refuses empty parts.
        let parts: Vec<Part> = self
            .parts
            .into_iter()
            .filter(|p| !matches!(p, Part::Text { text, signature: None } if text.is_empty()))
            .collect();
        Completion {
            message: Message { role: Role::Assistant, parts },
            usage: self.usage,
            provider,
            model,
            stop_reason: self.stop_reason,
        }
    }
}

/// Parses an error answer of any of the three APIs into one sentence and a retry delay.
pub(crate) async fn error_from_response(response: reqwest::Response) -> ProviderError {
    let status = response.status().as_u16();
    let header_delay = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let body = response.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let error = &json["error"];
    let message = error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(200).collect());
    // Gemini puts the delay in a google.rpc.RetryInfo detail: `"retryDelay": "1.5s"`.
    let body_delay = error["details"].as_array().and_then(|details| {
        details.iter().find_map(|d| {
            d["retryDelay"]
                .as_str()
                .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
                .map(Duration::from_secs_f64)
        })
    });
    ProviderError::Http { status, message, retry_after: header_delay.or(body_delay) }
}

/// Sends a JSON POST and returns the response if it is a success, else the parsed error.
pub(crate) async fn post(request: reqwest::RequestBuilder, body: &Value) -> Result<reqwest::Response, ProviderError> {
    let response = request.json(body).send().await?;
    if response.status().is_success() { Ok(response) } else { Err(error_from_response(response).await) }
}

/// The SSE events of a streamed response, as `(event name, data)`.
pub(crate) fn sse(
    response: reqwest::Response,
) -> impl futures::Stream<Item = Result<eventsource_stream::Event, ProviderError>> + Unpin {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    response.bytes_stream().eventsource().map(|r| r.map_err(|e| ProviderError::Transport(e.to_string())))
}
