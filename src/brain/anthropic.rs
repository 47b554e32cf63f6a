//! Anthropic Messages API: `POST /v1/messages` (streamed) and `/v1/messages/count_tokens`.
//!
//! Wire rules kept here: `x-api-key` + `anthropic-version: 2023-06-01`; the system prompt is the
//! top-level `system` field; every `tool_use` is answered by a `tool_result` in the very next user
//! message (consecutive messages of one role are merged so that holds); `input_json_delta` pieces
//! are joined into the tool input; `ping` is ignored; an `error` event mid-stream fails the call.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde_json::{Value, json};

use super::{ChatRequest, Collector, Endpoint, Part, ProviderError, Role, Think, post, sse};

pub const VERSION: &str = "2023-06-01";

fn request(http: &reqwest::Client, ep: &Endpoint, path: &str) -> reqwest::RequestBuilder {
    let builder = http.post(format!("{}{path}", ep.base_url)).header("anthropic-version", VERSION);
    match &ep.key {
        Some(key) => builder.header("x-api-key", key.expose()),
        None => builder,
    }
}

/// Extended thinking budget for a level; `None` leaves thinking off (the API's default, and ours
/// for `medium`: Claude answers without it unless the user asks for more).
fn thinking_budget(think: Think) -> Option<u32> {
    match think {
        Think::Off | Think::Medium => None,
        // 1024 is the smallest budget the API accepts.
        Think::Minimal | Think::Low => Some(1024),
        Think::High => Some(8192),
        Think::Xhigh => Some(32_000),
    }
}

fn block(p: &Part, thinking: bool) -> Option<Value> {
    match p {
        // Sent back only while thinking is on (it must then precede the tool_use it led to).
        Part::Thinking { .. } if !thinking => None,
        Part::Thinking { text, redacted: true, .. } => Some(json!({"type": "redacted_thinking", "data": text})),
        Part::Thinking { text, signature, .. } => {
            Some(json!({"type": "thinking", "thinking": text, "signature": signature}))
        }
        Part::Text { text, .. } if text.is_empty() => None,
        Part::Text { text, .. } => Some(json!({"type": "text", "text": text})),
        Part::ToolCall { id, name, arguments, .. } => {
            let input = if arguments.is_object() { arguments.clone() } else { json!({}) };
            Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
        }
        Part::ToolResult { id, output, is_error, .. } => {
            let content = match output {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error}))
        }
    }
}

/// The messages array: one entry per role change, tool results first in their user message.
fn messages(req: &ChatRequest) -> Vec<Value> {
    let thinking = thinking_budget(req.think).is_some();
    let mut out: Vec<(Role, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let mut blocks: Vec<Value> = m.parts.iter().filter_map(|p| block(p, thinking)).collect();
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((role, existing)) if *role == m.role => existing.append(&mut blocks),
            _ => out.push((m.role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, mut blocks)| {
            // Within a user message the tool results must come before any text.
            blocks.sort_by_key(|b| if b["type"] == "tool_result" { 0 } else { 1 });
            let role = if role == Role::User { "user" } else { "assistant" };
            json!({"role": role, "content": blocks})
        })
        .collect()
}

fn tools(req: &ChatRequest) -> Vec<Value> {
    req.tools.iter().map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema})).collect()
}

pub fn body(req: &ChatRequest, model: &str) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens,
        "messages": messages(req),
        "stream": true,
    });
    if let Some(budget) = thinking_budget(req.think) {
        // `max_tokens` covers the thinking too and must exceed its budget.
        body["max_tokens"] = json!(req.max_tokens.saturating_add(budget));
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
    }
    if !req.system.is_empty() {
        body["system"] = json!(req.system);
    }
    if !req.tools.is_empty() {
        body["tools"] = json!(tools(req));
    }
    body
}

enum Block {
    Text,
    Tool { id: String, name: String, json: String },
    Thinking { text: String, signature: String, redacted: bool },
    Other,
}

