//! Conversations in the Store: loading the history of a key, and writing one finished turn —
//! messages, tool calls, summary, usage — in a single transaction, so a cancelled or failed turn
//! leaves nothing behind.

use serde::Serialize;

use crate::brain::{Message, Part, Role, Usage};
use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ConversationRow {
    pub id: String,
    pub key: String,
    pub title: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub role: String,
    pub parts: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub created_at: i64,
}

impl MessageRow {
    pub fn message(&self) -> Result<Message, StoreError> {
        let role = if self.role == "assistant" { Role::Assistant } else { Role::User };
        let parts: Vec<Part> = serde_json::from_str(&self.parts)
            .map_err(|e| StoreError::Data(format!("message {} has unreadable parts: {e}", self.id)))?;
        Ok(Message { role, parts })
    }
}

const CONVERSATION_COLUMNS: &str =
    "id, key, title, provider, model, input_tokens, output_tokens, created_at, updated_at";

pub async fn by_key(store: &Store, key: &str) -> Result<Option<ConversationRow>, StoreError> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE key = $1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(store.pool()).await?)
}

pub async fn by_id(store: &Store, id: &str) -> Result<Option<ConversationRow>, StoreError> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(store.pool()).await?)
}

/// Newest first.
pub async fn list(store: &Store, limit: i64, offset: i64) -> Result<Vec<ConversationRow>, StoreError> {
    let sql =
        format!("SELECT {CONVERSATION_COLUMNS} FROM conversations ORDER BY updated_at DESC, id LIMIT $1 OFFSET $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(store.pool()).await?)
}

/// Messages with an id above `after`, oldest first.
pub async fn messages(store: &Store, conversation_id: &str, after: i64) -> Result<Vec<MessageRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, role, parts, provider, model, input_tokens, output_tokens, created_at
         FROM conversation_messages WHERE conversation_id = $1 AND id > $2 ORDER BY id",
    )
    .bind(conversation_id)
    .bind(after)
    .fetch_all(store.pool())
    .await?)
}

/// The newest summary: `(through_message_id, text)`.
pub async fn latest_summary(store: &Store, conversation_id: &str) -> Result<Option<(i64, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT through_message_id, text FROM conversation_summaries WHERE conversation_id = $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(conversation_id)
    .fetch_optional(store.pool())
    .await?)
}

pub struct NewMessage {
    pub message: Message,
    /// Set on assistant messages: who wrote it and what it cost.
    pub origin: Option<(String, String, Usage)>,
}

pub struct ToolCallRecord {
    pub call_id: String,
    pub name: String,
    pub arguments: String,
    pub output: String,
    pub ok: bool,
    pub duration_ms: i64,
}

/// Everything one turn writes.
pub struct TurnRecord {
    pub conversation_id: String,
    pub key: String,
    pub title: String,
    pub messages: Vec<NewMessage>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub summary: Option<(i64, String)>,
    /// (provider, model, usage, requests)
    pub usage: Vec<(String, String, Usage, i64)>,
    pub provider: String,
    pub model: String,
}

/// Writes a turn atomically. Returns the conversation id actually used (a concurrent first turn
/// of the same key may have created the conversation already).
pub async fn persist(store: &Store, turn: &TurnRecord) -> Result<String, StoreError> {
    let now = now_ms();
    let total = turn.usage.iter().fold(Usage::default(), |acc, (_, _, u, _)| Usage {
        input_tokens: acc.input_tokens + u.input_tokens,
        output_tokens: acc.output_tokens + u.output_tokens,
    });
    let mut writer = store.write().await?;
    let mut tx = writer.begin().await?;
    let id: String = sqlx::query_scalar(
        "INSERT INTO conversations (id, key, title, provider, model, input_tokens, output_tokens, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (key) DO UPDATE SET provider = excluded.provider, model = excluded.model,
             input_tokens = conversations.input_tokens + excluded.input_tokens,
             output_tokens = conversations.output_tokens + excluded.output_tokens,
             updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(&turn.conversation_id)
    .bind(&turn.key)
    .bind(&turn.title)
    .bind(&turn.provider)
    .bind(&turn.model)
    .bind(total.input_tokens as i64)
    .bind(total.output_tokens as i64)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    // One statement for all messages of the turn (ids still follow their order).
    let mut sql = String::from(
        "INSERT INTO conversation_messages
           (conversation_id, role, parts, provider, model, input_tokens, output_tokens, created_at) VALUES ",
    );
    for i in 0..turn.messages.len() {
        let b = i * 7 + 1;
        let sep = if i == 0 { "" } else { ", " };
        sql.push_str(&format!(
            "{sep}($1, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&id);
    for m in &turn.messages {
        let parts = serde_json::to_string(&m.message.parts).map_err(|e| StoreError::Data(e.to_string()))?;
        let role = if m.message.role == Role::Assistant { "assistant" } else { "user" };
        let (provider, model, usage) = match &m.origin {
            Some((p, model, u)) => (Some(p.clone()), Some(model.clone()), *u),
            None => (None, None, Usage::default()),
        };
        insert = insert
            .bind(role)
            .bind(parts)
            .bind(provider)
            .bind(model)
            .bind(usage.input_tokens as i64)
            .bind(usage.output_tokens as i64)
            .bind(now);
    }
    if !turn.messages.is_empty() {
        insert.execute(&mut *tx).await?;
    }
    for c in &turn.tool_calls {
        sqlx::query(
            "INSERT INTO tool_calls (conversation_id, call_id, name, arguments, output, ok, duration_ms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&c.call_id)
        .bind(&c.name)
        .bind(&c.arguments)
        .bind(&c.output)
        .bind(c.ok as i64)
        .bind(c.duration_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if let Some((through, text)) = &turn.summary {
        sqlx::query(
            "INSERT INTO conversation_summaries (conversation_id, through_message_id, text, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(through)
        .bind(text)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let day = utc_day(now);
    for (provider, model, usage, requests) in &turn.usage {
        sqlx::query(
            "INSERT INTO usage_daily (day, provider, model, conversation_id, requests, input_tokens, output_tokens)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (day, provider, model, conversation_id) DO UPDATE SET
                 requests = usage_daily.requests + excluded.requests,
                 input_tokens = usage_daily.input_tokens + excluded.input_tokens,
                 output_tokens = usage_daily.output_tokens + excluded.output_tokens",
        )
        .bind(&day)
        .bind(provider)
        .bind(model)
        .bind(&id)
        .bind(requests)
        .bind(usage.input_tokens as i64)
        .bind(usage.output_tokens as i64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// `YYYY-MM-DD` (UTC) of a unix-ms timestamp (Howard Hinnant's civil-from-days).
pub fn utc_day(ms: i64) -> String {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_days() {
        assert_eq!(super::utc_day(0), "1970-01-01");
        assert_eq!(super::utc_day(1_709_251_200_000), "2024-03-01");
        assert_eq!(super::utc_day(1_798_675_199_000), "2026-12-30");
        assert_eq!(super::utc_day(1_798_675_200_000), "2026-12-31");
    }
}
