//! The Store: durable state in SQLite (embedded default) or PostgreSQL, chosen by `DATABASE_URL`.
//!
//! Both adapters sit behind one `sqlx::AnyPool`, so feature modules write one portable SQL statement
//! (`$1` placeholders, `ON CONFLICT`, `RETURNING`, integer timestamps in unix milliseconds, JSON as
//! text) and it runs on both. What cannot be portable (full-text search, DDL) is chosen by
//! [`Backend`]; each backend has its own migrations folder.

mod audit;
mod settings;

pub use audit::AuditEntry;

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::config::redact_url;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("{0}")]
    Data(String),
}

impl StoreError {
    /// True when the same statement broke a unique constraint (a duplicate id or name).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Sql(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A PostgreSQL connection idle this long is checked before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Where statements that write go, and transactions.
    writer: Writer,
    backend: Backend,
    /// Recently read settings (they are read on every turn and message, and rarely change).
    settings: settings::Cache,
}

#[derive(Clone, Debug)]
enum Writer {
    /// PostgreSQL (and an in-memory SQLite database): the pool, as for reads.
    Pool(AnyPool),
    /// SQLite: one connection, taken in turn (`None` once the Store is closed).
    Exclusive(Arc<tokio::sync::Mutex<Option<AnyConnection>>>),
}

/// A connection to write on, from [`Store::write`]. Use it as `&mut *conn`.
pub enum WriteConn {
    Pooled(PoolConnection<Any>),
    Exclusive(OwnedMappedMutexGuard<Option<AnyConnection>, AnyConnection>),
}

impl WriteConn {
    pub async fn begin(&mut self) -> Result<sqlx::Transaction<'_, Any>, sqlx::Error> {
        Connection::begin(&mut **self).await
    }
}

impl std::ops::Deref for WriteConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConn::Pooled(c) => c,
            WriteConn::Exclusive(c) => c,
        }
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Pooled(c) => c,
            WriteConn::Exclusive(c) => c,
        }
    }
}

async fn sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    Ok(())
}

fn sqlite_pool(connections: u32) -> AnyPoolOptions {
    // A file cannot hang up: no ping before each use (sqlx's default costs a round trip each time).
    AnyPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
}

/// Milliseconds since the Unix epoch: the one timestamp format of every table.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    /// Connects once; fails fast with the URL (password hidden) in the error.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            url = prepare_sqlite_url(&url)?;
        }
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Unreachable { url: redact_url(&url), reason: e.to_string() })?;
        let unreachable = |e: sqlx::Error| StoreError::Unreachable { url: redact_url(&url), reason: e.to_string() };
        match backend {
            Backend::Sqlite => {
                // SQLite takes one writer at a time, and a second one waits in its busy handler,
                // which sleeps whole milliseconds. Writes therefore queue in-process for one
                // connection of their own, held outside the pool: sqlx's pool pings a connection
                // each time it comes back, a round trip that would sit between every two writes.
                // WAL lets the readers run beside it.
                let readers = if url.contains(":memory:") { 1 } else { 4 };
                let pool = sqlite_pool(readers).connect_with(options.clone()).await.map_err(unreachable)?;
                let writer = if readers == 1 {
                    Writer::Pool(pool.clone())
                } else {
                    let mut conn = AnyConnection::connect_with(&options).await.map_err(unreachable)?;
                    sqlite_pragmas(&mut conn).await.map_err(unreachable)?;
                    Writer::Exclusive(Arc::new(tokio::sync::Mutex::new(Some(conn))))
                };
                Ok(Self { pool, writer, backend, settings: Default::default() })
            }
            Backend::Postgres => {
                // sqlx pings a connection each time it hands it out: one more round trip per
                // statement. Only a connection that sat idle (the server may have dropped it) is.
                let pool = AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(5))
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for > IDLE_BEFORE_PING {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(unreachable)?;
                Ok(Self { writer: Writer::Pool(pool.clone()), pool, backend, settings: Default::default() })
            }
        }
    }

    /// Connects, retrying with exponential backoff (capped at 30 s) while the database is
    /// unreachable, so a daemon started before its database does not crash-loop.
    pub async fn connect_with_retry(url: &str, give_up_after: Duration) -> Result<Self, StoreError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match Self::connect(url).await {
                Ok(store) => return Ok(store),
                Err(e @ StoreError::Unreachable { .. }) if started.elapsed() + delay < give_up_after => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&mut *self.write().await?).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// For reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for statements that write, and for transactions. On SQLite writers take
    /// turns (first come, first served) on one connection; hold it only for the write.
    pub async fn write(&self) -> Result<WriteConn, StoreError> {
        Ok(match &self.writer {
            Writer::Pool(pool) => WriteConn::Pooled(pool.acquire().await?),
            Writer::Exclusive(conn) => WriteConn::Exclusive(
                OwnedMutexGuard::try_map(conn.clone().lock_owned().await, Option::as_mut)
                    .map_err(|_| StoreError::Sql(sqlx::Error::PoolClosed))?,
            ),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// One round trip to the database (readiness check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Writer::Exclusive(conn) = &self.writer
            && let Some(conn) = conn.lock().await.take()
        {
            let _ = conn.close().await;
        }
    }
}

/// Makes sure the SQLite file's folder exists and the URL asks for the file to be created.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .map_err(|source| StoreError::DataDir { path: parent.display().to_string(), source })?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".into()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}
