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
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nexus: {e:#}");
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
