//! Channel adapters (Telegram, Discord, the WhatsApp bridge) and the hub that runs them.
//!
//! Adapters only translate: platform events become inbox items ([`crate::inbox`]), and outbox rows
//! become platform messages. The hub keeps each channel's config (allowlist, policy) in memory,
//! restarts an adapter when its config changes (bus topic `channel.updated`, so every instance
//! hears it), and records each channel's live status and last error.

pub mod api;
pub mod discord;
pub mod telegram;
pub mod whatsapp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::store::{StoreError, now_ms};
use crate::tools::Risk;

/// Bus topic announcing that a channel's config changed; the message is the channel type.
pub const UPDATED_TOPIC: &str = "channel.updated";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Telegram,
    Discord,
    Whatsapp,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 3] = [ChannelKind::Telegram, ChannelKind::Discord, ChannelKind::Whatsapp];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Telegram => "telegram",
            ChannelKind::Discord => "discord",
            ChannelKind::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(text))
    }

    /// Largest message the platform accepts, and how it counts.
    pub fn limit(self) -> crate::inbox::split::Limit {
        use crate::inbox::split::Limit;
        match self {
            // Telegram counts UTF-16 code units after entity parsing (we send plain text).
            ChannelKind::Telegram => Limit::Utf16(4096),
            ChannelKind::Discord => Limit::Chars(2000),
            // The bridge keeps assistant text up to 2000 characters in its history; chunks of that
            // size stay readable on a phone and fit that history whole.
            ChannelKind::Whatsapp => Limit::Chars(2000),
        }
    }

    fn token_secret(self) -> String {
        format!("channel.{}.token", self.as_str())
    }

    fn setting_key(self) -> String {
        format!("channels.{}", self.as_str())
    }
}

/// What a channel lets its senders do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The highest tool risk that runs without asking; above it the chat is asked `!yes` / `!no`.
    pub max_risk: Risk,
    /// Messages per sender per minute; more are dropped after one warning.
    pub rate_per_minute: u32,
    /// In groups, answer only when the bot is mentioned or replied to.
    pub groups_require_mention: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self { max_risk: Risk::Read, rate_per_minute: 30, groups_require_mention: true }
    }
}

/// A channel's stored configuration (the token lives in the vault, never here).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct ChannelConfig {
    pub enabled: bool,
    pub allow_from: Vec<String>,
    pub policy: Policy,
}

impl ChannelConfig {
    pub fn allows(&self, sender_id: &str) -> bool {
        self.allow_from.iter().any(|a| a == "*" || a == sender_id)
    }
}

/// Live state of one channel, as `GET /api/channels` shows it.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct ChannelStatus {
    pub enabled: bool,
    pub connected: bool,
    pub error: Option<String>,
    pub last_connect: Option<i64>,
    pub last_message: Option<i64>,
    pub bot_name: Option<String>,
    pub bot_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (platform down, rate limited), after `after` if the platform said so.
    #[error("{reason}")]
    Retry { reason: String, after: Option<Duration> },
    /// The platform refused this message for good (chat gone, bot blocked, bad request).
    #[error("{0}")]
    Permanent(String),
}

/// The outbound half of an adapter.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// Sends one chunk (already within the platform limit). `key` is unique per chunk and stable
    /// across retries, for platforms that can de-duplicate with it.
    async fn send(&self, chat_id: &str, text: &str, reply_to: Option<&str>, key: &str) -> Result<(), SendError>;
    /// Shows "typing…" in the chat for a few seconds; failures are ignored.
    async fn typing(&self, chat_id: &str);
}

/// Runs the channel adapters of one daemon; see the module docs.
pub struct Hub {
    state: AppState,
    configs: RwLock<HashMap<ChannelKind, ChannelConfig>>,
    adapters: RwLock<HashMap<ChannelKind, Arc<dyn Adapter>>>,
    status: Mutex<HashMap<ChannelKind, ChannelStatus>>,
    running: tokio::sync::Mutex<HashMap<ChannelKind, CancellationToken>>,
    /// Woken when a reply lands in the outbox.
    pub(crate) outbox_wake: Notify,
    /// Tags this instance's own config announcements, which it has applied already.
    instance: String,
}

/// Hubs by daemon. AppState is owned by the foundation, so instead of a field there the hub is
/// found through the identity of the state's `Arc<Config>` (shared by all clones of one state);
/// several daemons in one test process each find their own.
static HUBS: Mutex<Vec<(usize, Weak<Hub>)>> = Mutex::new(Vec::new());

