//! The Redis bus: each queue is a stream read through one consumer group, so several `nexus`
//! instances share the work. A taken entry stays pending in the group until acked, and its
//! deadline (now + visibility) goes into a sorted set in the same script; once the deadline has
//! passed — also when its consumer was killed — the next take claims it again (XCLAIM).
//! Pub/sub goes through one pattern subscription that reconnects by itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamId;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, Delivery, Subscription};
use crate::config::redact_url;

const GROUP: &str = "nexus";
const TOPIC_CAPACITY: usize = 256;
/// Longest single blocking read; longer waits loop, so a silently dead connection is noticed.
const MAX_BLOCK: Duration = Duration::from_secs(10);
/// How long a write keeps retrying while Redis is restarting, before it reports the failure.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(15);

/// Takes one entry: first one whose deadline passed (claimed again), else a new one. Records the
/// new deadline atomically. Returns `{entry, deliveries}`, or `{false, last id, next deadline}`.
/// KEYS: stream, in-flight set. ARGV: group, consumer, now ms, new deadline ms.
const TAKE_SCRIPT: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 1)
if #due > 0 then
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, due[1])
  if #claimed > 0 and claimed[1] then
    redis.call('ZADD', KEYS[2], ARGV[4], due[1])
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], due[1], due[1], 1)
    return {claimed[1], p[1][4]}
  end
  redis.call('ZREM', KEYS[2], due[1])
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if r and r[1] and #r[1][2] > 0 then
  local e = r[1][2][1]
  redis.call('ZADD', KEYS[2], ARGV[4], e[1])
  return {e, 1}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local next_due = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
local due_at = '-1'
if #next_due > 0 then due_at = next_due[2] end
return {false, last_id, due_at}";

/// Acks only the delivery the receipt names (consumer and delivery count), then deletes the entry.
/// KEYS: stream, in-flight set. ARGV: group, entry id, consumer, deliveries.
const ACK_SCRIPT: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] or tostring(p[1][4]) ~= ARGV[4] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1";

const INCR_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

const HOLD_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1";

