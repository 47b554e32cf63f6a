//! Discord through serenity against a loopback REST API and gateway: DMs, guild messages only
//! when the bot is mentioned, its own messages ignored, pairing, splitting at 2000 characters,
//! and sends carrying a nonce Discord can de-duplicate with.

use std::time::Duration;

use serde_json::json;

use crate::channels_doubles::{DISCORD_BOT_ID, Discord};
use crate::channels_telegram::Nexus;
use crate::support::TestDb;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_dms_and_mentions() {
    let dc = Discord::start().await;
    let db = TestDb::sqlite().await;
    let nexus = Nexus::start(&db.url, &[("DISCORD_API_URL", &dc.url)]).await;
    let (status, view) = nexus
        .put("/channels/discord", json!({"enabled": true, "token": "discord-bot-token", "allow_from": ["111"]}))
        .await;
    assert_eq!(status, 200, "{view}");
    let view = nexus.wait_status("discord", WAIT, |s| s["connected"] == true).await;
    assert_eq!(view["status"]["bot_name"], "nexusbot");
    assert!(dc.intents().iter().all(|i| i & (1 << 12) != 0), "DIRECT_MESSAGES asked for");
    let (status, check) = nexus.post("/channels/discord/test", json!({})).await;
    assert_eq!((status.as_u16(), check["ok"].clone()), (200, json!(true)), "{check}");

    dc.message("5001", None, "111", false, "hello", false);
    let replies = dc.wait_for("5001", 1, WAIT).await;
    assert!(!replies[0].contains("pairing"), "{replies:?}");
    // Its own messages, and guild chatter without a mention, get nothing.
    dc.message("5001", None, DISCORD_BOT_ID, true, "my own words", false);
    dc.message("6001", Some("77"), "111", false, "talking among ourselves", false);
    dc.message("6001", Some("77"), "111", false, &format!("<@{DISCORD_BOT_ID}> !status"), true);
    let replies = dc.wait_for("6001", 1, WAIT).await;
    assert!(replies[0].contains("Channel: discord"), "{replies:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dc.created_in("5001").len(), 1);
    assert_eq!(dc.created_in("6001").len(), 1);

    dc.message("5002", None, "222", false, "hi", false);
    assert!(dc.wait_for("5002", 1, WAIT).await[0].contains("pairing code"));

    let long = "word ".repeat(900);
    let (status, _) = nexus.post("/channels/discord/send", json!({"chat_id": "5001", "text": long})).await;
    assert_eq!(status, 202);
    let replies = dc.wait_for("5001", 4, WAIT).await;
    assert!(
        replies[1..].iter().all(|r| r.chars().count() <= 2000),
        "{:?}",
        replies.iter().map(|r| r.len()).collect::<Vec<_>>()
    );
    assert_eq!(replies[1..].join(" "), long.trim());
    assert!(dc.created_in("5001").iter().all(|b| b["enforce_nonce"] == true && b["nonce"].is_string()));

    nexus.stop().await;
    db.cleanup().await;
}
