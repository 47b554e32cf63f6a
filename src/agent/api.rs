//! `POST /api/chat` (a streamed turn), `GET /api/conversations[/{id}]`, `GET /api/usage`.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::record::{self, ConversationRow};
use super::{AgentError, AgentEvent, TurnReply, TurnRequest, run_turn};
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::brain::Tier;
use crate::tools::{Caller, Risk};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat))
        .routes(routes!(list_conversations))
        .routes(routes!(get_conversation))
        .routes(routes!(usage))
        .merge(crate::tools::memory::routes())
}

const MAX_MESSAGE_CHARS: usize = 32_000;

/// A query-string extractor whose rejection (e.g. `limit=abc`) answers in the API's JSON error shape.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(Query), rejection(QueryError))]
pub struct ApiQuery<T>(pub T);

pub struct QueryError(ApiError);

impl From<axum::extract::rejection::QueryRejection> for QueryError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self(ApiError::validation(rejection.body_text()))
    }
}

impl axum::response::IntoResponse for QueryError {
    fn into_response(self) -> axum::response::Response {
        self.0.into_response()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    /// The user's message.
    pub message: String,
    /// Continue this conversation; omit to start a new one.
    pub conversation_id: Option<String>,
    /// `flash`, `haiku`, `sonnet` or `opus`.
    pub tier: Option<String>,
    /// Reasoning effort: `off`, `minimal`, `low`, `medium` (default: each model's own), `high`, `xhigh`.
    pub think: Option<crate::brain::Think>,
    /// Tools above the `write` risk level the user confirmed for this turn.
    #[serde(default)]
    pub approved_tools: Vec<String>,
}

/// One server-sent event of `POST /api/chat`, as an SSE parser sees it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the wire shape; the stream is built from `Event`s
struct ChatStreamEvent {
    /// `token`, `tool_call`, `tool_result`, `done` or `error`.
    #[schema(pattern = "^(token|tool_call|tool_result|done|error)$")]
    event: String,
    /// The event's JSON object, as text.
    data: String,
}

/// Answers one message as a `text/event-stream`: `token` `{"text"}`, `tool_call`
/// `{"id","name","arguments"}`, `tool_result` `{"id","name","ok","output"}`, then `done`
/// `{"conversation_id","usage":{"input_tokens","output_tokens"},…}` or `error` `{"error","message"}`.
/// Closing the connection cancels the turn; nothing of it is stored then.
#[utoipa::path(post, path = "/chat", tag = "chat", request_body = ChatBody,
    responses(
        (status = 200, description = "Server-sent events: token, tool_call, tool_result, done, error", content_type = "text/event-stream", body = ChatStreamEvent),
        (status = 400, description = "Empty or too long message, unknown tier", body = ErrorBody),
        (status = 404, description = "No such conversation", body = ErrorBody),
    ))]
