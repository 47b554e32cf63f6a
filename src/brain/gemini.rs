//! Google Gemini (generativelanguage v1beta): `generateContent`, `streamGenerateContent?alt=sse`,
//! `countTokens`, `embedContent`. Key in `x-goog-api-key`.
//!
//! Wire rules kept here: each `functionCall` part goes back with its `thoughtSignature` on the same
//! part; function responses follow their call turn, one part per call; no content has empty
//! `parts`; usage in a stream is cumulative, so the last `usageMetadata` wins.

use futures::StreamExt;
use serde_json::{Value, json};

use super::{ChatRequest, Collector, Endpoint, Part, ProviderError, Role, Think, post, sse};

/// Gemini's documented placeholder for a function call whose signature is unknown (history written
/// by another provider). Calls of the current turn always carry the real one.
const NO_SIGNATURE: &str = "skip_thought_signature_validator";

fn url(ep: &Endpoint, model: &str, method: &str) -> String {
    let model = model.trim_start_matches("models/");
    format!("{}/v1beta/models/{model}:{method}", ep.base_url)
}

fn request(http: &reqwest::Client, ep: &Endpoint, url: String) -> reqwest::RequestBuilder {
    let builder = http.post(url);
    match &ep.key {
        Some(key) => builder.header("x-goog-api-key", key.expose()),
        None => builder,
    }
}

/// The `GenerateContentRequest` body.
pub fn body(req: &ChatRequest, model: &str) -> Value {
    let contents: Vec<Value> = req
        .messages
        .iter()
        .filter_map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            let parts: Vec<Value> = m.parts.iter().filter_map(part).collect();
            // No content may have empty `parts`.
            (!parts.is_empty()).then(|| json!({"role": role, "parts": parts}))
        })
        .collect();
    let mut body = json!({
        "contents": contents,
        "generationConfig": {"maxOutputTokens": req.max_tokens},
    });
    if let Some(thinking) = thinking_config(req.think, model) {
        body["generationConfig"]["thinkingConfig"] = thinking;
    }
    if !req.system.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": req.system}]});
    }
    if !req.tools.is_empty() {
        // `parametersJsonSchema` takes full JSON Schema (`additionalProperties`, `$ref`…), which
        // the older OpenAPI-subset `parameters` field refuses.
        let declarations: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": t.schema}))
            .collect();
        body["tools"] = json!([{"functionDeclarations": declarations}]);
    }
    body
}

/// Gemini 3 models take a `thinkingLevel`, 2.5 models a token `thinkingBudget` (Flash may turn
/// thinking off with 0, Pro may not go below 128). `Medium` and other models: the model's default.
fn thinking_config(think: Think, model: &str) -> Option<Value> {
    let model = model.trim_start_matches("models/");
    if think == Think::Medium {
        return None;
    }
    if model.starts_with("gemini-3") {
        let level = match think {
            Think::Off | Think::Minimal if model.contains("flash") => "minimal",
            Think::Off | Think::Minimal | Think::Low => "low",
            _ => "high",
        };
        return Some(json!({"thinkingLevel": level}));
    }
    if model.starts_with("gemini-2.5") {
        let budget = match think {
            Think::Off if model.contains("flash") => 0,
            Think::Off => 128,
            Think::Minimal => 512,
            Think::Low => 1024,
            Think::Medium | Think::High => 8192,
            Think::Xhigh => 24_576,
        };
        return Some(json!({"thinkingBudget": budget}));
    }
    None
}

fn part(p: &Part) -> Option<Value> {
    Some(match p {
        Part::Text { text, signature } => {
            let mut v = json!({"text": text});
            if let Some(sig) = signature {
                v["thoughtSignature"] = json!(sig);
            }
            v
        }
        Part::ToolCall { name, arguments, signature, .. } => {
            let args = if arguments.is_object() { arguments.clone() } else { json!({}) };
            json!({
                "functionCall": {"name": name, "args": args},
                "thoughtSignature": signature.as_deref().unwrap_or(NO_SIGNATURE),
            })
        }
        Part::ToolResult { name, output, is_error, .. } => {
            // `response` must be an object.
            let response = if *is_error { json!({"error": output}) } else { json!({"output": output}) };
            json!({"functionResponse": {"name": name, "response": response}})
        }
        // Another provider's reasoning; Gemini keeps its own in thoughtSignature.
        Part::Thinking { .. } => return None,
    })
}

