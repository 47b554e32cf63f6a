//! Loopback stand-ins for Gemini, Anthropic and an OpenAI-compatible server. They speak each
//! API's wire format (SSE framing and event names, JSON shapes, error bodies) and, like the real
//! APIs, REJECT with 400 a request that breaks the pairing rules: Gemini function calls of the
//! current turn without their thoughtSignature, function responses not matching their call turn;
//! Anthropic tool_use without tool_result in the next message; OpenAI tool_call ids left
//! unanswered. The production clients run unchanged against them; only the base URL differs.

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const KEY: &str = "test-key-123";

#[derive(Clone, Debug)]
pub enum Reply {
    /// A streamed text answer (sent in two pieces).
    Text(String),
    /// Tool calls: (name, raw JSON text of the arguments).
    Tools(Vec<(String, String)>),
    /// An error answer with this status and body, optionally `retry-after` seconds.
    Error { status: u16, body: Value, retry_after: Option<u64> },
    /// Sends the first half of this text, then never ends (until the client goes away).
    Stall(String),
    /// Anthropic: sends this text (may be empty), then an `overloaded_error` event mid-stream.
    Overloaded(String),
}

pub struct Double {
    pub base: String,
    script: Mutex<VecDeque<Reply>>,
    /// Every request body received, in order (generation requests only).
    pub requests: Mutex<Vec<Value>>,
    /// 400 answers given for broken requests: a correct client never causes one.
    pub rejected: Mutex<Vec<String>>,
    pub calls: AtomicUsize,
    /// Set when a stalled stream's connection was dropped by the client.
    pub stall_dropped: Arc<AtomicBool>,
    signatures: Mutex<HashSet<String>>,
    /// OpenAI-compatible: how long the next answer waits before its first byte (a slow model).
    delay: Mutex<Option<std::time::Duration>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Double {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Double {
    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }
    fn next(&self) -> Reply {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.script.lock().unwrap().pop_front().unwrap_or_else(|| Reply::Text("ok".into()))
    }
    /// The next answer comes only after `delay` (OpenAI-compatible double).
    pub fn delay_next(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap() = Some(delay);
    }
    pub fn last_request(&self) -> Value {
        self.requests.lock().unwrap().last().cloned().unwrap_or(Value::Null)
    }
    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn reject(&self, message: String) {
        self.rejected.lock().unwrap().push(message);
    }
}

pub enum Kind {
    Gemini,
    Anthropic,
    Openai,
}

pub async fn start(kind: Kind) -> Arc<Double> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    Arc::new_cyclic(|weak: &std::sync::Weak<Double>| {
        let weak = weak.clone();
        let app = match kind {
            Kind::Gemini => Router::new().route("/v1beta/models/{call}", post(gemini)),
            Kind::Anthropic => Router::new()
                .route("/v1/messages", post(anthropic))
                .route("/v1/messages/count_tokens", post(anthropic_count)),
            Kind::Openai => {
                Router::new().route("/v1/chat/completions", post(openai)).route("/v1/embeddings", post(openai_embed))
            }
        };
        let app = app.with_state(weak);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Double {
            base,
            script: Mutex::default(),
            requests: Mutex::default(),
            rejected: Mutex::default(),
            calls: AtomicUsize::new(0),
            stall_dropped: Arc::new(AtomicBool::new(false)),
            signatures: Mutex::default(),
            delay: Mutex::default(),
            server,
        }
    })
}

type Weak = std::sync::Weak<Double>;

