//! The MCP server against a real MCP client nobody here wrote: the official Python SDK
//! (`pip install mcp`, 2.x) through tests/mcp_client.py. Tokens through the REST API, on SQLite
//! and PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use nexus::app::{self, AppState, Running};
use nexus::config::Config;
use nexus::tools::{Risk, Tool};
use serde_json::{Value, json};

use crate::support::TestDb;

pub const API_KEY: &str = "test-liv-api-key-0123456789";

/// A daemon on the given database with MCP on an ephemeral port.
pub async fn start_app(db: &TestDb, dir: &std::path::Path) -> Running {
    let vars: HashMap<String, String> = [
        ("NEXUS_DATA_DIR", dir.display().to_string()),
        ("DATABASE_URL", db.url.clone()),
        ("API_PORT", "0".into()),
        ("MCP_PORT", "0".into()),
        ("LIV_API_KEY", API_KEY.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::from_vars(&vars).unwrap();
    let state = AppState::connect(config, Duration::from_secs(10)).await.unwrap();
    app::start(state).await.unwrap()
}

/// An HTTP client for the REST API that sends the API key on every request.
pub fn api_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", reqwest::header::HeaderValue::from_static(API_KEY));
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Runs tests/mcp_client.py; None when the `mcp` package is missing (the caller skips).
pub async fn python(args: &[&str]) -> Option<(i32, Value)> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the python MCP client hung")
    .expect("python3 runs");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if code == 3 {
        eprintln!("SKIPPED: the Python `mcp` package is not installed (pip install mcp): {stdout}");
        return None;
    }
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!("client output is not JSON (exit {code}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    Some((code, value))
}

fn noted_write_tool() -> Tool {
    Tool::new(
        "note_write",
        "Stores a note (test tool of risk write).",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        Risk::Write,
        |args, _| async move { Ok(json!({"stored": args["text"]})) },
    )
    .unwrap()
}

async fn scenario(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let running = start_app(&db, dir.path()).await;
    running.state.tools.register(noted_write_tool());
    let api = format!("http://{}", running.api_addr);
    let mcp = format!("http://{}/mcp", running.mcp_addr);
    let http = api_client();

    // Tokens through the API: shown once, listed without the secret.
    let created: Value = {
        let r = http.post(format!("{api}/api/mcp/tokens")).json(&json!({"name": "ci"})).send().await.unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    };
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("nxm_") && token.len() > 40, "{created}");
    assert_eq!(created["allow_risky"], false);
    let listed: Value = http.get(format!("{api}/api/mcp/tokens")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0].get("token").is_none() && !listed.to_string().contains(&token), "{listed}");
    let bad = http.post(format!("{api}/api/mcp/tokens")).json(&json!({"name": " "})).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // The real client: discovery first (2026-07-28), then the classic initialize handshake.
    let Some((code, session)) = python(&["session", &mcp, &token, "auto"]).await else {
        running.stop().await.unwrap();
        db.cleanup().await;
        return;
    };
    assert_eq!(code, 0, "{session}");
    assert_eq!(session["server"], "nexus");
    let tools = session["tools"].as_object().unwrap();
    assert_eq!(tools["system_info"]["schema"]["properties"]["topic"]["enum"][2], "ram", "{session}");
    assert!(tools.contains_key("current_time"));
    // A read-only token is not even offered the write tool.
    assert!(!tools.contains_key("note_write"), "{session}");
    assert!(session["system_info"]["structured"]["memory"]["total_gib"].as_f64().unwrap() > 0.0, "{session}");
    assert_eq!(session["bad_args"]["is_error"], true, "{session}");
    assert!(session["bad_args"]["text"][0].as_str().unwrap().contains("topic"), "{session}");

    let (code, legacy) = python(&["session", &mcp, API_KEY, "legacy"]).await.unwrap();
    assert_eq!(code, 0, "{legacy}");
    assert_eq!(legacy["protocol"], "2025-11-25");
    assert!(legacy["tools"].as_object().unwrap().contains_key("note_write"), "the API key may use every tool");

    // Risk policy: refused for a read-only token, allowed with allow_risky.
    let (_, refused) = python(&["call", &mcp, &token, "legacy", "note_write", r#"{"text":"x"}"#]).await.unwrap();
    assert_eq!(refused["is_error"], true, "{refused}");
    assert!(refused["text"][0].as_str().unwrap().contains("allow_risky"), "{refused}");
    let risky: Value = http
        .post(format!("{api}/api/mcp/tokens"))
        .json(&json!({"name": "ops", "allow_risky": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, done) =
        python(&["call", &mcp, risky["token"].as_str().unwrap(), "legacy", "note_write", r#"{"text":"x"}"#])
            .await
            .unwrap();
    assert_eq!(done["structured"], json!({"stored": "x"}), "{done}");

    // No token, a wrong one: 401 and nothing else.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    for auth in [None, Some("Bearer nope"), Some("Basic abc")] {
        let mut req = http.post(&mcp).header("accept", "application/json, text/event-stream").json(&init);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().get("www-authenticate").is_some());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    let (code, out) = python(&["session", &mcp, "", "auto"]).await.unwrap();
    assert_eq!(code, 4, "{out}");

    // A 2.x client's first request: server/discover gets an answer, never a hang or a 5xx.
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}});
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        http.post(&mcp)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .json(&discover)
            .send(),
    )
    .await
    .expect("server/discover hung")
    .unwrap();
    assert!(r.status().is_success() || r.status().is_client_error(), "{}", r.status());

    // Revocation is immediate.
    let id = created["id"].as_str().unwrap();
    let r = http.delete(format!("{api}/api/mcp/tokens/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (code, out) = python(&["session", &mcp, &token, "legacy"]).await.unwrap();
    assert_eq!(code, 4, "a revoked token still works: {out}");
    let r = http.post(&mcp).bearer_auth(&token).json(&init).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.delete(format!("{api}/api/mcp/tokens/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let metrics = http.get(format!("{api}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nexus_mcp_server_calls_total"), "{metrics}");
    assert!(metrics.contains("nexus_mcp_server_unauthorized_total"));

    running.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_python_client_sqlite() {
    scenario(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_python_client_postgres() {
    scenario(TestDb::postgres().await).await;
}