async fn chat(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ChatBody>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let text = body.message.trim().to_string();
    if text.is_empty() {
        return Err(ApiError::validation("message must not be empty."));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::validation(format!("message is longer than {MAX_MESSAGE_CHARS} characters.")));
    }
    if let Some(tier) = &body.tier
        && Tier::parse(tier).is_none()
    {
        return Err(ApiError::validation("tier must be flash, haiku, sonnet or opus."));
    }
    let key = match &body.conversation_id {
        Some(id) => {
            record::by_id(&state.store, id)
                .await?
                .ok_or_else(|| ApiError::not_found("No conversation with that id."))?
                .key
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let request = TurnRequest {
        conversation_key: key,
        text,
        tier: body.tier,
        think: body.think.unwrap_or_default(),
        caller: Caller::Api { user: "api".into() },
        max_risk: Risk::Write,
        approved_tools: body.approved_tools,
    };

    let (events_tx, events_rx) = mpsc::channel::<AgentEvent>(256);
    let (done_tx, done_rx) = oneshot::channel::<Result<TurnReply, AgentError>>();
    let cancel = state.shutdown.child_token();
    // Dropped with the response stream: a client that goes away cancels the turn.
    let guard = cancel.clone().drop_guard();
    let worker = state.clone();
    state.tasks.spawn(async move {
        let result = run_turn(&worker, request, Some(events_tx), cancel).await;
        let _ = done_tx.send(result);
    });

    struct Flow {
        events: mpsc::Receiver<AgentEvent>,
        done: Option<oneshot::Receiver<Result<TurnReply, AgentError>>>,
        _guard: tokio_util::sync::DropGuard,
    }
    let flow = Flow { events: events_rx, done: Some(done_rx), _guard: guard };
    let stream = futures::stream::unfold(flow, |mut flow| async move {
        if let Some(event) = flow.events.recv().await {
            return Some((Ok(sse_event(&event)), flow));
        }
        let done = flow.done.take()?;
        let event = match done.await {
            Ok(Ok(reply)) => Event::default().event("done").data(
                json!({
                    "conversation_id": reply.conversation_id,
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
                    "provider": reply.provider,
                    "model": reply.model,
                    "text": reply.text,
                    "pending_confirmation": reply.pending_confirmation,
                })
                .to_string(),
            ),
            Ok(Err(e)) => error_event(&e),
            Err(_) => Event::default()
                .event("error")
                .data(json!({"error": "internal", "message": "The turn ended unexpectedly."}).to_string()),
        };
        Some((Ok(event), flow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sse_event(event: &AgentEvent) -> Event {
    let (name, data) = match event {
        AgentEvent::Token { text } => ("token", json!({"text": text})),
        AgentEvent::ToolCall { id, name, arguments } => {
            ("tool_call", json!({"id": id, "name": name, "arguments": arguments}))
        }
        AgentEvent::ToolResult { id, name, ok, output } => {
            ("tool_result", json!({"id": id, "name": name, "ok": ok, "output": output}))
        }
    };
    Event::default().event(name).data(data.to_string())
}

fn error_event(e: &AgentError) -> Event {
    let code = match e {
        AgentError::Unavailable(_) => "unavailable",
        AgentError::Cancelled => "cancelled",
        AgentError::TimedOut(_) => "timeout",
        AgentError::Store(_) => "internal",
    };
    let message = match e {
        AgentError::Store(inner) => {
            tracing::error!(error = %inner, "chat turn failed on the store");
            "The conversation could not be saved; see the server log.".to_string()
        }
        other => other.to_string(),
    };
    Event::default().event("error").data(json!({"error": code, "message": message}).to_string())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// At most this many (1–200, default 50).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    fn bounds(&self) -> (i64, i64) {
        (self.limit.unwrap_or(50).clamp(1, 200), self.offset.unwrap_or(0).max(0))
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationRow>,
}

/// Conversations, most recently active first.
#[utoipa::path(get, path = "/conversations", tag = "chat", params(Page),
    responses((status = 200, body = ConversationList)))]
async fn list_conversations(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<ApiJson<ConversationList>> {
    let (limit, offset) = page.bounds();
    Ok(ApiJson(ConversationList { conversations: record::list(&state.store, limit, offset).await? }))
}

#[derive(Serialize, ToSchema)]
pub struct StoredMessage {
    pub id: i64,
    /// `user` or `assistant`.
    pub role: String,
    /// Text, tool_call and tool_result parts.
    #[schema(value_type = Vec<Object>)]
    pub parts: Value,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationDetail {
    pub conversation: ConversationRow,
    /// The summary standing in for the oldest turns, if the conversation grew past the budget.
    pub summary: Option<String>,
    pub messages: Vec<StoredMessage>,
}

/// One conversation with all its messages (tool calls and results included).
#[utoipa::path(get, path = "/conversations/{id}", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, body = ConversationDetail), (status = 404, body = ErrorBody)))]
async fn get_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<ConversationDetail>> {
    let conversation =
        record::by_id(&state.store, &id).await?.ok_or_else(|| ApiError::not_found("No conversation with that id."))?;
    let summary = record::latest_summary(&state.store, &id).await?.map(|(_, text)| text);
    let messages = record::messages(&state.store, &id, 0)
        .await?
        .into_iter()
        .map(|m| StoredMessage {
            parts: serde_json::from_str(&m.parts).unwrap_or(Value::Null),
            id: m.id,
            role: m.role,
            provider: m.provider,
            model: m.model,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            created_at: m.created_at,
        })
        .collect();
    Ok(ApiJson(ConversationDetail { conversation, summary, messages }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageQuery {
    /// Days back from today, UTC (1–366, default 30).
    pub days: Option<i64>,
    /// Only this conversation.
    pub conversation_id: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct UsageRow {
    pub day: String,
    pub provider: String,
    pub model: String,
    pub conversation_id: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub since: String,
    pub totals: UsageTotals,
    /// One row per day, provider, model and conversation.
    pub rows: Vec<UsageRow>,
}

/// Token usage per day, provider, model and conversation.
#[utoipa::path(get, path = "/usage", tag = "chat", params(UsageQuery),
    responses((status = 200, body = UsageReport)))]
async fn usage(State(state): State<AppState>, ApiQuery(q): ApiQuery<UsageQuery>) -> ApiResult<ApiJson<UsageReport>> {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    let since = record::utc_day(crate::store::now_ms() - (days - 1) * 86_400_000);
    let rows: Vec<UsageRow> = sqlx::query_as(
        "SELECT day, provider, model, conversation_id, requests, input_tokens, output_tokens FROM usage_daily
         WHERE day >= $1 AND ($2 = '' OR conversation_id = $2)
         ORDER BY day DESC, provider, model, conversation_id",
    )
    .bind(&since)
    .bind(q.conversation_id.clone().unwrap_or_default())
    .fetch_all(state.store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    let totals = UsageTotals {
        requests: rows.iter().map(|r| r.requests).sum(),
        input_tokens: rows.iter().map(|r| r.input_tokens).sum(),
        output_tokens: rows.iter().map(|r| r.output_tokens).sum(),
    };
    Ok(ApiJson(UsageReport { since, totals, rows }))
}
