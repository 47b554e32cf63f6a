//! Telegram through the Bot API with teloxide: our own long-polling loop, so an update is
//! confirmed to Telegram (the next getUpdates' offset) only after it is on the durable inbox.
//! Replies go out as plain text (no parse_mode), which can never fail on entity parsing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, ChatAction, Me, MessageId, ReplyParameters, UpdateKind};
use tokio_util::sync::CancellationToken;

use super::{Adapter, ChannelKind, Hub, SendError, backoff};
use crate::inbox::{self, InboxItem};

const KIND: ChannelKind = ChannelKind::Telegram;
/// Seconds one getUpdates call waits for news.
const POLL_SECS: u32 = 25;
/// Only one getUpdates per bot may run (a second ends the first with 409 Conflict), so daemons
/// sharing a bus take turns through a lease, renewed before every poll and outliving one poll.
const POLL_LEASE: Duration = Duration::from_secs(60);
const STANDBY_RETRY: Duration = Duration::from_secs(5);

/// The bus key of a bot's polling lease (the token's hash, never the token).
fn poll_lease_key(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("channels:telegram:poller:{short}")
}

/// A bot client against `TELEGRAM_API_URL`.
pub fn bot(api_url: &str, token: &str) -> Result<Bot, String> {
    let url = url::Url::parse(api_url).map_err(|e| format!("TELEGRAM_API_URL '{api_url}' is not a URL: {e}"))?;
    Ok(Bot::new(token).set_api_url(url))
}

/// A real check of a token: getMe. Returns the bot's username and id.
pub async fn check(api_url: &str, token: &str) -> Result<(String, String), String> {
    let me = bot(api_url, token)?.get_me().await.map_err(|e| format!("getMe failed: {e}"))?;
    Ok((me.username().to_string(), me.user.id.0.to_string()))
}

struct TelegramAdapter {
    bot: Bot,
}

fn chat(chat_id: &str) -> Result<ChatId, SendError> {
    chat_id
        .parse::<i64>()
        .map(ChatId)
        .map_err(|_| SendError::Permanent(format!("'{chat_id}' is not a Telegram chat id")))
}

fn classify(e: RequestError) -> SendError {
    match e {
        RequestError::RetryAfter(secs) => {
            SendError::Retry { reason: "rate limited by Telegram".into(), after: Some(secs.duration()) }
        }
        RequestError::Api(api) => SendError::Permanent(api.to_string()),
        RequestError::MigrateToChatId(id) => SendError::Permanent(format!("the group moved to chat {}", id.0)),
        other => SendError::Retry { reason: other.to_string(), after: None },
    }
}

#[async_trait]
impl Adapter for TelegramAdapter {
    async fn send(&self, chat_id: &str, text: &str, reply_to: Option<&str>, _key: &str) -> Result<(), SendError> {
        let mut request = self.bot.send_message(chat(chat_id)?, text);
        if let Some(id) = reply_to.and_then(|r| r.parse::<i32>().ok()) {
            request = request.reply_parameters(ReplyParameters::new(MessageId(id)).allow_sending_without_reply());
        }
        request.await.map(|_| ()).map_err(classify)
    }

    async fn typing(&self, chat_id: &str) {
        if let Ok(chat) = chat(chat_id) {
            let _ = self.bot.send_chat_action(chat, ChatAction::Typing).await;
        }
    }
}

pub(crate) fn spawn(hub: Arc<Hub>, token: String, cancel: CancellationToken) {
    let tasks = hub.state().tasks.clone();
    tasks.spawn(run(hub, token, cancel));
}

