//! The embedded bus: queue items live in the Store's `bus_queue` table (so they survive a restart
//! or a `kill -9`), pub/sub and TTL keys live in memory (they are short-lived by nature).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use super::{Bus, BusError, Delivery, Subscription};
use crate::store::{Store, StoreError, now_ms};

/// How often a waiting consumer looks again for items whose visibility timeout ran out.
const REDELIVERY_POLL: Duration = Duration::from_millis(250);
const TOPIC_CAPACITY: usize = 256;
/// Items per INSERT (well below the bind-parameter limits of SQLite and PostgreSQL).
const BATCH_MAX: usize = 500;

pub struct MemoryBus {
    store: Store,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    topics: Mutex<HashMap<String, broadcast::Sender<String>>>,
    keys: Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    values: HashMap<String, (String, Option<Instant>)>,
    writes_since_sweep: usize,
}

impl Keys {
    fn live(&mut self, key: &str) -> Option<&mut (String, Option<Instant>)> {
        let now = Instant::now();
        if self.values.get(key).is_some_and(|(_, exp)| exp.is_some_and(|t| t <= now)) {
            self.values.remove(key);
        }
        self.values.get_mut(key)
    }

    /// Drops expired keys now and then, so keys nobody reads again do not pile up for days.
    fn note_write(&mut self) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= 1024 {
            let now = Instant::now();
            self.values.retain(|_, (_, exp)| exp.is_none_or(|t| t > now));
            self.writes_since_sweep = 0;
        }
    }
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    seq: i64,
    payload: String,
    attempts: i64,
}

