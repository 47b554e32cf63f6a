//! One turn: history, model call, tool rounds (parallel when the model asks for several), reply,
//! and the single write at the end.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::record::{self, NewMessage, ToolCallRecord, TurnRecord};
use super::{AgentError, AgentEvent, PendingTool, TurnReply, TurnRequest, history};
use crate::app::AppState;
use crate::brain::{self, BrainError, BrainSettings, ChatRequest, Message, Part, Role, Tier, ToolSpec, Usage};
use crate::tools::Caller;

const SYSTEM_PROMPT: &str = "You are Nexus, the AI brain of a self-hosted home server, talking with its owner. \
Use the tools you are given to look at and manage the server instead of guessing: for questions about the \
server's health (CPU, memory, disks, temperatures, uptime, load) call system_info; remember durable facts \
with memory_add and look them up with memory_search. If a tool returns an error, read it and correct the \
call. Answer concisely, in the user's language.";

/// Largest tool output (JSON text) handed back to the model; bigger ones are cut.
const MAX_TOOL_OUTPUT: usize = 64 * 1024;

impl From<BrainError> for AgentError {
    fn from(e: BrainError) -> Self {
        match e {
            BrainError::Cancelled => AgentError::Cancelled,
            other => AgentError::Unavailable(other.to_string()),
        }
    }
}

