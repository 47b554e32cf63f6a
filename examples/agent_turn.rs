//! Measures the daemon's own cost of an agent turn with an instant local provider.
//!
//! `cargo run --release --example agent_turn -- [turns] [database_url]`
//!
//! A loopback OpenAI-compatible server answers every request at once with a streamed text answer
//! (and records how long it spent on each request). The daemon runs in-process on SQLite (or the
//! given database URL); each turn is a real `POST /api/chat` over HTTP. Reported:
//! - per turn: client-observed time minus the provider's own handling time = the daemon's time
//!   (HTTP in and out, history load, provider request building and parsing, the Store write);
//! - added time-to-first-token: from the provider writing its first frame to the client reading
//!   the first `token` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Default)]
struct Provider {
    /// When the last request arrived and when its first frame was handed to the socket.
    arrived: Mutex<Option<Instant>>,
    first_frame: Mutex<Option<Instant>>,
    finished: Mutex<Option<Instant>>,
}

async fn chat(State(p): State<Arc<Provider>>, axum::Json(_body): axum::Json<Value>) -> Response {
    *p.arrived.lock().unwrap() = Some(Instant::now());
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let frames = vec![
        chunk(json!({"role": "assistant", "content": "Hello"}), Value::Null),
        chunk(json!({"content": ", the server is fine."}), Value::Null),
        chunk(json!({}), json!("stop")),
        format!("data: {}\n\n", json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 8}})),
        "data: [DONE]\n\n".to_string(),
    ];
    let count = frames.len();
    let stream = futures::stream::iter(frames.into_iter().enumerate()).map(move |(i, f)| {
        let now = Instant::now();
        if i == 0 {
            *p.first_frame.lock().unwrap() = Some(now);
        }
        if i + 1 == count {
            *p.finished.lock().unwrap() = Some(now);
        }
        Ok::<_, std::convert::Infallible>(f)
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const BENCH_API_KEY: &str = "agent-turn-bench-key-0123456789abcdef";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let turns: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let database_url =
        args.get(2).cloned().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));

    let provider = Arc::new(Provider::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider_url = format!("http://{}/v1", listener.local_addr()?);
    let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(provider.clone());
    // Like a real provider's front end: frames leave at once (no Nagle delay).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let vars: HashMap<String, String> = [
        ("NEXUS_DATA_DIR", dir.path().display().to_string()),
        ("DATABASE_URL", database_url.clone()),
        ("API_PORT", "0".into()),
        ("LIV_API_KEY", BENCH_API_KEY.into()),
        ("MCP_PORT", "0".into()),
        ("OPENAI_BASE_URL", provider_url),
        ("DEFAULT_MODEL", "local-model".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = nexus::config::Config::from_vars(&vars)?;
    let state = nexus::app::AppState::connect(config, Duration::from_secs(5)).await?;
    let running = nexus::app::start(state).await?;
    let url = format!("http://{}/api/chat", running.api_addr);
    // Every /api route needs credentials; the API key is the cheapest (no session lookup).
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_static(BENCH_API_KEY));
    let http = reqwest::Client::builder().default_headers(headers).build()?;

    let mut own = Vec::with_capacity(turns);
    let mut ttft = Vec::with_capacity(turns);
    let mut conversation: Option<String> = None;
    for i in 0..turns + 20 {
        // A new conversation every 10 turns keeps histories realistic (up to 20 messages).
        if i % 10 == 0 {
            conversation = None;
        }
        let mut body = json!({"message": "How is the server?"});
        if let Some(id) = &conversation {
            body["conversation_id"] = json!(id);
        }
        let started = Instant::now();
        let response = http.post(&url).json(&body).send().await?;
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        let mut first_token: Option<Instant> = None;
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk?));
            if first_token.is_none() && text.contains("event: token") {
                first_token = Some(Instant::now());
            }
        }
        let total = started.elapsed();
        let Some(done) = text.split("event: done\ndata: ").nth(1) else {
            anyhow::bail!("turn {i} did not finish: {text}");
        };
        let done: Value = serde_json::from_str(done.lines().next().unwrap_or_default())?;
        conversation = done["conversation_id"].as_str().map(str::to_string);
        let (arrived, first, finished) = (
            provider.arrived.lock().unwrap().unwrap(),
            provider.first_frame.lock().unwrap().unwrap(),
            provider.finished.lock().unwrap().unwrap(),
        );
        if i >= 20 {
            // Warm-up turns (connection pools, caches) are not counted.
            own.push(total.saturating_sub(finished.saturating_duration_since(arrived)));
            ttft.push(first_token.unwrap().saturating_duration_since(first));
        }
    }
    own.sort();
    ttft.sort();
    let backend = if database_url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    println!("{turns} turns over POST /api/chat, {backend}, instant OpenAI-compatible provider on loopback");
    println!(
        "daemon time per turn: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        percentile(&own, 0.5).as_secs_f64() * 1e3,
        percentile(&own, 0.99).as_secs_f64() * 1e3,
        own.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "added time to first token (provider first frame -> client token event): p50 {:.3} ms  p99 {:.3} ms",
        percentile(&ttft, 0.5).as_secs_f64() * 1e3,
        percentile(&ttft, 0.99).as_secs_f64() * 1e3
    );

    // The same turns without the HTTP hop in front: `run_turn` called directly.
    let mut direct = Vec::with_capacity(turns);
    for i in 0..turns + 20 {
        let request = nexus::agent::TurnRequest {
            conversation_key: format!("bench:{}", i / 10),
            text: "How is the server?".into(),
            tier: None,
            think: Default::default(),
            caller: nexus::tools::Caller::System,
            max_risk: nexus::tools::Risk::Read,
            approved_tools: Vec::new(),
        };
        let started = Instant::now();
        nexus::agent::run_turn(&running.state, request, None, tokio_util::sync::CancellationToken::new()).await?;
        let total = started.elapsed();
        let (arrived, finished) =
            (provider.arrived.lock().unwrap().unwrap(), provider.finished.lock().unwrap().unwrap());
        if i >= 20 {
            direct.push(total.saturating_sub(finished.saturating_duration_since(arrived)));
        }
    }
    direct.sort();
    println!(
        "run_turn called directly (no HTTP in front): p50 {:.3} ms  p99 {:.3} ms",
        percentile(&direct, 0.5).as_secs_f64() * 1e3,
        percentile(&direct, 0.99).as_secs_f64() * 1e3
    );
    running.stop().await?;
    Ok(())
}
