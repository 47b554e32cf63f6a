//! The client manager against real external MCP servers written with the official Python SDK
//! (tests/mcp_fake_server.py): stdio and streamable HTTP, configured through the API; their tools
//! land in the registry, a crash is survived, a hung server times out, removal cleans up.

use std::time::{Duration, Instant};

use nexus::app::Running;
use nexus::tools::{Caller, Risk, ToolError};
use serde_json::{Value, json};

use crate::mcp_server::start_app;
use crate::support::TestDb;

pub const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_fake_server.py");

pub fn sdk_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import mcp.server.mcpserver, uvicorn"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: the Python `mcp` package is not installed (pip install mcp)");
    }
    ok
}

async fn wait_for<F: Fn() -> bool>(what: &str, secs: u64, cond: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(http: &reqwest::Client, api: &str, name: &str) -> Value {
    http.get(format!("{api}/api/mcp/servers/{name}/status")).send().await.unwrap().json().await.unwrap()
}

async fn wait_status(http: &reqwest::Client, api: &str, name: &str, secs: u64, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(http, api, name).await;
        if want(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "status of {name} never matched; last: {s}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn has(running: &Running, tool: &str) -> bool {
    running.state.tools.get(tool).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_server_tools_crash_restart_timeout_and_removal() {
    if !sdk_available() {
        return;
    }
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start_app(&db, dir.path()).await;
    let api = format!("http://{}", running.api_addr);
    let http = crate::mcp_server::api_client();

    let config = json!({"name": "fake", "transport": "stdio", "command": "python3", "args": [FAKE, "stdio"],
        "env": {"FAKE_GREETING": "merhaba-secret"}, "timeout_ms": 3000});
    let r = http.post(format!("{api}/api/mcp/servers")).json(&config).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let view = r.text().await.unwrap();
    assert!(!view.contains("merhaba-secret"), "a secret came back: {view}");
    let view: Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["env_keys"], json!(["FAKE_GREETING"]));

    // Bad input changes nothing.
    for (body, code) in [
        (json!({"name": "fake", "transport": "stdio", "command": "x"}), 409),
        (json!({"name": "Bad Name", "transport": "stdio", "command": "x"}), 400),
        (json!({"name": "a__b", "transport": "stdio", "command": "x"}), 400),
        (json!({"name": "nocmd", "transport": "stdio"}), 400),
        (json!({"name": "web", "transport": "http", "url": "ftp://x"}), 400),
        (json!({"name": "web", "transport": "http", "url": "http://x", "headers": {"Accept": "x"}}), 400),
    ] {
        let r = http.post(format!("{api}/api/mcp/servers")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), code, "{body}");
    }
    let list: Value = http.get(format!("{api}/api/mcp/servers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // Its tools enter the registry, namespaced, and run through it like any tool.
    wait_for("fake__add", 60, || has(&running, "fake__add")).await;
    let tools = &running.state.tools;
    assert_eq!(tools.get("fake__add").unwrap().risk, Risk::Read, "declared read-only");
    assert_eq!(tools.get("fake__crash").unwrap().risk, Risk::Admin);
    let sum = tools.call("fake__add", json!({"a": 2, "b": 3}), Caller::System).await.unwrap();
    assert_eq!(sum, json!({"result": 5}));
    let bad = tools.call("fake__add", json!({"a": "two"}), Caller::System).await;
    assert!(matches!(bad, Err(ToolError::InvalidArguments { .. })), "{bad:?}");
    let hello = tools.call("fake__greeting", json!({}), Caller::System).await.unwrap();
    assert!(hello.to_string().contains("merhaba-secret"), "the vaulted env did not reach the server: {hello}");
    let s = wait_status(&http, &api, "fake", 5, |s| s["state"] == "running").await;
    assert!(s["tools"].as_array().unwrap().contains(&json!("fake__add")), "{s}");

    // A crash: the tools leave, the server is restarted with backoff, the tools come back.
    let crashed = tools.call("fake__crash", json!({}), Caller::System).await;
    assert!(crashed.is_err(), "{crashed:?}");
    let s =
        wait_status(&http, &api, "fake", 60, |s| s["state"] == "running" && s["restarts"].as_u64() >= Some(1)).await;
    assert!(s["tools"].as_array().unwrap().contains(&json!("fake__add")), "{s}");
    assert_eq!(tools.call("fake__add", json!({"a": 1, "b": 1}), Caller::System).await.unwrap(), json!({"result": 2}));

    // A hung server costs a caller the timeout, not forever.
    let started = Instant::now();
    let napped = tools.call("fake__nap", json!({"seconds": 5}), Caller::System).await;
    assert!(matches!(napped, Err(ToolError::Timeout { .. })), "{napped:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Restart through the API.
    let r = http.post(format!("{api}/api/mcp/servers/fake/restart")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_status(&http, &api, "fake", 60, |s| s["state"] == "running").await;
    wait_for("fake__add after restart", 30, || has(&running, "fake__add")).await;

    // Disabled: stopped and gone from the registry; the env secret is kept when PUT omits it.
    let mut disabled = config.clone();
    disabled["enabled"] = json!(false);
    disabled.as_object_mut().unwrap().remove("env");
    let r = http.put(format!("{api}/api/mcp/servers/fake")).json(&disabled).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["env_keys"], json!(["FAKE_GREETING"]), "{view}");
    wait_for("fake tools to leave", 15, || !has(&running, "fake__add")).await;
    assert_eq!(status(&http, &api, "fake").await["state"], "disabled");
    let r = http.put(format!("{api}/api/mcp/servers/nope")).json(&disabled).send().await.unwrap();
    assert_eq!(r.status(), 400, "the body names another server");
    disabled.as_object_mut().unwrap().remove("name");
    let r = http.put(format!("{api}/api/mcp/servers/nope")).json(&disabled).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Enabled again, then deleted: its tools leave for good.
    let r = http.put(format!("{api}/api/mcp/servers/fake")).json(&config).send().await.unwrap();
    assert_eq!(r.status(), 200);
    wait_for("fake__add back", 60, || has(&running, "fake__add")).await;
    let r = http.delete(format!("{api}/api/mcp/servers/fake")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    wait_for("fake tools to leave", 15, || running.state.tools.list().iter().all(|t| !t.name.starts_with("fake__")))
        .await;
    let r = http.get(format!("{api}/api/mcp/servers/fake/status")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!running.state.vault.is_set("mcp.server.fake").await.unwrap(), "secrets outlived the server");

    let metrics = http.get(format!("{api}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nexus_mcp_client_calls_total{server=\"fake\""), "{metrics}");
    assert!(metrics.contains("nexus_mcp_client_errors_total{server=\"fake\"}"), "{metrics}");

    running.stop().await.unwrap();
    db.cleanup().await;
}

/// Kills the fake HTTP server when the test ends, however it ends.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_server_with_secret_header_on_postgres() {
    if !sdk_available() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _fake = ChildGuard(
        std::process::Command::new("python3")
            .args([FAKE, "http", &port.to_string(), "web-bearer-secret"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start_app(&db, dir.path()).await;
    let api = format!("http://{}", running.api_addr);
    let http = crate::mcp_server::api_client();

    let url = format!("http://127.0.0.1:{port}/mcp");
    let config = json!({"name": "web", "transport": "http", "url": url,
        "headers": {"Authorization": "Bearer web-bearer-secret"}, "timeout_ms": 5000});
    let r = http.post(format!("{api}/api/mcp/servers")).json(&config).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // The server may still be importing: the manager retries with backoff until it answers.
    wait_for("web__add", 90, || has(&running, "web__add")).await;
    let sum = running.state.tools.call("web__add", json!({"a": 20, "b": 22}), Caller::System).await.unwrap();
    assert_eq!(sum, json!({"result": 42}));
    let listed = http.get(format!("{api}/api/mcp/servers")).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains("web-bearer-secret"), "{listed}");
    assert!(listed.contains("\"header_keys\":[\"Authorization\"]"), "{listed}");

    // A wrong header: the server refuses, the tools leave, the status says why.
    let mut wrong = config.clone();
    wrong["headers"] = json!({"Authorization": "Bearer wrong"});
    let r = http.put(format!("{api}/api/mcp/servers/web")).json(&wrong).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let s = wait_status(&http, &api, "web", 30, |s| s["state"] == "backoff").await;
    assert!(s["error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    assert!(!has(&running, "web__add"));

    running.stop().await.unwrap();
    db.cleanup().await;
}