pub async fn run(
    state: &AppState,
    settings: &BrainSettings,
    request: &TurnRequest,
    events: Option<&mpsc::Sender<AgentEvent>>,
    cancel: &CancellationToken,
) -> Result<TurnReply, AgentError> {
    let tier = request.tier.as_deref().and_then(Tier::parse).unwrap_or_else(|| settings.default_tier());
    let existing = record::by_key(&state.store, &request.conversation_key).await?;
    let conversation_id = match &existing {
        Some(c) => c.id.clone(),
        // A dashboard conversation's key is its id; any other key gets a fresh id.
        None if uuid::Uuid::parse_str(&request.conversation_key).is_ok() => request.conversation_key.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let title = existing.as_ref().map(|c| c.title.clone()).unwrap_or_else(|| request.text.chars().take(80).collect());

    let base_prompt = settings.system_prompt.clone().unwrap_or_else(|| SYSTEM_PROMPT.to_string());
    let incoming = Message::user_text(request.text.clone());
    let history = history::load(state, settings, existing.as_ref(), base_prompt.len(), &incoming, cancel).await?;
    let system = match &history.summary {
        Some(summary) => format!("{base_prompt}\n\nSummary of the earlier conversation:\n{summary}"),
        None => base_prompt,
    };
    let tools: Vec<ToolSpec> = state
        .tools
        .list()
        .iter()
        .map(|t| ToolSpec { name: t.name.clone(), description: t.description.clone(), schema: t.schema.clone() })
        .collect();

    // Resolved once per turn; a key set at run time counts from the next turn on.
    let chain = brain::configured_chain(state, settings).await;
    let mut working = history.messages;
    working.push(incoming.clone());
    let mut new_messages = vec![NewMessage { message: incoming, origin: None }];
    let mut tool_records = Vec::new();
    let mut usage: BTreeMap<(String, String), (Usage, i64)> = BTreeMap::new();
    let mut pending: Option<PendingTool> = None;
    let mut last = (String::new(), String::new());
    let mut reply_text = String::new();
    let caller = Caller::Agent { conversation_id: conversation_id.clone() };

    let rounds = settings.max_tool_rounds();
    for round in 0..=rounds {
        let chat = ChatRequest {
            system: system.clone(),
            messages: working.clone(),
            // The last round gets no tools, so the model has to answer in words.
            tools: if round < rounds { tools.clone() } else { Vec::new() },
            tier,
            max_tokens: settings.max_output_tokens(),
            think: request.think,
        };
        let done = brain::complete_in(state, settings, &chain, &chat, events, cancel).await?;
        let (provider, model) = (done.provider.name().to_string(), done.model.clone());
        let entry = usage.entry((provider.clone(), model.clone())).or_default();
        entry.0.input_tokens += done.usage.input_tokens;
        entry.0.output_tokens += done.usage.output_tokens;
        entry.1 += 1;
        last = (provider.clone(), model.clone());
        let calls: Vec<(String, String, Value)> = done
            .message
            .tool_calls()
            .map(|(id, name, args)| (id.to_string(), name.to_string(), args.clone()))
            .collect();
        reply_text = done.message.text();
        working.push(done.message.clone());
        new_messages.push(NewMessage { message: done.message, origin: Some((provider, model, done.usage)) });
        if calls.is_empty() {
            break;
        }
        if round == rounds {
            // Out of rounds and the model still wants tools: answer each call (the history must
            // stay paired) and close the turn with a sentence of our own.
            let parts = calls
                .into_iter()
                .map(|(id, name, _)| Part::ToolResult {
                    id,
                    name,
                    output: json!("Not run: this turn used all its tool rounds."),
                    is_error: true,
                })
                .collect();
            new_messages.push(NewMessage { message: Message { role: Role::User, parts }, origin: None });
            reply_text = format!(
                "I stopped after {rounds} rounds of tool calls without reaching an answer; please narrow the request."
            );
            let closing = Message {
                role: Role::Assistant,
                parts: vec![Part::Text { text: reply_text.clone(), signature: None }],
            };
            new_messages.push(NewMessage { message: closing, origin: None });
            break;
        }

        let runs = calls.into_iter().map(|(id, name, args)| {
            let caller = caller.clone();
            let needs_confirmation = state
                .tools
                .get(&name)
                .filter(|t| t.risk > request.max_risk && !request.approved_tools.iter().any(|n| n == &name))
                .map(|t| t.risk);
            async move {
                if let Some(sink) = events {
                    let _ = sink.send(AgentEvent::ToolCall { id: id.clone(), name: name.clone(), arguments: args.clone() }).await;
                }
                let started = Instant::now();
                let (output, ok, held) = match needs_confirmation {
                    Some(risk) => (
                        json!(format!("{name} was not run: it needs the user's confirmation first (risk {risk:?}). Ask the user to confirm.")),
                        false,
                        Some(PendingTool { name: name.clone(), arguments: args.clone(), risk }),
                    ),
                    None => match call_tool(state, &name, &args, caller).await {
                        Ok(v) => (v, true, None),
                        Err(message) => (json!(message), false, None),
                    },
                };
                if let Some(sink) = events {
                    let _ = sink
                        .send(AgentEvent::ToolResult { id: id.clone(), name: name.clone(), ok, output: output.clone() })
                        .await;
                }
                let record = ToolCallRecord {
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: args.to_string(),
                    output: output.to_string(),
                    ok,
                    duration_ms: started.elapsed().as_millis() as i64,
                };
                (Part::ToolResult { id, name, output, is_error: !ok }, record, held)
            }
        });
        // Several calls in one answer run concurrently; results keep the order of the calls.
        let results = futures::future::join_all(runs).await;
        let mut parts = Vec::with_capacity(results.len());
        for (part, record, held) in results {
            parts.push(part);
            tool_records.push(record);
            if pending.is_none() {
                pending = held;
            }
        }
        let answer = Message { role: Role::User, parts };
        working.push(answer.clone());
        new_messages.push(NewMessage { message: answer, origin: None });
        if let Some(p) = &pending {
            // End here with a reply of our own, so the stored history stays a valid alternation.
            reply_text = format!("I need your confirmation before I run {} (risk {:?}).", p.name, p.risk);
            let closing = Message {
                role: Role::Assistant,
                parts: vec![Part::Text { text: reply_text.clone(), signature: None }],
            };
            new_messages.push(NewMessage { message: closing, origin: None });
            break;
        }
    }

    let total = usage.values().fold(Usage::default(), |acc, (u, _)| Usage {
        input_tokens: acc.input_tokens + u.input_tokens,
        output_tokens: acc.output_tokens + u.output_tokens,
    });
    for ((provider, model), (u, _)) in &usage {
        let labels = [("provider", provider.clone()), ("model", model.clone())];
        metrics::counter!("nexus_llm_input_tokens_total", &labels).increment(u.input_tokens);
        metrics::counter!("nexus_llm_output_tokens_total", &labels).increment(u.output_tokens);
    }
    let turn = TurnRecord {
        conversation_id,
        key: request.conversation_key.clone(),
        title,
        messages: new_messages,
        tool_calls: tool_records,
        summary: history.new_summary,
        usage: usage.into_iter().map(|((p, m), (u, n))| (p, m, u, n)).collect(),
        provider: last.0.clone(),
        model: last.1.clone(),
    };
    // The one write of the turn; a cancellation before this point leaves the Store untouched.
    let conversation_id = record::persist(&state.store, &turn).await?;
    Ok(TurnReply {
        conversation_id,
        text: reply_text,
        input_tokens: total.input_tokens,
        output_tokens: total.output_tokens,
        provider: last.0,
        model: last.1,
        pending_confirmation: pending,
    })
}

/// Runs one tool call; every failure becomes a sentence the model can act on.
async fn call_tool(state: &AppState, name: &str, args: &Value, caller: Caller) -> Result<Value, String> {
    if let Value::String(raw) = args {
        return Err(format!(
            "The arguments of {name} are not a valid JSON object ({}). Call it again with a JSON object that matches its schema.",
            raw.chars().take(200).collect::<String>()
        ));
    }
    match state.tools.call(name, args.clone(), caller).await {
        Ok(output) => {
            let text = output.to_string();
            if text.len() > MAX_TOOL_OUTPUT {
                let cut: String = text.chars().take(MAX_TOOL_OUTPUT).collect();
                Ok(json!({"truncated": true, "output": cut}))
            } else {
                Ok(output)
            }
        }
        Err(e) => Err(format!("{e}. Correct the call and try again, or answer without this tool.")),
    }
}
