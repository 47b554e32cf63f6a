//! The router: one loop takes items off the `inbox` queue in order and hands each to its chat's
//! sequencer; a chat's items run one after another, different chats concurrently.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::access::{self, PendingTurn};
use super::commands::{self, Outcome};
use super::outbox::{self, NewRow};
use super::{InboxError, InboxItem, QUEUE};
use crate::agent::{AgentError, AgentEvent, TurnRequest};
use crate::bus::Delivery;
use crate::channels::{ChannelConfig, ChannelKind, Hub};
use crate::tools::Caller;

/// Items taken from the queue but not yet answered, across all chats.
const MAX_IN_FLIGHT: usize = 512;
/// Items taken from the queue in one round trip.
const TAKE_AT_ONCE: usize = 64;
/// Answered items acknowledged in one round trip (at most).
const ACK_AT_ONCE: usize = 128;
/// An answer faster than this needs no typing indicator (each one is a platform API call, and
/// Telegram counts them against the bot's rate limit).
const TYPING_AFTER: Duration = Duration::from_secs(1);
const TYPING_EVERY: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Sequencer {
    /// Per chat, items waiting behind the one being answered. A chat is present while a worker runs.
    chats: HashMap<String, VecDeque<(InboxItem, OwnedSemaphorePermit)>>,
    /// Deliveries of items being answered, by item id (a redelivery joins the first).
    in_flight: HashMap<String, Vec<Delivery>>,
}

type Shared = Arc<Mutex<Sequencer>>;

fn lock(seq: &Shared) -> std::sync::MutexGuard<'_, Sequencer> {
    seq.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) async fn run(hub: Arc<Hub>, stop: CancellationToken) {
    let bus = hub.state().bus.clone();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let seq: Shared = Arc::default();
    let (acks, answered) = mpsc::unbounded_channel();
    hub.state().tasks.spawn(acker(hub.clone(), answered));
    // A turn may run longer than the visibility: the item then comes back while it still runs,
    // and is recognised by its id and settled together with the first delivery.
    let visibility = hub.state().config.inbox_visibility;
    let mut failures = 0u32;
    loop {
        // One permit per item taken: wait for the first, then take what else is free.
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let mut free = vec![first];
        while free.len() < TAKE_AT_ONCE {
            match permits.clone().try_acquire_owned() {
                Ok(p) => free.push(p),
                Err(_) => break,
            }
        }
        let taken = tokio::select! {
            _ = stop.cancelled() => return,
            d = bus.dequeue_batch(QUEUE, visibility, Duration::from_secs(2), free.len()) => d,
        };
        let deliveries = match taken {
            Ok(d) => {
                failures = 0;
                d
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "inbox: cannot take items");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(crate::channels::backoff(failures)) => {}
                }
                continue;
            }
        };
        for (delivery, permit) in deliveries.into_iter().zip(free) {
            route(&hub, &seq, &acks, delivery, permit, &stop).await;
        }
    }
}

/// Hands a taken item to its chat's sequencer (starting the chat's worker when it has none).
async fn route(
    hub: &Arc<Hub>,
    seq: &Shared,
    acks: &Acks,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
    stop: &CancellationToken,
) {
    let item: InboxItem = match serde_json::from_str(&delivery.payload) {
        Ok(item) => item,
        Err(e) => {
            // Not ours to understand: drop it rather than redeliver it forever.
            tracing::warn!(error = %e, "inbox: dropping an item that is not an inbox item");
            let _ = hub.state().bus.ack(&delivery).await;
            return;
        }
    };
    let chat = format!("{}:{}", item.channel, item.chat_id);
    let mut s = lock(seq);
    if let Some(deliveries) = s.in_flight.get_mut(&item.id) {
        deliveries.push(delivery);
        return;
    }
    s.in_flight.insert(item.id.clone(), vec![delivery]);
    let start_worker = !s.chats.contains_key(&chat);
    s.chats.entry(chat.clone()).or_default().push_back((item, permit));
    drop(s);
    if start_worker {
        hub.state().tasks.spawn(chat_worker(hub.clone(), seq.clone(), chat, acks.clone(), stop.clone()));
    }
}

/// Answered items to acknowledge, with their in-flight permits.
type Acks = mpsc::UnboundedSender<(Vec<Delivery>, OwnedSemaphorePermit)>;

