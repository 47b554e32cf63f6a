//! Discord with serenity: the gateway brings DMs and guild messages, REST sends the answers.
//! `DISCORD_API_URL` redirects REST (and so the gateway URL it hands out) for tests and proxies.
//! Sends carry a nonce with `enforce_nonce`, so Discord itself drops a chunk sent twice after a
//! crash between sending and recording it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use serenity::all::{
    ChannelId, ConnectionStage, Context, CreateMessage, EventHandler, GatewayIntents, Http, HttpBuilder, Message,
    Nonce, Ready, ShardStageUpdateEvent, UserId,
};
use tokio_util::sync::CancellationToken;

use super::{Adapter, ChannelKind, Hub, SendError, backoff};
use crate::inbox::{self, InboxItem};

const KIND: ChannelKind = ChannelKind::Discord;

fn http(api_url: Option<&str>, token: &str) -> Http {
    let mut builder = HttpBuilder::new(token);
    if let Some(url) = api_url {
        builder = builder.proxy(url.trim_end_matches('/')).ratelimiter_disabled(true);
    }
    builder.build()
}

/// A real check of a token: who the bot is, and where its gateway is.
pub async fn check(api_url: Option<&str>, token: &str) -> Result<(String, String), String> {
    let http = http(api_url, token);
    let me = http.get_current_user().await.map_err(|e| format!("GET /users/@me failed: {e}"))?;
    http.get_bot_gateway().await.map_err(|e| format!("GET /gateway/bot failed: {e}"))?;
    Ok((me.name.clone(), me.id.get().to_string()))
}

struct DiscordAdapter {
    http: Arc<Http>,
}

fn channel(chat_id: &str) -> Result<ChannelId, SendError> {
    chat_id
        .parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(ChannelId::new)
        .ok_or_else(|| SendError::Permanent(format!("'{chat_id}' is not a Discord channel id")))
}

fn classify(e: serenity::Error) -> SendError {
    match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) => {
            let status = r.status_code.as_u16();
            if status == 429 || status >= 500 {
                SendError::Retry { reason: format!("Discord answered {status}"), after: None }
            } else {
                SendError::Permanent(format!("Discord answered {status}: {}", r.error.message))
            }
        }
        serenity::Error::Model(e) => SendError::Permanent(e.to_string()),
        other => SendError::Retry { reason: other.to_string(), after: None },
    }
}

/// Discord nonces are at most 25 characters: a hash of the chunk key.
fn nonce(key: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("nx{:016x}", hasher.finish())
}

#[async_trait]
impl Adapter for DiscordAdapter {
    async fn send(&self, chat_id: &str, text: &str, _reply_to: Option<&str>, key: &str) -> Result<(), SendError> {
        let message = CreateMessage::new().content(text).nonce(Nonce::String(nonce(key))).enforce_nonce(true);
        channel(chat_id)?.send_message(&self.http, message).await.map(|_| ()).map_err(classify)
    }

    async fn typing(&self, chat_id: &str) {
        if let Ok(channel) = channel(chat_id) {
            let _ = channel.broadcast_typing(&self.http).await;
        }
    }
}

struct Handler {
    hub: Arc<Hub>,
    me: UserId,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.hub.set_connected(KIND, Some(ready.user.name.clone()), Some(ready.user.id.get().to_string()));
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        match event.new {
            ConnectionStage::Connected => self.hub.set_connected(KIND, None, None),
            ConnectionStage::Disconnected | ConnectionStage::Connecting | ConnectionStage::Resuming => {
                self.hub.set_error(KIND, format!("gateway {:?}; reconnecting", event.new))
            }
            _ => {}
        }
    }

    async fn message(&self, _ctx: Context, message: Message) {
        // Discord sends the bot's own messages back; answering them would never end.
        if message.author.id == self.me || message.author.bot {
            return;
        }
        let is_dm = message.guild_id.is_none();
        let replied = message.referenced_message.as_ref().is_some_and(|r| r.author.id == self.me);
        if !is_dm && !message.mentions_user_id(self.me) && !replied {
            return;
        }
        let id = self.me.get();
        let text = message.content.replace(&format!("<@{id}>"), "").replace(&format!("<@!{id}>"), "");
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let mut item = InboxItem::new(
            KIND.as_str(),
            &message.channel_id.get().to_string(),
            &message.id.get().to_string(),
            &message.author.id.get().to_string(),
            message.author.global_name.as_deref().unwrap_or(&message.author.name),
            text,
        );
        item.is_group = !is_dm;
        item.reply_to = Some(message.id.get().to_string());
        item.timestamp = message.timestamp.unix_timestamp() * 1000;
        // The gateway does not redeliver: retry here until the item is durable.
        let mut tries = 0;
        while let Err(e) = inbox::enqueue(self.hub.state(), &item).await {
            tries += 1;
            tracing::warn!(error = %e, "discord: cannot queue a message; retrying");
            if tries > 10 {
                tracing::error!(message = %item.id, "discord: message lost: the inbox stayed unavailable");
                return;
            }
            tokio::time::sleep(backoff(tries)).await;
        }
    }
}

pub(crate) fn spawn(hub: Arc<Hub>, token: String, cancel: CancellationToken) {
    let tasks = hub.state().tasks.clone();
    tasks.spawn(run(hub, token, cancel));
}

async fn run(hub: Arc<Hub>, token: String, cancel: CancellationToken) {
    let api_url = hub.state().config.discord_api_url.clone();
    let mut attempt = 0;
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            r = connect_once(&hub, api_url.as_deref(), &token, &cancel) => r,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                attempt += 1;
                hub.set_error(KIND, format!("{e}; reconnecting"));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// Runs one client until it fails (Err) or is cancelled (Ok).
async fn connect_once(
    hub: &Arc<Hub>,
    api_url: Option<&str>,
    token: &str,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let http = http(api_url, token);
    let me = http.get_current_user().await.map_err(|e| format!("GET /users/@me failed: {e}"))?;
    let me_id = me.id;
    hub.update_status(KIND, |s| {
        s.bot_name = Some(me.name.clone());
        s.bot_id = Some(me_id.get().to_string());
    });
    let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
    let mut client = serenity::all::ClientBuilder::new_with_http(http, intents)
        .event_handler(Handler { hub: hub.clone(), me: me_id })
        .await
        .map_err(|e| format!("Discord client: {e}"))?;
    hub.register_adapter(KIND, Arc::new(DiscordAdapter { http: client.http.clone() }));
    let shards = client.shard_manager.clone();
    let stop = cancel.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shards.shutdown_all().await;
    });
    client.start().await.map_err(|e| format!("Discord gateway: {e}"))?;
    if cancel.is_cancelled() { Ok(()) } else { Err("Discord gateway closed".into()) }
}
