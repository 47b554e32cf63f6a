use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nexus::app::{self, AppState};
use nexus::config::{Config, LogFormat};

/// Nexus — a self-hosted AI home-server daemon. Configuration comes from the environment, `.env`
/// and an optional TOML file (`NEXUS_CONFIG`); see README.md or `.env.example`.
#[derive(Parser)]
#[command(name = "nexus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check configuration, data dir, database and bus; print what is wrong and how to fix it.
    Doctor,
    /// Manage users (admin recovery).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from stdin (one line), or prompted for on a terminal.
    Add { name: String },
    /// Turn off two-factor authentication of a user (a lost phone) and end their sessions.
    #[command(name = "reset-2fa")]
    Reset2fa { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("nexus: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nexus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Doctor => Ok(nexus::doctor::run(&config).await),
            Command::User(UserCommand::Add { name }) => user_add(config, &name).await,
            Command::User(UserCommand::Reset2fa { name }) => user_reset_2fa(config, &name).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nexus: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // Wait up to ten minutes for a database or Redis that starts after us (boot order, restarts).
    let state = AppState::connect(config, Duration::from_secs(600)).await?;
    let running = app::start(state).await?;
    println!(
        "nexus {} listening on http://{}/ mcp http://{}/mcp",
        env!("CARGO_PKG_VERSION"),
        running.api_addr,
        running.mcp_addr
    );
    let stop = running.state.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        stop.cancel();
    });
    running.wait().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let store = nexus::store::Store::connect_with_retry(&config.database_url, Duration::from_secs(30)).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.backend().name());
    Ok(ExitCode::SUCCESS)
}

async fn open_store(config: &Config) -> anyhow::Result<nexus::store::Store> {
    let store = nexus::store::Store::connect_with_retry(&config.database_url, Duration::from_secs(30)).await?;
    store.migrate().await?;
    Ok(store)
}

async fn user_add(config: Config, name: &str) -> anyhow::Result<ExitCode> {
    use nexus::auth::{password, users};
    let name = users::normalize_username(name).map_err(anyhow::Error::msg)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("password for {name} (input is shown; pipe it in to avoid that): ");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if let Err(rule) = password::check_rules(&name, secret) {
        eprintln!("nexus: {rule}");
        return Ok(ExitCode::from(1));
    }
    let store = open_store(&config).await?;
    let phc = password::hash(secret).await?;
    match users::insert(&store, &name, &phc).await {
        Ok(user) => {
            store.audit("cli", "user.added", &format!("user {name}"), None).await?;
            println!("user {} added (id {})", user.username, user.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_unique_violation() => {
            eprintln!("nexus: a user named {name} exists already");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

async fn user_reset_2fa(config: Config, name: &str) -> anyhow::Result<ExitCode> {
    use nexus::auth::{totp, users};
    let name = users::normalize_username(name).map_err(anyhow::Error::msg)?;
    let store = open_store(&config).await?;
    let Some(user) = users::by_name(&store, &name).await? else {
        eprintln!("nexus: no user named {name}");
        return Ok(ExitCode::from(1));
    };
    let vault = nexus::secrets::Vault::open(store.clone(), config.secret_key.as_ref(), &config.data_dir)?;
    users::set_totp_enabled(&store, user.id, false).await?;
    vault.delete(&totp::vault_name(user.id)).await?;
    vault.delete(&totp::pending_vault_name(user.id)).await?;
    let ended = users::revoke_all_sessions(&store, user.id, None).await?;
    store.audit("cli", "auth.totp_reset", &format!("user {name}; {ended} session(s) ended"), None).await?;
    println!("two-factor authentication of {name} is off; {ended} session(s) ended");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_logging(config: &Config) {
    // The filter was validated with the rest of the config.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.init(),
    }
}
