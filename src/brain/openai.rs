//! Any OpenAI-compatible Chat Completions server (OpenAI, Ollama, llama.cpp, vLLM):
//! `POST {OPENAI_BASE_URL}/chat/completions` streamed, and `/embeddings`.
//!
//! Wire rules kept here: usage only arrives with `stream_options.include_usage`, in a last chunk
//! whose `choices` is empty (so the stream is read to `[DONE]`, not to `finish_reason`); tool calls
//! stream as fragments keyed by `index` (`id` and name once, `arguments` in pieces); each
//! `tool_call_id` is answered by a `role: "tool"` message before the next assistant turn.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde_json::{Value, json};

use super::{ChatRequest, Collector, Endpoint, Part, ProviderError, Role, Think, post, sse};

/// `http://host:11434` → `http://host:11434/v1`; a URL with a path is kept as given (the SDK
/// convention: the base includes the version segment).
pub fn normalise_base(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if u.path().is_empty() || u.path() == "/" => format!("{trimmed}/v1"),
        _ => trimmed.to_string(),
    }
}

fn request(http: &reqwest::Client, ep: &Endpoint, path: &str) -> reqwest::RequestBuilder {
    let builder = http.post(format!("{}{path}", ep.base_url));
    match &ep.key {
        Some(key) => builder.bearer_auth(key.expose()),
        None => builder,
    }
}

fn messages(req: &ChatRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if !req.system.is_empty() {
        out.push(json!({"role": "system", "content": req.system}));
    }
    for m in &req.messages {
        let text = m.text();
        match m.role {
            Role::User => {
                for p in &m.parts {
                    if let Part::ToolResult { id, output, .. } = p {
                        let content = match output {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                    }
                }
                if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
            Role::Assistant => {
                let calls: Vec<Value> = m
                    .tool_calls()
                    .map(|(id, name, arguments)| {
                        let arguments = match arguments {
                            Value::String(raw) => raw.clone(),
                            other => other.to_string(),
                        };
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
                    })
                    .collect();
                let mut msg =
                    json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = json!(calls);
                } else if text.is_empty() {
                    continue;
                }
                out.push(msg);
            }
        }
    }
    out
}

pub fn body(req: &ChatRequest, model: &str) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages(req),
        "max_tokens": req.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    // The three values every compatible server that knows the field accepts (vLLM refuses others);
    // `medium` is left out so servers without reasoning models never see the field by default.
    let effort = match req.think {
        Think::Medium => None,
        Think::Off | Think::Minimal | Think::Low => Some("low"),
        Think::High | Think::Xhigh => Some("high"),
    };
    if let Some(effort) = effort {
        body["reasoning_effort"] = json!(effort);
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.schema}})
            })
            .collect();
        body["tools"] = json!(tools);
    }
    body
}

#[derive(Default)]
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

pub async fn stream(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest,
    model: &str,
    out: &mut Collector<'_>,
) -> Result<(), ProviderError> {
    let response = post(request(http, ep, "/chat/completions"), &body(req, model)).await?;
    let mut events = sse(response);
    let mut calls: BTreeMap<u64, PendingCall> = BTreeMap::new();
    let mut done = false;
    while let Some(event) = events.next().await {
        let event = event?;
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| ProviderError::Protocol(format!("the server sent a chunk that is not JSON: {e}")))?;
        if let Some(error) = chunk.get("error") {
            return Err(ProviderError::Stream {
                message: error["message"].as_str().unwrap_or("error").to_string(),
                retryable: true,
            });
        }
        if let Some(choice) = chunk["choices"].get(0) {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str() {
                out.text(text, None).await;
            }
            for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = fragment["index"].as_u64().unwrap_or(0);
                let call = calls.entry(index).or_default();
                if let Some(id) = fragment["id"].as_str() {
                    call.id = id.to_string();
                }
                if let Some(name) = fragment["function"]["name"].as_str() {
                    call.name.push_str(name);
                }
                if let Some(args) = fragment["function"]["arguments"].as_str() {
                    call.arguments.push_str(args);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                out.stop_reason = Some(reason.to_string());
            }
        }
        let usage = &chunk["usage"];
        if usage.is_object() {
            out.usage.input_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0);
            out.usage.output_tokens = usage["completion_tokens"].as_u64().unwrap_or(0);
        }
    }
    if !done && out.stop_reason.is_none() {
        return Err(ProviderError::Stream { message: "the stream ended before [DONE]".into(), retryable: true });
    }
    for (index, call) in calls {
        let id = if call.id.is_empty() { format!("call_{index}") } else { call.id };
        let arguments = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.arguments).unwrap_or(Value::String(call.arguments))
        };
        out.tool_call(id, call.name, arguments, None);
    }
    Ok(())
}

/// `/embeddings`: one vector for one text.
pub async fn embed(http: &reqwest::Client, ep: &Endpoint, model: &str, text: &str) -> Result<Vec<f32>, ProviderError> {
    let response = post(request(http, ep, "/embeddings"), &json!({"model": model, "input": text})).await?;
    let answer: Value = response.json().await?;
    let values = answer["data"][0]["embedding"]
        .as_array()
        .ok_or_else(|| ProviderError::Protocol("embeddings answer without data[0].embedding".into()))?;
    Ok(values.iter().filter_map(Value::as_f64).map(|v| v as f32).collect())
}
