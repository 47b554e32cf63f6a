//! The Bus: durable queues with acknowledgement, pub/sub, and keys with a time-to-live.
//!
//! Two adapters, chosen by `REDIS_URL`: [`memory::MemoryBus`] (embedded default; queue items persist
//! through the Store, so they survive a restart) and [`redis::RedisBus`] (Redis streams with a
//! consumer group, for several instances). Queues are at-least-once: an item taken but not acked
//! within its visibility timeout is delivered again, also after a crash.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("bus storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// One delivery of a queue item. Hand it back to [`Bus::ack`] when the work is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub queue: String,
    /// Stable id of the item (the same on every redelivery).
    pub id: String,
    pub payload: String,
    /// 1 on the first delivery, more on redeliveries (best effort on Redis).
    pub attempt: u32,
    /// Identifies this delivery; an ack with a stale receipt does nothing.
    pub receipt: String,
}

/// A subscription to one pub/sub topic. Slow subscribers skip messages rather than hold memory.
pub struct Subscription {
    receiver: broadcast::Receiver<String>,
}

impl Subscription {
    pub(crate) fn new(receiver: broadcast::Receiver<String>) -> Self {
        Self { receiver }
    }

    /// The next message, or `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            match self.receiver.recv().await {
                Ok(message) => return Some(message),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "pub/sub subscriber lagged; messages skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// "memory" or "redis".
    fn kind(&self) -> &'static str;

    /// Appends an item; returns its id.
    async fn enqueue(&self, queue: &str, payload: &str) -> Result<String, BusError>;

    /// Appends items in their order, in as few round trips as the backend allows; returns their
    /// ids. On an error none is reported queued: a retry may add some twice, which consumers
    /// tolerate already (an inbox item's id is in its payload).
    async fn enqueue_batch(&self, queue: &str, payloads: &[String]) -> Result<Vec<String>, BusError>;

    /// Takes the oldest visible item, waiting up to `wait` for one. It stays hidden from other
    /// consumers for `visibility`; unless acked by then it is delivered again.
    async fn dequeue(&self, queue: &str, visibility: Duration, wait: Duration) -> Result<Option<Delivery>, BusError>;

    /// [`Bus::dequeue`] for up to `max` items at once, oldest first; empty when none came within
    /// `wait`. Backends without a cheaper way take one.
    async fn dequeue_batch(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
        _max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        Ok(self.dequeue(queue, visibility, wait).await?.into_iter().collect())
    }

    /// Removes a delivered item for good. Returns false when the receipt is stale (the item was
    /// redelivered or already acked).
    async fn ack(&self, delivery: &Delivery) -> Result<bool, BusError>;

    /// [`Bus::ack`] for several deliveries; returns how many were removed.
    async fn ack_batch(&self, deliveries: &[Delivery]) -> Result<usize, BusError> {
        let mut removed = 0;
        for delivery in deliveries {
            removed += usize::from(self.ack(delivery).await?);
        }
        Ok(removed)
    }

    /// Gives an item back to be delivered again after `delay`.
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), BusError>;

    /// Items waiting or in flight.
    async fn depth(&self, queue: &str) -> Result<u64, BusError>;

    async fn publish(&self, topic: &str, message: &str) -> Result<(), BusError>;
    async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError>;

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), BusError>;
    async fn get(&self, key: &str) -> Result<Option<String>, BusError>;
    async fn delete(&self, key: &str) -> Result<bool, BusError>;
    /// Adds one to a counter and returns the new value; the TTL starts with the first increment.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, BusError>;

    /// A lease: holds `key` for `owner` for `ttl` when it is free, expired or `owner`'s already
    /// (then renewed). False while another owner holds it. Instances sharing a bus use it so that
    /// only one of them does a job that must run once (e.g. polling one Telegram bot).
    async fn hold(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, BusError>;

    /// A round trip to the backing service (readiness check).
    async fn ping(&self) -> Result<(), BusError>;
}

pub type SharedBus = Arc<dyn Bus>;
