//! One typed configuration, read once at start-up from (in rising precedence) defaults, an optional
//! TOML file, `.env` in the working directory and the process environment.
//!
//! Every setting is named by its environment variable (INTERFACES.md); the TOML file uses the same
//! names in lower or upper case (`api_port = 8080`). A bad value stops start-up with one line naming
//! the variable and the fix.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A setting that cannot be used, with the variable it came from and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem} — {fix}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    fn new(var: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { var: var.to_string(), problem: problem.into(), fix: fix.into() }
    }
}

/// A secret setting: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub pass: Option<Secret>,
    pub notification_email: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Prefix of every key the Redis bus writes (queues, pub/sub, keys), so several installations
    /// or tests can share one Redis.
    pub redis_prefix: String,
    pub host: IpAddr,
    pub api_port: u16,
    pub mcp_port: u16,
    pub jwt_secret: Option<Secret>,
    pub liv_api_key: Option<Secret>,
    /// Base64 of 32 bytes; when unset the key lives in `$NEXUS_DATA_DIR/secret.key`.
    pub secret_key: Option<Secret>,
    pub gemini_api_key: Option<Secret>,
    pub anthropic_api_key: Option<Secret>,
    pub openai_api_key: Option<Secret>,
    pub gemini_base_url: String,
    pub anthropic_base_url: String,
    pub openai_base_url: Option<String>,
    pub default_model: String,
    pub telegram_api_url: String,
    pub discord_api_url: Option<String>,
    pub docker_host: Option<String>,
    pub firecrawl_url: Option<String>,
    pub smtp: Option<SmtpConfig>,
    pub daemon_interval: Duration,
    pub whatsapp_enabled: bool,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// How long in-flight work may take to finish after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
    /// Largest request body the API accepts.
    pub max_body_bytes: usize,
    /// How long a login (token and session cookie) stays valid (`NEXUS_SESSION_TTL_HOURS`, default 168).
    pub session_ttl: Duration,
    /// Origins allowed to call the API from a browser (`NEXUS_CORS_ORIGINS`, comma-separated);
    /// empty = CORS off (same-origin only).
    pub cors_origins: Vec<String>,
    /// How long a taken inbox item stays with its router before it is delivered again (a killed
    /// daemon's items come back after this; `NEXUS_INBOX_VISIBILITY_SECS`, default 120).
    pub inbox_visibility: Duration,
    /// How long an outbox row being sent stays claimed (`NEXUS_OUTBOX_LEASE_SECS`, default 60).
    pub outbox_lease: Duration,
}

/// The raw variables a `Config` is parsed from, with their origin already resolved.
type Vars = HashMap<String, String>;

