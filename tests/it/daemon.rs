//! The real binary: starts on the embedded default, answers /readyz, stops on SIGTERM, keeps its
//! data across a restart, refuses bad configuration with exit code 2.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Daemon {
    pub child: Child,
    pub base: String,
}

impl Daemon {
    /// Starts `nexus serve` with a clean environment plus `envs`, and waits for its listening line.
    pub fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NEXUS_DATA_DIR", data_dir)
            .env("API_PORT", "0")
            .env("MCP_PORT", "0")
            .env("NEXUS_LOG", "warn")
            .envs(envs.iter().copied())
            .current_dir(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("a listening line").unwrap();
        assert!(line.contains("listening"), "{line}");
        let base =
            line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().trim_end_matches('/').to_string();
        // Keep draining stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base: format!("http://{base}") }
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("the daemon did not stop within 10 s of SIGTERM");
    }
}

#[tokio::test]
async fn starts_on_embedded_default_and_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let ready = client.get(format!("{}/readyz", daemon.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"]["backend"], "sqlite");
    assert_eq!(body["bus"]["backend"], "memory");
    assert_eq!(client.get(format!("{}/healthz", daemon.base)).send().await.unwrap().status(), 200);

    let missing = client.get(format!("{}/no/such/route", daemon.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");

    let metrics = client.get(format!("{}/metrics", daemon.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nexus_http_requests_total"), "{metrics}");
    assert!(metrics.contains("nexus_http_request_duration_seconds_bucket"), "{metrics}");

    assert!(daemon.terminate().success(), "SIGTERM is a clean exit");
    assert!(dir.path().join("nexus.db").exists());
    let key = std::fs::read(dir.path().join("secret.key")).unwrap();

    // Data written while stopped is there after the restart; the vault key is kept.
    let store =
        nexus::store::Store::connect(&format!("sqlite://{}", dir.path().join("nexus.db").display())).await.unwrap();
    store.put_setting("written.offline", &7).await.unwrap();
    store.close().await;
    let daemon = Daemon::start(dir.path(), &[]);
    assert_eq!(client.get(format!("{}/readyz", daemon.base)).send().await.unwrap().status(), 200);
    assert_eq!(std::fs::read(dir.path().join("secret.key")).unwrap(), key);
    assert!(daemon.terminate().success());
    let store =
        nexus::store::Store::connect(&format!("sqlite://{}", dir.path().join("nexus.db").display())).await.unwrap();
    assert_eq!(store.get_setting::<i64>("written.offline").await.unwrap(), Some(7));
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .env_clear()
        .env("NEXUS_DATA_DIR", dir.path())
        .env("API_PORT", "eighty")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("API_PORT"), "{stderr}");
}

#[test]
fn doctor_reports_each_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .arg("doctor")
        .env_clear()
        .env("NEXUS_DATA_DIR", dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for check in ["config", "data dir", "database", "migrations", "bus", "providers"] {
        assert!(stdout.contains(check), "{check} missing in:\n{stdout}");
    }
    // An unreachable database is a failure with a fix, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .arg("doctor")
        .env_clear()
        .env("NEXUS_DATA_DIR", dir.path())
        .env("DATABASE_URL", "postgres://nexus:hunter2@127.0.0.1:1/none")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL") && stdout.contains("fix:"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "the password is hidden: {stdout}");
}

/// The daemon's state on the embedded default in `dir`, ports chosen by the OS.
async fn embedded_state(dir: &Path) -> nexus::app::AppState {
    let vars = [("NEXUS_DATA_DIR", dir.to_str().unwrap()), ("API_PORT", "0"), ("MCP_PORT", "0")];
    let config =
        nexus::config::Config::from_vars(&vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap();
    nexus::app::AppState::connect(config, Duration::from_secs(5)).await.unwrap()
}

#[tokio::test]
async fn readyz_names_the_dependency_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = embedded_state(dir.path()).await;
    let running = nexus::app::start(state).await.unwrap();
    let url = format!("http://{}/readyz", running.api_addr);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    running.state.store.pool().close().await;
    let down = reqwest::get(&url).await.unwrap();
    assert_eq!(down.status(), 503);
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["database"]["ok"], false);
    assert_eq!(body["bus"]["ok"], false, "the embedded bus lives in the database too");
    running.stop().await.unwrap();
}

#[test]
fn json_logs_with_log_format_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .env_clear()
        .env("NEXUS_DATA_DIR", dir.path())
        .env("API_PORT", "0")
        .env("MCP_PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("NEXUS_LOG", "info")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let started = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .map(|line| serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .find(|event| event["message"] == "nexus started");
    child.kill().unwrap();
    child.wait().unwrap();
    let event = started.expect("a start-up event");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["bus"], "memory");
}

#[tokio::test]
async fn metrics_report_queue_depths() {
    let dir = tempfile::tempdir().unwrap();
    let state = embedded_state(dir.path()).await;
    state.register_queue("metrics-test-queue");
    for _ in 0..3 {
        state.bus.enqueue("metrics-test-queue", "x").await.unwrap();
    }
    let running = nexus::app::start(state).await.unwrap();
    let text = reqwest::get(format!("http://{}/metrics", running.api_addr)).await.unwrap().text().await.unwrap();
    assert!(text.contains("nexus_queue_depth{queue=\"metrics-test-queue\"} 3"), "{text}");
    running.stop().await.unwrap();
}