fn state_key(state: &AppState) -> usize {
    Arc::as_ptr(&state.config) as usize
}

/// The hub of this daemon, once [`start`] ran.
pub fn hub(state: &AppState) -> Option<Arc<Hub>> {
    let hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
    hubs.iter().find(|(k, _)| *k == state_key(state)).and_then(|(_, h)| h.upgrade())
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] crate::secrets::VaultError),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
}

/// Starts the hub: loads every channel's config, starts the enabled adapters, the inbox router and
/// the outbox sender, and listens for config changes.
pub async fn start(state: &AppState) -> Result<Arc<Hub>, ChannelError> {
    let hub = Arc::new(Hub {
        state: state.clone(),
        configs: RwLock::default(),
        adapters: RwLock::default(),
        status: Mutex::default(),
        running: tokio::sync::Mutex::default(),
        outbox_wake: Notify::new(),
        instance: uuid::Uuid::new_v4().simple().to_string(),
    });
    {
        let mut hubs = HUBS.lock().unwrap_or_else(|p| p.into_inner());
        hubs.retain(|(_, h)| h.strong_count() > 0);
        hubs.push((state_key(state), Arc::downgrade(&hub)));
    }
    let mut updates = state.bus.subscribe(UPDATED_TOPIC).await?;
    for kind in ChannelKind::ALL {
        hub.reload(kind).await?;
    }
    crate::inbox::start(state, hub.clone());
    let watcher = hub.clone();
    let stop = state.shutdown.clone();
    state.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                message = updates.recv() => {
                    let Some(message) = message else { break };
                    // `<type>|<instance>` restarts the adapter; `<type>:allow|<instance>` only
                    // re-reads the allowlist. Our own announcements are applied already.
                    let (message, origin) = message.split_once('|').unwrap_or((message.as_str(), ""));
                    if origin == watcher.instance {
                        continue;
                    }
                    let (name, allow_only) = match message.trim().split_once(':') {
                        Some((name, _)) => (name, true),
                        None => (message.trim(), false),
                    };
                    let Some(kind) = ChannelKind::parse(name) else { continue };
                    let done = if allow_only { watcher.refresh_config(kind).await } else { watcher.reload(kind).await };
                    if let Err(e) = done {
                        tracing::warn!(channel = kind.as_str(), error = %e, "channel reload failed");
                    }
                }
            }
        }
        // Keep the hub alive until the workers that use it stopped with the daemon.
        drop(watcher);
    });
    // The hub lives as long as the daemon: the watcher task holds one reference until shutdown.
    Ok(hub)
}

impl Hub {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn config(&self, kind: ChannelKind) -> ChannelConfig {
        self.configs.read().unwrap_or_else(|p| p.into_inner()).get(&kind).cloned().unwrap_or_default()
    }

    pub fn adapter(&self, kind: ChannelKind) -> Option<Arc<dyn Adapter>> {
        self.adapters.read().unwrap_or_else(|p| p.into_inner()).get(&kind).cloned()
    }

