//! The WhatsApp bridge (a separate Baileys process) over Redis, with the original system's keys:
//! inbound JSON on `nexus:inbox`, replies on `nexus:wa_outbox`, the chat history, status and QR.
//!
//! Taking an item is a reliable move: BLMOVE to `nexus:inbox:processing`, then (atomically) the
//! entry there is tagged with a sequence number that becomes part of the item's stable id; only
//! after the item is on the durable inbox is the entry removed. A daemon killed at any point finds
//! the entry on start and queues it again under the same id, which the router answers once.
//! These keys are fixed by the bridge, so they are used through raw Redis connections, without
//! the bus's prefix.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, Script};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Adapter, ChannelKind, Hub, SendError, backoff};
use crate::inbox::{self, InboxItem};
use crate::store::now_ms;

pub const NEEDS_REDIS: &str =
    "WhatsApp needs Redis: the bridge speaks through Redis lists. Set REDIS_URL=redis://… and restart nexus.";
pub const INBOX: &str = "nexus:inbox";
pub const PROCESSING: &str = "nexus:inbox:processing";
const SEQUENCE: &str = "nexus:inbox:seq";
pub const OUTBOX: &str = "nexus:wa_outbox";
pub const STATUS: &str = "nexus:wa_status";
pub const QR: &str = "nexus:wa_qr";
pub const HISTORY_PREFIX: &str = "nexus:wa_history:";
const SENT_PREFIX: &str = "nexus:wa_sent:";
const HISTORY_LEN: isize = 50;
const HISTORY_TTL_SECS: i64 = 24 * 3600;
const BLOCK_SECS: f64 = 5.0;
const KIND: ChannelKind = ChannelKind::Whatsapp;

/// Replaces the raw entry in the processing list by `<n>|<raw>` with a fresh sequence number.
const TAG_SCRIPT: &str = r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  local n = redis.call('INCR', KEYS[2])
  local tagged = n .. '|' .. ARGV[1]
  redis.call('LPUSH', KEYS[1], tagged)
  return tagged
end
return false";

/// Pushes one reply chunk exactly once (the marker key remembers it for a day) and records it in
/// the chat history. KEYS: marker, outbox, history. ARGV: payload, history entry.
const SEND_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('LTRIM', KEYS[3], 0, 49)
  redis.call('EXPIRE', KEYS[3], 86400)
end
return 1";

pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(Client::open(url)?, config).await
}

/// Reads the bridge's status and QR code (a real check of the bridge).
pub async fn bridge_state(url: &str) -> Result<(Option<String>, Option<String>), String> {
    let mut conn = connect(url).await.map_err(|e| format!("Redis unreachable: {e}"))?;
    let status: Option<String> = conn.get(STATUS).await.map_err(|e| e.to_string())?;
    let qr: Option<String> = conn.get(QR).await.map_err(|e| e.to_string())?;
    Ok((status, qr))
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn history_entry(role: &str, text: &str) -> String {
    // The bridge keeps user text up to 500 characters and assistant text up to 2000.
    let max = if role == "user" { 500 } else { 2000 };
    json!({"role": role, "text": cut(text, max), "timestamp": now_ms()}).to_string()
}

struct WhatsappAdapter {
    conn: ConnectionManager,
    send: Script,
}

#[async_trait]
impl Adapter for WhatsappAdapter {
    async fn send(&self, jid: &str, text: &str, _reply_to: Option<&str>, key: &str) -> Result<(), SendError> {
        let payload = json!({"jid": jid, "text": text, "timestamp": now_ms()}).to_string();
        let mut conn = self.conn.clone();
        self.send
            .key(format!("{SENT_PREFIX}{key}"))
            .key(OUTBOX)
            .key(format!("{HISTORY_PREFIX}{jid}"))
            .arg(payload)
            .arg(history_entry("assistant", text))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| SendError::Retry { reason: format!("Redis: {e}"), after: None })
    }

    async fn typing(&self, _chat_id: &str) {
        // The bridge has no typing signal in its contract.
    }
}

pub(crate) fn spawn(hub: Arc<Hub>, url: String, cancel: CancellationToken) {
    let tasks = hub.state().tasks.clone();
    tasks.spawn(run(hub, url, cancel));
}

async fn sleep_or_cancel(cancel: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

async fn run(hub: Arc<Hub>, url: String, cancel: CancellationToken) {
    let mut attempt = 0;
    loop {
        match consume(&hub, &url, &cancel).await {
            Ok(()) => return,
            Err(e) => {
                attempt += 1;
                hub.set_error(KIND, format!("Redis: {e}; reconnecting"));
                if !sleep_or_cancel(&cancel, backoff(attempt)).await {
                    return;
                }
            }
        }
    }
}

/// Runs until cancelled (Ok) or until Redis fails (Err, the caller reconnects).
async fn consume(hub: &Arc<Hub>, url: &str, cancel: &CancellationToken) -> Result<(), redis::RedisError> {
    let client = Client::open(url)?;
    let conn = connect(url).await?;
    let blocking_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(BLOCK_SECS as u64 + 5)));
    let mut blocking: MultiplexedConnection =
        client.get_multiplexed_async_connection_with_config(&blocking_config).await?;
    if cancel.is_cancelled() {
        return Ok(());
    }
    hub.register_adapter(KIND, Arc::new(WhatsappAdapter { conn: conn.clone(), send: Script::new(SEND_SCRIPT) }));
    let tag = Script::new(TAG_SCRIPT);
    let mut c = conn.clone();
    report_bridge(hub, &mut c).await?;

    // Entries a previous run took but did not finish.
    let left: Vec<String> = c.lrange(PROCESSING, 0, -1).await?;
    for entry in left.into_iter().rev() {
        let tagged = if entry.split_once('|').is_some_and(|(n, _)| n.parse::<u64>().is_ok()) {
            Some(entry)
        } else {
            tag.key(PROCESSING).key(SEQUENCE).arg(&entry).invoke_async::<Option<String>>(&mut c).await?
        };
        if let Some(tagged) = tagged
            && !finish(hub, &mut c, &tagged, cancel).await?
        {
            return Ok(());
        }
    }

    let mut last_status = std::time::Instant::now();
    loop {
        let mut blmove = redis::cmd("BLMOVE");
        blmove.arg(INBOX).arg(PROCESSING).arg("RIGHT").arg("LEFT").arg(BLOCK_SECS);
        let taken: Option<String> = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = blmove.query_async(&mut blocking) => r?,
        };
        if let Some(raw) = taken {
            let tagged: Option<String> = tag.key(PROCESSING).key(SEQUENCE).arg(&raw).invoke_async(&mut c).await?;
            if let Some(tagged) = tagged
                && !finish(hub, &mut c, &tagged, cancel).await?
            {
                return Ok(());
            }
        }
        if last_status.elapsed() > Duration::from_secs(10) {
            report_bridge(hub, &mut c).await?;
            last_status = std::time::Instant::now();
        }
    }
}

