//! One suite, run on SQLite and on PostgreSQL.

use nexus::secrets::Vault;
use nexus::store::Store;
use serde_json::json;

use crate::support::TestDb;

macro_rules! store_conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = crate::support::TestDb::sqlite().await;
                super::$name(&db).await;
                db.cleanup().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let db = crate::support::TestDb::postgres().await;
                super::$name(&db).await;
                db.cleanup().await;
            })*
        }
    };
}

store_conformance!(
    migrations_are_idempotent,
    settings_round_trip,
    data_survives_reopen,
    vault_encrypts_at_rest,
    vault_refuses_a_wrong_key,
    audit_log_pages_newest_first,
    unique_violations_are_recognised,
    old_delivered_outbox_rows_are_pruned,
);

async fn old_delivered_outbox_rows_are_pruned(db: &TestDb) {
    use nexus::inbox::outbox::{self, NewRow};
    for (id, status) in
        [("old-sent", "sent"), ("old-dropped", "dropped"), ("old-failed", "failed"), ("new-sent", "sent")]
    {
        let row = NewRow { id, channel: "telegram", chat_id: "1", reply_to: None, text: "hi" };
        assert!(outbox::insert(&db.store, row).await.unwrap());
        let created = if id.starts_with("old") { 1_000 } else { nexus::store::now_ms() };
        sqlx::query("UPDATE outbox SET status = $1, created_at = $2 WHERE id = $3")
            .bind(status)
            .bind(created)
            .bind(id)
            .execute(db.store.pool())
            .await
            .unwrap();
    }
    let cutoff = nexus::store::now_ms() - outbox::KEEP_DONE.as_millis() as i64;
    assert_eq!(outbox::prune(&db.store, cutoff).await.unwrap(), 2);
    // Failed rows stay for the owner; recent ones stay to recognise redeliveries.
    assert!(outbox::exists(&db.store, "old-failed").await.unwrap());
    assert!(outbox::exists(&db.store, "new-sent").await.unwrap());
    assert!(!outbox::exists(&db.store, "old-sent").await.unwrap());
    assert_eq!(outbox::prune(&db.store, cutoff).await.unwrap(), 0);
}

async fn migrations_are_idempotent(db: &TestDb) {
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    db.store.ping().await.unwrap();
}

async fn settings_round_trip(db: &TestDb) {
    let s = &db.store;
    assert_eq!(s.get_setting::<serde_json::Value>("nexus.config").await.unwrap(), None);
    s.put_setting("nexus.config", &json!({"tier": "sonnet", "max_turns": 30})).await.unwrap();
    s.put_setting("nexus.config", &json!({"tier": "opus"})).await.unwrap();
    assert_eq!(s.get_setting::<serde_json::Value>("nexus.config").await.unwrap(), Some(json!({"tier": "opus"})));
    assert!(s.delete_setting("nexus.config").await.unwrap());
    assert!(!s.delete_setting("nexus.config").await.unwrap());
}

async fn data_survives_reopen(db: &TestDb) {
    db.store.put_setting("persisted", &json!(42)).await.unwrap();
    let reopened: Store = db.reopen().await;
    assert_eq!(reopened.get_setting::<i64>("persisted").await.unwrap(), Some(42));
    reopened.close().await;
}

async fn vault_encrypts_at_rest(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(db.store.clone(), None, dir.path()).unwrap();
    vault.set("gemini_api_key", "AIza-plain-text-must-not-appear").await.unwrap();
    assert_eq!(vault.get("gemini_api_key").await.unwrap().unwrap().expose(), "AIza-plain-text-must-not-appear");
    assert!(vault.is_set("gemini_api_key").await.unwrap());
    let raw: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM secrets WHERE name = 'gemini_api_key'")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("plain-text"));
    // The key file was created private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Reopening with the same key file reads it back.
    let again = Vault::open(db.store.clone(), None, dir.path()).unwrap();
    assert!(again.get("gemini_api_key").await.unwrap().is_some());
    assert!(vault.delete("gemini_api_key").await.unwrap());
    assert!(vault.get("gemini_api_key").await.unwrap().is_none());
}

async fn vault_refuses_a_wrong_key(db: &TestDb) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    Vault::open(db.store.clone(), None, a.path()).unwrap().set("token", "secret").await.unwrap();
    let other = Vault::open(db.store.clone(), None, b.path()).unwrap();
    assert!(other.get("token").await.is_err(), "another key cannot decrypt");
}

async fn audit_log_pages_newest_first(db: &TestDb) {
    for i in 0..5 {
        db.store.audit("admin", "login", &format!("attempt {i}"), Some("127.0.0.1")).await.unwrap();
    }
    let page = db.store.audit_entries(2, None).await.unwrap();
    assert_eq!(page.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(), ["attempt 4", "attempt 3"]);
    let next = db.store.audit_entries(10, Some(page[1].id)).await.unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].detail, "attempt 2");
}

async fn unique_violations_are_recognised(db: &TestDb) {
    let insert =
        || sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ('dup', '1', 0)").execute(db.store.pool());
    insert().await.unwrap();
    let err = nexus::store::StoreError::from(insert().await.unwrap_err());
    assert!(err.is_unique_violation());
}