/// Streams one answer (`streamGenerateContent?alt=sse`).
pub async fn stream(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest,
    model: &str,
    out: &mut Collector<'_>,
) -> Result<(), ProviderError> {
    let url = format!("{}?alt=sse", url(ep, model, "streamGenerateContent"));
    let response = post(request(http, ep, url), &body(req, model)).await?;
    let mut events = sse(response);
    while let Some(event) = events.next().await {
        let event = event?;
        if event.data.trim().is_empty() {
            continue;
        }
        let frame: Value = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::Protocol(format!("Gemini sent a frame that is not JSON: {e}")))?;
        absorb(&frame, out).await?;
    }
    if out.stop_reason.is_none() {
        return Err(ProviderError::Stream { message: "the stream ended before finishReason".into(), retryable: true });
    }
    Ok(())
}

/// One answer without streaming (`generateContent`), for calls no client watches (summaries).
pub async fn generate(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest,
    model: &str,
    out: &mut Collector<'_>,
) -> Result<(), ProviderError> {
    let response = post(request(http, ep, url(ep, model, "generateContent")), &body(req, model)).await?;
    let frame: Value = response.json().await?;
    absorb(&frame, out).await?;
    if out.stop_reason.is_none() {
        out.stop_reason = Some("STOP".into());
    }
    Ok(())
}

/// Takes one `GenerateContentResponse` (a whole answer or one stream frame).
async fn absorb(frame: &Value, out: &mut Collector<'_>) -> Result<(), ProviderError> {
    if let Some(error) = frame.get("error") {
        let code = error["code"].as_u64().unwrap_or(500);
        return Err(ProviderError::Stream {
            message: error["message"].as_str().unwrap_or("error").to_string(),
            retryable: matches!(code, 429 | 500 | 503 | 504),
        });
    }
    if let Some(reason) = frame["promptFeedback"]["blockReason"].as_str() {
        out.stop_reason = Some(format!("blocked: {reason}"));
    }
    let candidate = &frame["candidates"][0];
    if let Some(parts) = candidate["content"]["parts"].as_array() {
        for p in parts {
            let signature = p["thoughtSignature"].as_str().map(str::to_string);
            if p["thought"].as_bool() == Some(true) {
                continue; // A thought summary: not part of the answer.
            }
            if let Some(call) = p.get("functionCall") {
                let name = call["name"].as_str().unwrap_or_default().to_string();
                let id = call["id"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
                let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                out.tool_call(id, name, args, signature);
            } else if let Some(text) = p["text"].as_str() {
                out.text(text, signature).await;
            } else if signature.is_some() {
                out.text("", signature).await;
            }
        }
    }
    if let Some(reason) = candidate["finishReason"].as_str() {
        out.stop_reason = Some(reason.to_string());
    }
    let usage = &frame["usageMetadata"];
    if usage.is_object() {
        out.usage.input_tokens = usage["promptTokenCount"].as_u64().unwrap_or(out.usage.input_tokens);
        let candidates = usage["candidatesTokenCount"].as_u64().unwrap_or(0);
        let thoughts = usage["thoughtsTokenCount"].as_u64().unwrap_or(0);
        if candidates + thoughts > 0 {
            out.usage.output_tokens = candidates + thoughts;
        }
    }
    Ok(())
}

/// `countTokens` of the whole request (system, tools and contents).
pub async fn count_tokens(
    http: &reqwest::Client,
    ep: &Endpoint,
    req: &ChatRequest,
    model: &str,
) -> Result<u64, ProviderError> {
    let mut inner = body(req, model);
    inner["model"] = json!(format!("models/{}", model.trim_start_matches("models/")));
    if let Some(obj) = inner.as_object_mut() {
        obj.remove("generationConfig");
    }
    let response =
        post(request(http, ep, url(ep, model, "countTokens")), &json!({"generateContentRequest": inner})).await?;
    let answer: Value = response.json().await?;
    answer["totalTokens"].as_u64().ok_or_else(|| ProviderError::Protocol("countTokens without totalTokens".into()))
}

/// `embedContent`: one vector for one text.
pub async fn embed(http: &reqwest::Client, ep: &Endpoint, model: &str, text: &str) -> Result<Vec<f32>, ProviderError> {
    let body = json!({"content": {"parts": [{"text": text}]}});
    let response = post(request(http, ep, url(ep, model, "embedContent")), &body).await?;
    let answer: Value = response.json().await?;
    let values = answer["embedding"]["values"]
        .as_array()
        .ok_or_else(|| ProviderError::Protocol("embedContent without embedding.values".into()))?;
    Ok(values.iter().filter_map(Value::as_f64).map(|v| v as f32).collect())
}
