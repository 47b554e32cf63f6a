//! The brain and the agent loop end to end: the real daemon state and HTTP API, real SQLite and
//! PostgreSQL, and loopback provider doubles speaking the real wire formats.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nexus::app::{AppState, Running};
use nexus::config::Config;
use nexus::tools::{Risk, Tool, ToolError};
use serde_json::{Value, json};

use crate::brain_doubles::{self, KEY, Kind, Reply};
use crate::support::TestDb;

const TEST_API_KEY: &str = "brain-test-api-key-0123456789abcdef";

pub struct Env {
    pub state: AppState,
    pub base: String,
    pub http: reqwest::Client,
    running: Running,
    db: TestDb,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn new(db: TestDb, vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut v: HashMap<String, String> = HashMap::new();
        v.insert("NEXUS_DATA_DIR".into(), dir.path().display().to_string());
        v.insert("DATABASE_URL".into(), db.url.clone());
        v.insert("API_PORT".into(), "0".into());
        v.insert("MCP_PORT".into(), "0".into());
        v.insert("LIV_API_KEY".into(), TEST_API_KEY.into());
        for (k, val) in vars {
            v.insert(k.to_string(), val.to_string());
        }
        let config = Config::from_vars(&v).unwrap();
        let state = AppState::connect(config, Duration::from_secs(5)).await.unwrap();
        state.store.put_setting("brain", &json!({"retry_base_ms": 10})).await.unwrap();
        register_test_tools(&state);
        let running = nexus::app::start(state.clone()).await.unwrap();
        let base = format!("http://{}", running.api_addr);
        // Every /api route needs credentials: the client sends the API key on each request.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", reqwest::header::HeaderValue::from_static(TEST_API_KEY));
        let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
        Self { state, base, http, running, db, _dir: dir }
    }

    pub async fn settings(&self, value: Value) {
        self.state.store.put_setting("brain", &value).await.unwrap();
    }

    /// Posts a chat message and returns the SSE events `(name, data)`.
    pub async fn chat(&self, body: Value) -> Vec<(String, Value)> {
        let response = self.http.post(format!("{}/api/chat", self.base)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        parse_sse(&response.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.state.store.pool())
            .await
            .unwrap()
    }

    pub async fn finish(self) {
        self.running.stop().await.unwrap();
        self.db.cleanup().await;
    }
}

pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

pub fn events_named<'a>(events: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|(n, _)| n == name).map(|(_, d)| d).collect()
}

pub fn tokens(events: &[(String, Value)]) -> String {
    events_named(events, "token").iter().map(|d| d["text"].as_str().unwrap()).collect()
}