/// Sets a flag when the response body is dropped (the client went away).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An SSE body of `frames`; with `stall` it then stays open until the client drops it.
fn sse_body(frames: Vec<String>, stall: Option<Arc<AtomicBool>>) -> Response {
    let flag = stall.map(DropFlag);
    let stream = futures::stream::unfold((frames.into_iter(), flag), |(mut frames, flag)| async move {
        match frames.next() {
            Some(f) => Some((Ok::<_, std::convert::Infallible>(f), (frames, flag))),
            None if flag.is_some() => {
                futures::future::pending::<()>().await;
                None
            }
            None => None,
        }
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
}

fn error_response(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

fn halves(text: &str) -> (String, String) {
    let mid = text.char_indices().nth(text.chars().count() / 2).map(|(i, _)| i).unwrap_or(0);
    (text[..mid].to_string(), text[mid..].to_string())
}

/// Concept vectors: words of one concept get the same dimension, so "feline" is near "kitten".
pub fn embedding(text: &str) -> Vec<f32> {
    let concepts: [&[&str]; 4] = [
        &["cat", "cats", "kitten", "feline", "tom"],
        &["car", "vehicle", "automobile", "garage"],
        &["pizza", "food", "dinner", "pasta"],
        &["backup", "disk", "nas", "storage"],
    ];
    let mut v = vec![0.01f32; concepts.len()];
    for word in text.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
        for (i, c) in concepts.iter().enumerate() {
            if c.contains(&word) {
                v[i] += 1.0;
            }
        }
    }
    v
}

// ---------------------------------------------------------------- Gemini

fn gemini_error(status: u16, message: &str, reason: &str) -> Response {
    let status_name = match status {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    error_response(
        status,
        json!({"error": {"code": status, "message": message, "status": status_name,
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]}}),
        None,
    )
}

fn gemini_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

fn gemini_check(d: &Double, body: &Value) -> Result<(), String> {
    let contents = body["contents"].as_array().ok_or("contents is required")?;
    if contents.is_empty() {
        return Err("contents must not be empty".into());
    }
    for (i, c) in contents.iter().enumerate() {
        let parts = c["parts"].as_array().ok_or(format!("contents[{i}].parts is required"))?;
        if parts.is_empty() {
            return Err(format!("contents[{i}].parts must not be empty"));
        }
        if !matches!(c["role"].as_str(), Some("user" | "model")) {
            return Err(format!("contents[{i}].role must be user or model"));
        }
        let responses = parts.iter().filter(|p| p.get("functionResponse").is_some()).count();
        if responses > 0 {
            let calls = i
                .checked_sub(1)
                .map(|j| &contents[j])
                .filter(|prev| prev["role"] == "model")
                .map(|prev| {
                    prev["parts"].as_array().unwrap().iter().filter(|p| p.get("functionCall").is_some()).count()
                })
                .unwrap_or(0);
            if calls != responses {
                return Err(format!(
                    "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn (contents[{i}])."
                ));
            }
        }
    }
    // The current turn starts at the last user content with text.
    let start = contents.iter().rposition(|c| c["role"] == "user" && c["parts"][0].get("text").is_some()).unwrap_or(0);
    let issued = d.signatures.lock().unwrap();
    for (i, c) in contents.iter().enumerate().skip(start) {
        for p in c["parts"].as_array().unwrap() {
            if p.get("functionCall").is_some() {
                match p["thoughtSignature"].as_str() {
                    Some(sig) if issued.contains(sig) => {}
                    _ => {
                        return Err(format!(
                            "Function call is missing a thought_signature in functionCall parts. contents[{i}]"
                        ));
                    }
                }
            }
        }
    }
    for decl in body["tools"][0]["functionDeclarations"].as_array().into_iter().flatten() {
        let name = decl["name"].as_str().unwrap_or_default();
        if !gemini_name_ok(name) {
            return Err(format!("Invalid function name: {name}"));
        }
    }
    Ok(())
}

async fn gemini(
    State(d): State<Weak>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(d) = d.upgrade() else { return StatusCode::GONE.into_response() };
    match headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        None => return gemini_error(403, "Method doesn't allow unregistered callers.", "API_KEY_SERVICE_BLOCKED"),
        Some(k) if k != KEY => {
            return gemini_error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID");
        }
        _ => {}
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (_model, method) = call.split_once(':').unwrap_or((&call, ""));
    match method {
        "countTokens" => return axum::Json(json!({"totalTokens": 42})).into_response(),
        "embedContent" => {
            let text = body["content"]["parts"][0]["text"].as_str().unwrap_or_default();
            return axum::Json(json!({"embedding": {"values": embedding(text)}})).into_response();
        }
        "streamGenerateContent" | "generateContent" => {}
        _ => return gemini_error(404, "not found", "NOT_FOUND"),
    }
    if let Err(message) = gemini_check(&d, &body) {
        d.reject(message.clone());
        return gemini_error(400, &message, "INVALID_ARGUMENT");
    }
    d.requests.lock().unwrap().push(body);
    let n = d.calls.load(Ordering::SeqCst);
    let reply = d.next();
    let usage = |out: u64| json!({"promptTokenCount": 10, "candidatesTokenCount": out, "totalTokenCount": 10 + out});
    let frames: Vec<Value> = match &reply {
        Reply::Error { status, body, retry_after } => return error_response(*status, body.clone(), *retry_after),
        Reply::Overloaded(_) => return gemini_error(503, "The model is overloaded.", "UNAVAILABLE"),
        Reply::Text(text) | Reply::Stall(text) => {
            let (a, b) = halves(text);
            let sig = format!("sig-text-{n}");
            d.signatures.lock().unwrap().insert(sig.clone());
            let first = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": a}]}, "index": 0}], "usageMetadata": usage(2)});
            if matches!(reply, Reply::Stall(_)) {
                vec![first]
            } else {
                vec![
                    first,
                    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": b, "thoughtSignature": sig}]},
                        "finishReason": "STOP", "index": 0}], "usageMetadata": usage(5)}),
                ]
            }
        }
        Reply::Tools(calls) => {
            let parts: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    let sig = format!("sig-call-{n}-{i}");
                    d.signatures.lock().unwrap().insert(sig.clone());
                    json!({"functionCall": {"name": name, "args": serde_json::from_str::<Value>(args).unwrap()}, "thoughtSignature": sig})
                })
                .collect();
            vec![
                json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage(4)}),
            ]
        }
    };
    if method == "generateContent" {
        // Non-streaming: the frames merged into one response.
        let parts: Vec<Value> = frames
            .iter()
            .flat_map(|f| f["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default())
            .collect();
        let last = frames.last().cloned().unwrap_or(Value::Null);
        return axum::Json(
            json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
            "usageMetadata": last["usageMetadata"]}),
        )
        .into_response();
    }
    let stall = matches!(reply, Reply::Stall(_)).then(|| d.stall_dropped.clone());
    sse_body(frames.into_iter().map(|f| format!("data: {f}\r\n\r\n")).collect(), stall)
}

