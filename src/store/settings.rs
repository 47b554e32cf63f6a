//! Settings: small JSON documents by key (module configuration changed at run time).
//!
//! [`Store::get_setting_cached`] serves hot paths (the brain setting, read on every turn) from a
//! cache: a write through this Store updates it at once, a write by another daemon sharing the
//! database is seen within [`CACHE_FOR`]. Everything else reads the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Store, StoreError, now_ms};

const CACHE_FOR: Duration = Duration::from_secs(5);

/// Setting text (or its absence) by key, with when it was read.
pub(super) type Cache = Arc<Mutex<HashMap<String, (Instant, Option<String>)>>>;

impl Store {
    fn cached_setting(&self, key: &str) -> Option<Option<String>> {
        let cache = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).filter(|(at, _)| at.elapsed() < CACHE_FOR).map(|(_, v)| v.clone())
    }

    fn cache_setting(&self, key: &str, value: Option<String>) {
        let mut cache = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key.to_string(), (Instant::now(), value));
    }

    pub async fn get_setting<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let value = self.read_setting(key).await?;
        parse_setting(key, value)
    }

    /// [`Store::get_setting`], possibly up to [`CACHE_FOR`] old when another daemon wrote it.
    pub async fn get_setting_cached<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let value = match self.cached_setting(key) {
            Some(value) => value,
            None => self.read_setting(key).await?,
        };
        parse_setting(key, value)
    }

    async fn read_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        self.cache_setting(key, value.clone());
        Ok(value)
    }
}

fn parse_setting<T: DeserializeOwned>(key: &str, value: Option<String>) -> Result<Option<T>, StoreError> {
    value
        .map(|v| serde_json::from_str(&v).map_err(|e| StoreError::Data(format!("setting '{key}' is not valid: {e}"))))
        .transpose()
}

impl Store {
    pub async fn put_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let text = serde_json::to_string(value).map_err(|e| StoreError::Data(e.to_string()))?;
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(&text)
        .bind(now_ms())
        .execute(&mut *self.write().await?)
        .await?;
        self.cache_setting(key, Some(text));
        Ok(())
    }

    pub async fn delete_setting(&self, key: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM settings WHERE key = $1").bind(key).execute(&mut *self.write().await?).await?;
        self.cache_setting(key, None);
        Ok(done.rows_affected() > 0)
    }
}