/// Acknowledges answered items in batches, off the chats' path: a chat goes on to its next item
/// as soon as a reply is committed. An ack lost in a crash only means a redelivery, which finds
/// the reply and is not answered again.
async fn acker(hub: Arc<Hub>, mut answered: mpsc::UnboundedReceiver<(Vec<Delivery>, OwnedSemaphorePermit)>) {
    let bus = hub.state().bus.clone();
    let mut batch = Vec::new();
    while answered.recv_many(&mut batch, ACK_AT_ONCE).await > 0 {
        let (deliveries, permits): (Vec<Vec<Delivery>>, Vec<OwnedSemaphorePermit>) = batch.drain(..).unzip();
        let deliveries: Vec<Delivery> = deliveries.into_iter().flatten().collect();
        if let Err(e) = bus.ack_batch(&deliveries).await {
            tracing::warn!(error = %e, items = deliveries.len(), "inbox: cannot acknowledge answered items; they will come back");
        }
        drop(permits);
    }
}

async fn chat_worker(hub: Arc<Hub>, seq: Shared, chat: String, acks: Acks, stop: CancellationToken) {
    let bus = hub.state().bus.clone();
    loop {
        let next = {
            let mut s = lock(&seq);
            let next = s.chats.get_mut(&chat).and_then(|q| q.pop_front());
            if next.is_none() {
                s.chats.remove(&chat);
            }
            next
        };
        let Some((item, permit)) = next else { return };
        let result = if stop.is_cancelled() { Err(InboxError::Shutdown) } else { process(&hub, &item, &stop).await };
        let deliveries = lock(&seq).in_flight.remove(&item.id).unwrap_or_default();
        let Err(failure) = result else {
            let _ = acks.send((deliveries, permit));
            continue;
        };
        // Shutting down: give it back at once, the next start answers it.
        let delay = if matches!(failure, InboxError::Shutdown) {
            Duration::ZERO
        } else {
            tracing::warn!(item = %item.id, error = %failure, "inbox: answering failed; will retry");
            Duration::from_secs(5)
        };
        for delivery in deliveries {
            let settled = bus.nack(&delivery, delay).await;
            if let Err(e) = settled {
                tracing::warn!(item = %item.id, error = %e, "inbox: cannot settle a delivery; it will come back");
            }
        }
        drop(permit);
    }
}

/// Answers one item: its reply row is committed when this returns Ok.
async fn process(hub: &Hub, item: &InboxItem, stop: &CancellationToken) -> Result<(), InboxError> {
    let state = hub.state();
    let store = &state.store;
    if outbox::exists(store, &item.id).await? {
        return Ok(());
    }
    let kind = ChannelKind::parse(&item.channel);
    let config = kind.map(|k| hub.config(k)).unwrap_or_default();
    if let Some(kind) = kind {
        hub.update_status(kind, |s| s.last_message = Some(item.timestamp));
    }
    if !item.trusted && !config.allows(&item.sender_id) {
        let code =
            access::pairing_code(store, &item.channel, &item.sender_id, &item.sender_name, &item.chat_id).await?;
        let text = format!(
            "Hi {}! I don't know you yet, so I can't answer. Your pairing code is {code}. \
             Ask the owner to approve it (\"!approve {code}\" from an allowed chat, or in the dashboard). \
             It expires in one hour.",
            item.sender_name
        );
        return reply(hub, item, &text).await;
    }
    let limit = i64::from(config.policy.rate_per_minute.max(1));
    let key = format!("channels:rate:{}:{}", item.channel, item.sender_id);
    let count = state.bus.incr(&key, Duration::from_secs(60)).await?;
    if count > limit && !item.trusted {
        if count == limit + 1 {
            return reply(hub, item, "You're sending messages faster than I may answer; wait a minute.").await;
        }
        outbox::insert_silent(store, &item.id, &item.channel, &item.chat_id).await?;
        return Ok(());
    }
    let (text, approved_tools) = match commands::parse(&item.text) {
        Some((command, args)) => match commands::handle(hub, item, &command, &args).await? {
            Outcome::Reply(text) => return reply(hub, item, &text).await,
            Outcome::RunTurn { text, approved_tools } => (text, approved_tools),
        },
        None => (item.text.clone(), Vec::new()),
    };
    let answer = answer(hub, item, kind, &config, text, approved_tools, stop).await?;
    reply(hub, item, &answer).await
}