// ---------------------------------------------------------------- Anthropic

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    error_response(status, json!({"type": "error", "error": {"type": kind, "message": message}}), None)
}

fn anthropic_check(body: &Value) -> Result<(), String> {
    for field in ["model", "max_tokens", "messages"] {
        if body.get(field).is_none() {
            return Err(format!("{field}: Field required"));
        }
    }
    let messages = body["messages"].as_array().ok_or("messages: must be a list")?;
    let ids = |m: &Value, kind: &str, field: &str| -> Vec<String> {
        m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == kind)
            .map(|b| b[field].as_str().unwrap_or_default().to_string())
            .collect()
    };
    for (i, m) in messages.iter().enumerate() {
        match m["role"].as_str() {
            Some("user" | "assistant") => {}
            Some("system") => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'; use the top-level system parameter"
                ));
            }
            _ => return Err(format!("messages.{i}.role: Field required")),
        }
        let uses = ids(m, "tool_use", "id");
        if !uses.is_empty() {
            let answered = messages.get(i + 1).map(|n| ids(n, "tool_result", "tool_use_id")).unwrap_or_default();
            if let Some(missing) = uses.iter().find(|id| !answered.contains(id)) {
                return Err(format!(
                    "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    i + 1
                ));
            }
        }
        for result in ids(m, "tool_result", "tool_use_id") {
            let previous = i.checked_sub(1).map(|j| ids(&messages[j], "tool_use", "id")).unwrap_or_default();
            if !previous.contains(&result) {
                return Err(format!(
                    "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {result}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                ));
            }
        }
    }
    Ok(())
}