pub struct RedisBus {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    consumer: String,
    groups_ready: Mutex<HashSet<String>>,
    blocking: tokio::sync::Mutex<Vec<MultiplexedConnection>>,
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
    stop: CancellationToken,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisBus {
    /// Connects (failing fast with the URL, password hidden) and starts the pub/sub listener.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        let unreachable = |e: RedisError| BusError::Unavailable(format!("redis {} unreachable: {e}", redact_url(url)));
        let client = Client::open(url).map_err(unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await.map_err(unreachable)?;
        let bus = Self {
            client: client.clone(),
            conn,
            prefix: prefix.to_string(),
            consumer: format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]),
            groups_ready: Mutex::default(),
            blocking: tokio::sync::Mutex::default(),
            topics: Arc::default(),
            stop: CancellationToken::new(),
        };
        // Announcements published once `connect` returned must reach this instance: wait for the
        // subscription (pub/sub keeps nothing for a subscriber that is not there yet).
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(listen_for_topics(
            client,
            format!("{prefix}topic:"),
            bus.topics.clone(),
            bus.stop.clone(),
            subscribed,
        ));
        if tokio::time::timeout(Duration::from_secs(5), ready).await.is_err() {
            tracing::warn!("redis pub/sub is not subscribed yet; it keeps trying in the background");
        }
        Ok(bus)
    }

    /// Connects, retrying with backoff while Redis is unreachable.
    pub async fn connect_with_retry(url: &str, prefix: &str, give_up_after: Duration) -> Result<Self, BusError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match Self::connect(url, prefix).await {
                Ok(bus) => return Ok(bus),
                Err(e) if started.elapsed() + delay < give_up_after => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "redis not ready, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn stream_key(&self, queue: &str) -> String {
        format!("{}queue:{queue}", self.prefix)
    }

    fn plain_key(&self, key: &str) -> String {
        format!("{}kv:{key}", self.prefix)
    }

    async fn ensure_group(&self, stream: &str) -> Result<(), BusError> {
        if self.groups_ready.lock().unwrap_or_else(|p| p.into_inner()).contains(stream) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        // From id 0, so items added before the group existed are not skipped.
        let created: Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        self.groups_ready.lock().unwrap_or_else(|p| p.into_inner()).insert(stream.to_string());
        Ok(())
    }

    fn forget_group(&self, stream: &str) {
        self.groups_ready.lock().unwrap_or_else(|p| p.into_inner()).remove(stream);
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection, BusError> {
        if let Some(conn) = self.blocking.lock().await.pop() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(5)));
        Ok(self.client.get_multiplexed_async_connection_with_config(&config).await?)
    }

    fn inflight_key(&self, queue: &str) -> String {
        format!("{}inflight:{queue}", self.prefix)
    }

    async fn take(&self, queue: &str, visibility: Duration) -> Result<Taken, RedisError> {
        let now = crate::store::now_ms();
        let mut conn = self.conn.clone();
        let reply: Value = redis::Script::new(TAKE_SCRIPT)
            .key(self.stream_key(queue))
            .key(self.inflight_key(queue))
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(now)
            .arg(now + visibility.as_millis() as i64)
            .invoke_async(&mut conn)
            .await?;
        let Value::Array(parts) = reply else { return Ok(Taken::Nothing { last_id: "0-0".into(), next_due_ms: None }) };
        match parts.first() {
            Some(entry @ Value::Array(_)) => {
                let deliveries = parts.get(1).and_then(|v| redis::from_redis_value::<u32>(v.clone()).ok()).unwrap_or(1);
                Ok(parse_entry(entry)
                    .map(|e| Taken::Entry(e, deliveries))
                    .unwrap_or(Taken::Nothing { last_id: "0-0".into(), next_due_ms: None }))
            }
            _ => {
                let text = |i: usize| parts.get(i).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
                let next_due_ms = text(2).and_then(|t| t.parse::<f64>().ok()).filter(|d| *d >= 0.0).map(|d| d as i64);
                Ok(Taken::Nothing { last_id: text(1).unwrap_or_else(|| "0-0".into()), next_due_ms })
            }
        }
    }

    /// Waits (on a dedicated connection, so other commands are not held up) until an entry newer
    /// than `last_id` arrives or `wait` passes.
    async fn wait_for_new(&self, stream: &str, last_id: &str, wait: Duration) -> Result<(), BusError> {
        let mut conn = self.blocking_connection().await?;
        let reply: Result<Value, RedisError> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(stream)
            .arg(last_id)
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(_) => {
                self.blocking.lock().await.push(conn);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn to_delivery(&self, queue: &str, entry: StreamId, attempt: u32) -> Delivery {
        let field = |name: &str| entry.map.get(name).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok());
        Delivery {
            queue: queue.to_string(),
            id: field("i").unwrap_or_else(|| entry.id.clone()),
            payload: field("p").unwrap_or_default(),
            attempt,
            receipt: format!("{}/{}/{attempt}", entry.id, self.consumer),
        }
    }

    /// Retries a write while the connection manager reconnects (e.g. Redis restarting).
    async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, BusError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match op(self.conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && started.elapsed() < WRITE_RETRY_FOR => {
                    tracing::debug!(error = %e, "redis write failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One stream entry as XAUTOCLAIM returns it: `[id, [field, value, …]]`.
fn parse_entry(entry: &Value) -> Option<StreamId> {
    let Value::Array(parts) = entry else { return None };
    let id = redis::from_redis_value::<String>(parts.first()?.clone()).ok()?;
    let Value::Array(fields) = parts.get(1)? else { return None };
    let map = fields
        .chunks(2)
        .filter_map(|pair| Some((redis::from_redis_value::<String>(pair.first()?.clone()).ok()?, pair.get(1)?.clone())))
        .collect();
    Some(StreamId { id, map, ..Default::default() })
}

enum Taken {
    Entry(StreamId, u32),
    Nothing { last_id: String, next_due_ms: Option<i64> },
}

fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("LOADING")
}

fn split_receipt(receipt: &str) -> Option<(&str, &str, &str)> {
    let mut parts = receipt.rsplitn(3, '/');
    let attempt = parts.next()?;
    let consumer = parts.next()?;
    let entry = parts.next()?;
    Some((entry, consumer, attempt))
}

#[async_trait]
impl Bus for RedisBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, queue: &str, payload: &str) -> Result<String, BusError> {
        let stream = self.stream_key(queue);
        self.with_retry(|mut conn| {
            let stream = stream.clone();
            async move {
                redis::cmd("XADD").arg(&stream).arg("*").arg("p").arg(payload).query_async::<String>(&mut conn).await
            }
        })
        .await
    }

    async fn enqueue_batch(&self, queue: &str, payloads: &[String]) -> Result<Vec<String>, BusError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let stream = self.stream_key(queue);
        self.with_retry(|mut conn| {
            let stream = stream.clone();
            async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for payload in payloads {
                    pipe.cmd("XADD").arg(&stream).arg("*").arg("p").arg(payload);
                }
                pipe.query_async::<Vec<String>>(&mut conn).await
            }
        })
        .await
    }

    async fn dequeue(&self, queue: &str, visibility: Duration, wait: Duration) -> Result<Option<Delivery>, BusError> {
        let stream = self.stream_key(queue);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.ensure_group(&stream).await?;
            let taken = match self.take(queue, visibility).await {
                Ok(taken) => taken,
                Err(e) if e.to_string().contains("NOGROUP") => {
                    // Redis lost the group (restarted without persistence): create it again.
                    self.forget_group(&stream);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (last_id, next_due_ms) = match taken {
                Taken::Entry(entry, deliveries) => return Ok(Some(self.to_delivery(queue, entry, deliveries))),
                Taken::Nothing { last_id, next_due_ms } => (last_id, next_due_ms),
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            // Wake for a new entry, or when the earliest in-flight deadline passes.
            let until_due = next_due_ms
                .map(|due| Duration::from_millis((due - crate::store::now_ms()).max(1) as u64 + 5))
                .unwrap_or(MAX_BLOCK);
            self.wait_for_new(&stream, &last_id, remaining.min(MAX_BLOCK).min(until_due)).await?;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<bool, BusError> {
        let Some((entry, consumer, attempt)) = split_receipt(&delivery.receipt) else { return Ok(false) };
        let stream = self.stream_key(&delivery.queue);
        let inflight = self.inflight_key(&delivery.queue);
        let done: i64 = self
            .with_retry(|mut conn| {
                let (stream, inflight) = (stream.clone(), inflight.clone());
                async move {
                    redis::Script::new(ACK_SCRIPT)
                        .key(&stream)
                        .key(&inflight)
                        .arg(GROUP)
                        .arg(entry)
                        .arg(consumer)
                        .arg(attempt)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(done == 1)
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), BusError> {
        // Streams cannot hide an entry until a given time, so the item waits here, still pending
        // (invisible to others), then is re-added with its stable id and the old entry removed.
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Some((entry, _, _)) = split_receipt(&delivery.receipt) else { return Ok(()) };
        let stream = self.stream_key(&delivery.queue);
        let inflight = self.inflight_key(&delivery.queue);
        self.with_retry(|mut conn| {
            let (stream, inflight) = (stream.clone(), inflight.clone());
            async move {
                redis::pipe()
                    .atomic()
                    .cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("p")
                    .arg(&delivery.payload)
                    .arg("i")
                    .arg(&delivery.id)
                    .ignore()
                    .cmd("XACK")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(entry)
                    .ignore()
                    .cmd("XDEL")
                    .arg(&stream)
                    .arg(entry)
                    .ignore()
                    .cmd("ZREM")
                    .arg(&inflight)
                    .arg(entry)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    async fn depth(&self, queue: &str) -> Result<u64, BusError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN").arg(self.stream_key(queue)).query_async(&mut conn).await?)
    }

    async fn publish(&self, topic: &str, message: &str) -> Result<(), BusError> {
        let channel = format!("{}topic:{topic}", self.prefix);
        self.with_retry(|mut conn| {
            let channel = channel.clone();
            async move { redis::cmd("PUBLISH").arg(&channel).arg(message).query_async::<i64>(&mut conn).await }
        })
        .await?;
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let sender = topics.entry(topic.to_string()).or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0);
        Ok(Subscription::new(sender.subscribe()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), BusError> {
        let key = self.plain_key(key);
        self.with_retry(|mut conn| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
            async move { cmd.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<String>, BusError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(self.plain_key(key)).query_async(&mut conn).await?)
    }

    async fn delete(&self, key: &str) -> Result<bool, BusError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("DEL").arg(self.plain_key(key)).query_async(&mut conn).await?;
        Ok(n > 0)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, BusError> {
        let key = self.plain_key(key);
        self.with_retry(|mut conn| {
            let key = key.clone();
            async move {
                redis::Script::new(INCR_SCRIPT)
                    .key(&key)
                    .arg(ttl.as_millis().max(1) as u64)
                    .invoke_async(&mut conn)
                    .await
            }
        })
        .await
    }

    async fn hold(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, BusError> {
        let key = self.plain_key(key);
        let held: i64 = self
            .with_retry(|mut conn| {
                let key = key.clone();
                async move {
                    redis::Script::new(HOLD_SCRIPT)
                        .key(&key)
                        .arg(owner)
                        .arg(ttl.as_millis().max(1) as u64)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(held == 1)
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

/// Keeps one pattern subscription open for the bus's lifetime, reconnecting with backoff, and
/// fans messages out to local subscribers.
async fn listen_for_topics(
    client: Client,
    channel_prefix: String,
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
    stop: CancellationToken,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    use futures::StreamExt;
    let mut delay = Duration::from_millis(200);
    let mut subscribed = Some(subscribed);
    while !stop.is_cancelled() {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(format!("{channel_prefix}*")).await?;
            if let Some(signal) = subscribed.take() {
                let _ = signal.send(());
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(topic) = msg.get_channel_name().strip_prefix(channel_prefix.as_str()) else { continue };
                let Ok(payload) = msg.get_payload::<String>() else { continue };
                let mut topics = topics.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(sender) = topics.get(topic)
                    && sender.send(payload).is_err()
                {
                    topics.remove(topic);
                }
            }
            Ok::<(), RedisError>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            result = session => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "redis pub/sub connection lost; reconnecting");
                } else {
                    tracing::warn!("redis pub/sub connection closed; reconnecting");
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
