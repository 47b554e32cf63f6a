//! Wiring: builds the shared state (config, store, bus, vault), starts every module's workers and
//! listeners, and shuts them down gracefully.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::memory::MemoryBus;
use crate::bus::redis::RedisBus;
use crate::bus::{BusError, SharedBus};
use crate::config::{Config, redact_url};
use crate::secrets::{Vault, VaultError};
use crate::store::{Store, StoreError};
use crate::tools::ToolRegistry;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source} — make it writable or set NEXUS_DATA_DIR")]
    DataDir { path: String, source: std::io::Error },
    #[error("{0} — check DATABASE_URL and that the database is running")]
    Store(#[from] StoreError),
    #[error("{0} — check REDIS_URL and that Redis is running, or unset it for the embedded bus")]
    Bus(#[from] BusError),
    #[error("{0} — check NEXUS_SECRET_KEY or the key file in the data dir")]
    Vault(#[from] VaultError),
    #[error("{0} — set JWT_SECRET (32+ characters) or make the data dir writable")]
    Auth(#[from] crate::auth::TokenError),
    #[error("channels: {0}")]
    Channels(#[from] crate::channels::ChannelError),
    #[error("cannot listen on {addr}: {source} — is another process using the port? change API_PORT/NEXUS_HOST")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(
        "cannot listen on {addr} for MCP: {source} — is another process using the port? change MCP_PORT/NEXUS_HOST"
    )]
    McpListen { addr: SocketAddr, source: std::io::Error },
}

/// Everything a request handler or worker needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: SharedBus,
    pub vault: Vault,
    /// Token keys, the API key and the login rate limits.
    pub auth: Arc<crate::auth::Auth>,
    /// The one tool registry shared by the agent, the MCP server and the API.
    pub tools: ToolRegistry,
    /// Provider clients and circuit breakers (`crate::brain`).
    pub brain: crate::brain::Brain,
    /// Cancelled when the daemon begins to shut down.
    pub shutdown: CancellationToken,
    /// Background work that shutdown waits for (within `NEXUS_SHUTDOWN_GRACE_SECS`).
    pub tasks: TaskTracker,
    queues: Arc<Mutex<BTreeSet<String>>>,
}

impl AppState {
    /// Connects the store (migrating it), the bus and the vault. Waits with backoff for a
    /// database or Redis that is not up yet, up to `patience`.
    pub async fn connect(config: Config, patience: Duration) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let store = Store::connect_with_retry(&config.database_url, patience).await?;
        store.migrate().await?;
        let bus: SharedBus = match &config.redis_url {
            Some(url) => Arc::new(RedisBus::connect_with_retry(url, &config.redis_prefix, patience).await?),
            None => Arc::new(MemoryBus::new(store.clone())),
        };
        let vault = Vault::open(store.clone(), config.secret_key.as_ref(), &config.data_dir)?;
        let auth = Arc::new(crate::auth::Auth::new(&config)?);
        crate::api::metrics::install();
        Ok(Self {
            config: Arc::new(config),
            store,
            bus,
            vault,
            auth,
            tools: ToolRegistry::new(),
            brain: crate::brain::Brain::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            queues: Arc::default(),
        })
    }

    /// Declares a queue so `/metrics` reports its depth.
    pub fn register_queue(&self, queue: &str) {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_string());
    }

    pub fn known_queues(&self) -> Vec<String> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

/// A started daemon: its address, its state, and the handle to stop it.
pub struct Running {
    pub api_addr: SocketAddr,
    /// Where the MCP server listens (`/mcp` on it).
    pub mcp_addr: SocketAddr,
    pub state: AppState,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Waits until shutdown was asked for (the token), then stops: no new connections, in-flight
    /// requests and background work get the grace period, unfinished queue items stay unacked.
    pub async fn wait(self) -> std::io::Result<()> {
        self.state.shutdown.cancelled().await;
        let grace = self.state.config.shutdown_grace;
        self.state.tasks.close();
        let drained = tokio::time::timeout(grace, async {
            let server = self.server.await;
            self.state.tasks.wait().await;
            server
        })
        .await;
        let result = match drained {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "shutdown grace period over; unfinished work will be redelivered"
                );
                Ok(())
            }
        };
        self.state.store.close().await;
        result
    }

    pub async fn stop(self) -> std::io::Result<()> {
        self.state.shutdown.cancel();
        self.wait().await
    }
}

/// Starts the daemon: listeners bound, workers running. Returns once it serves.
pub async fn start(state: AppState) -> Result<Running, StartError> {
    crate::tools::memory::register(&state);
    crate::tools::system::register(&state.tools);
    let addr = SocketAddr::new(state.config.host, state.config.api_port);
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let api_addr = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
    // Streamed tokens are small writes: without TCP_NODELAY, Nagle + delayed ACK hold each for ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });

    crate::auth::start_housekeeping(&state);
    let mcp_addr = crate::mcp::start(&state).await?;
    crate::channels::start(&state).await?;
    let app = crate::api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stop = state.shutdown.clone();
    let server =
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });

    tracing::info!(
        api = %api_addr,
        database = %redact_url(&state.config.database_url),
        bus = state.bus.kind(),
        "nexus started"
    );
    Ok(Running { api_addr, mcp_addr, state, server })
}