/// Extended thinking: the budget is at least 1024 and below `max_tokens`; and the assistant
/// message whose tool calls the request answers must open with the thinking block (signature
/// intact) that came with them.
fn anthropic_thinking_check(d: &Double, body: &Value) -> Result<(), String> {
    if body["thinking"]["type"] != "enabled" {
        return Ok(());
    }
    let budget = body["thinking"]["budget_tokens"].as_u64().ok_or("thinking.enabled.budget_tokens: Field required")?;
    if budget < 1024 {
        return Err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
    }
    if body["max_tokens"].as_u64().unwrap_or(0) <= budget {
        return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let Some((i, last)) = messages.iter().enumerate().rev().find(|(_, m)| m["role"] == "assistant") else {
        return Ok(());
    };
    let content = last["content"].as_array().cloned().unwrap_or_default();
    if !content.iter().any(|b| b["type"] == "tool_use") || i + 1 != messages.len() - 1 {
        return Ok(());
    }
    let opening = content.first().cloned().unwrap_or_default();
    match opening["type"].as_str() {
        Some("thinking") if d.signatures.lock().unwrap().contains(opening["signature"].as_str().unwrap_or("")) => {
            Ok(())
        }
        Some("thinking") => Err(format!("messages.{i}.content.0: Invalid `signature` in `thinking` block")),
        Some("redacted_thinking") => Ok(()),
        other => Err(format!(
            "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks).",
            other.unwrap_or("nothing")
        )),
    }
}

fn anthropic_auth(headers: &HeaderMap) -> Option<Response> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return Some(anthropic_error(401, "authentication_error", "invalid x-api-key"));
    }
    if headers.get("anthropic-version").and_then(|v| v.to_str().ok()) != Some("2023-06-01") {
        return Some(anthropic_error(400, "invalid_request_error", "anthropic-version: header is required"));
    }
    None
}

async fn anthropic_count(headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    if let Some(r) = anthropic_auth(&headers) {
        return r;
    }
    if let Err(m) = anthropic_check(&json!({"max_tokens": 1, "model": body["model"], "messages": body["messages"]})) {
        return anthropic_error(400, "invalid_request_error", &m);
    }
    axum::Json(json!({"input_tokens": 42})).into_response()
}

async fn anthropic(State(d): State<Weak>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let Some(d) = d.upgrade() else { return StatusCode::GONE.into_response() };
    if let Some(r) = anthropic_auth(&headers) {
        return r;
    }
    if let Err(m) = anthropic_check(&body).and_then(|_| anthropic_thinking_check(&d, &body)) {
        d.reject(m.clone());
        return anthropic_error(400, "invalid_request_error", &m);
    }
    let thinking = body["thinking"]["type"] == "enabled";
    d.requests.lock().unwrap().push(body);
    let n = d.calls.load(Ordering::SeqCst);
    let reply = d.next();
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    // With extended thinking on, every answer opens with a thinking block (index 0).
    let first = usize::from(thinking);
    let mut frames = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": format!("msg_{n}"), "type": "message", "role": "assistant",
            "content": [], "model": "claude", "stop_reason": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    if thinking {
        let signature = format!("sig-claude-{n}");
        d.signatures.lock().unwrap().insert(signature.clone());
        frames.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ));
        for piece in ["Let me ", "think."] {
            frames.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}}),
            ));
        }
        frames.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": signature}}),
        ));
        frames.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    }
    let stop_reason = match &reply {
        Reply::Error { status, body, retry_after } => return error_response(*status, body.clone(), *retry_after),
        Reply::Text(text) | Reply::Stall(text) => {
            let (a, b) = halves(text);
            frames.push(ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": first, "content_block": {"type": "text", "text": ""}}),
            ));
            frames.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": first, "delta": {"type": "text_delta", "text": a}}),
            ));
            if matches!(reply, Reply::Stall(_)) {
                return sse_body(frames, Some(d.stall_dropped.clone()));
            }
            frames.push(ev("ping", json!({"type": "ping"})));
            frames.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": first, "delta": {"type": "text_delta", "text": b}}),
            ));
            frames.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": first})));
            "end_turn"
        }
        Reply::Tools(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                let i = i + first;
                let (a, b) = halves(args);
                frames.push(ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": format!("toolu_{n}_{i}"), "name": name, "input": {}}}),
                ));
                for piece in ["", &a, &b] {
                    frames.push(ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    ));
                }
                frames.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": i})));
            }
            "tool_use"
        }
        Reply::Overloaded(text) => {
            if !text.is_empty() {
                frames.push(ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ));
                frames.push(ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            frames.push(ev(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ));
            return sse_body(frames, None);
        }
    };
    frames.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": 7}}),
    ));
    frames.push(ev("message_stop", json!({"type": "message_stop"})));
    sse_body(frames, None)
}

