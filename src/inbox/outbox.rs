//! The outbox: replies and outbound messages as Store rows, delivered through the channel adapters
//! by one sender loop per daemon. A row is claimed for a lease before sending, so a daemon killed
//! mid-send leaves it to be claimed again; within a chat, rows go out strictly in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::split;
use crate::channels::{ChannelKind, Hub, SendError};
use crate::store::{Store, StoreError, now_ms};

const BATCH: i64 = 128;
/// After this many failed attempts a row is given up (kept, with its last error, for the API).
const MAX_ATTEMPTS: i64 = 30;
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Delivered (and deliberately unanswered) rows are kept this long — long enough to recognise
/// any redelivery of their inbound item — then removed, so the table does not grow for ever.
/// Failed rows stay for the owner to look at.
pub const KEEP_DONE: Duration = Duration::from_secs(7 * 24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, sqlx::FromRow)]
struct Claimed {
    seq: i64,
    id: String,
    channel: String,
    chat_id: String,
    reply_to: Option<String>,
    text: String,
    parts_sent: i64,
    attempts: i64,
}

/// A message for the outbox.
pub struct NewRow<'a> {
    pub id: &'a str,
    pub channel: &'a str,
    pub chat_id: &'a str,
    pub reply_to: Option<&'a str>,
    pub text: &'a str,
}

/// True when an item with this id already has its reply (or was deliberately left unanswered).
pub async fn exists(store: &Store, id: &str) -> Result<bool, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE id = $1").bind(id).fetch_one(store.pool()).await?;
    Ok(n > 0)
}

/// Adds a row; returns false when a row with this id exists already (nothing changes then).
pub async fn insert(store: &Store, row: NewRow<'_>) -> Result<bool, StoreError> {
    insert_with_status(store, row, "pending").await
}

/// Records that an item is settled without an answer (rate-limited), so a redelivery stays quiet.
pub async fn insert_silent(store: &Store, id: &str, channel: &str, chat_id: &str) -> Result<bool, StoreError> {
    insert_with_status(store, NewRow { id, channel, chat_id, reply_to: None, text: "" }, "dropped").await
}

async fn insert_with_status(store: &Store, row: NewRow<'_>, status: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO outbox (id, channel, chat_id, reply_to, text, status, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(row.id)
    .bind(row.channel)
    .bind(row.chat_id)
    .bind(row.reply_to)
    .bind(row.text)
    .bind(status)
    .bind(now)
    .execute(&mut *store.write().await?)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes sent and dropped rows created before `before` (unix ms); returns how many.
pub async fn prune(store: &Store, before: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM outbox WHERE status IN ('sent', 'dropped') AND created_at < $1")
        .bind(before)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(done.rows_affected())
}

/// Counts of rows by status, for the API and tests.
pub async fn counts(store: &Store, channel: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM outbox WHERE channel = $1 GROUP BY status ORDER BY status")
            .bind(channel)
            .fetch_all(store.pool())
            .await?;
    Ok(rows)
}

/// Claims due rows for `lease` (after which a dead daemon's rows are taken up again).
async fn claim(store: &Store, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
    let now = now_ms();
    // Only the oldest unsent row of each chat is eligible, which keeps each chat in order even
    // while one of its rows waits for a retry. The repeated condition outside the sub-select makes
    // a concurrent claim by another instance come back empty instead of sending twice.
    let rows = sqlx::query_as::<_, Claimed>(
        "UPDATE outbox SET status = 'sending', claimed_until = $1, attempts = attempts + 1
         WHERE seq IN (
             SELECT o.seq FROM outbox o
             WHERE ((o.status = 'pending' AND o.next_attempt_at <= $2) OR (o.status = 'sending' AND o.claimed_until <= $2))
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel AND p.chat_id = o.chat_id
                               AND p.status IN ('pending', 'sending') AND p.seq < o.seq)
             ORDER BY o.seq LIMIT $3)
           AND ((status = 'pending' AND next_attempt_at <= $2) OR (status = 'sending' AND claimed_until <= $2))
         RETURNING seq, id, channel, chat_id, reply_to, text, parts_sent, attempts",
    )
    .bind(now + lease.as_millis() as i64)
    .bind(now)
    .bind(BATCH)
    .fetch_all(&mut *store.write().await?)
    .await?;
    Ok(rows)
}

