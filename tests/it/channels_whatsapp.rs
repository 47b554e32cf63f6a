//! The WhatsApp bridge contract over the real Redis lists (a separate Redis database number, so
//! the fixed key names stay exact): items pushed on `nexus:inbox` are answered on
//! `nexus:wa_outbox` as `{jid, text, timestamp}`, the history is kept, the status and QR code are
//! served, and an item a killed daemon left in the processing list is answered after restart.

use std::time::{Duration, Instant};

use base64::Engine;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::channels_telegram::Nexus;
use crate::support::{TestDb, unique_prefix};

const DB_URL: &str = "redis://127.0.0.1:6379/13";
const OWNER: &str = "4915550001@s.whatsapp.net";
const STRANGER: &str = "4915550002@s.whatsapp.net";

async fn outbox_for(conn: &mut redis::aio::MultiplexedConnection, jid: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all: Vec<String> = conn.lrange("nexus:wa_outbox", 0, -1).await.unwrap();
        // LPUSH: newest first; oldest first here.
        let mine: Vec<String> = all
            .iter()
            .rev()
            .filter_map(|raw| serde_json::from_str::<Value>(raw).ok())
            .filter(|v| v["jid"] == jid)
            .inspect(|v| assert!(v["timestamp"].as_i64().unwrap() > 0, "{v}"))
            .map(|v| v["text"].as_str().unwrap().to_string())
            .collect();
        if mine.len() >= n {
            return mine;
        }
        assert!(Instant::now() < deadline, "{jid} got {} of {n} replies: {mine:?}", mine.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn item(jid: &str, text: &str) -> String {
    json!({"message": text, "source": "whatsapp", "from": jid}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_bridge_over_redis_lists() {
    let client = redis::Client::open(DB_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("nexus:*").query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = conn.del(keys).await.unwrap();
    }
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-not-a-real-image".to_vec();
    let qr = base64::engine::general_purpose::STANDARD.encode(&png);
    let _: () = conn.set("nexus:wa_status", r#"{"connected":true,"name":"Home phone"}"#).await.unwrap();
    let _: () = conn.set("nexus:wa_qr", format!("data:image/png;base64,{qr}")).await.unwrap();
    // A daemon killed right after its BLMOVE left this one behind.
    let _: () = conn.lpush("nexus:inbox:processing", item(OWNER, "left over from a crash")).await.unwrap();

    let db = TestDb::sqlite().await;
    let prefix = unique_prefix();
    let nexus = Nexus::start(&db.url, &[("REDIS_URL", DB_URL), ("NEXUS_REDIS_PREFIX", &prefix)]).await;
    let (status, body) = nexus.put("/channels/whatsapp", json!({"token": "nope"})).await;
    assert_eq!(status, 400, "{body}");
    // Enabled through the API (no restart), with the allowlist in the same change.
    let (status, _) = nexus.put("/channels/whatsapp", json!({"enabled": true, "allow_from": [OWNER]})).await;
    assert_eq!(status, 200);
    let view = nexus.wait_status("whatsapp", Duration::from_secs(15), |s| s["connected"] == true).await;
    assert_eq!(view["status"]["bot_name"], "Home phone");

    let replies = outbox_for(&mut conn, OWNER, 1).await;
    assert!(!replies[0].contains("pairing"), "{replies:?}");

    let _: () = conn.lpush("nexus:inbox", item(OWNER, "hello")).await.unwrap();
    let _: () = conn.lpush("nexus:inbox", item(STRANGER, "who is this?")).await.unwrap();
    let _: () = conn.lpush("nexus:inbox", item(OWNER, "!help")).await.unwrap();
    let _: () = conn.lpush("nexus:inbox", "plain text from the MCP server").await.unwrap();
    let replies = outbox_for(&mut conn, OWNER, 3).await;
    assert!(replies[2].starts_with("Commands"), "{replies:?}");
    let stranger = outbox_for(&mut conn, STRANGER, 1).await;
    assert!(stranger[0].contains("pairing code"), "{stranger:?}");

    let history: Vec<String> = conn.lrange(format!("nexus:wa_history:{OWNER}"), 0, -1).await.unwrap();
    assert!(history.len() >= 6, "{history:?}");
    let newest: Value = serde_json::from_str(&history[0]).unwrap();
    assert_eq!(newest["role"], "assistant");
    let ttl: i64 = conn.ttl(format!("nexus:wa_history:{OWNER}")).await.unwrap();
    assert!(ttl > 0 && ttl <= 86400, "{ttl}");

    let qr_view = nexus.get("/channels/whatsapp/qr").await;
    assert!(qr_view["qr"].as_str().unwrap().ends_with(&qr));
    let response = reqwest::Client::new()
        .get(format!("{}/channels/whatsapp/qr.png", nexus.base))
        .header("X-API-Key", "channels-test-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.bytes().await.unwrap().to_vec(), png);
    let (status, check) = nexus.post("/channels/whatsapp/test", json!({})).await;
    assert_eq!((status.as_u16(), check["ok"].clone()), (200, json!(true)), "{check}");

    // The bridge says it lost its link: the status shows it.
    let _: () = conn.set("nexus:wa_status", r#"{"connected":false}"#).await.unwrap();
    let _: () = conn.lpush("nexus:inbox", item(OWNER, "still there?")).await.unwrap();
    outbox_for(&mut conn, OWNER, 4).await;

    let left: i64 = conn.llen("nexus:inbox:processing").await.unwrap();
    let waiting: i64 = conn.llen("nexus:inbox").await.unwrap();
    assert_eq!((left, waiting), (0, 0), "nothing stays taken");

    nexus.stop().await;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("nexus:*").query_async(&mut conn).await.unwrap();
    let bus_keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
    keys.extend(bus_keys);
    if !keys.is_empty() {
        let _: () = conn.del(keys).await.unwrap();
    }
    db.cleanup().await;
}