// ---------------------------------------------------------------- OpenAI-compatible

fn openai_error(status: u16, message: &str) -> Response {
    error_response(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": "messages", "code": null}}),
        None,
    )
}

fn openai_check(body: &Value) -> Result<(), String> {
    let messages = body["messages"].as_array().ok_or("'messages' is a required property")?;
    let mut open: Vec<String> = Vec::new();
    for m in messages {
        match m["role"].as_str() {
            Some("tool") => {
                let id = m["tool_call_id"].as_str().unwrap_or_default().to_string();
                if !open.contains(&id) {
                    return Err(format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. ({id})"
                    ));
                }
                open.retain(|o| o != &id);
            }
            Some(_) => {
                if !open.is_empty() {
                    return Err(format!(
                        "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                        open.join(", ")
                    ));
                }
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    open.push(c["id"].as_str().unwrap_or_default().to_string());
                }
            }
            None => return Err("messages[].role is required".into()),
        }
    }
    Ok(())
}

async fn openai(State(d): State<Weak>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let Some(d) = d.upgrade() else { return StatusCode::GONE.into_response() };
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok())
        && auth != format!("Bearer {KEY}")
    {
        return error_response(
            401,
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            None,
        );
    }
    if let Err(m) = openai_check(&body) {
        d.reject(m.clone());
        return openai_error(400, &m);
    }
    let include_usage = body["stream_options"]["include_usage"] == true;
    d.requests.lock().unwrap().push(body);
    let delay = d.delay.lock().unwrap().take();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let n = d.calls.load(Ordering::SeqCst);
    let reply = d.next();
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": format!("chatcmpl-{n}"), "object": "chat.completion.chunk", "created": 1, "model": "local",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    let finish = match &reply {
        Reply::Error { status, body, retry_after } => return error_response(*status, body.clone(), *retry_after),
        Reply::Overloaded(_) => return openai_error(503, "overloaded"),
        Reply::Text(text) | Reply::Stall(text) => {
            let (a, b) = halves(text);
            frames.push(chunk(json!({"content": a}), Value::Null));
            if matches!(reply, Reply::Stall(_)) {
                return sse_body(frames, Some(d.stall_dropped.clone()));
            }
            frames.push(chunk(json!({"content": b}), Value::Null));
            "stop"
        }
        Reply::Tools(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                let (a, b) = halves(args);
                frames.push(chunk(
                    json!({"tool_calls": [{"index": i, "id": format!("call_{n}_{i}"), "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for piece in [a, b] {
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
            }
            "tool_calls"
        }
    };
    frames.push(chunk(json!({}), json!(finish)));
    if include_usage {
        frames.push(format!(
            "data: {}\n\n",
            json!({"id": format!("chatcmpl-{n}"), "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26}})
        ));
    }
    frames.push("data: [DONE]\n\n".to_string());
    sse_body(frames, None)
}

async fn openai_embed(axum::Json(body): axum::Json<Value>) -> Response {
    let text = body["input"].as_str().unwrap_or_default();
    axum::Json(json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": embedding(text)}], "model": body["model"]}))
        .into_response()
}