async fn reply(hub: &Hub, item: &InboxItem, text: &str) -> Result<(), InboxError> {
    let row = NewRow {
        id: &item.id,
        channel: &item.channel,
        chat_id: &item.chat_id,
        reply_to: item.reply_to.as_deref(),
        text,
    };
    outbox::insert(&hub.state().store, row).await?;
    hub.outbox_wake.notify_one();
    Ok(())
}

/// Runs the brain for one message, with a typing indicator and (when the sender asked for it)
/// progress lines in the chat. Returns the text to send.
async fn answer(
    hub: &Hub,
    item: &InboxItem,
    kind: Option<ChannelKind>,
    config: &ChannelConfig,
    text: String,
    approved_tools: Vec<String>,
    stop: &CancellationToken,
) -> Result<String, InboxError> {
    let state = hub.state();
    let store = &state.store;
    let session = access::session(store, &item.channel, &item.sender_id).await?;
    let conversation_key = commands::conversation_key(item, &session);
    let request = TurnRequest {
        conversation_key: conversation_key.clone(),
        text: text.clone(),
        tier: session.tier.clone(),
        think: crate::brain::Think::parse(&session.think).unwrap_or_default(),
        caller: Caller::Agent { conversation_id: conversation_key.clone() },
        max_risk: config.policy.max_risk,
        approved_tools,
    };
    let working = CancellationToken::new();
    if let Some(adapter) = kind.and_then(|k| hub.adapter(k)) {
        let chat = item.chat_id.clone();
        let working = working.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = working.cancelled() => return,
                _ = tokio::time::sleep(TYPING_AFTER) => {}
            }
            loop {
                adapter.typing(&chat).await;
                tokio::select! {
                    _ = working.cancelled() => return,
                    _ = tokio::time::sleep(TYPING_EVERY) => {}
                }
            }
        });
    }
    let (events, mut progress) = mpsc::channel::<AgentEvent>(64);
    let verbose = session.verbose.clone();
    let progress_store = store.clone();
    let progress_item = item.clone();
    let progress_task = tokio::spawn(async move {
        let mut n = 0;
        while let Some(event) = progress.recv().await {
            let line = match (&event, verbose.as_str()) {
                (AgentEvent::ToolCall { name, .. }, "tools" | "full") => format!("⚙ {name}…"),
                (AgentEvent::ToolResult { name, ok, output, .. }, "full") => {
                    let mut out = output.to_string();
                    out.truncate(out.char_indices().nth(300).map(|(i, _)| i).unwrap_or(out.len()));
                    format!("{} {name}: {out}", if *ok { "✓" } else { "✗" })
                }
                _ => continue,
            };
            n += 1;
            let id = format!("{}#progress{n}", progress_item.id);
            let row = NewRow {
                id: &id,
                channel: &progress_item.channel,
                chat_id: &progress_item.chat_id,
                reply_to: None,
                text: &line,
            };
            if let Err(e) = outbox::insert(&progress_store, row).await {
                tracing::warn!(error = %e, "inbox: cannot queue a progress line");
            }
        }
    });
    let result = crate::agent::run_turn(state, request, Some(events), stop.child_token()).await;
    working.cancel();
    let _ = progress_task.await;
    match result {
        Ok(reply) => {
            access::count_usage(store, &item.channel, &item.sender_id, reply.input_tokens, reply.output_tokens).await?;
            match reply.pending_confirmation {
                Some(pending) => {
                    let mut session = access::session(store, &item.channel, &item.sender_id).await?;
                    let turn = PendingTurn { text, tool: pending.name.clone(), conversation_key };
                    session.pending = serde_json::to_string(&turn).ok();
                    access::save_session(store, &item.channel, &item.sender_id, &session).await?;
                    let risk = serde_json::to_value(pending.risk).ok().and_then(|v| v.as_str().map(String::from));
                    Ok(format!(
                        "{}\n\nI want to run {} (risk: {}), which needs your confirmation. Reply !yes to run it or !no to cancel.",
                        reply.text.trim(),
                        pending.name,
                        risk.unwrap_or_default()
                    )
                    .trim_start()
                    .to_string())
                }
                None => Ok(reply.text),
            }
        }
        Err(AgentError::Unavailable(sentence)) => Ok(sentence),
        Err(AgentError::TimedOut(secs)) => {
            Ok(format!("Sorry, that took longer than {secs} s and was stopped. Try a smaller request."))
        }
        Err(AgentError::Cancelled) => Err(InboxError::Shutdown),
        Err(AgentError::Store(e)) => Err(e.into()),
    }
}
