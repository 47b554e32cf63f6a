//! Real backends for tests, each isolated: a temp SQLite file, a fresh PostgreSQL database, a
//! unique Redis key prefix.

#![allow(dead_code)]

use std::sync::Arc;

use nexus::bus::SharedBus;
use nexus::bus::memory::MemoryBus;
use nexus::bus::redis::RedisBus;
use nexus::store::Store;

pub fn postgres_admin_url() -> String {
    std::env::var("NEXUS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("NEXUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A database that belongs to one test. Dropped at the end with `cleanup`; `.ci/run` removes
/// any left by an interrupted run (they all start with `nexus_t_`).
pub struct TestDb {
    pub url: String,
    pub store: Store,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("nexus.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Self { url, store, pg_name: None, _dir: Some(dir) }
    }

    pub async fn postgres() -> Self {
        let name = format!("nexus_t_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(&postgres_admin_url()).await.expect("PostgreSQL on 127.0.0.1:5432 (see .ci/run)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(admin.pool()).await.unwrap();
        admin.close().await;
        let url = replace_db(&postgres_admin_url(), &name);
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Self { url, store, pg_name: Some(name), _dir: None }
    }

    pub async fn reopen(&self) -> Store {
        let store = Store::connect(&self.url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some(name) = self.pg_name
            && let Ok(admin) = Store::connect(&postgres_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(admin.pool())
                .await;
            admin.close().await;
        }
    }
}

fn replace_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{db}"));
    u.to_string()
}

pub fn unique_prefix() -> String {
    format!("nexus_t:{}:", uuid::Uuid::new_v4().simple())
}

pub async fn redis_bus(prefix: &str) -> SharedBus {
    Arc::new(RedisBus::connect(&redis_url(), prefix).await.expect("Redis on 127.0.0.1:6379 (see .ci/run)"))
}

/// Deletes every Redis key under a test's prefix.
pub async fn redis_cleanup(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}

pub fn memory_bus(store: &Store) -> SharedBus {
    Arc::new(MemoryBus::new(store.clone()))
}
