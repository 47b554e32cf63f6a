//! The audit log: who did what, when, from where. Append-only.

use serde::Serialize;

use super::{Store, StoreError, now_ms};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub ip: Option<String>,
}

impl Store {
    pub async fn audit(&self, actor: &str, action: &str, detail: &str, ip: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_log (at, actor, action, detail, ip) VALUES ($1, $2, $3, $4, $5)")
            .bind(now_ms())
            .bind(actor)
            .bind(action)
            .bind(detail)
            .bind(ip)
            .execute(&mut *self.write().await?)
            .await?;
        Ok(())
    }

    /// Newest first; `before` is an id to page backwards from.
    pub async fn audit_entries(&self, limit: i64, before: Option<i64>) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, detail, ip FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await?)
    }
}
