//! `nexus doctor`: checks what the daemon needs, prints each check with the fix, exit 1 when a
//! required one fails.

use std::process::ExitCode;
use std::time::Duration;

use crate::bus::Bus;
use crate::config::{Config, redact_url};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, level: Level::Ok, detail: detail.into(), fix: None }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, level: Level::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, level: Level::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Runs every check and returns them in order.
pub async fn checks(config: &Config) -> Vec<Check> {
    let mut out = vec![Check::ok("config", "loaded and valid")];
    out.push(check_data_dir(config));
    let store = match tokio::time::timeout(Duration::from_secs(10), Store::connect(&config.database_url)).await {
        Ok(Ok(store)) => {
            out.push(Check::ok("database", format!("{} reachable", redact_url(&config.database_url))));
            Some(store)
        }
        Ok(Err(e)) => {
            out.push(Check::fail("database", e.to_string(), "start the database or fix DATABASE_URL"));
            None
        }
        Err(_) => {
            out.push(Check::fail("database", "no answer within 10 s", "start the database or fix DATABASE_URL"));
            None
        }
    };
    if let Some(store) = &store {
        match store.migrate().await {
            Ok(()) => out.push(Check::ok("migrations", "schema up to date")),
            Err(e) => out.push(Check::fail("migrations", e.to_string(), "run `nexus migrate` and read its error")),
        }
    }
    out.push(match &config.redis_url {
        None => Check::ok("bus", "embedded (queues persist in the database)"),
        Some(url) => match crate::bus::redis::RedisBus::connect(url, &config.redis_prefix).await {
            Ok(bus) => match bus.ping().await {
                Ok(()) => Check::ok("bus", format!("redis {} reachable", redact_url(url))),
                Err(e) => Check::fail("bus", e.to_string(), "start Redis or fix REDIS_URL"),
            },
            Err(e) => {
                Check::fail("bus", e.to_string(), "start Redis or fix REDIS_URL, or unset it for the embedded bus")
            }
        },
    });
    let providers: Vec<&str> = [
        (config.gemini_api_key.is_some(), "gemini"),
        (config.anthropic_api_key.is_some(), "anthropic"),
        (config.openai_base_url.is_some(), "openai-compatible"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    out.push(if providers.is_empty() {
        Check::warn(
            "providers",
            "no provider in the environment (keys set through the API are not checked here)",
            "set GEMINI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL, or PUT them to /api/nexus/config",
        )
    } else {
        Check::ok("providers", providers.join(", "))
    });
    if config.host.is_unspecified() && config.liv_api_key.is_none() {
        out.push(Check::warn(
            "exposure",
            format!("listening on {} (all interfaces)", config.host),
            "keep NEXUS_HOST=127.0.0.1 behind a reverse proxy unless you mean it",
        ));
    }
    if let Some(store) = store {
        store.close().await;
    }
    out
}

fn check_data_dir(config: &Config) -> Check {
    let dir = &config.data_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::fail(
            "data dir",
            format!("{}: {e}", dir.display()),
            "create it or set NEXUS_DATA_DIR to a writable folder",
        );
    }
    let probe = dir.join(".doctor-probe");
    if let Err(e) = std::fs::write(&probe, b"ok") {
        return Check::fail(
            "data dir",
            format!("{} not writable: {e}", dir.display()),
            "chown it to the daemon's user",
        );
    }
    let _ = std::fs::remove_file(&probe);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join("secret.key");
        if let Ok(meta) = std::fs::metadata(&key)
            && meta.permissions().mode() & 0o077 != 0
        {
            return Check::warn(
                "data dir",
                format!("{} is readable by others", key.display()),
                format!("chmod 600 {}", key.display()),
            );
        }
    }
    Check::ok("data dir", format!("{} writable", dir.display()))
}

pub async fn run(config: &Config) -> ExitCode {
    let checks = checks(config).await;
    let mut failed = false;
    for check in &checks {
        let mark = match check.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                failed = true;
                "FAIL"
            }
        };
        println!("[{mark}] {:<11} {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("       fix: {fix}");
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