    pub fn status(&self, kind: ChannelKind) -> ChannelStatus {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner()).get(&kind).cloned().unwrap_or_default();
        status.enabled = self.config(kind).enabled;
        status
    }

    pub(crate) fn update_status(&self, kind: ChannelKind, change: impl FnOnce(&mut ChannelStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        change(all.entry(kind).or_default());
    }

    pub(crate) fn set_connected(&self, kind: ChannelKind, bot_name: Option<String>, bot_id: Option<String>) {
        self.update_status(kind, |s| {
            if !s.connected {
                s.last_connect = Some(now_ms());
            }
            s.connected = true;
            s.error = None;
            if bot_name.is_some() {
                s.bot_name = bot_name;
            }
            if bot_id.is_some() {
                s.bot_id = bot_id;
            }
        });
    }

    pub(crate) fn set_error(&self, kind: ChannelKind, error: impl Into<String>) {
        let error = error.into();
        tracing::warn!(channel = kind.as_str(), error = %error, "channel problem");
        self.update_status(kind, |s| {
            s.connected = false;
            s.error = Some(error);
        });
    }

    /// This daemon's identity among instances sharing a bus.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn register_adapter(&self, kind: ChannelKind, adapter: Arc<dyn Adapter>) {
        self.adapters.write().unwrap_or_else(|p| p.into_inner()).insert(kind, adapter);
        // Replies that waited for this channel can go now.
        self.outbox_wake.notify_one();
    }

    /// Reads the channel's config and token again and restarts its adapter to match.
    pub async fn reload(self: &Arc<Self>, kind: ChannelKind) -> Result<(), ChannelError> {
        let mut config: ChannelConfig = self.state.store.get_setting(&kind.setting_key()).await?.unwrap_or_default();
        if kind == ChannelKind::Whatsapp && self.state.config.whatsapp_enabled {
            config.enabled = true;
        }
        let token = self.state.vault.get(&kind.token_secret()).await?;
        self.configs.write().unwrap_or_else(|p| p.into_inner()).insert(kind, config.clone());

        let mut running = self.running.lock().await;
        if let Some(old) = running.remove(&kind) {
            old.cancel();
        }
        self.adapters.write().unwrap_or_else(|p| p.into_inner()).remove(&kind);
        self.update_status(kind, |s| *s = ChannelStatus::default());
        if !config.enabled {
            return Ok(());
        }
        let cancel = self.state.shutdown.child_token();
        let started = match kind {
            ChannelKind::Telegram => match token {
                Some(token) => {
                    telegram::spawn(self.clone(), token.expose().to_string(), cancel.clone());
                    true
                }
                None => false,
            },
            ChannelKind::Discord => match token {
                Some(token) => {
                    discord::spawn(self.clone(), token.expose().to_string(), cancel.clone());
                    true
                }
                None => false,
            },
            ChannelKind::Whatsapp => match &self.state.config.redis_url {
                Some(url) => {
                    whatsapp::spawn(self.clone(), url.clone(), cancel.clone());
                    true
                }
                None => {
                    self.set_error(kind, whatsapp::NEEDS_REDIS);
                    return Ok(());
                }
            },
        };
        if started {
            running.insert(kind, cancel);
        } else {
            self.set_error(kind, format!("no token: set one with PUT /api/channels/{}", kind.as_str()));
        }
        Ok(())
    }

    /// Stores a channel's config (and token, when given) and tells every instance to apply it.
    pub async fn save(
        &self,
        kind: ChannelKind,
        config: &ChannelConfig,
        token: Option<&str>,
    ) -> Result<(), ChannelError> {
        if let Some(token) = token {
            if token.is_empty() {
                self.state.vault.delete(&kind.token_secret()).await?;
            } else {
                self.state.vault.set(&kind.token_secret(), token).await?;
            }
        }
        self.state.store.put_setting(&kind.setting_key(), config).await?;
        self.state.bus.publish(UPDATED_TOPIC, &format!("{}|{}", kind.as_str(), self.instance)).await?;
        Ok(())
    }

    pub async fn token_is_set(&self, kind: ChannelKind) -> Result<bool, ChannelError> {
        Ok(self.state.vault.is_set(&kind.token_secret()).await?)
    }

    pub async fn token(&self, kind: ChannelKind) -> Result<Option<String>, ChannelError> {
        Ok(self.state.vault.get(&kind.token_secret()).await?.map(|s| s.expose().to_string()))
    }

    /// Adds a sender to a channel's allowlist (pairing approved) and applies it everywhere.
    pub async fn allow(&self, kind: ChannelKind, sender_id: &str) -> Result<(), ChannelError> {
        let mut config: ChannelConfig = self.state.store.get_setting(&kind.setting_key()).await?.unwrap_or_default();
        if kind == ChannelKind::Whatsapp && self.state.config.whatsapp_enabled {
            config.enabled = true;
        }
        if !config.allow_from.iter().any(|a| a == sender_id) {
            config.allow_from.push(sender_id.to_string());
        }
        // Applied here at once (the approving chat may write again right away), and everywhere
        // else through the topic.
        self.configs.write().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default().allow_from =
            config.allow_from.clone();
        self.state.store.put_setting(&kind.setting_key(), &config).await?;
        self.state.bus.publish(UPDATED_TOPIC, &format!("{}:allow|{}", kind.as_str(), self.instance)).await?;
        Ok(())
    }

    /// Applies an allowlist change announced by another instance without restarting the adapter.
    pub(crate) async fn refresh_config(&self, kind: ChannelKind) -> Result<(), ChannelError> {
        let mut config: ChannelConfig = self.state.store.get_setting(&kind.setting_key()).await?.unwrap_or_default();
        if kind == ChannelKind::Whatsapp && self.state.config.whatsapp_enabled {
            config.enabled = true;
        }
        self.configs.write().unwrap_or_else(|p| p.into_inner()).insert(kind, config);
        Ok(())
    }
}

/// Backoff for reconnecting adapters: 1 s doubling to 60 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}
