//! Authentication over real HTTP on SQLite and PostgreSQL: first-run setup, login, cookie, API key,
//! the auth matrix (no credentials, wrong password, expired / revoked token, wrong key, replayed
//! TOTP code), password change, TOTP, rate limits; every protected route refuses anonymous calls.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::{API_KEY, Api, JWT_SECRET, PASSWORD, USER};

crate::both_backends!(
    setup_login_and_the_auth_matrix,
    password_change_ends_every_session,
    totp_enable_login_replay_and_disable,
    every_protected_route_refuses_anonymous_callers,
);

/// The default bursts (10 per address, 5 per username), refilled slowly so a burst is exact
/// however slow the machine is.
fn default_bursts() -> nexus::auth::ratelimit::LoginLimiter {
    let hour = std::time::Duration::from_secs(3600);
    nexus::auth::ratelimit::LoginLimiter::new(10, hour, 5, hour)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_sqlite() {
    let api = Api::start_with(crate::support::TestDb::sqlite().await, default_bursts()).await;
    repeated_bad_passwords_are_rate_limited(&api).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_postgres() {
    let api = Api::start_with(crate::support::TestDb::postgres().await, default_bursts()).await;
    repeated_bad_passwords_are_rate_limited(&api).await;
    api.stop().await;
}

fn code_at(secret: &str, unix: u64) -> String {
    let totp = nexus::auth::totp::totp(secret, USER).unwrap();
    totp.generate(unix).to_string()
}

fn now_secs() -> u64 {
    (nexus::store::now_ms() / 1000) as u64
}

async fn setup_login_and_the_auth_matrix(api: &Api) {
    // Nobody yet: protected routes answer 401 in JSON.
    let (s, b) = api.call(Method::GET, "/api/auth/me", None, None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("unauthorized")), "{b}");

    // Setup: bad input first, nothing created.
    let bad_bodies = [
        (json!({"username": USER, "password": "short"}), 400, "at least 10"),
        (json!({"username": USER}), 400, "password"),
        (json!({"username": 5, "password": PASSWORD}), 400, "username"),
        (json!({"username": "bad name!", "password": PASSWORD}), 400, "only contain"),
        (json!({"username": USER, "password": PASSWORD, "admin": true}), 400, "unknown field"),
    ];
    for (body, status, needle) in bad_bodies {
        let (s, b) = api.call(Method::POST, "/api/auth/setup", None, Some(body.clone())).await;
        assert_eq!(s, status, "{body} → {b}");
        assert!(b["message"].as_str().unwrap().contains(needle), "{body} → {b}");
    }
    let raw = api
        .req(Method::POST, "/api/auth/setup")
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let raw = api.req(Method::POST, "/api/auth/setup").body("{}").send().await.unwrap();
    assert_eq!(raw.status(), 415);
    let big = json!({"username": USER, "password": "x".repeat(100_000)});
    let (s, _) = api.call(Method::POST, "/api/auth/setup", None, Some(big)).await;
    assert_eq!(s, 413, "oversize body");

    let (s, b) =
        api.call(Method::POST, "/api/auth/setup", None, Some(json!({"username": "Alice", "password": PASSWORD}))).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["username"], USER, "usernames are case-insensitive, stored lower-case");
    assert_eq!(b["totp_enabled"], false);
    // Only once, whatever the credentials.
    let (s, b) =
        api.call(Method::POST, "/api/auth/setup", None, Some(json!({"username": "bob", "password": PASSWORD}))).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("already_set_up")));
    let (s, _) = api
        .call_key(Method::POST, "/api/auth/setup", API_KEY, Some(json!({"username": "bob", "password": PASSWORD})))
        .await;
    assert_eq!(s, 409, "the API key never sets up users");

    // Wrong password, unknown user: the same 401.
    for (user, pass) in [(USER, "wrong password!"), ("nobody", PASSWORD)] {
        let (s, b) =
            api.call(Method::POST, "/api/auth/login", None, Some(json!({"username": user, "password": pass}))).await;
        assert_eq!((s, b["error"].as_str()), (401, Some("invalid_credentials")), "{b}");
    }

    // Login: token, expiry, cookie.
    let resp =
        api.send(Method::POST, "/api/auth/login", None, Some(json!({"username": USER, "password": PASSWORD}))).await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("nexus_session=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag: {cookie}");
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    let expires_at = body["expires_at"].as_i64().unwrap();
    let week_ms = 7 * 24 * 3600 * 1000;
    assert!((expires_at - nexus::store::now_ms() - week_ms).abs() < 60_000, "7 days by default");

    let behind_https = api
        .req(Method::POST, "/api/auth/login")
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(behind_https.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    // Bearer, cookie and API key each get in.
    let (s, b) = api.call(Method::GET, "/api/auth/me", Some(&token), None).await;
    assert_eq!((s, b["auth"].as_str(), b["user"]["username"].as_str()), (200, Some("session"), Some(USER)), "{b}");
    let cookie_pair = cookie.split(';').next().unwrap().to_string();
    let by_cookie = api.req(Method::GET, "/api/auth/me").header("cookie", &cookie_pair).send().await.unwrap();
    assert_eq!(by_cookie.status(), 200);
    let (s, b) = api.call_key(Method::GET, "/api/auth/me", API_KEY, None).await;
    assert_eq!((s, b["auth"].as_str()), (200, Some("api_key")));

    // The auth matrix.
    let (s, b) = api.call_key(Method::GET, "/api/auth/me", "wrong-key", None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_api_key")));
    let (s, b) = api.call(Method::GET, "/api/auth/me", Some("not.a.jwt"), None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_token")));
    let keys = nexus::auth::token::TokenKeys::from_secret(JWT_SECRET.as_bytes());
    let claims = keys.verify(&token).unwrap();
    let now = (nexus::store::now_ms() / 1000) as i64;
    let expired =
        keys.sign(&nexus::auth::token::Claims { exp: now - 3600, iat: now - 7200, ..claims.clone() }).unwrap();
    let (s, b) = api.call(Method::GET, "/api/auth/me", Some(&expired), None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_token")), "expired");
    let forged = nexus::auth::token::TokenKeys::from_secret(&[1u8; 32]).sign(&claims).unwrap();
    let (s, _) = api.call(Method::GET, "/api/auth/me", Some(&forged), None).await;
    assert_eq!(s, 401, "signed with another key");
    let (s, _) = api.call(Method::POST, "/api/auth/logout", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = api.call_key(Method::POST, "/api/auth/logout", API_KEY, None).await;
    assert_eq!(s, 403, "the API key has no session to end");

    // Logout revokes the token and clears the cookie; the cookie token dies with it.
    let resp = api.send(Method::POST, "/api/auth/logout", Some(&token), None).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (s, b) = api.call(Method::GET, "/api/auth/me", Some(&token), None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("session_ended")), "revoked");
    let by_cookie = api.req(Method::GET, "/api/auth/me").header("cookie", &cookie_pair).send().await.unwrap();
    assert_eq!(by_cookie.status(), 401);

    // The audit log has the failures and the logins.
    let (s, b) = api.call_key(Method::GET, "/api/audit?limit=50", API_KEY, None).await;
    assert_eq!(s, 200);
    let actions: Vec<&str> = b.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["auth.setup", "auth.login_failed", "auth.login", "auth.logout"] {
        assert!(actions.contains(&action), "{action} missing in {actions:?}");
    }
    let (s, _) = api.call_key(Method::GET, "/api/audit?limit=0", API_KEY, None).await;
    assert_eq!(s, 400);
    let (s, _) = api.call_key(Method::GET, "/api/audit?limit=abc", API_KEY, None).await;
    assert_eq!(s, 400);
}

async fn password_change_ends_every_session(api: &Api) {
    let first = api.setup_and_login().await;
    let second = api.login(USER, PASSWORD, None).await;
    let new_password = "a different passphrase";
    let (s, b) = api
        .call(
            Method::POST,
            "/api/auth/password",
            Some(&first),
            Some(json!({"current_password": "wrong one!", "new_password": new_password})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = api
        .call(
            Method::POST,
            "/api/auth/password",
            Some(&first),
            Some(json!({"current_password": PASSWORD, "new_password": "short"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) =
        api.call(Method::POST, "/api/auth/password", Some(&first), Some(json!({"current_password": PASSWORD}))).await;
    assert_eq!(s, 400, "missing field: {b}");
    let (s, _) = api
        .call_key(
            Method::POST,
            "/api/auth/password",
            API_KEY,
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(s, 403, "the API key has no password");
    let (s, b) = api
        .call(
            Method::POST,
            "/api/auth/password",
            Some(&first),
            Some(json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let fresh = b["token"].as_str().unwrap().to_string();
    for old in [&first, &second] {
        let (s, _) = api.call(Method::GET, "/api/auth/me", Some(old), None).await;
        assert_eq!(s, 401, "every earlier session ended");
    }
    assert_eq!(api.call(Method::GET, "/api/auth/me", Some(&fresh), None).await.0, 200);
    let (s, _) =
        api.call(Method::POST, "/api/auth/login", None, Some(json!({"username": USER, "password": PASSWORD}))).await;
    assert_eq!(s, 401, "the old password is gone");
    api.login(USER, new_password, None).await;
}

async fn totp_enable_login_replay_and_disable(api: &Api) {
    let token = api.setup_and_login().await;
    let (s, _) = api.call(Method::POST, "/api/auth/totp/enable", Some(&token), Some(json!({"code": "123456"}))).await;
    assert_eq!(s, 409, "setup comes first");
    let (s, b) = api.call(Method::POST, "/api/auth/totp/setup", Some(&token), None).await;
    assert_eq!(s, 200, "{b}");
    let secret = b["secret"].as_str().unwrap().to_string();
    assert!(b["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/Nexus:alice?"));
    assert!(b["qr_png_base64"].as_str().unwrap().starts_with("iVBOR"), "a PNG");
    let (s, _) = api.call_key(Method::POST, "/api/auth/totp/setup", API_KEY, None).await;
    assert_eq!(s, 403);

    // Enabling needs a valid code.
    let (s, b) = api.call(Method::POST, "/api/auth/totp/enable", Some(&token), Some(json!({"code": "000000x"}))).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_totp")));
    let (s, _) = api.call(Method::POST, "/api/auth/totp/enable", Some(&token), Some(json!({"code": 123456}))).await;
    assert_eq!(s, 400, "wrong type");
    let now = now_secs();
    let (current, next) = (code_at(&secret, now), code_at(&secret, now + 30));
    let (s, b) = api.call(Method::POST, "/api/auth/totp/enable", Some(&token), Some(json!({"code": current}))).await;
    assert_eq!((s, b["totp_enabled"].as_bool()), (200, Some(true)), "{b}");

    // Login now needs the code; each code works once.
    let creds = json!({"username": USER, "password": PASSWORD});
    let (s, b) = api.call(Method::POST, "/api/auth/login", None, Some(creds.clone())).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("totp_required")));
    let (s, b) = api
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": USER, "password": PASSWORD, "totp": "999999"})),
        )
        .await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = api
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": USER, "password": PASSWORD, "totp": current})),
        )
        .await;
    assert_eq!((s, b["error"].as_str()), (401, Some("totp_replayed")), "the enabling code cannot log in");
    let logged_in = api.login(USER, PASSWORD, Some(&next)).await;
    let (s, b) = api
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": USER, "password": PASSWORD, "totp": next})),
        )
        .await;
    assert_eq!((s, b["error"].as_str()), (401, Some("totp_replayed")), "replayed code");
    let (s, b) = api.call(Method::GET, "/api/auth/me", Some(&logged_in), None).await;
    assert_eq!((s, b["user"]["totp_enabled"].as_bool()), (200, Some(true)));

    // Disabling needs a fresh code too.
    let (s, b) = api.call(Method::POST, "/api/auth/totp/disable", Some(&logged_in), Some(json!({"code": next}))).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("totp_replayed")), "{b}");
    let (s, _) = api.call(Method::POST, "/api/auth/totp/setup", Some(&logged_in), None).await;
    assert_eq!(s, 409, "already on");
    nexus::auth::users::set_totp_enabled(&api.state().store, 1, true).await.unwrap(); // forget used steps
    let (s, b) = api.call(Method::POST, "/api/auth/totp/disable", Some(&logged_in), Some(json!({"code": next}))).await;
    assert_eq!((s, b["totp_enabled"].as_bool()), (200, Some(false)), "{b}");
    api.login(USER, PASSWORD, None).await;
    let (s, _) = api.call(Method::POST, "/api/auth/totp/disable", Some(&logged_in), Some(json!({"code": next}))).await;
    assert_eq!(s, 409, "already off");
}

async fn repeated_bad_passwords_are_rate_limited(api: &Api) {
    api.setup_and_login().await; // one attempt used
    let bad = json!({"username": USER, "password": "guess guess guess"});
    for _ in 0..4 {
        let (s, _) = api.call(Method::POST, "/api/auth/login", None, Some(bad.clone())).await;
        assert_eq!(s, 401);
    }
    let resp = api.send(Method::POST, "/api/auth/login", None, Some(bad.clone())).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}: the wait of this test's slow refill");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Even the right password waits: the guesser learns nothing.
    let (s, _) =
        api.call(Method::POST, "/api/auth/login", None, Some(json!({"username": USER, "password": PASSWORD}))).await;
    assert_eq!(s, 429);
    // Another account from another address (through the local proxy) is not blocked.
    let other = api
        .req(Method::POST, "/api/auth/login")
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"username": "bob", "password": "guess guess guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    // One address spraying many accounts is stopped too (10 per burst).
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = api
            .req(Method::POST, "/api/auth/login")
            .header("x-forwarded-for", "198.51.100.9")
            .json(&json!({"username": format!("user{i}"), "password": "guess guess guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429, 429]);
    let (_, audit) = api.call_key(Method::GET, "/api/audit?limit=100", API_KEY, None).await;
    let limited = audit.as_array().unwrap().iter().filter(|e| e["action"] == "auth.login_rate_limited").count();
    assert!(limited >= 3, "{audit}");
}

async fn every_protected_route_refuses_anonymous_callers(api: &Api) {
    let token = api.setup_and_login().await;
    let doc: Value = api.req(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    for scheme in ["bearer", "session_cookie", "api_key"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object(), "{scheme}");
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = ["/api/auth/setup", "/api/auth/login", "/api/openapi.json"].contains(&path.as_str());
            assert_eq!(op["security"].is_null(), public, "{method} {path}: security listed iff protected");
            if public {
                continue;
            }
            let url = path.replace("{id}", "some-id");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Anonymous, wrong key, garbage token: 401, and nothing changed (the calls carry valid bodies).
            for attempt in 0..3 {
                let mut r = api.req(m.clone(), &url).json(&json!({"id": "x", "name": "x"}));
                r = match attempt {
                    0 => r,
                    1 => r.header("x-api-key", "nope"),
                    _ => r.bearer_auth("garbage"),
                };
                let resp = r.send().await.unwrap();
                assert_eq!(resp.status(), 401, "{method} {path} attempt {attempt}");
                let body: Value = resp.json().await.unwrap();
                assert!(body["error"].is_string() && body["message"].is_string());
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} protected operations listed");
    // Nothing was created by the refused calls.
    let (s, b) = api.call(Method::GET, "/api/subagents", Some(&token), None).await;
    assert_eq!((s, b), (200, json!([])));
    // Health endpoints stay public; security headers are on every answer.
    for path in ["/healthz", "/readyz", "/metrics", "/api/openapi.json"] {
        let resp = api.req(Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
    }
    let resp = api.req(Method::GET, "/api/auth/me").send().await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    // CORS is off by default: no Access-Control headers for a foreign origin.
    let resp = api
        .req(Method::GET, "/api/subagents")
        .header("origin", "https://evil.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_configured_origins() {
    let hour = std::time::Duration::from_secs(3600);
    let api = Api::start_full(
        crate::support::TestDb::sqlite().await,
        nexus::auth::ratelimit::LoginLimiter::new(100, hour, 100, hour),
        &[("NEXUS_CORS_ORIGINS", "https://dash.example.com")],
    )
    .await;
    let preflight = |origin: &'static str| {
        api.req(Method::OPTIONS, "/api/subagents")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://dash.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://dash.example.com");
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    api.stop().await;
}