pub async fn stream(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest,
    model: &str,
    out: &mut Collector<'_>,
) -> Result<(), ProviderError> {
    let response = post(request(http, ep, "/v1/messages"), &body(req, model)).await?;
    let mut events = sse(response);
    let mut blocks: BTreeMap<u64, Block> = BTreeMap::new();
    let mut stopped = false;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.data.trim().is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::Protocol(format!("Anthropic sent an event that is not JSON: {e}")))?;
        let index = data["index"].as_u64().unwrap_or(0);
        match data["type"].as_str().unwrap_or(event.event.as_str()) {
            "message_start" => {
                let usage = &data["message"]["usage"];
                out.usage.input_tokens = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
                    .iter()
                    .filter_map(|k| usage[*k].as_u64())
                    .sum();
                out.usage.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let cb = &data["content_block"];
                let b = match cb["type"].as_str() {
                    Some("text") => {
                        if let Some(text) = cb["text"].as_str() {
                            out.text(text, None).await;
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::Tool {
                        id: cb["id"].as_str().unwrap_or_default().to_string(),
                        name: cb["name"].as_str().unwrap_or_default().to_string(),
                        json: String::new(),
                    },
                    Some("thinking") => Block::Thinking {
                        text: cb["thinking"].as_str().unwrap_or_default().to_string(),
                        signature: cb["signature"].as_str().unwrap_or_default().to_string(),
                        redacted: false,
                    },
                    Some("redacted_thinking") => Block::Thinking {
                        text: cb["data"].as_str().unwrap_or_default().to_string(),
                        signature: String::new(),
                        redacted: true,
                    },
                    _ => Block::Other, // server tools
                };
                blocks.insert(index, b);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match (delta["type"].as_str(), blocks.get_mut(&index)) {
                    (Some("text_delta"), _) => out.text(delta["text"].as_str().unwrap_or_default(), None).await,
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or_default())
                    }
                    (Some("thinking_delta"), Some(Block::Thinking { text, .. })) => {
                        text.push_str(delta["thinking"].as_str().unwrap_or_default())
                    }
                    (Some("signature_delta"), Some(Block::Thinking { signature, .. })) => {
                        signature.push_str(delta["signature"].as_str().unwrap_or_default())
                    }
                    _ => {}
                }
            }
            "content_block_stop" => match blocks.remove(&index) {
                Some(Block::Tool { id, name, json }) => {
                    // The first piece may be "": no pieces at all means an empty input.
                    let arguments = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json).unwrap_or(Value::String(json))
                    };
                    out.tool_call(id, name, arguments, None);
                }
                Some(Block::Thinking { text, signature, redacted }) => out.thinking(text, signature, redacted),
                _ => {}
            },
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    out.stop_reason = Some(reason.to_string());
                }
                if let Some(n) = data["usage"]["output_tokens"].as_u64() {
                    out.usage.output_tokens = n;
                }
                if let Some(n) = data["usage"]["input_tokens"].as_u64().filter(|n| *n > 0) {
                    out.usage.input_tokens = out.usage.input_tokens.max(n);
                }
            }
            "message_stop" => {
                stopped = true;
                break;
            }
            "error" => {
                let kind = data["error"]["type"].as_str().unwrap_or("error");
                return Err(ProviderError::Stream {
                    message: format!("{kind}: {}", data["error"]["message"].as_str().unwrap_or_default()),
                    retryable: matches!(kind, "overloaded_error" | "api_error" | "rate_limit_error"),
                });
            }
            _ => {} // ping and future event types
        }
    }
    if !stopped {
        return Err(ProviderError::Stream { message: "the stream ended before message_stop".into(), retryable: true });
    }
    Ok(())
}

/// `/v1/messages/count_tokens`.
pub async fn count_tokens(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest,
    model: &str,
) -> Result<u64, ProviderError> {
    let mut body = json!({"model": model, "messages": messages(req)});
    if let Some(budget) = thinking_budget(req.think) {
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
    }
    if !req.system.is_empty() {
        body["system"] = json!(req.system);
    }
    if !req.tools.is_empty() {
        body["tools"] = json!(tools(req));
    }
    let response = post(request(http, ep, "/v1/messages/count_tokens"), &body).await?;
    let answer: Value = response.json().await?;
    answer["input_tokens"].as_u64().ok_or_else(|| ProviderError::Protocol("count_tokens without input_tokens".into()))
}
