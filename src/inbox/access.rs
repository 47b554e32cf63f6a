//! Who may talk to the brain: pairing codes for unknown senders, and each sender's settings
//! (`!think`, `!tier`, …), usage counters and a tool call waiting for `!yes` / `!no`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, now_ms};

/// How long a pairing code can be approved.
pub const PAIRING_TTL_MS: i64 = 60 * 60 * 1000;
/// No 0/O or 1/I: codes are read off a phone screen and typed again.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Pairing {
    pub code: String,
    pub channel: String,
    pub sender_id: String,
    pub sender_name: String,
    pub chat_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The sender's open pairing code, or a new one.
pub async fn pairing_code(
    store: &Store,
    channel: &str,
    sender_id: &str,
    sender_name: &str,
    chat_id: &str,
) -> Result<String, StoreError> {
    let now = now_ms();
    let open: Option<String> = sqlx::query_scalar(
        "SELECT code FROM channel_pairings WHERE channel = $1 AND sender_id = $2 AND expires_at > $3",
    )
    .bind(channel)
    .bind(sender_id)
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    if let Some(code) = open {
        return Ok(code);
    }
    sqlx::query("DELETE FROM channel_pairings WHERE expires_at <= $1 OR (channel = $2 AND sender_id = $3)")
        .bind(now)
        .bind(channel)
        .bind(sender_id)
        .execute(&mut *store.write().await?)
        .await?;
    let code: String = {
        let mut rng = rand::rng();
        (0..8).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect()
    };
    let done = sqlx::query(
        "INSERT INTO channel_pairings (code, channel, sender_id, sender_name, chat_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel, sender_id) DO NOTHING",
    )
    .bind(&code)
    .bind(channel)
    .bind(sender_id)
    .bind(sender_name)
    .bind(chat_id)
    .bind(now)
    .bind(now + PAIRING_TTL_MS)
    .execute(&mut *store.write().await?)
    .await?;
    if done.rows_affected() == 0 {
        // Another message of the same sender created one at the same moment: use that.
        let code: String =
            sqlx::query_scalar("SELECT code FROM channel_pairings WHERE channel = $1 AND sender_id = $2")
                .bind(channel)
                .bind(sender_id)
                .fetch_one(store.pool())
                .await?;
        return Ok(code);
    }
    Ok(code)
}

/// Takes an open pairing by its code (once): the caller adds the sender to the allowlist.
pub async fn take_pairing(store: &Store, channel: &str, code: &str) -> Result<Option<Pairing>, StoreError> {
    let pairing = sqlx::query_as::<_, Pairing>(
        "DELETE FROM channel_pairings WHERE channel = $1 AND code = $2 AND expires_at > $3
         RETURNING code, channel, sender_id, sender_name, chat_id, created_at, expires_at",
    )
    .bind(channel)
    .bind(code.trim().to_ascii_uppercase().replace('-', ""))
    .bind(now_ms())
    .fetch_optional(&mut *store.write().await?)
    .await?;
    Ok(pairing)
}

pub async fn list_pairings(store: &Store, channel: &str) -> Result<Vec<Pairing>, StoreError> {
    sqlx::query_as::<_, Pairing>(
        "SELECT code, channel, sender_id, sender_name, chat_id, created_at, expires_at FROM channel_pairings
         WHERE channel = $1 AND expires_at > $2 ORDER BY created_at",
    )
    .bind(channel)
    .bind(now_ms())
    .fetch_all(store.pool())
    .await
    .map_err(Into::into)
}

/// A tool call the brain wants to run above the channel's policy, waiting for `!yes` / `!no`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingTurn {
    pub text: String,
    pub tool: String,
    pub conversation_key: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub think: String,
    pub verbose: String,
    pub tier: Option<String>,
    pub epoch: i64,
    pub messages: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub pending: Option<String>,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            think: "medium".into(),
            verbose: "off".into(),
            tier: None,
            epoch: 0,
            messages: 0,
            input_tokens: 0,
            output_tokens: 0,
            pending: None,
        }
    }
}

impl Session {
    pub fn pending_turn(&self) -> Option<PendingTurn> {
        self.pending.as_deref().and_then(|p| serde_json::from_str(p).ok())
    }
}

pub async fn session(store: &Store, channel: &str, sender_id: &str) -> Result<Session, StoreError> {
    let row = sqlx::query_as::<_, Session>(
        "SELECT think, verbosity AS verbose, tier, epoch, messages, input_tokens, output_tokens, pending
         FROM channel_sessions WHERE channel = $1 AND sender_id = $2",
    )
    .bind(channel)
    .bind(sender_id)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn save_session(store: &Store, channel: &str, sender_id: &str, s: &Session) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO channel_sessions (channel, sender_id, think, verbosity, tier, epoch, messages, input_tokens,
             output_tokens, pending, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (channel, sender_id) DO UPDATE SET think = excluded.think, verbosity = excluded.verbosity,
             tier = excluded.tier, epoch = excluded.epoch, pending = excluded.pending, updated_at = excluded.updated_at",
    )
    .bind(channel)
    .bind(sender_id)
    .bind(&s.think)
    .bind(&s.verbose)
    .bind(&s.tier)
    .bind(s.epoch)
    .bind(s.messages)
    .bind(s.input_tokens)
    .bind(s.output_tokens)
    .bind(&s.pending)
    .bind(now_ms())
    .execute(&mut *store.write().await?)
    .await?;
    Ok(())
}

/// Counts one answered message and its tokens, atomically.
pub async fn count_usage(
    store: &Store,
    channel: &str,
    sender_id: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO channel_sessions (channel, sender_id, messages, input_tokens, output_tokens, updated_at)
         VALUES ($1, $2, 1, $3, $4, $5)
         ON CONFLICT (channel, sender_id) DO UPDATE SET messages = channel_sessions.messages + 1,
             input_tokens = channel_sessions.input_tokens + excluded.input_tokens,
             output_tokens = channel_sessions.output_tokens + excluded.output_tokens, updated_at = excluded.updated_at",
    )
    .bind(channel)
    .bind(sender_id)
    .bind(input_tokens.min(i64::MAX as u64) as i64)
    .bind(output_tokens.min(i64::MAX as u64) as i64)
    .bind(now_ms())
    .execute(&mut *store.write().await?)
    .await?;
    Ok(())
}