fn register_test_tools(state: &AppState) {
    let add = Tool::new(
        "add_numbers",
        "Adds two numbers.",
        json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"], "additionalProperties": false}),
        Risk::Read,
        |args, _| async move { Ok(json!({"sum": args["a"].as_f64().unwrap() + args["b"].as_f64().unwrap()})) },
    )
    .unwrap();
    state.tools.register(add);
    // Succeeds only when two calls are in flight at the same time: proves parallel tool calls.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let meet = Tool::new(
        "meet",
        "Waits for a partner call.",
        json!({"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}),
        Risk::Read,
        move |args, _| {
            let barrier = barrier.clone();
            async move {
                match tokio::time::timeout(Duration::from_secs(5), barrier.wait()).await {
                    Ok(_) => Ok(json!({"met": args["who"]})),
                    Err(_) => Err(ToolError::Failed("nobody came".into())),
                }
            }
        },
    )
    .unwrap();
    state.tools.register(meet);
    let reboot =
        Tool::new("reboot_server", "Reboots the server.", json!({"type": "object"}), Risk::Admin, |_, _| async {
            Err(ToolError::Failed("must never run in tests".into()))
        })
        .unwrap();
    state.tools.register(reboot);
}

async fn gemini_tool_round_trip(db: TestDb) {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    // No GEMINI_API_KEY: the key is set at run time in the vault, as PUT /api/nexus/config does.
    let env = Env::new(db, &[("GEMINI_BASE_URL", &gemini.base)]).await;
    let none = env.chat(json!({"message": "hello"})).await;
    assert!(events_named(&none, "error")[0]["message"].as_str().unwrap().contains("GEMINI_API_KEY"), "{none:?}");
    env.state.vault.set("gemini_api_key", KEY).await.unwrap();

    gemini.push(Reply::Tools(vec![("add_numbers".into(), r#"{"a": 2, "b": 3}"#.into())]));
    gemini.push(Reply::Text("The sum is 5.".into()));
    let events = env.chat(json!({"message": "What is 2 + 3?"})).await;
    assert_eq!(tokens(&events), "The sum is 5.", "{events:?}");
    let call = events_named(&events, "tool_call")[0];
    assert_eq!(call["name"], "add_numbers");
    let result = events_named(&events, "tool_result")[0];
    assert_eq!((result["ok"].clone(), result["output"]["sum"].as_f64()), (json!(true), Some(5.0)));
    let done = events_named(&events, "done")[0];
    assert_eq!(done["usage"], json!({"input_tokens": 20, "output_tokens": 9}));
    assert_eq!(done["provider"], "gemini");
    let id = done["conversation_id"].as_str().unwrap().to_string();

    // The function response went back after its call, with the call's thoughtSignature.
    let second = gemini.last_request();
    let contents = second["contents"].as_array().unwrap();
    assert_eq!(contents[1]["parts"][0]["thoughtSignature"], "sig-call-0-0");
    assert_eq!(contents[2]["parts"][0]["functionResponse"]["response"]["output"]["sum"], 5.0);
    assert!(second["systemInstruction"]["parts"][0]["text"].as_str().unwrap().contains("Nexus"));

    // The conversation continues with its stored history (signatures included).
    gemini.push(Reply::Text("You asked about 2 + 3.".into()));
    let events = env.chat(json!({"message": "What did I ask?", "conversation_id": id})).await;
    assert_eq!(events_named(&events, "done")[0]["conversation_id"], id);
    assert_eq!(gemini.last_request()["contents"].as_array().unwrap().len(), 5);
    assert!(gemini.rejected.lock().unwrap().is_empty(), "{:?}", gemini.rejected.lock().unwrap());

    let detail = env.get(&format!("/api/conversations/{id}")).await;
    assert_eq!(detail["messages"].as_array().unwrap().len(), 6);
    assert_eq!(detail["conversation"]["input_tokens"], 30);
    assert_eq!(detail["messages"][1]["parts"][0]["type"], "tool_call");
    let list = env.get("/api/conversations").await;
    assert_eq!(list["conversations"][0]["id"], id);
    let usage = env.get("/api/usage").await;
    assert_eq!(usage["totals"], json!({"requests": 3, "input_tokens": 30, "output_tokens": 14}));
    assert_eq!(usage["rows"][0]["provider"], "gemini");
    assert_eq!(env.count("tool_calls").await, 1);
    let metrics = env.http.get(format!("{}/metrics", env.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nexus_llm_input_tokens_total"), "{metrics}");
    let missing = env.http.get(format!("{}/api/conversations/nope", env.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    env.finish().await;
}

#[tokio::test]
async fn gemini_streams_calls_a_tool_and_stores_the_turn_sqlite() {
    gemini_tool_round_trip(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn gemini_streams_calls_a_tool_and_stores_the_turn_postgres() {
    gemini_tool_round_trip(TestDb::postgres().await).await;
}

#[tokio::test]
async fn anthropic_runs_two_tool_calls_in_parallel() {
    let claude = brain_doubles::start(Kind::Anthropic).await;
    let env =
        Env::new(TestDb::postgres().await, &[("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", &claude.base)]).await;
    claude.push(Reply::Tools(vec![
        ("meet".into(), r#"{"who": "alice"}"#.into()),
        ("meet".into(), r#"{"who": "bob"}"#.into()),
    ]));
    claude.push(Reply::Text("Alice met Bob.".into()));
    let events = env.chat(json!({"message": "Introduce them", "tier": "haiku"})).await;
    let results = events_named(&events, "tool_result");
    assert_eq!(results.len(), 2, "{events:?}");
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    assert_eq!(tokens(&events), "Alice met Bob.");
    let done = events_named(&events, "done")[0];
    assert_eq!(done["provider"], "anthropic");
    assert_eq!(done["model"], "claude-haiku-4-5");
    assert_eq!(done["usage"], json!({"input_tokens": 24, "output_tokens": 14}));

    let second = claude.last_request();
    assert!(second["system"].as_str().unwrap().contains("Nexus"));
    let answer = &second["messages"][2]["content"];
    assert_eq!(answer[0]["tool_use_id"], "toolu_0_0");
    assert_eq!(answer[1]["tool_use_id"], "toolu_0_1");
    assert_eq!(second["messages"][1]["content"][1]["input"], json!({"who": "bob"}));
    assert!(claude.rejected.lock().unwrap().is_empty(), "{:?}", claude.rejected.lock().unwrap());
    env.finish().await;
}

#[tokio::test]
async fn openai_compatible_malformed_tool_calls_are_fed_back_and_corrected() {
    let local = brain_doubles::start(Kind::Openai).await;
    let base = format!("{}/v1", local.base);
    let env = Env::new(TestDb::sqlite().await, &[("OPENAI_BASE_URL", &base), ("DEFAULT_MODEL", "llama3.1")]).await;
    local.push(Reply::Tools(vec![("add_numbers".into(), r#"{"a": 2, "b": "#.into())]));
    local.push(Reply::Tools(vec![("add_numbers".into(), r#"{"a": "two", "b": 3}"#.into())]));
    local.push(Reply::Tools(vec![("add_numbers".into(), r#"{"a": 2, "b": 3}"#.into())]));
    local.push(Reply::Text("It is 5.".into()));
    let events = env.chat(json!({"message": "2+3?"})).await;
    let results = events_named(&events, "tool_result");
    assert_eq!(results.len(), 3, "{events:?}");
    assert_eq!(results[0]["ok"], false);
    assert!(results[0]["output"].as_str().unwrap().contains("not a valid JSON object"), "{results:?}");
    assert_eq!(results[1]["ok"], false);
    assert!(results[1]["output"].as_str().unwrap().contains("/a"), "{results:?}");
    assert_eq!(results[2]["ok"], true);
    assert_eq!(tokens(&events), "It is 5.");
    let done = events_named(&events, "done")[0];
    assert_eq!(done["usage"], json!({"input_tokens": 80, "output_tokens": 24}));
    assert_eq!(done["model"], "llama3.1");
    // The error went back as the tool's answer, paired with its call id.
    let second = local.requests.lock().unwrap()[1].clone();
    let tool_msg = second["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert_eq!(tool_msg["tool_call_id"], "call_0_0");
    assert!(tool_msg["content"].as_str().unwrap().contains("not a valid JSON object"));
    assert_eq!(second["stream_options"]["include_usage"], true);
    assert!(local.rejected.lock().unwrap().is_empty(), "{:?}", local.rejected.lock().unwrap());
    env.finish().await;
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_waited_out() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    gemini.push(Reply::Error {
        status: 429,
        body: json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}),
        retry_after: Some(1),
    });
    gemini.push(Reply::Text("Patience pays.".into()));
    let started = Instant::now();
    let events = env.chat(json!({"message": "hi"})).await;
    assert_eq!(tokens(&events), "Patience pays.", "{events:?}");
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After: 1 was not honoured");
    assert_eq!(gemini.calls.load(Ordering::SeqCst), 2);
    env.finish().await;
}

#[tokio::test]
async fn server_errors_fail_over_to_the_next_provider() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let claude = brain_doubles::start(Kind::Anthropic).await;
    let env = Env::new(
        TestDb::sqlite().await,
        &[
            ("GEMINI_API_KEY", KEY),
            ("GEMINI_BASE_URL", &gemini.base),
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", &claude.base),
        ],
    )
    .await;
    for _ in 0..3 {
        gemini.push(Reply::Error {
            status: 500,
            body: json!({"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}),
            retry_after: None,
        });
    }
    claude.push(Reply::Text("Claude here.".into()));
    let events = env.chat(json!({"message": "anyone?"})).await;
    assert_eq!(tokens(&events), "Claude here.", "{events:?}");
    assert_eq!(events_named(&events, "done")[0]["provider"], "anthropic");
    assert_eq!(gemini.calls.load(Ordering::SeqCst), 3, "three attempts before failing over");
    // Gemini's breaker is open now: the next turn goes straight to Claude.
    let events = env.chat(json!({"message": "again?"})).await;
    assert_eq!(events_named(&events, "done")[0]["provider"], "anthropic");
    assert_eq!(gemini.calls.load(Ordering::SeqCst), 3);
    env.finish().await;
}

#[tokio::test]
async fn every_provider_down_gives_one_clear_sentence_and_stores_nothing() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let local = brain_doubles::start(Kind::Openai).await;
    let base = format!("{}/v1", local.base);
    let env = Env::new(
        TestDb::postgres().await,
        &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base), ("OPENAI_BASE_URL", &base)],
    )
    .await;
    env.settings(json!({"retry_base_ms": 10, "retry_attempts": 2})).await;
    for _ in 0..2 {
        gemini.push(Reply::Error {
            status: 503,
            body: json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
            retry_after: None,
        });
        local.push(Reply::Error {
            status: 500,
            body: json!({"error": {"message": "boom", "type": "server_error"}}),
            retry_after: None,
        });
    }
    let events = env.chat(json!({"message": "hello?"})).await;
    let errors = events_named(&events, "error");
    assert_eq!(errors.len(), 1, "{events:?}");
    let message = errors[0]["message"].as_str().unwrap();
    assert_eq!(errors[0]["error"], "unavailable");
    assert!(message.starts_with("No AI provider could answer right now"), "{message}");
    assert!(message.ends_with("please try again in a minute.") && !message.contains('\n'), "{message}");
    assert!(message.contains("gemini") && message.contains("openai"), "{message}");
    assert_eq!(env.count("conversations").await, 0);
    assert_eq!(env.count("conversation_messages").await, 0);
    env.finish().await;
}

async fn disconnect_mid_stream(db: TestDb) {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(db, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    gemini.push(Reply::Stall("This answer never ends because the provider stalls".into()));
    let response =
        env.http.post(format!("{}/api/chat", env.base)).json(&json!({"message": "talk"})).send().await.unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: token") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(body); // The client goes away mid-answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gemini.stall_dropped.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the turn kept reading from the provider after the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.count("conversations").await, 0, "nothing half-written");
    assert_eq!(env.count("conversation_messages").await, 0);
    assert_eq!(env.count("usage_daily").await, 0);
    env.finish().await;
}

#[tokio::test]
async fn client_disconnect_stops_the_turn_sqlite() {
    disconnect_mid_stream(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn client_disconnect_stops_the_turn_postgres() {
    disconnect_mid_stream(TestDb::postgres().await).await;
}

#[tokio::test]
async fn risky_tools_wait_for_confirmation() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    gemini.push(Reply::Tools(vec![("reboot_server".into(), "{}".into())]));
    let events = env.chat(json!({"message": "reboot please"})).await;
    let done = events_named(&events, "done")[0];
    assert_eq!(done["pending_confirmation"]["name"], "reboot_server", "{events:?}");
    assert_eq!(events_named(&events, "tool_result")[0]["ok"], false);
    // The stored history stays valid for the next turn (the double checks the pairing).
    gemini.push(Reply::Text("Not rebooting then.".into()));
    let id = done["conversation_id"].as_str().unwrap();
    let events = env.chat(json!({"message": "never mind", "conversation_id": id})).await;
    assert_eq!(tokens(&events), "Not rebooting then.", "{events:?}");
    // Confirmed for this turn: now it runs (this test tool always fails, which proves it ran).
    gemini.push(Reply::Tools(vec![("reboot_server".into(), "{}".into())]));
    gemini.push(Reply::Text("Tried.".into()));
    let events =
        env.chat(json!({"message": "yes, reboot", "conversation_id": id, "approved_tools": ["reboot_server"]})).await;
    let result = events_named(&events, "tool_result")[0];
    assert!(result["output"].as_str().unwrap().contains("must never run in tests"), "{events:?}");
    assert!(events_named(&events, "done")[0]["pending_confirmation"].is_null());
    assert!(gemini.rejected.lock().unwrap().is_empty(), "{:?}", gemini.rejected.lock().unwrap());
    env.finish().await;
}

#[tokio::test]
async fn long_conversations_are_summarised_not_dropped() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    env.settings(json!({"retry_base_ms": 10, "history_token_budget": 500})).await;
    let long = "The backup disk sits in the NAS cabinet. ".repeat(30);
    let mut id = None::<String>;
    for i in 0..3 {
        gemini.push(Reply::Text(format!("Noted {i}.")));
        let mut body = json!({"message": format!("{i}: {long}")});
        if let Some(id) = &id {
            body["conversation_id"] = json!(id);
        }
        let events = env.chat(body).await;
        id = Some(events_named(&events, "done")[0]["conversation_id"].as_str().unwrap().to_string());
    }
    assert!(env.count("conversation_summaries").await >= 1);
    let detail = env.get(&format!("/api/conversations/{}", id.unwrap())).await;
    assert!(detail["summary"].is_string(), "{detail}");
    assert_eq!(detail["messages"].as_array().unwrap().len(), 6, "every message is still stored");
    let last = gemini.last_request();
    assert!(
        last["systemInstruction"]["parts"][0]["text"].as_str().unwrap().contains("Summary of the earlier conversation")
    );
    env.finish().await;
}

#[tokio::test]
async fn chat_rejects_bad_input_with_json_errors() {
    let env = Env::new(TestDb::sqlite().await, &[]).await;
    for (body, status) in [
        (json!({"message": "  "}), 400),
        (json!({"message": "hi", "tier": "ultra"}), 400),
        (json!({"message": "hi", "conversation_id": "nope"}), 404),
        (json!({"text": "hi"}), 400),
    ] {
        let r = env.http.post(format!("{}/api/chat", env.base)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        let err: Value = r.json().await.unwrap();
        assert!(err["error"].is_string() && err["message"].is_string(), "{err}");
    }
    assert_eq!(env.count("conversations").await, 0);
    env.finish().await;
}

#[tokio::test]
async fn tool_rounds_and_turn_time_are_bounded() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    env.settings(json!({"retry_base_ms": 10, "max_tool_rounds": 2})).await;
    for _ in 0..3 {
        gemini.push(Reply::Tools(vec![("add_numbers".into(), r#"{"a": 1, "b": 1}"#.into())]));
    }
    let events = env.chat(json!({"message": "loop forever"})).await;
    assert_eq!(events_named(&events, "tool_result").len(), 2, "{events:?}");
    let done = events_named(&events, "done")[0];
    assert!(done["text"].as_str().unwrap().contains("stopped after 2 rounds"), "{done}");
    // The last call was offered no tools.
    assert!(gemini.last_request().get("tools").is_none());
    assert_eq!(gemini.request_count(), 3);
    // The stored history is still valid for the provider.
    gemini.push(Reply::Text("ok then".into()));
    let id = done["conversation_id"].as_str().unwrap();
    let events = env.chat(json!({"message": "fine", "conversation_id": id})).await;
    assert_eq!(tokens(&events), "ok then", "{events:?}");
    assert!(gemini.rejected.lock().unwrap().is_empty(), "{:?}", gemini.rejected.lock().unwrap());

    env.settings(json!({"retry_base_ms": 10, "turn_timeout_secs": 1})).await;
    gemini.push(Reply::Stall("Slow and never done".into()));
    let before = env.count("conversation_messages").await;
    let events = env.chat(json!({"message": "slow"})).await;
    let error = events_named(&events, "error");
    assert_eq!(error[0]["error"], "timeout", "{events:?}");
    assert_eq!(env.count("conversation_messages").await, before, "a timed-out turn writes nothing");
    env.finish().await;
}

#[test]
fn chat_memory_and_usage_routes_are_in_the_openapi_document() {
    let (_, doc) = nexus::api::protected_api().split_for_parts();
    let paths: Vec<&String> = doc.paths.paths.keys().collect();
    for path in
        ["/chat", "/conversations", "/conversations/{id}", "/usage", "/memory", "/memory/search", "/memory/{id}"]
    {
        assert!(doc.paths.paths.contains_key(path), "{path} missing from {paths:?}");
    }
}

/// The real binary, configured only by environment: a chat streams, the model's call of a
/// built-in tool (memory_add) runs, and the turn is stored.
#[tokio::test]
async fn the_binary_chats_with_only_a_gemini_key() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let dir = tempfile::tempdir().unwrap();
    // /api needs credentials once the auth layer is merged: the inter-service key serves here.
    let api_key = "brain-binary-test-api-key-0123456789abcdef";
    let daemon = crate::daemon::Daemon::start(
        dir.path(),
        &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base), ("LIV_API_KEY", api_key)],
    );
    gemini.push(Reply::Tools(vec![("memory_add".into(), r#"{"content": "The owner likes short answers"}"#.into())]));
    gemini.push(Reply::Text("Noted.".into()));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_static(api_key));
    let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
    let text = http
        .post(format!("{}/api/chat", daemon.base))
        .json(&json!({"message": "Remember: I like short answers"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    assert_eq!(tokens(&events), "Noted.", "{events:?}");
    assert_eq!(events_named(&events, "tool_result")[0]["ok"], true, "{events:?}");
    let memories: Value =
        http.get(format!("{}/api/memory/search?q=short", daemon.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(memories["memories"][0]["content"], "The owner likes short answers");
    let list: Value =
        http.get(format!("{}/api/conversations", daemon.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
    assert!(daemon.terminate().success());
}