/// Reads `nexus:wa_status` into the channel status: Redis reachable is "connected" unless the
/// bridge itself says it is not.
async fn report_bridge(hub: &Hub, conn: &mut ConnectionManager) -> Result<(), redis::RedisError> {
    let status: Option<String> = conn.get(STATUS).await?;
    let parsed = status.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
    let bridge_down = match (&status, &parsed) {
        (_, Some(v)) => v.get("connected").and_then(Value::as_bool) == Some(false),
        (Some(s), None) => matches!(s.to_lowercase().as_str(), "disconnected" | "close" | "closed" | "logged_out"),
        (None, None) => false,
    };
    if bridge_down {
        hub.set_error(KIND, format!("the bridge reports: {}", status.unwrap_or_default()));
    } else {
        let name =
            parsed.as_ref().and_then(|v| v.get("name").or(v.get("user"))).and_then(Value::as_str).map(String::from);
        hub.set_connected(KIND, name, None);
    }
    Ok(())
}

/// Queues a tagged entry durably, then removes it from the processing list. False when cancelled.
async fn finish(
    hub: &Hub,
    conn: &mut ConnectionManager,
    tagged: &str,
    cancel: &CancellationToken,
) -> Result<bool, redis::RedisError> {
    let Some((seq, raw)) = tagged.split_once('|') else { return Ok(true) };
    let item = to_item(seq, raw);
    if item.channel == KIND.as_str() {
        let history = format!("{HISTORY_PREFIX}{}", item.chat_id);
        let _: () = redis::pipe()
            .lpush(&history, history_entry("user", &item.text))
            .ltrim(&history, 0, HISTORY_LEN - 1)
            .expire(&history, HISTORY_TTL_SECS)
            .query_async(conn)
            .await?;
    }
    let mut tries = 0;
    while let Err(e) = inbox::enqueue(hub.state(), &item).await {
        tries += 1;
        tracing::warn!(error = %e, "whatsapp: cannot queue a message; retrying");
        if !sleep_or_cancel(cancel, backoff(tries)).await {
            return Ok(false);
        }
    }
    let _: i64 = conn.lrem(PROCESSING, 1, tagged).await?;
    Ok(true)
}

/// `{"message", "source", "from", "requestId"?}` from the bridge; anything else is plain text from
/// source `mcp` (our own infrastructure, trusted, with no chat to answer in).
fn to_item(seq: &str, raw: &str) -> InboxItem {
    let parsed: Option<Value> = serde_json::from_str(raw).ok().filter(Value::is_object);
    let Some(v) = parsed else {
        let mut item = InboxItem::new("mcp", "mcp", &format!("q{seq}"), "mcp", "mcp", raw);
        item.trusted = true;
        return item;
    };
    let text = v.get("message").and_then(Value::as_str).unwrap_or_default();
    let source = v.get("source").and_then(Value::as_str).unwrap_or("mcp");
    let from = v.get("from").and_then(Value::as_str).unwrap_or_default();
    let message_id = v
        .get("requestId")
        .and_then(|r| r.as_str().map(String::from).or_else(|| r.as_i64().map(|n| n.to_string())))
        .unwrap_or_else(|| format!("q{seq}"));
    if source != "whatsapp" || from.is_empty() {
        let mut item = InboxItem::new("mcp", source, &message_id, source, source, text);
        item.trusted = true;
        return item;
    }
    let name = v
        .get("params")
        .and_then(|p| p.get("pushName").or(p.get("name")))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| from.split('@').next().unwrap_or(from).to_string());
    let mut item = InboxItem::new(KIND.as_str(), from, &message_id, from, &name, text);
    item.is_group = from.ends_with("@g.us");
    item
}

#[cfg(test)]
mod tests {
    use super::to_item;

    #[test]
    fn bridge_items_and_plain_text() {
        let item = to_item("7", r#"{"message":"hi","source":"whatsapp","from":"4912345@s.whatsapp.net"}"#);
        assert_eq!(item.id, "whatsapp:4912345@s.whatsapp.net:q7");
        assert_eq!(item.sender_name, "4912345");
        assert!(!item.trusted);
        let item = to_item("8", "check the disks");
        assert_eq!((item.channel.as_str(), item.trusted, item.text.as_str()), ("mcp", true, "check the disks"));
    }
}