impl Config {
    /// Reads `.env`, the optional config file (`NEXUS_CONFIG`, or `./nexus.toml` when present) and
    /// the environment, then validates everything once.
    pub fn load() -> Result<Self, ConfigError> {
        // `.env` never overrides a variable already set in the environment.
        let _ = dotenvy::dotenv();
        let env: Vars = std::env::vars().collect();
        let file = match env.get("NEXUS_CONFIG") {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("nexus.toml")).filter(|p| p.exists()),
        };
        let mut vars = match file {
            Some(path) => read_toml_vars(&path)?,
            None => Vars::new(),
        };
        vars.extend(env);
        Self::from_vars(&vars)
    }

    /// Builds a configuration from explicit variables only (tests, embedding).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let secret = |name: &str| get(name).map(Secret::new);

        let data_dir = PathBuf::from(get("NEXUS_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = match get("DATABASE_URL") {
            Some(url) => {
                validate_database_url(&url)?;
                url
            }
            None => format!("sqlite://{}", data_dir.join("nexus.db").display()),
        };
        let redis_url = match get("REDIS_URL") {
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => Some(url),
            Some(_) => {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    "not a redis URL",
                    "use redis://[:password@]host:6379[/db], or unset it for the embedded bus",
                ));
            }
            None => None,
        };
        let host = match get("NEXUS_HOST") {
            Some(h) => h.parse::<IpAddr>().map_err(|_| {
                ConfigError::new(
                    "NEXUS_HOST",
                    format!("'{h}' is not an IP address"),
                    "use 127.0.0.1 (default), 0.0.0.0 or ::",
                )
            })?,
            None => IpAddr::from([127, 0, 0, 1]),
        };
        let api_port = parse_port(vars, "API_PORT", 8080)?;
        let mcp_port = parse_port(vars, "MCP_PORT", 3100)?;
        if api_port == mcp_port && api_port != 0 {
            return Err(ConfigError::new("MCP_PORT", "equals API_PORT", "give the two listeners different ports"));
        }

        let secret_key = secret("NEXUS_SECRET_KEY");
        if let Some(key) = &secret_key {
            crate::secrets::parse_key(key.expose()).map_err(|problem| {
                ConfigError::new(
                    "NEXUS_SECRET_KEY",
                    problem,
                    "give 32 random bytes in base64, e.g. `openssl rand -base64 32`",
                )
            })?;
        }

        let smtp = match get("SMTP_HOST") {
            Some(host) => Some(SmtpConfig {
                host,
                port: parse_port(vars, "SMTP_PORT", 587)?,
                user: get("SMTP_USER"),
                pass: secret("SMTP_PASS"),
                notification_email: get("NOTIFICATION_EMAIL"),
            }),
            None => None,
        };

        let log_format = match get("LOG_FORMAT").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("human") | Some("text") | Some("pretty") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("unknown format '{other}'"),
                    "use json, or unset it for human-readable logs",
                ));
            }
        };
        let log_filter = get("NEXUS_LOG").unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_filter).map_err(|e| {
            ConfigError::new(
                "NEXUS_LOG",
                format!("bad filter: {e}"),
                "use a level such as info or debug, or e.g. nexus=debug,info",
            )
        })?;

        let daemon_interval_ms = parse_num::<u64>(vars, "DAEMON_INTERVAL_MS", 30_000)?;
        if daemon_interval_ms < 1000 {
            return Err(ConfigError::new("DAEMON_INTERVAL_MS", "below 1000", "use at least 1000 (milliseconds)"));
        }
        let shutdown_grace_secs = parse_num::<u64>(vars, "NEXUS_SHUTDOWN_GRACE_SECS", 20)?;
        let max_body_bytes = parse_num::<usize>(vars, "NEXUS_MAX_BODY_BYTES", 1024 * 1024)?;
        if max_body_bytes < 1024 {
            return Err(ConfigError::new("NEXUS_MAX_BODY_BYTES", "below 1024", "use at least 1024 bytes"));
        }

        let session_ttl_hours = parse_num::<u64>(vars, "NEXUS_SESSION_TTL_HOURS", 168)?;
        if !(1..=24 * 365).contains(&session_ttl_hours) {
            return Err(ConfigError::new(
                "NEXUS_SESSION_TTL_HOURS",
                "out of range",
                "use between 1 and 8760 hours (default 168 = 7 days)",
            ));
        }
        let inbox_visibility_secs = parse_num::<u64>(vars, "NEXUS_INBOX_VISIBILITY_SECS", 120)?;
        let outbox_lease_secs = parse_num::<u64>(vars, "NEXUS_OUTBOX_LEASE_SECS", 60)?;
        for (name, value) in
            [("NEXUS_INBOX_VISIBILITY_SECS", inbox_visibility_secs), ("NEXUS_OUTBOX_LEASE_SECS", outbox_lease_secs)]
        {
            if !(1..=86_400).contains(&value) {
                return Err(ConfigError::new(name, "out of range", "use between 1 and 86400 seconds"));
            }
        }
        let mut cors_origins = Vec::new();
        for origin in get("NEXUS_CORS_ORIGINS").unwrap_or_default().split(',').map(str::trim).filter(|o| !o.is_empty())
        {
            match url::Url::parse(origin) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" && u.query().is_none() => {
                    cors_origins.push(origin.trim_end_matches('/').to_string())
                }
                _ => {
                    return Err(ConfigError::new(
                        "NEXUS_CORS_ORIGINS",
                        format!("'{origin}' is not an origin"),
                        "give comma-separated origins such as https://dash.example.com, or unset it",
                    ));
                }
            }
        }

        let redis_prefix = get("NEXUS_REDIS_PREFIX").unwrap_or_else(|| "nexus:".into());

        Ok(Self {
            data_dir,
            database_url,
            redis_url,
            redis_prefix,
            host,
            api_port,
            mcp_port,
            jwt_secret: secret("JWT_SECRET"),
            liv_api_key: secret("LIV_API_KEY"),
            secret_key,
            gemini_api_key: secret("GEMINI_API_KEY"),
            anthropic_api_key: secret("ANTHROPIC_API_KEY"),
            openai_api_key: secret("OPENAI_API_KEY"),
            gemini_base_url: parse_url(vars, "GEMINI_BASE_URL", Some("https://generativelanguage.googleapis.com"))?
                .unwrap_or_default(),
            anthropic_base_url: parse_url(vars, "ANTHROPIC_BASE_URL", Some("https://api.anthropic.com"))?
                .unwrap_or_default(),
            openai_base_url: parse_url(vars, "OPENAI_BASE_URL", None)?,
            default_model: get("DEFAULT_MODEL").unwrap_or_else(|| "gemini-3-flash-preview".into()),
            telegram_api_url: parse_url(vars, "TELEGRAM_API_URL", Some("https://api.telegram.org"))?
                .unwrap_or_default(),
            discord_api_url: parse_url(vars, "DISCORD_API_URL", None)?,
            docker_host: get("DOCKER_HOST"),
            firecrawl_url: parse_url(vars, "FIRECRAWL_URL", None)?,
            smtp,
            daemon_interval: Duration::from_millis(daemon_interval_ms),
            whatsapp_enabled: parse_bool(vars, "WHATSAPP_ENABLED", false)?,
            log_filter,
            log_format,
            shutdown_grace: Duration::from_secs(shutdown_grace_secs),
            max_body_bytes,
            session_ttl: Duration::from_secs(session_ttl_hours * 3600),
            cors_origins,
            inbox_visibility: Duration::from_secs(inbox_visibility_secs),
            outbox_lease: Duration::from_secs(outbox_lease_secs),
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

fn read_toml_vars(path: &Path) -> Result<Vars, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "NEXUS_CONFIG",
            format!("cannot read {}: {e}", path.display()),
            "point it at a readable TOML file or unset it",
        )
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            "NEXUS_CONFIG",
            format!("{} is not valid TOML: {}", path.display(), e.message()),
            "fix the file's syntax",
        )
    })?;
    let mut vars = Vars::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(ConfigError::new(
                    &key.to_ascii_uppercase(),
                    format!("in {} it is a table or list", path.display()),
                    "give a string, number or boolean",
                ));
            }
        };
        vars.insert(key.to_ascii_uppercase(), text);
    }
    Ok(vars)
}

