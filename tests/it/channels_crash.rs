//! The crash test: 500 Telegram messages in flight, `kill -9` of the daemon binary, restart —
//! every message is answered exactly once. On the embedded bus (SQLite) and on Redis.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::channels_doubles::Telegram;
use crate::daemon::Daemon;
use crate::support::{redis_cleanup, unique_prefix};

const CHATS: i64 = 50;
const PER_CHAT: usize = 10;

async fn api(base: &str, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new()
        .request(method, format!("{base}/api{path}"))
        .header("X-API-Key", "crash-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

async fn crash_and_recover(extra: &[(&str, &str)]) {
    let tg = Telegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut envs = vec![
        ("TELEGRAM_API_URL", tg.url.as_str()),
        ("LIV_API_KEY", "crash-key"),
        // Items and outbox rows held by the killed process come back after a few seconds.
        ("NEXUS_INBOX_VISIBILITY_SECS", "3"),
        ("NEXUS_OUTBOX_LEASE_SECS", "3"),
    ];
    envs.extend_from_slice(extra);
    let daemon = Daemon::start(dir.path(), &envs);
    let allow: Vec<String> = (1..=CHATS).map(|c| (1000 + c).to_string()).collect();
    api(&daemon.base, reqwest::Method::PUT, "/channels/telegram", json!({
        "enabled": true, "token": "42:crash", "allow_from": allow,
        "policy": {"max_risk": "read", "rate_per_minute": 1000, "groups_require_mention": true},
    }))
    .await;

    for round in 0..PER_CHAT {
        for chat in 1..=CHATS {
            tg.private(1000 + chat, "User", &format!("message {round}"));
        }
    }
    let total = CHATS as usize * PER_CHAT;
    // Kill it while it works: some answered, most still in flight.
    tg.wait_total(30, Duration::from_secs(60)).await;
    let mut child = daemon.child;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let answered_before = tg.sent().len();
    assert!(answered_before < total, "the kill came while messages were in flight");

    let daemon = Daemon::start(dir.path(), &envs);
    tg.wait_total(total, Duration::from_secs(120)).await;
    // Anything late (a duplicate) would show up now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut per_chat: HashMap<i64, usize> = HashMap::new();
    for message in tg.sent() {
        *per_chat.entry(message["chat_id"].as_i64().unwrap()).or_default() += 1;
    }
    for chat in 1..=CHATS {
        assert_eq!(per_chat.get(&(1000 + chat)).copied().unwrap_or(0), PER_CHAT, "chat {chat}: {per_chat:?}");
    }
    assert_eq!(tg.sent().len(), total, "every message answered exactly once (killed after {answered_before})");
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_500_in_flight_embedded_bus() {
    crash_and_recover(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_500_in_flight_redis_bus() {
    let prefix = unique_prefix();
    crash_and_recover(&[("REDIS_URL", "redis://127.0.0.1:6379"), ("NEXUS_REDIS_PREFIX", &prefix)]).await;
    redis_cleanup(&prefix).await;
}
