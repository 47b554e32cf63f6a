//! Telegram end to end against a loopback Bot API: token set through the API, allowed and unknown
//! senders, pairing approved in the API and from a chat, commands, groups, a long reply split, a
//! config change applied live, and a platform that is down at first.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::channels_doubles::{BOT_USERNAME, Telegram};
use crate::support::TestDb;

/// A daemon started in this process, with its API client.
pub struct Nexus {
    pub running: nexus::app::Running,
    pub base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Nexus {
    pub async fn start(database_url: &str, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars: std::collections::HashMap<String, String> = [
            ("NEXUS_DATA_DIR", dir.path().to_str().unwrap()),
            ("DATABASE_URL", database_url),
            ("API_PORT", "0"),
            ("MCP_PORT", "0"),
            ("LIV_API_KEY", "channels-test-key"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = nexus::config::Config::from_vars(&vars).unwrap();
        let state = nexus::app::AppState::connect(config, Duration::from_secs(5)).await.unwrap();
        let running = nexus::app::start(state).await.unwrap();
        let base = format!("http://{}/api", running.api_addr);
        Self { running, base, client: reqwest::Client::new(), _dir: dir }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).header("X-API-Key", "channels-test-key");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Waits until the channel's status satisfies `check`; returns it.
    pub async fn wait_status(&self, kind: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let view = self.get(&format!("/channels/{kind}")).await;
            if check(&view["status"]) {
                return view;
            }
            assert!(std::time::Instant::now() < deadline, "{kind} status never matched: {view}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.running.stop().await.unwrap();
    }
}

const WAIT: Duration = Duration::from_secs(15);
const OWNER: i64 = 111;

pub fn pairing_code(text: &str) -> String {
    let after = text.split("pairing code is ").nth(1).unwrap_or_else(|| panic!("no pairing code in {text:?}"));
    after.chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
}

async fn telegram_flow(db: &TestDb) {
    let tg = Telegram::start().await;
    let nexus = Nexus::start(&db.url, &[("TELEGRAM_API_URL", &tg.url), ("WHATSAPP_ENABLED", "true")]).await;

    // Without REDIS_URL the WhatsApp channel says what it needs.
    let whatsapp = nexus.get("/channels/whatsapp").await;
    assert!(whatsapp["status"]["error"].as_str().unwrap().contains("REDIS_URL"), "{whatsapp}");

    // Bad input changes nothing.
    let (status, body) = nexus.put("/channels/telegram", json!({"enabled": true, "token": "no colon"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = nexus.put("/channels/nosuch", json!({"enabled": true})).await;
    assert_eq!(status, 404);
    let (status, _) = nexus.put("/channels/telegram", json!({"enabled": true, "tokn": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(nexus.get("/channels/telegram").await["enabled"], false);

    let (status, view) = nexus
        .put(
            "/channels/telegram",
            json!({"enabled": true, "token": "123456:SECRET-token", "allow_from": [OWNER.to_string()]}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["token_set"], true);
    assert!(!view.to_string().contains("SECRET"), "the token is write-only: {view}");
    let view = nexus.wait_status("telegram", WAIT, |s| s["connected"] == true).await;
    assert_eq!(view["status"]["bot_name"], BOT_USERNAME);
    let list = nexus.get("/channels").await;
    assert_eq!(list["channels"].as_array().unwrap().len(), 3);
    let (status, check) = nexus.post("/channels/telegram/test", json!({})).await;
    assert_eq!((status.as_u16(), check["ok"].clone()), (200, json!(true)), "{check}");

    // An allowed sender reaches the brain (which, without a provider, says so in one sentence).
    tg.private(OWNER, "Owner", "hello");
    let replies = tg.wait_for(OWNER, 1, WAIT).await;
    assert!(!replies[0].contains("pairing"), "{replies:?}");
    assert!(tg.sent().iter().all(|m| m.get("parse_mode").is_none()), "plain text only");

    // An unknown sender gets a pairing code and nothing else.
    tg.private(222, "Stranger", "hi, who are you?");
    let replies = tg.wait_for(222, 1, WAIT).await;
    let code = pairing_code(&replies[0]);
    let pairings = nexus.get("/channels/telegram/pairings").await;
    assert_eq!(pairings["pairings"][0]["sender_id"], "222", "{pairings}");
    let (status, _) = nexus.post("/channels/telegram/pairings/WRONG123/approve", json!({})).await;
    assert_eq!(status, 404);
    let (status, approved) = nexus.post(&format!("/channels/telegram/pairings/{code}/approve"), json!({})).await;
    assert_eq!(status, 200, "{approved}");
    let replies = tg.wait_for(222, 2, WAIT).await;
    assert!(replies[1].contains("approved"), "{replies:?}");
    tg.private(222, "Stranger", "now can we talk?");
    let replies = tg.wait_for(222, 3, WAIT).await;
    assert!(!replies[2].contains("pairing"), "{replies:?}");

    // Approval from an allowed chat.
    tg.private(333, "Friend", "hey");
    let code = pairing_code(&tg.wait_for(333, 1, WAIT).await[0]);
    tg.private(OWNER, "Owner", &format!("!approve {code}"));
    assert!(tg.wait_for(OWNER, 2, WAIT).await[1].starts_with("Approved Friend"));
    assert!(tg.wait_for(333, 2, WAIT).await[1].contains("approved"));

    // Commands, kept per sender, answered without the brain.
    tg.private(OWNER, "Owner", "/tier opus");
    assert_eq!(tg.wait_for(OWNER, 3, WAIT).await[2], "Model tier set to opus.");
    tg.private(OWNER, "Owner", "!think xhigh");
    assert_eq!(tg.wait_for(OWNER, 4, WAIT).await[3], "Thinking level set to xhigh.");
    tg.private(OWNER, "Owner", "!status");
    let status_text = &tg.wait_for(OWNER, 5, WAIT).await[4];
    assert!(status_text.contains("opus") && status_text.contains("xhigh"), "{status_text}");
    tg.private(OWNER, "Owner", "!think sideways");
    assert!(tg.wait_for(OWNER, 6, WAIT).await[5].starts_with("Usage: !think"));
    tg.private(333, "Friend", "/status");
    assert!(!tg.wait_for(333, 3, WAIT).await[2].contains("opus"), "settings are per sender");
    tg.private(OWNER, "Owner", "/start");
    assert!(tg.wait_for(OWNER, 7, WAIT).await[6].contains("help"));

    // A long message is split at the limit, on paragraph boundaries, in order.
    let paragraph = "Lorem ipsum dolor sit amet. ".repeat(40);
    let long = [paragraph.trim(); 10].join("\n\n");
    let (status, accepted) =
        nexus.post("/channels/telegram/send", json!({"chat_id": OWNER.to_string(), "text": long})).await;
    assert_eq!(status, 202, "{accepted}");
    // Ten paragraphs of ~1120 characters: three fit a message, so four messages.
    let replies = tg.wait_for(OWNER, 11, WAIT).await;
    let pieces = &replies[7..11];
    assert!(pieces.iter().all(|p| p.encode_utf16().count() <= 4096));
    assert_eq!(pieces.join("\n\n"), long);
    let (status, _) = nexus.post("/channels/telegram/send", json!({"chat_id": "", "text": "x"})).await;
    assert_eq!(status, 400);

    // Groups: only when mentioned or replied to.
    tg.group(-500, OWNER, "Owner", "just chatting among us", false);
    tg.group(-500, OWNER, "Owner", &format!("@{BOT_USERNAME} what's up?"), false);
    tg.group(-500, OWNER, "Owner", "and this follows up", true);
    let replies = tg.wait_for(-500, 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent_to(-500).len(), 2, "{replies:?}");
    assert!(tg.sent().iter().any(|m| m["chat_id"] == -500 && m["reply_parameters"]["message_id"].is_number()));

    // A config change is applied live: a new allowlist entry, no restart.
    tg.private(444, "Later", "hello?");
    assert!(tg.wait_for(444, 1, WAIT).await[0].contains("pairing code"));
    let (status, _) =
        nexus.put("/channels/telegram", json!({"allow_from": [OWNER.to_string(), "222", "333", "444"]})).await;
    assert_eq!(status, 200);
    tg.private(444, "Later", "and now?");
    assert!(!tg.wait_for(444, 2, WAIT).await[1].contains("pairing"));
    assert!(nexus.get("/channels/telegram").await["token_set"] == true, "the token stays");

    // Disabled: polling stops.
    let (status, _) = nexus.put("/channels/telegram", json!({"enabled": false})).await;
    assert_eq!(status, 200);
    let view = nexus.get("/channels/telegram").await;
    assert_eq!((view["enabled"].clone(), view["status"]["connected"].clone()), (json!(false), json!(false)));

    nexus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_end_to_end_sqlite() {
    let db = TestDb::sqlite().await;
    telegram_flow(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_end_to_end_postgres() {
    let db = TestDb::postgres().await;
    telegram_flow(&db).await;
    db.cleanup().await;
}

/// The platform is unreachable at first: the status says so, a queued message waits in the
/// outbox, and once the platform is up the adapter reconnects (backoff) and delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_down_then_up_reconnects() {
    let db = TestDb::sqlite().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nexus = Nexus::start(&db.url, &[("TELEGRAM_API_URL", &format!("http://{port}"))]).await;
    let (status, _) = nexus
        .put("/channels/telegram", json!({"enabled": true, "token": "1:down", "allow_from": [OWNER.to_string()]}))
        .await;
    assert_eq!(status, 200);
    let view = nexus.wait_status("telegram", WAIT, |s| s["error"].is_string()).await;
    assert_eq!(view["status"]["connected"], false);
    assert!(view["status"]["error"].as_str().unwrap().contains("getMe failed"), "{view}");
    let (status, check) = nexus.post("/channels/telegram/test", json!({})).await;
    assert_eq!((status.as_u16(), check["ok"].clone()), (200, json!(false)), "{check}");
    let (status, _) = nexus
        .post("/channels/telegram/send", json!({"chat_id": OWNER.to_string(), "text": "while you were out"}))
        .await;
    assert_eq!(status, 202);

    let tg = Telegram::start_on(port).await;
    nexus.wait_status("telegram", Duration::from_secs(40), |s| s["connected"] == true).await;
    assert_eq!(tg.wait_for(OWNER, 1, Duration::from_secs(40)).await[0], "while you were out");
    nexus.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn typing_shows_only_while_a_slow_answer_is_worked_on() {
    let tg = Telegram::start().await;
    let brain = crate::brain_doubles::start(crate::brain_doubles::Kind::Openai).await;
    let base = format!("{}/v1", brain.base);
    let db = TestDb::sqlite().await;
    let nexus =
        Nexus::start(&db.url, &[("TELEGRAM_API_URL", &tg.url), ("OPENAI_BASE_URL", &base), ("DEFAULT_MODEL", "m")])
            .await;
    let (status, _) =
        nexus.put("/channels/telegram", json!({"enabled": true, "token": "1:typing", "allow_from": ["*"]})).await;
    assert_eq!(status, 200);
    nexus.wait_status("telegram", WAIT, |s| s["connected"] == true).await;

    // An answer within a second needs no indicator (each one is an API call the bot pays for).
    brain.push(crate::brain_doubles::Reply::Text("Quick.".into()));
    tg.private(OWNER, "Owner", "fast question");
    assert_eq!(tg.wait_for(OWNER, 1, WAIT).await, ["Quick."]);
    assert_eq!(tg.chat_actions(), 0);

    // A slow one shows "typing…" while the brain works.
    brain.delay_next(Duration::from_millis(2500));
    brain.push(crate::brain_doubles::Reply::Text("Slow.".into()));
    tg.private(OWNER, "Owner", "slow question");
    assert_eq!(tg.wait_for(OWNER, 2, WAIT).await[1], "Slow.");
    assert!(tg.chat_actions() >= 1, "no typing indicator during a 2.5 s answer");
    let after = tg.chat_actions();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tg.chat_actions(), after, "typing stops with the answer");
    nexus.stop().await;
}

#[tokio::test]
async fn two_instances_on_one_bus_poll_a_bot_by_turns() {
    let tg = Telegram::start().await;
    let db = TestDb::postgres().await;
    let prefix = crate::support::unique_prefix();
    let redis = crate::support::redis_url();
    // Instances sharing a database share its secret key (the token is stored encrypted).
    let vars = [
        ("TELEGRAM_API_URL", tg.url.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("NEXUS_REDIS_PREFIX", &prefix),
        ("NEXUS_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
    ];
    let a = Nexus::start(&db.url, &vars).await;
    let b = Nexus::start(&db.url, &vars).await;
    // Configured through one; the other applies it from the bus announcement.
    let (status, _) =
        a.put("/channels/telegram", json!({"enabled": true, "token": "7:shared", "allow_from": ["*"]})).await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (sa, sb) =
            (a.get("/channels/telegram").await["status"].clone(), b.get("/channels/telegram").await["status"].clone());
        let standby = |s: &Value| s["error"].as_str().is_some_and(|e| e.starts_with("standby"));
        if (sa["connected"] == true && standby(&sb)) || (sb["connected"] == true && standby(&sa)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no single poller: {sa} / {sb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..20 {
        tg.private(5000 + i, "User", "hello");
    }
    tg.wait_total(20, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent_count(), 20, "each message answered once");
    assert_eq!(tg.conflicts(), 0, "two getUpdates ran at once");
    a.stop().await;
    b.stop().await;
    crate::support::redis_cleanup(&prefix).await;
}
