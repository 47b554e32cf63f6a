//! An in-process daemon on a test database, with a reqwest client: the HTTP suites' harness.

use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support::TestDb;

pub const API_KEY: &str = "test-api-key-0123456789abcdef";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdefghijklmnop";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";

pub struct Api {
    pub base: String,
    pub client: Client,
    pub running: Option<nexus::app::Running>,
    pub db: Option<TestDb>,
    _dir: tempfile::TempDir,
}

impl Api {
    /// Login limits large enough never to get in a test's way.
    pub async fn start(db: TestDb) -> Self {
        let hour = Duration::from_secs(3600);
        Self::start_with(db, nexus::auth::ratelimit::LoginLimiter::new(1000, hour, 1000, hour)).await
    }

    pub async fn start_with(db: TestDb, limiter: nexus::auth::ratelimit::LoginLimiter) -> Self {
        Self::start_full(db, limiter, &[]).await
    }

    /// With extra configuration variables.
    pub async fn start_full(db: TestDb, limiter: nexus::auth::ratelimit::LoginLimiter, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![
            ("NEXUS_DATA_DIR", dir.path().to_str().unwrap()),
            ("DATABASE_URL", db.url.as_str()),
            ("API_PORT", "0"),
            ("MCP_PORT", "0"),
            ("LIV_API_KEY", API_KEY),
            ("JWT_SECRET", JWT_SECRET),
            ("NEXUS_MAX_BODY_BYTES", "65536"),
        ];
        vars.extend_from_slice(extra);
        let config =
            nexus::config::Config::from_vars(&vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
                .unwrap();
        let mut state = nexus::app::AppState::connect(config, Duration::from_secs(5)).await.unwrap();
        state.auth = std::sync::Arc::new(nexus::auth::Auth::new(&state.config).unwrap().with_limiter(limiter));
        let running = nexus::app::start(state).await.unwrap();
        let base = format!("http://{}", running.api_addr);
        Self { base, client: Client::new(), running: Some(running), db: Some(db), _dir: dir }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn state(&self) -> &nexus::app::AppState {
        &self.running.as_ref().unwrap().state
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut r = self.req(method, path);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    /// Sends and returns status and JSON body (Null when empty).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let resp = self.send(method, path, token, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    /// With the API key instead of a token.
    pub async fn call_key(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path).header("x-api-key", key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sets up the first user and logs in; returns the token.
    pub async fn setup_and_login(&self) -> String {
        let (s, b) = self
            .call(Method::POST, "/api/auth/setup", None, Some(json!({"username": USER, "password": PASSWORD})))
            .await;
        assert_eq!(s, 201, "{b}");
        self.login(USER, PASSWORD, None).await
    }

    pub async fn login(&self, user: &str, password: &str, totp: Option<&str>) -> String {
        let mut body = json!({"username": user, "password": password});
        if let Some(code) = totp {
            body["totp"] = json!(code);
        }
        let (s, b) = self.call(Method::POST, "/api/auth/login", None, Some(body)).await;
        assert_eq!(s, 200, "{b}");
        b["token"].as_str().unwrap().to_string()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}

/// Runs each listed test body against SQLite and PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let api = $crate::api_support::Api::start($crate::support::TestDb::sqlite().await).await;
                super::$name(&api).await;
                api.stop().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let api = $crate::api_support::Api::start($crate::support::TestDb::postgres().await).await;
                super::$name(&api).await;
                api.stop().await;
            })*
        }
    };
}