async fn sleep_or_cancel(cancel: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

async fn run(hub: Arc<Hub>, token: String, cancel: CancellationToken) {
    let bot = match bot(&hub.state().config.telegram_api_url, &token) {
        Ok(bot) => bot,
        Err(e) => return hub.set_error(KIND, e),
    };
    let mut attempt = 0;
    let me = loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = bot.get_me() => r,
        };
        match result {
            Ok(me) => break me,
            Err(e) => {
                attempt += 1;
                hub.set_error(KIND, format!("getMe failed: {e}; retrying"));
                if !sleep_or_cancel(&cancel, backoff(attempt)).await {
                    return;
                }
            }
        }
    };
    if cancel.is_cancelled() {
        return;
    }
    hub.set_connected(KIND, Some(me.username().to_string()), Some(me.user.id.0.to_string()));
    hub.register_adapter(KIND, Arc::new(TelegramAdapter { bot: bot.clone() }));
    // Long polling does not work while a webhook is set.
    let _ = bot.delete_webhook().await;

    let mut offset: Option<i32> = None;
    attempt = 0;
    let lease = poll_lease_key(&token);
    let mut standby = false;
    loop {
        match hub.state().bus.hold(&lease, hub.instance(), POLL_LEASE).await {
            Ok(true) if standby => {
                standby = false;
                hub.set_connected(KIND, None, None);
            }
            Ok(true) => {}
            Ok(false) => {
                if !standby {
                    standby = true;
                    hub.set_error(KIND, "standby: another Nexus instance polls this bot; this one only sends");
                }
                if !sleep_or_cancel(&cancel, STANDBY_RETRY).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                attempt += 1;
                hub.set_error(KIND, format!("cannot take the polling lease on the bus: {e}; retrying"));
                if !sleep_or_cancel(&cancel, backoff(attempt)).await {
                    return;
                }
                continue;
            }
        }
        let mut request = bot.get_updates().timeout(POLL_SECS).allowed_updates([AllowedUpdate::Message]);
        if let Some(offset) = offset {
            request = request.offset(offset);
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = request.send() => r,
        };
        match result {
            Ok(updates) => {
                if attempt > 0 {
                    hub.set_connected(KIND, None, None);
                }
                attempt = 0;
                let items: Vec<InboxItem> = updates.iter().filter_map(|u| to_item(&hub, &me, u)).collect();
                // Only once they are durable does the next getUpdates confirm them.
                let mut tries = 0;
                while let Err(e) = inbox::enqueue_batch(hub.state(), &items).await {
                    tries += 1;
                    tracing::warn!(error = %e, "telegram: cannot queue messages; retrying");
                    if !sleep_or_cancel(&cancel, backoff(tries)).await {
                        return;
                    }
                }
                if let Some(last) = updates.last() {
                    offset = Some(last.id.0 as i32 + 1);
                }
            }
            Err(RequestError::RetryAfter(secs)) => {
                if !sleep_or_cancel(&cancel, secs.duration()).await {
                    return;
                }
            }
            Err(e) => {
                attempt += 1;
                hub.set_error(KIND, format!("getUpdates failed: {e}; reconnecting"));
                if !sleep_or_cancel(&cancel, backoff(attempt)).await {
                    return;
                }
            }
        }
    }
}

/// The inbox item for a text message meant for the bot, if this update is one.
fn to_item(hub: &Hub, me: &Me, update: &Update) -> Option<InboxItem> {
    let UpdateKind::Message(message) = &update.kind else { return None };
    let text = message.text()?;
    let from = message.from.as_ref()?;
    if from.id == me.user.id {
        return None;
    }
    let is_group = !message.chat.is_private();
    let mut text = text.to_string();
    if is_group {
        let mention = format!("@{}", me.username()).to_lowercase();
        let mentioned = text.to_lowercase().contains(&mention);
        let replied = message.reply_to_message().and_then(|r| r.from.as_ref()).is_some_and(|u| u.id == me.user.id);
        if hub.config(KIND).policy.groups_require_mention && !mentioned && !replied {
            return None;
        }
        if let Some(at) = text.to_lowercase().find(&mention) {
            text.replace_range(at..at + mention.len(), "");
        }
        text = text.trim().to_string();
    }
    let name = match &from.username {
        Some(username) if from.first_name.is_empty() => username.clone(),
        _ => from.full_name(),
    };
    let mut item = InboxItem::new(
        KIND.as_str(),
        &message.chat.id.0.to_string(),
        &message.id.0.to_string(),
        &from.id.0.to_string(),
        &name,
        &text,
    );
    item.is_group = is_group;
    // In a group the answer threads under the question; in a private chat that is only noise.
    item.reply_to = is_group.then(|| message.id.0.to_string());
    item.timestamp = message.date.timestamp_millis();
    Some(item)
}