/// Delivers outbox rows until the daemon stops.
pub(crate) async fn run_sender(hub: Arc<Hub>, stop: CancellationToken) {
    let store = hub.state().store.clone();
    let mut failures = 0u32;
    let mut pruned_at: Option<std::time::Instant> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(std::time::Instant::now());
            match prune(&store, now_ms() - KEEP_DONE.as_millis() as i64).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "outbox: removed delivered rows older than 7 days"),
                Err(e) => tracing::warn!(error = %e, "outbox: cannot remove old rows"),
            }
        }
        let wake = hub.outbox_wake.notified();
        let rows = match claim(&store, hub.state().config.outbox_lease).await {
            Ok(rows) => {
                failures = 0;
                rows
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "outbox: cannot claim rows");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(crate::channels::backoff(failures)) => {}
                }
                continue;
            }
        };
        if rows.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let mut sends = JoinSet::new();
        for row in rows {
            let hub = hub.clone();
            sends.spawn(async move { deliver(&hub, row).await });
        }
        let mut sent = Vec::new();
        while let Some(done) = sends.join_next().await {
            match done {
                Ok(Ok(Some(row))) => sent.push(row),
                Ok(Err(e)) => tracing::warn!(error = %e, "outbox: cannot record a delivery"),
                _ => {}
            }
        }
        // The rows of one round are recorded together; until then they stay claimed (a crash
        // in between sends them again after the lease, as any send in flight).
        if let Err(e) = mark_sent(&store, &sent).await {
            tracing::warn!(error = %e, rows = sent.len(), "outbox: cannot record deliveries");
        }
    }
}

/// Records rows as sent: `(seq, parts)`.
async fn mark_sent(store: &Store, rows: &[(i64, i64)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut cases = String::new();
    let mut list = String::new();
    for i in 0..rows.len() {
        let (seq, parts) = (2 * i + 2, 2 * i + 3);
        cases.push_str(&format!(" WHEN ${seq} THEN ${parts}"));
        list.push_str(&format!("{}${seq}", if i == 0 { "" } else { ", " }));
    }
    let sql = format!(
        "UPDATE outbox SET status = 'sent', sent_at = $1, last_error = NULL, parts_sent = CASE seq{cases} END
         WHERE seq IN ({list})"
    );
    let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms());
    for (seq, parts) in rows {
        update = update.bind(*seq).bind(*parts);
    }
    update.execute(&mut *store.write().await?).await?;
    Ok(())
}

/// Sends one row. `Some((seq, parts))` when all of it went out, for [`mark_sent`]; failures and
/// retries are recorded here.
async fn deliver(hub: &Hub, row: Claimed) -> Result<Option<(i64, i64)>, StoreError> {
    let store = &hub.state().store;
    let Some(kind) = ChannelKind::parse(&row.channel) else {
        finish(store, row.seq, "failed", Some(&format!("no channel named '{}'", row.channel))).await?;
        return Ok(None);
    };
    let Some(adapter) = hub.adapter(kind) else {
        let reason = format!("{} is not connected", kind.as_str());
        retry(store, &row, &reason, None).await?;
        return Ok(None);
    };
    let mut pieces = split::split(&row.text, kind.limit());
    if pieces.is_empty() {
        pieces.push("…".into());
    }
    let mut sent = usize::try_from(row.parts_sent).unwrap_or(0);
    while sent < pieces.len() {
        let reply_to = if sent == 0 { row.reply_to.as_deref() } else { None };
        let key = format!("{}#{sent}", row.id);
        match adapter.send(&row.chat_id, &pieces[sent], reply_to, &key).await {
            Ok(()) => {
                sent += 1;
                metrics::counter!("nexus_channel_messages_total", "channel" => kind.as_str(), "direction" => "out")
                    .increment(1);
                if sent < pieces.len() {
                    sqlx::query("UPDATE outbox SET parts_sent = $1 WHERE seq = $2")
                        .bind(sent as i64)
                        .bind(row.seq)
                        .execute(&mut *store.write().await?)
                        .await?;
                }
            }
            Err(SendError::Retry { reason, after }) => {
                hub.update_status(kind, |s| s.error = Some(format!("sending failed: {reason}")));
                retry(store, &row, &reason, after).await?;
                return Ok(None);
            }
            Err(SendError::Permanent(reason)) => {
                tracing::warn!(channel = kind.as_str(), chat = %row.chat_id, error = %reason, "message refused by the platform");
                finish(store, row.seq, "failed", Some(&reason)).await?;
                return Ok(None);
            }
        }
    }
    Ok(Some((row.seq, pieces.len() as i64)))
}

async fn retry(store: &Store, row: &Claimed, reason: &str, after: Option<Duration>) -> Result<(), StoreError> {
    if row.attempts >= MAX_ATTEMPTS {
        return finish(store, row.seq, "failed", Some(reason)).await;
    }
    // 1 s doubling to 5 min, or what the platform asked for.
    let wait = after.unwrap_or_else(|| {
        Duration::from_secs(1u64 << (row.attempts.clamp(1, 9) - 1) as u32).min(Duration::from_secs(300))
    });
    sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $1, last_error = $2 WHERE seq = $3")
        .bind(now_ms() + wait.as_millis() as i64)
        .bind(reason)
        .bind(row.seq)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(())
}

async fn finish(store: &Store, seq: i64, status: &str, error: Option<&str>) -> Result<(), StoreError> {
    sqlx::query("UPDATE outbox SET status = $1, last_error = $2 WHERE seq = $3")
        .bind(status)
        .bind(error)
        .bind(seq)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(())
}
