//! Users and sessions in the Store (portable SQL for SQLite and PostgreSQL).

use serde::Serialize;

use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub totp_enabled: i64,
    pub totp_last_step: Option<i64>,
    pub created_at: i64,
}

/// What the API shows about a user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub username: String,
    pub totp_enabled: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl From<&UserRow> for UserInfo {
    fn from(u: &UserRow) -> Self {
        Self { id: u.id, username: u.username.clone(), totp_enabled: u.totp_enabled != 0, created_at: u.created_at }
    }
}

const USER_COLUMNS: &str = "id, username, password_hash, totp_enabled, totp_last_step, created_at";

/// Usernames: 1–64 characters of letters, digits, `.`, `_`, `-`; compared case-insensitively.
pub fn normalize_username(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_lowercase();
    if name.is_empty() || name.len() > 64 {
        return Err("The username must be 1 to 64 characters long.".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err("The username may only contain letters, digits, '.', '_' and '-'.".into());
    }
    Ok(name)
}

pub async fn count(store: &Store) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(store.pool()).await?)
}

pub async fn by_name(store: &Store, username: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1")))
        .bind(username)
        .fetch_optional(store.pool())
        .await?)
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(store.pool())
        .await?)
}

/// Inserts a user; a taken name is a unique violation (`StoreError::is_unique_violation`).
pub async fn insert(store: &Store, username: &str, password_hash: &str) -> Result<UserRow, StoreError> {
    let now = now_ms();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (username, password_hash, totp_enabled, created_at, updated_at)
         VALUES ($1, $2, 0, $3, $3) RETURNING {USER_COLUMNS}"
    )))
    .bind(username)
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *store.write().await?)
    .await?)
}

/// Inserts the first user only while there is none. Two concurrent setup calls cannot both
/// succeed: each first upserts one lock row in the same transaction, which PostgreSQL serialises
/// (the second waits, then its `NOT EXISTS` sees the first user) and SQLite does anyway.
/// `None` when a user already exists.
pub async fn insert_first(store: &Store, username: &str, password_hash: &str) -> Result<Option<UserRow>, StoreError> {
    let now = now_ms();
    let mut writer = store.write().await?;
    let mut tx = writer.begin().await?;
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES ('auth.setup_lock', 'true', $1)
         ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (username, password_hash, totp_enabled, created_at, updated_at)
         SELECT $1, $2, 0, $3, $3 WHERE NOT EXISTS (SELECT 1 FROM users) RETURNING {USER_COLUMNS}"
    )))
    .bind(username)
    .bind(password_hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn set_password(store: &Store, id: i64, password_hash: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(password_hash)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(())
}

pub async fn set_totp_enabled(store: &Store, id: i64, enabled: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET totp_enabled = $1, totp_last_step = NULL, updated_at = $2 WHERE id = $3")
        .bind(i64::from(enabled))
        .bind(now_ms())
        .bind(id)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(())
}

/// Records `step` as used; false when it (or a later step) was already used — a replayed code.
/// One conditional UPDATE, so two requests racing with the same code cannot both pass.
pub async fn claim_totp_step(store: &Store, id: i64, step: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
    )
    .bind(step)
    .bind(id)
    .execute(&mut *store.write().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub async fn create_session(
    store: &Store,
    user_id: i64,
    expires_at: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<String, StoreError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(now_ms())
    .bind(expires_at)
    .bind(ip)
    .bind(user_agent.map(|ua| ua.chars().take(256).collect::<String>()))
    .execute(&mut *store.write().await?)
    .await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct SessionJoin {
    sid: String,
    expires_at: i64,
    revoked_at: Option<i64>,
    id: i64,
    username: String,
    password_hash: String,
    totp_enabled: i64,
    totp_last_step: Option<i64>,
    created_at: i64,
}

/// The session and its user, when the session is live (not revoked, not expired). One query:
/// this runs on every authenticated request.
pub async fn live_session(store: &Store, sid: &str) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
    let row: Option<SessionJoin> = sqlx::query_as(
        "SELECT s.id AS sid, s.expires_at, s.revoked_at, u.id, u.username, u.password_hash, u.totp_enabled,
                u.totp_last_step, u.created_at
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
    )
    .bind(sid)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.filter(|r| r.revoked_at.is_none() && r.expires_at > now_ms()).map(|r| {
        (
            SessionRow { id: r.sid, user_id: r.id, expires_at: r.expires_at, revoked_at: r.revoked_at },
            UserRow {
                id: r.id,
                username: r.username,
                password_hash: r.password_hash,
                totp_enabled: r.totp_enabled,
                totp_last_step: r.totp_last_step,
                created_at: r.created_at,
            },
        )
    }))
}

pub async fn revoke_session(store: &Store, sid: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(sid)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(())
}

/// Revokes every live session of a user except `keep` (the caller's own, when given).
pub async fn revoke_all_sessions(store: &Store, user_id: i64, keep: Option<&str>) -> Result<u64, StoreError> {
    let done =
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3")
            .bind(now_ms())
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(&mut *store.write().await?)
            .await?;
    Ok(done.rows_affected())
}

/// Deletes sessions that expired or were revoked more than a day ago (housekeeping).
pub async fn prune_sessions(store: &Store) -> Result<u64, StoreError> {
    let cutoff = now_ms() - 24 * 3600 * 1000;
    let done = sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1")
        .bind(cutoff)
        .execute(&mut *store.write().await?)
        .await?;
    Ok(done.rows_affected())
}
