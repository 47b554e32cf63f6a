//! End-to-end throughput and added latency of the message path: a loopback Telegram Bot API
//! pushes messages, the daemon (SQLite, embedded bus) takes them through getUpdates, the inbox,
//! the router, a full agent turn against an instant OpenAI-compatible provider on loopback (the
//! test double of the brain tests; the turn is stored like any other) and the outbox, and the
//! reply arrives back at the loopback server.
//!
//! `cargo run --release --example channels_bench` (BENCH_MESSAGES, BENCH_CHATS, BENCH_RATE,
//! DATABASE_URL and REDIS_URL optional).

#[path = "../tests/it/brain_doubles.rs"]
mod brain_doubles;
#[path = "../tests/it/channels_doubles.rs"]
mod doubles;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const BENCH_API_KEY: &str = "channels-bench-key-0123456789abcdef";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages = env_usize("BENCH_MESSAGES", 5000);
    // 0 = push everything at once (throughput); else messages per second (latency below saturation).
    let rate = env_usize("BENCH_RATE", 0);
    let chats = env_usize("BENCH_CHATS", 100) as i64;
    let dir = tempfile::tempdir()?;
    let tg = doubles::Telegram::start().await;
    let provider = brain_doubles::start(brain_doubles::Kind::Openai).await;
    let provider_url = format!("{}/v1", provider.base);
    let mut vars: HashMap<String, String> = [
        ("NEXUS_DATA_DIR", dir.path().to_str().unwrap_or(".")),
        ("API_PORT", "0"),
        ("MCP_PORT", "0"),
        ("TELEGRAM_API_URL", tg.url.as_str()),
        ("OPENAI_BASE_URL", provider_url.as_str()),
        ("DEFAULT_MODEL", "local-model"),
        ("LIV_API_KEY", BENCH_API_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for name in ["DATABASE_URL", "REDIS_URL"] {
        if let Ok(value) = std::env::var(name) {
            vars.insert(name.into(), value);
        }
    }
    let config = nexus::config::Config::from_vars(&vars)?;
    let state = nexus::app::AppState::connect(config, Duration::from_secs(10)).await?;
    let running = nexus::app::start(state).await?;
    let base = format!("http://{}/api", running.api_addr);
    reqwest::Client::new()
        .put(format!("{base}/channels/telegram"))
        .header("x-api-key", BENCH_API_KEY)
        .json(&json!({"enabled": true, "token": "1:bench", "allow_from": ["*"],
            "policy": {"max_risk": "read", "rate_per_minute": 10000, "groups_require_mention": true}}))
        .send()
        .await?
        .error_for_status()?;

    // Warm-up: one message per chat.
    for chat in 0..chats {
        tg.private(10_000 + chat, "Bench", "warm up");
    }
    tg.wait_total(chats as usize, Duration::from_secs(60)).await;
    let warm = tg.sent().len();

    let mut pushed: HashMap<i64, Vec<Instant>> = HashMap::new();
    let started = Instant::now();
    for i in 0..messages {
        let chat = 10_000 + (i as i64 % chats);
        if rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        pushed.entry(chat).or_default().push(Instant::now());
        tg.private(chat, "Bench", &format!("message {i}"));
    }
    tg.wait_total(warm + messages, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();

    // Within a chat replies keep the order of the messages: the k-th reply answers the k-th.
    let mut replies: HashMap<i64, Vec<Instant>> = HashMap::new();
    for (at, message) in tg.sent_timed().into_iter().skip(warm) {
        replies.entry(message["chat_id"].as_i64().unwrap_or(0)).or_default().push(at);
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for (chat, sent) in &pushed {
        for (k, at) in sent.iter().enumerate() {
            if let Some(reply) = replies.get(chat).and_then(|r| r.get(k)) {
                latencies.push(reply.saturating_duration_since(*at));
            }
        }
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{messages} messages over {chats} chats in {:.2} s: {:.0} msg/s end to end; latency p50 {:?}, p99 {:?}, max {:?}",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    assert!(provider.rejected.lock().unwrap().is_empty(), "the provider refused requests");
    println!("provider requests: {}", provider.request_count());
    running.stop().await?;
    Ok(())
}