impl MemoryBus {
    pub fn new(store: Store) -> Self {
        Self { store, wakers: Mutex::default(), topics: Mutex::default(), keys: Mutex::default() }
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.entry(queue.to_string()).or_default().clone()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to `max` of the oldest visible items, oldest first.
    async fn try_claim(&self, queue: &str, visibility: Duration, max: usize) -> Result<Vec<Delivery>, BusError> {
        let now = now_ms();
        // One receipt for the batch: an ack names the item by `seq` and this delivery by receipt.
        let receipt = uuid::Uuid::new_v4().to_string();
        // The outer `visible_at` check makes a concurrent claim of the same row (PostgreSQL, read
        // committed) come back empty instead of delivering the item twice.
        let mut rows: Vec<ClaimedRow> = sqlx::query_as(
            "UPDATE bus_queue SET visible_at = $1, attempts = attempts + 1, receipt = $2
             WHERE seq IN (SELECT seq FROM bus_queue WHERE queue = $3 AND visible_at <= $4 ORDER BY seq LIMIT $5)
               AND visible_at <= $4
             RETURNING seq, payload, attempts",
        )
        .bind(now + visibility.as_millis() as i64)
        .bind(&receipt)
        .bind(queue)
        .bind(now)
        .bind(max.clamp(1, BATCH_MAX) as i64)
        .fetch_all(&mut *self.store.write().await?)
        .await
        .map_err(StoreError::from)?;
        rows.sort_unstable_by_key(|r| r.seq);
        Ok(rows
            .into_iter()
            .map(|r| Delivery {
                queue: queue.to_string(),
                id: r.seq.to_string(),
                payload: r.payload,
                attempt: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                receipt: receipt.clone(),
            })
            .collect())
    }
}

fn parse_seq(delivery: &Delivery) -> Result<i64, BusError> {
    delivery.id.parse().map_err(|_| BusError::Unavailable(format!("not an id of this bus: {}", delivery.id)))
}

#[async_trait]
impl Bus for MemoryBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, queue: &str, payload: &str) -> Result<String, BusError> {
        let ids = self.enqueue_batch(queue, &[payload.to_string()]).await?;
        ids.into_iter().next().ok_or_else(|| BusError::Unavailable("the queue did not return the new item's id".into()))
    }

    async fn enqueue_batch(&self, queue: &str, payloads: &[String]) -> Result<Vec<String>, BusError> {
        if payloads.len() > BATCH_MAX {
            let mut ids = Vec::with_capacity(payloads.len());
            for chunk in payloads.chunks(BATCH_MAX) {
                ids.extend(self.enqueue_batch(queue, chunk).await?);
            }
            return Ok(ids);
        }
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut sql = String::from("INSERT INTO bus_queue (queue, payload, visible_at, attempts, created_at) VALUES ");
        for i in 0..payloads.len() {
            let sep = if i == 0 { "" } else { ", " };
            sql.push_str(&format!("{sep}($1, ${}, $2, 0, $2)", i + 3));
        }
        sql.push_str(" RETURNING seq");
        let mut insert = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(queue).bind(now);
        for payload in payloads {
            insert = insert.bind(payload);
        }
        let mut seqs = insert.fetch_all(&mut *self.store.write().await?).await.map_err(StoreError::from)?;
        seqs.sort_unstable();
        self.waker(queue).notify_waiters();
        Ok(seqs.into_iter().map(|s| s.to_string()).collect())
    }

    async fn dequeue(&self, queue: &str, visibility: Duration, wait: Duration) -> Result<Option<Delivery>, BusError> {
        Ok(self.dequeue_batch(queue, visibility, wait, 1).await?.pop())
    }

    async fn dequeue_batch(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + wait;
        let waker = self.waker(queue);
        loop {
            // Registered before looking, so an enqueue between the look and the wait still wakes us.
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self.try_claim(queue, visibility, max).await?;
            if !taken.is_empty() {
                return Ok(taken);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(taken);
            }
            let _ = tokio::time::timeout((deadline - now).min(REDELIVERY_POLL), notified).await;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<bool, BusError> {
        Ok(self.ack_batch(std::slice::from_ref(delivery)).await? > 0)
    }

    async fn ack_batch(&self, deliveries: &[Delivery]) -> Result<usize, BusError> {
        let mut removed = 0;
        for chunk in deliveries.chunks(BATCH_MAX / 2) {
            let mut sql = String::from("DELETE FROM bus_queue WHERE ");
            for i in 0..chunk.len() {
                let sep = if i == 0 { "" } else { " OR " };
                sql.push_str(&format!("{sep}(seq = ${} AND receipt = ${})", 2 * i + 1, 2 * i + 2));
            }
            let mut delete = sqlx::query(sqlx::AssertSqlSafe(sql));
            for delivery in chunk {
                delete = delete.bind(parse_seq(delivery)?).bind(delivery.receipt.clone());
            }
            let done = delete.execute(&mut *self.store.write().await?).await.map_err(StoreError::from)?;
            removed += done.rows_affected() as usize;
        }
        Ok(removed)
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), BusError> {
        sqlx::query("UPDATE bus_queue SET visible_at = $1, receipt = NULL WHERE seq = $2 AND receipt = $3")
            .bind(now_ms() + delay.as_millis() as i64)
            .bind(parse_seq(delivery)?)
            .bind(&delivery.receipt)
            .execute(&mut *self.store.write().await?)
            .await
            .map_err(StoreError::from)?;
        if delay.is_zero() {
            self.waker(&delivery.queue).notify_waiters();
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<u64, BusError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bus_queue WHERE queue = $1")
            .bind(queue)
            .fetch_one(self.store.pool())
            .await
            .map_err(StoreError::from)?;
        Ok(n.max(0) as u64)
    }

    async fn publish(&self, topic: &str, message: &str) -> Result<(), BusError> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = topics.get(topic)
            && sender.send(message.to_string()).is_err()
        {
            // Nobody listens any more: forget the topic rather than keep it forever.
            topics.remove(topic);
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let sender = topics.entry(topic.to_string()).or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0);
        Ok(Subscription::new(sender.subscribe()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), BusError> {
        let mut keys = self.keys();
        keys.values.insert(key.to_string(), (value.to_string(), ttl.map(|t| Instant::now() + t)));
        keys.note_write();
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<String>, BusError> {
        Ok(self.keys().live(key).map(|(v, _)| v.clone()))
    }

    async fn delete(&self, key: &str) -> Result<bool, BusError> {
        let mut keys = self.keys();
        let existed = keys.live(key).is_some();
        keys.values.remove(key);
        Ok(existed)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, BusError> {
        let mut keys = self.keys();
        let next = match keys.live(key) {
            Some((value, _)) => {
                let n = value.parse::<i64>().unwrap_or(0).saturating_add(1);
                *value = n.to_string();
                n
            }
            None => {
                keys.values.insert(key.to_string(), ("1".into(), Some(Instant::now() + ttl)));
                1
            }
        };
        keys.note_write();
        Ok(next)
    }

    async fn hold(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, BusError> {
        let mut keys = self.keys();
        if keys.live(key).is_some_and(|(holder, _)| holder != owner) {
            return Ok(false);
        }
        keys.values.insert(key.to_string(), (owner.to_string(), Some(Instant::now() + ttl)));
        keys.note_write();
        Ok(true)
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.store.ping().await?;
        Ok(())
    }
}
