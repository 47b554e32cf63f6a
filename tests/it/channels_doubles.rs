//! Loopback doubles of the outside chat platforms, speaking their documented wire formats:
//! the Telegram Bot API (getUpdates long polling with offsets, sendMessage, getMe …) and the
//! Discord REST API plus gateway (Hello, Identify, Ready, MESSAGE_CREATE, heartbeat ACK).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_ID: i64 = 4242;
pub const BOT_USERNAME: &str = "nexus_test_bot";

#[derive(Default)]
struct TgInner {
    next_update: i64,
    next_message: i64,
    /// Updates not yet confirmed by an offset.
    updates: Vec<Value>,
    /// Every sendMessage body, with the time it arrived.
    sent: Vec<(Instant, Value)>,
    chat_actions: usize,
    get_updates_calls: usize,
    /// getUpdates requests running now, and those refused because another one ran (409).
    polling: usize,
    conflicts: usize,
}

/// Counts a running getUpdates until it returns.
struct Polling(Arc<Mutex<TgInner>>);
impl Drop for Polling {
    fn drop(&mut self) {
        self.0.lock().unwrap().polling -= 1;
    }
}

/// A Telegram Bot API server on loopback.
#[derive(Clone)]
pub struct Telegram {
    inner: Arc<Mutex<TgInner>>,
    news: Arc<Notify>,
    sent_news: Arc<Notify>,
    pub url: String,
    pub addr: SocketAddr,
}

