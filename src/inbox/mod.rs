//! The durable message path. Every inbound chat message becomes an [`InboxItem`] on the bus queue
//! `inbox`; the router takes items in order, keeps each chat's messages in order while different
//! chats run concurrently, answers commands itself and everything else through
//! [`crate::agent::run_turn`], and writes the reply to the outbox table. The item is acked only
//! once its reply row is committed; the reply row's key is the item's id, so an item delivered
//! again (crash, timeout) is not answered twice. The outbox sender delivers rows through the
//! channel adapters, retrying with backoff while a platform is down.

pub mod access;
pub mod commands;
pub mod outbox;
mod router;
pub mod split;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::bus::BusError;
use crate::channels::Hub;
use crate::store::StoreError;

/// The bus queue of inbound messages.
pub const QUEUE: &str = "inbox";

/// One inbound message, as every adapter produces it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InboxItem {
    /// `<channel>:<chat>:<platform message id>` — the same on every redelivery by the platform.
    pub id: String,
    pub channel: String,
    pub chat_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub text: String,
    #[serde(default)]
    pub is_group: bool,
    /// Platform id of the message, to reply to it (Telegram/Discord thread the answer).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Unix ms when the platform received it.
    #[serde(default)]
    pub timestamp: i64,
    /// Set only by adapters whose source is our own infrastructure (the bridge's `mcp` items).
    #[serde(default)]
    pub trusted: bool,
}

impl InboxItem {
    pub fn new(channel: &str, chat_id: &str, message_id: &str, sender_id: &str, sender_name: &str, text: &str) -> Self {
        Self {
            id: format!("{channel}:{chat_id}:{message_id}"),
            channel: channel.to_string(),
            chat_id: chat_id.to_string(),
            sender_id: sender_id.to_string(),
            sender_name: sender_name.to_string(),
            text: text.to_string(),
            is_group: false,
            reply_to: None,
            timestamp: crate::store::now_ms(),
            trusted: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the daemon is shutting down")]
    Shutdown,
}

/// Puts an inbound message on the durable queue. Adapters confirm the message to their platform
/// only after this returned.
pub async fn enqueue(state: &AppState, item: &InboxItem) -> Result<(), InboxError> {
    enqueue_batch(state, std::slice::from_ref(item)).await
}

/// [`enqueue`] for several messages at once (a batch of updates from a platform), in order.
pub async fn enqueue_batch(state: &AppState, items: &[InboxItem]) -> Result<(), InboxError> {
    let mut payloads = Vec::with_capacity(items.len());
    for item in items {
        payloads.push(serde_json::to_string(item).map_err(|e| StoreError::Data(e.to_string()))?);
    }
    state.bus.enqueue_batch(QUEUE, &payloads).await?;
    for item in items {
        metrics::counter!("nexus_channel_messages_total", "channel" => item.channel.clone(), "direction" => "in")
            .increment(1);
    }
    Ok(())
}

/// Sends a message nobody asked for (schedules, heartbeat, the API) through the same outbox.
/// Returns the outbox row id.
pub async fn send(state: &AppState, channel: &str, chat_id: &str, text: &str) -> Result<String, InboxError> {
    let id = format!("out:{}", uuid::Uuid::now_v7());
    outbox::insert(&state.store, outbox::NewRow { id: &id, channel, chat_id, reply_to: None, text }).await?;
    if let Some(hub) = crate::channels::hub(state) {
        hub.outbox_wake.notify_one();
    }
    Ok(id)
}

/// Starts the router and the outbox sender.
pub(crate) fn start(state: &AppState, hub: Arc<Hub>) {
    state.register_queue(QUEUE);
    let stop = state.shutdown.clone();
    state.tasks.spawn(router::run(hub.clone(), stop.clone()));
    state.tasks.spawn(outbox::run_sender(hub, stop));
}