fn validate_database_url(url: &str) -> Result<(), ConfigError> {
    if url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(ConfigError::new(
            "DATABASE_URL",
            format!("unsupported scheme in '{}'", redact_url(url)),
            "use sqlite://path/to/nexus.db or postgres://user:pass@host:5432/db",
        ))
    }
}

fn parse_port(vars: &Vars, name: &str, default: u16) -> Result<u16, ConfigError> {
    parse_num::<u16>(vars, name, default)
}

fn parse_num<T: std::str::FromStr + Copy>(vars: &Vars, name: &str, default: T) -> Result<T, ConfigError> {
    match vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse::<T>().map_err(|_| {
            ConfigError::new(
                name,
                format!("'{v}' is not a valid number here"),
                "give a whole number in range, or unset it",
            )
        }),
    }
}

fn parse_bool(vars: &Vars, name: &str, default: bool) -> Result<bool, ConfigError> {
    match vars.get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::new(name, format!("'{v}' is not a boolean"), "use true or false")),
    }
}

fn parse_url(vars: &Vars, name: &str, default: Option<&str>) -> Result<Option<String>, ConfigError> {
    match vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default.map(str::to_string)),
        Some(v) => match url::Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(v.trim_end_matches('/').to_string())),
            _ => Err(ConfigError::new(
                name,
                format!("'{}' is not an http(s) URL", redact_url(v)),
                "give e.g. http://127.0.0.1:8000",
            )),
        },
    }
}

/// A URL safe to print: the password, if any, replaced by `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => raw.split('@').next_back().map(|rest| format!("***@{rest}")).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::from_vars(&Vars::new()).unwrap();
        assert_eq!(c.database_url, "sqlite://./data/nexus.db");
        assert!(c.redis_url.is_none());
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!((c.api_port, c.mcp_port), (8080, 3100));
        assert_eq!(c.default_model, "gemini-3-flash-preview");
        assert_eq!(c.daemon_interval, Duration::from_secs(30));
        assert!(!c.whatsapp_enabled);
        assert_eq!((c.inbox_visibility, c.outbox_lease), (Duration::from_secs(120), Duration::from_secs(60)));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("API_PORT", "eighty"),
            ("NEXUS_HOST", "localhost:80"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://x"),
            ("WHATSAPP_ENABLED", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("OPENAI_BASE_URL", "ftp://x"),
            ("NEXUS_SECRET_KEY", "short"),
            ("DAEMON_INTERVAL_MS", "5"),
            ("NEXUS_SESSION_TTL_HOURS", "0"),
            ("NEXUS_CORS_ORIGINS", "not an origin"),
            ("NEXUS_INBOX_VISIBILITY_SECS", "0"),
            ("NEXUS_OUTBOX_LEASE_SECS", "soon"),
        ] {
            let err = Config::from_vars(&vars(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = Config::from_vars(&vars(&[("GEMINI_API_KEY", "AIza-very-secret")])).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn toml_file_is_read_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nexus.toml");
        std::fs::write(&path, "api_port = 9000\nmcp_port = 9001\ndefault_model = \"m\"\n").unwrap();
        let mut v = read_toml_vars(&path).unwrap();
        v.insert("API_PORT".into(), "9100".into());
        let c = Config::from_vars(&v).unwrap();
        assert_eq!((c.api_port, c.mcp_port, c.default_model.as_str()), (9100, 9001, "m"));
    }
}