impl Telegram {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener).await
    }

    /// Serves on a given address (to bring a "down" platform up later on the same port).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(listener).await
    }

    async fn serve(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let double = Self {
            inner: Arc::new(Mutex::new(TgInner { next_update: 1000, next_message: 1, ..Default::default() })),
            news: Arc::new(Notify::new()),
            sent_news: Arc::new(Notify::new()),
            url: format!("http://{addr}"),
            addr,
        };
        let app = axum::Router::new().route("/{bot}/{method}", post(tg_method)).with_state(double.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        double
    }

    fn push(&self, message: Value) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_update += 1;
        let id = inner.next_update;
        inner.updates.push(json!({"update_id": id, "message": message}));
        drop(inner);
        self.news.notify_waiters();
        id
    }

    fn next_message_id(&self) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_message += 1;
        inner.next_message
    }

    /// A private message from `user` (chat id = user id). Returns the message id.
    pub fn private(&self, user: i64, name: &str, text: &str) -> i64 {
        let mid = self.next_message_id();
        self.push(json!({
            "message_id": mid, "date": now_secs(),
            "chat": {"id": user, "type": "private", "first_name": name},
            "from": {"id": user, "is_bot": false, "first_name": name},
            "text": text,
        }));
        mid
    }

    /// A group message; `reply_to_bot` makes it a reply to one of the bot's messages.
    pub fn group(&self, chat: i64, user: i64, name: &str, text: &str, reply_to_bot: bool) -> i64 {
        let mid = self.next_message_id();
        let mut message = json!({
            "message_id": mid, "date": now_secs(),
            "chat": {"id": chat, "type": "group", "title": "Home"},
            "from": {"id": user, "is_bot": false, "first_name": name},
            "text": text,
        });
        if reply_to_bot {
            message["reply_to_message"] = json!({
                "message_id": 1, "date": now_secs(), "chat": {"id": chat, "type": "group", "title": "Home"},
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Nexus", "username": BOT_USERNAME},
                "text": "earlier answer",
            });
        }
        self.push(message);
        mid
    }

    pub fn sent(&self) -> Vec<Value> {
        self.inner.lock().unwrap().sent.iter().map(|(_, v)| v.clone()).collect()
    }

    pub fn sent_timed(&self) -> Vec<(Instant, Value)> {
        self.inner.lock().unwrap().sent.clone()
    }

    pub fn sent_to(&self, chat: i64) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|m| m["chat_id"].as_i64() == Some(chat))
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn chat_actions(&self) -> usize {
        self.inner.lock().unwrap().chat_actions
    }

    /// getUpdates calls refused with 409 because another poll of the bot was running.
    pub fn conflicts(&self) -> usize {
        self.inner.lock().unwrap().conflicts
    }

    pub fn get_updates_calls(&self) -> usize {
        self.inner.lock().unwrap().get_updates_calls
    }

    /// Waits until `chat` received at least `n` messages; returns them.
    pub async fn wait_for(&self, chat: i64, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.sent_news.notified();
            let got = self.sent_to(chat);
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!("chat {chat} received {} of {n} messages within {within:?}: {got:?}", got.len());
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    pub fn sent_count(&self) -> usize {
        self.inner.lock().unwrap().sent.len()
    }

    pub async fn wait_total(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            // Registered before counting, so a message sent in between still wakes us.
            let notified = self.sent_news.notified();
            let count = self.sent_count();
            if count >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{count} of {n} messages sent within {within:?}");
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn ok(result: Value) -> Json<Value> {
    Json(json!({"ok": true, "result": result}))
}

async fn tg_method(
    State(double): State<Telegram>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Json<Value> {
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    if !bot.starts_with("bot") {
        return Json(json!({"ok": false, "error_code": 404, "description": "Not Found"}));
    }
    // teloxide calls methods in PascalCase; the Bot API matches them case-insensitively.
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Nexus", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "deletewebhook" => ok(json!(true)),
        "getwebhookinfo" => ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0})),
        "sendchataction" => {
            double.inner.lock().unwrap().chat_actions += 1;
            ok(json!(true))
        }
        "getupdates" => {
            // Like the Bot API: one long poll per bot at a time.
            let _polling = {
                let mut inner = double.inner.lock().unwrap();
                if inner.polling > 0 {
                    inner.conflicts += 1;
                    return Json(json!({"ok": false, "error_code": 409,
                        "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}));
                }
                inner.polling += 1;
                Polling(double.inner.clone())
            };
            let offset = body["offset"].as_i64();
            let timeout = body["timeout"].as_u64().unwrap_or(0).min(25);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = double.news.notified();
                {
                    let mut inner = double.inner.lock().unwrap();
                    inner.get_updates_calls += 1;
                    if let Some(offset) = offset {
                        inner.updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    }
                    if !inner.updates.is_empty() {
                        let batch: Vec<Value> = inner.updates.iter().take(100).cloned().collect();
                        return ok(Value::Array(batch));
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    return ok(json!([]));
                }
                let _ = tokio::time::timeout(deadline - now, notified).await;
            }
        }
        "sendmessage" => {
            let chat = body["chat_id"].clone();
            let text = body["text"].as_str().unwrap_or_default().to_string();
            if text.is_empty() || text.encode_utf16().count() > 4096 {
                return Json(
                    json!({"ok": false, "error_code": 400, "description": "Bad Request: message is too long"}),
                );
            }
            if body.get("parse_mode").is_some() {
                return Json(
                    json!({"ok": false, "error_code": 400, "description": "Bad Request: plain text expected"}),
                );
            }
            let mid = double.next_message_id();
            double.inner.lock().unwrap().sent.push((Instant::now(), body.clone()));
            double.sent_news.notify_waiters();
            let chat_id = chat.as_i64().unwrap_or(0);
            let chat_json = if chat_id < 0 {
                json!({"id": chat_id, "type": "group", "title": "Home"})
            } else {
                json!({"id": chat_id, "type": "private", "first_name": "User"})
            };
            ok(json!({
                "message_id": mid, "date": now_secs(), "chat": chat_json,
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Nexus", "username": BOT_USERNAME},
                "text": text,
            }))
        }
        other => Json(json!({"ok": false, "error_code": 404, "description": format!("Not Found: method {other}")})),
    }
}

pub const DISCORD_BOT_ID: &str = "900100200300400500";

#[derive(Default)]
struct DcInner {
    sessions: Vec<tokio::sync::mpsc::UnboundedSender<Value>>,
    /// Every created message (channel id, body), de-duplicated by nonce as Discord does.
    created: Vec<(String, Value)>,
    nonces: std::collections::HashSet<String>,
    identified_intents: Vec<u64>,
    typing: usize,
    seq: u64,
    next_id: u64,
}

/// Discord's REST API (`/api/v10/…`) and gateway (WebSocket) on loopback.
#[derive(Clone)]
pub struct Discord {
    inner: Arc<Mutex<DcInner>>,
    pub url: String,
    gateway_url: String,
}

fn discord_user(id: &str, name: &str, bot: bool) -> Value {
    json!({"id": id, "username": name, "discriminator": "0", "global_name": name, "avatar": null, "bot": bot})
}

impl Discord {
    pub async fn start() -> Self {
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let double = Self {
            inner: Arc::new(Mutex::new(DcInner { next_id: 1_000_000, ..Default::default() })),
            url: format!("http://{}", rest.local_addr().unwrap()),
            gateway_url: format!("ws://{}", gateway.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .route("/api/v10/gateway", axum::routing::get(dc_gateway))
            .route("/api/v10/gateway/bot", axum::routing::get(dc_gateway))
            .route("/api/v10/users/@me", axum::routing::get(dc_me))
            .route("/api/v10/channels/{id}/messages", post(dc_create_message))
            .route("/api/v10/channels/{id}/typing", post(dc_typing))
            .with_state(double.clone());
        tokio::spawn(async move { axum::serve(rest, app).await });
        let gw = double.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = gateway.accept().await {
                tokio::spawn(gw.clone().session(stream));
            }
        });
        double
    }

    async fn session(self, stream: tokio::net::TcpStream) {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message as Ws;
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
        let (mut sink, mut source) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}, "s": null, "t": null});
        if sink.send(Ws::Text(hello.to_string())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                out = rx.recv() => {
                    let Some(out) = out else { return };
                    if sink.send(Ws::Text(out.to_string())).await.is_err() { return; }
                }
                frame = source.next() => {
                    let Some(Ok(frame)) = frame else { return };
                    let Ws::Text(text) = frame else { continue };
                    let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                    match payload["op"].as_u64() {
                        Some(1) => { let _ = tx.send(json!({"op": 11, "d": null, "s": null, "t": null})); }
                        Some(2) => {
                            let intents = payload["d"]["intents"].as_u64().unwrap_or(0);
                            let seq = {
                                let mut inner = self.inner.lock().unwrap();
                                inner.identified_intents.push(intents);
                                inner.sessions.push(tx.clone());
                                inner.seq += 1;
                                inner.seq
                            };
                            let ready = json!({"op": 0, "t": "READY", "s": seq, "d": {
                                "v": 10, "user": discord_user(DISCORD_BOT_ID, "nexusbot", true), "guilds": [],
                                "session_id": "session-1", "resume_gateway_url": self.gateway_url,
                                "shard": [0, 1], "application": {"id": DISCORD_BOT_ID, "flags": 0},
                            }});
                            let _ = tx.send(ready);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    pub fn connected(&self) -> bool {
        !self.inner.lock().unwrap().sessions.is_empty()
    }

    pub fn intents(&self) -> Vec<u64> {
        self.inner.lock().unwrap().identified_intents.clone()
    }

    /// Dispatches MESSAGE_CREATE to every identified session.
    pub fn message(
        &self,
        channel: &str,
        guild: Option<&str>,
        author: &str,
        bot: bool,
        content: &str,
        mentions_bot: bool,
    ) {
        let mut inner = self.inner.lock().unwrap();
        inner.seq += 1;
        inner.next_id += 1;
        let mut message = json!({
            "id": inner.next_id.to_string(), "channel_id": channel, "author": discord_user(author, "someone", bot),
            "content": content, "timestamp": "2026-11-26T01:00:00.000000+00:00", "edited_timestamp": null,
            "tts": false, "mention_everyone": false,
            "mentions": if mentions_bot { json!([discord_user(DISCORD_BOT_ID, "nexusbot", true)]) } else { json!([]) },
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        });
        if let Some(guild) = guild {
            message["guild_id"] = json!(guild);
        }
        let event = json!({"op": 0, "t": "MESSAGE_CREATE", "s": inner.seq, "d": message});
        inner.sessions.retain(|s| s.send(event.clone()).is_ok());
    }

    pub fn created_in(&self, channel: &str) -> Vec<Value> {
        self.inner.lock().unwrap().created.iter().filter(|(c, _)| c == channel).map(|(_, b)| b.clone()).collect()
    }

    pub fn typing(&self) -> usize {
        self.inner.lock().unwrap().typing
    }

    pub async fn wait_for(&self, channel: &str, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let got: Vec<String> = self
                .created_in(channel)
                .iter()
                .map(|b| b["content"].as_str().unwrap_or_default().to_string())
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "channel {channel} got {} of {n}: {got:?}", got.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn dc_gateway(State(double): State<Discord>) -> Json<Value> {
    Json(json!({"url": double.gateway_url, "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}))
}

async fn dc_me() -> Json<Value> {
    Json(discord_user(DISCORD_BOT_ID, "nexusbot", true))
}

async fn dc_typing(State(double): State<Discord>) -> axum::http::StatusCode {
    double.inner.lock().unwrap().typing += 1;
    axum::http::StatusCode::NO_CONTENT
}

async fn dc_create_message(
    State(double): State<Discord>,
    Path(channel): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    if content.is_empty() || content.chars().count() > 2000 {
        return Err((
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"code": 50035, "message": "Invalid Form Body"})),
        ));
    }
    let mut inner = double.inner.lock().unwrap();
    let nonce = body["nonce"].as_str().map(String::from);
    let duplicate = body["enforce_nonce"] == true && nonce.as_ref().is_some_and(|n| !inner.nonces.insert(n.clone()));
    if !duplicate {
        inner.created.push((channel.clone(), body.clone()));
    }
    inner.next_id += 1;
    Ok(Json(json!({
        "id": inner.next_id.to_string(), "channel_id": channel, "author": discord_user(DISCORD_BOT_ID, "nexusbot", true),
        "content": content, "timestamp": "2026-11-26T01:00:00.000000+00:00", "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": false,
        "type": 0, "nonce": nonce,
    })))
}
