//! The history sent to the model, bounded by tokens: when a conversation grows past the budget,
//! its oldest whole turns are summarised by the model (a summary row in the Store) instead of
//! being dropped silently.

use tokio_util::sync::CancellationToken;

use super::AgentError;
use super::record::{self, ConversationRow};
use crate::app::AppState;
use crate::brain::{self, BrainSettings, ChatRequest, Message, Part, Role, Think, Tier};

pub struct History {
    /// The newest summary of turns no longer sent verbatim.
    pub summary: Option<String>,
    pub messages: Vec<Message>,
    /// A summary made during this turn, to store with it: `(through_message_id, text)`.
    pub new_summary: Option<(i64, String)>,
}

/// True when a message starts a turn (a user message with text, not only tool results).
fn starts_turn(m: &Message) -> bool {
    m.role == Role::User && m.parts.iter().any(|p| matches!(p, Part::Text { .. }))
}

pub async fn load(
    state: &AppState,
    settings: &BrainSettings,
    conversation: Option<&ConversationRow>,
    system_len: usize,
    incoming: &Message,
    cancel: &CancellationToken,
) -> Result<History, AgentError> {
    let Some(conversation) = conversation else {
        return Ok(History { summary: None, messages: Vec::new(), new_summary: None });
    };
    let summary = record::latest_summary(&state.store, &conversation.id).await?;
    let after = summary.as_ref().map(|(through, _)| *through).unwrap_or(0);
    let rows = record::messages(&state.store, &conversation.id, after).await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.id);
        messages.push(row.message()?);
    }
    let summary = summary.map(|(_, text)| text);

    let budget = settings.history_token_budget();
    let fixed =
        (system_len as u64) / 4 + summary.as_ref().map_or(0, |s| s.len() as u64 / 4) + incoming.estimate_tokens();
    let sizes: Vec<u64> = messages.iter().map(Message::estimate_tokens).collect();
    let estimate = fixed + sizes.iter().sum::<u64>();
    // The provider's own count of the last prompt (stored with each answer) also covers what the
    // estimate misses (tool schemas, formatting): use it where it says more.
    let counted = rows.iter().rposition(|r| r.input_tokens > 0).map(|i| {
        let r = &rows[i];
        (r.input_tokens + r.output_tokens) as u64 + sizes[i + 1..].iter().sum::<u64>() + incoming.estimate_tokens()
    });
    let total = estimate.max(counted.unwrap_or(0));
    if total <= budget {
        return Ok(History { summary, messages, new_summary: None });
    }

    // Cut at the earliest turn boundary that brings the rest under half the budget (room to grow),
    // or at the last boundary if nothing smaller fits: whole turns only, so tool calls and their
    // results are never separated.
    let mut remaining = total;
    let mut cut = 0;
    for (i, m) in messages.iter().enumerate() {
        if i > 0 && starts_turn(m) {
            cut = i;
            if remaining <= budget / 2 {
                break;
            }
        }
        remaining -= sizes[i];
    }
    if remaining > budget / 2 {
        cut = messages.len(); // Even the last turn is too big: summarise everything before the new message.
    }
    if cut == 0 {
        return Ok(History { summary, messages, new_summary: None });
    }
    let through = ids[cut - 1];
    let old: Vec<Message> = messages.drain(..cut).collect();
    let text = summarise(state, summary.as_deref(), &old, cancel).await?;
    Ok(History { summary: Some(text.clone()), messages, new_summary: Some((through, text)) })
}

/// Asks the model for a summary; if no provider can, keeps a shortened transcript instead, so the
/// facts are still there.
async fn summarise(
    state: &AppState,
    previous: Option<&str>,
    old: &[Message],
    cancel: &CancellationToken,
) -> Result<String, AgentError> {
    let full = transcript(previous, old, 2000);
    let request = ChatRequest {
        system: "You condense conversations. Summarise the conversation below in at most 300 words: \
                 facts about the user and the server, decisions, open tasks, and results of tools. \
                 Write plain prose, no preamble."
            .into(),
        messages: vec![Message::user_text(full)],
        tools: Vec::new(),
        tier: Tier::Flash,
        max_tokens: 1024,
        think: Think::Low,
    };
    match brain::complete(state, &request, None, cancel).await {
        Ok(done) if !done.message.text().trim().is_empty() => Ok(done.message.text()),
        Err(brain::BrainError::Cancelled) => Err(AgentError::Cancelled),
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, "summary by the model failed; keeping a shortened transcript");
            }
            Ok(transcript(previous, old, 200))
        }
    }
}

fn transcript(previous: Option<&str>, old: &[Message], per_message: usize) -> String {
    let mut out = String::new();
    if let Some(p) = previous {
        out.push_str("Earlier summary: ");
        out.push_str(p);
        out.push_str("\n\n");
    }
    for m in old {
        for p in &m.parts {
            let line = match (m.role, p) {
                (Role::User, Part::Text { text, .. }) => format!("User: {text}"),
                (Role::Assistant, Part::Text { text, .. }) if !text.is_empty() => format!("Assistant: {text}"),
                (_, Part::ToolCall { name, arguments, .. }) => format!("[tool {name} called with {arguments}]"),
                (_, Part::ToolResult { name, output, .. }) => format!("[tool {name} returned {output}]"),
                _ => continue,
            };
            out.extend(line.chars().take(per_message));
            out.push('\n');
        }
    }
    out
}
