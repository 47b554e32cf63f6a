//! `nexus user add` and `nexus user reset-2fa` (admin recovery) against a running daemon's
//! database, on SQLite and PostgreSQL.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use reqwest::Method;
use serde_json::json;

use crate::api_support::Api;

crate::both_backends!(add_user_and_reset_2fa);

fn nexus(api: &Api, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NEXUS_DATA_DIR", api.data_dir())
        .env("DATABASE_URL", &api.db.as_ref().unwrap().url)
        .env("NEXUS_LOG", "warn")
        .current_dir(api.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn add_user_and_reset_2fa(api: &Api) {
    let password = "a long enough secret";
    let out = nexus(api, &["user", "add", "Bob"], &format!("{password}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("user bob added"));
    let out = nexus(api, &["user", "add", "bob"], &format!("{password}\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    let out = nexus(api, &["user", "add", "carol"], "short\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10"));

    // A user added on the CLI exists: setup is closed, login works.
    let (s, _) =
        api.call(Method::POST, "/api/auth/setup", None, Some(json!({"username": "eve", "password": password}))).await;
    assert_eq!(s, 409);
    let token = api.login("bob", password, None).await;
    let (_, setup) = api.call(Method::POST, "/api/auth/totp/setup", Some(&token), None).await;
    let secret = setup["secret"].as_str().unwrap();
    let code = nexus::auth::totp::totp(secret, "bob").unwrap().generate_current().to_string();
    let (s, _) = api.call(Method::POST, "/api/auth/totp/enable", Some(&token), Some(json!({"code": code}))).await;
    assert_eq!(s, 200);
    let (s, b) =
        api.call(Method::POST, "/api/auth/login", None, Some(json!({"username": "bob", "password": password}))).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("totp_required")));

    // The phone is lost: the admin turns 2FA off; the user's sessions end.
    let out = nexus(api, &["user", "reset-2fa", "bob"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(api.call(Method::GET, "/api/auth/me", Some(&token), None).await.0, 401);
    let fresh = api.login("bob", password, None).await;
    let (_, me) = api.call(Method::GET, "/api/auth/me", Some(&fresh), None).await;
    assert_eq!(me["user"]["totp_enabled"], false);
    let out = nexus(api, &["user", "reset-2fa", "nobody"], "");
    assert_eq!(out.status.code(), Some(1));
}
