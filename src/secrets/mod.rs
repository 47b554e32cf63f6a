//! The secrets vault: provider keys, bot tokens and other credentials set at run time, encrypted at
//! rest with XChaCha20-Poly1305. The key comes from `NEXUS_SECRET_KEY` or from `secret.key` in the
//! data dir (created 0600 on first start). Values never reach `Debug`, logs or any API response.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::Secret;
use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("secret key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
    #[error("secret key: {0}")]
    BadKey(String),
    #[error("secret '{0}' cannot be decrypted: wrong NEXUS_SECRET_KEY or a damaged record")]
    Decrypt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses a base64 key of exactly 32 bytes.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64.decode(text.trim()).map_err(|_| "not valid base64".to_string())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, need 32", b.len()))
}

/// How long [`Vault::get_cached`] reuses a secret without asking the Store again (provider keys,
/// read on every turn). A change made through this daemon applies at once, one made by another
/// daemon sharing the database within this time.
const CACHE_FOR: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Vault {
    cipher: XChaCha20Poly1305,
    store: Store,
    /// Decrypted values (or their absence) by name, in process memory only — never written out.
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

/// A secret's value (or its absence) and when it was read.
type Cached = (Instant, Option<Secret>);

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

#[derive(sqlx::FromRow)]
struct SecretRow {
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl Vault {
    /// Opens the vault with the configured key, or the key file in `data_dir` (created when absent).
    pub fn open(store: Store, configured: Option<&Secret>, data_dir: &Path) -> Result<Self, VaultError> {
        let key = match configured {
            Some(secret) => parse_key(secret.expose()).map_err(VaultError::BadKey)?,
            None => load_or_create_key_file(&data_dir.join("secret.key"))?,
        };
        Ok(Self { cipher: XChaCha20Poly1305::new(Key::from_slice(&key)), store, cache: Arc::default() })
    }

    pub async fn set(&self, name: &str, value: &str) -> Result<(), VaultError> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        // The name is bound as associated data so a ciphertext cannot be moved to another name.
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: name.as_bytes() })
            .map_err(|_| VaultError::Decrypt(name.to_string()))?;
        sqlx::query(
            "INSERT INTO secrets (name, nonce, ciphertext, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext,
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(nonce.to_vec())
        .bind(ciphertext)
        .bind(now_ms())
        .execute(&mut *self.store.write().await?)
        .await
        .map_err(StoreError::from)?;
        self.remember(name, Some(Secret::new(value)));
        Ok(())
    }

    fn remember(&self, name: &str, value: Option<Secret>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(name.to_string(), (Instant::now(), value));
    }

    pub async fn get(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        let value = self.read(name).await?;
        self.remember(name, value.clone());
        Ok(value)
    }

    /// [`Vault::get`], possibly up to [`CACHE_FOR`] old when another daemon changed it.
    pub async fn get_cached(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(name).filter(|(at, _)| at.elapsed() < CACHE_FOR).map(|(_, v)| v.clone())
        };
        if let Some(value) = cached {
            return Ok(value);
        }
        let value = self.read(name).await?;
        self.remember(name, value.clone());
        Ok(value)
    }

    async fn read(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        let row: Option<SecretRow> = sqlx::query_as("SELECT nonce, ciphertext FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(self.store.pool())
            .await
            .map_err(StoreError::from)?;
        let Some(row) = row else { return Ok(None) };
        if row.nonce.len() != 24 {
            return Err(VaultError::Decrypt(name.to_string()));
        }
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(&row.nonce), Payload { msg: &row.ciphertext, aad: name.as_bytes() })
            .map_err(|_| VaultError::Decrypt(name.to_string()))?;
        let text = String::from_utf8(plain).map_err(|_| VaultError::Decrypt(name.to_string()))?;
        Ok(Some(Secret::new(text)))
    }

    pub async fn is_set(&self, name: &str) -> Result<bool, VaultError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.store.pool())
            .await
            .map_err(StoreError::from)?;
        Ok(n > 0)
    }

    pub async fn delete(&self, name: &str) -> Result<bool, VaultError> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&mut *self.store.write().await?)
            .await
            .map_err(StoreError::from)?;
        self.remember(name, None);
        Ok(done.rows_affected() > 0)
    }
}

fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], VaultError> {
    let io_err = |source| VaultError::KeyFile { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text).map_err(|p| VaultError::BadKey(format!("{}: {p}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            write_private_file(path, B64.encode(key).as_bytes()).map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Writes a file readable only by its owner; refuses to replace an existing one.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
