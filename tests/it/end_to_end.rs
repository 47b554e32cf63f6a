//! Across features: the brain calls the built-in `system_info` tool when asked about the server,
//! and a stdio MCP server added through the API contributes tools the brain uses in a chat.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::brain_agent::{Env, events_named, tokens};
use crate::brain_doubles::{self, KEY, Kind, Reply};
use crate::support::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brain_answers_about_the_server_with_system_info() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    gemini.push(Reply::Tools(vec![("system_info".into(), r#"{"topic": "ram"}"#.into())]));
    gemini.push(Reply::Text("Your server has plenty of memory.".into()));
    let events = env.chat(json!({"message": "How much memory does my server have?"})).await;
    assert_eq!(tokens(&events), "Your server has plenty of memory.", "{events:?}");
    let result = events_named(&events, "tool_result")[0];
    assert_eq!((result["name"].clone(), result["ok"].clone()), (json!("system_info"), json!(true)), "{result}");
    // The real numbers went back to the model in the function response.
    let contents = gemini.last_request()["contents"].clone();
    let response = &contents[2]["parts"][0]["functionResponse"]["response"];
    assert!(response.to_string().contains("total"), "{response}");
    assert!(gemini.rejected.lock().unwrap().is_empty());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_mcp_server_added_through_the_api_serves_the_brain() {
    if !crate::mcp_client::sdk_available() {
        return;
    }
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    let server = json!({"name": "fake", "transport": "stdio", "command": "python3",
        "args": [crate::mcp_client::FAKE, "stdio"], "timeout_ms": 5000});
    let r = env.http.post(format!("{}/api/mcp/servers", env.base)).json(&server).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.state.tools.get("fake__add").is_none() {
        assert!(Instant::now() < deadline, "the stdio server's tools never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    gemini.push(Reply::Tools(vec![("fake__add".into(), r#"{"a": 40, "b": 2}"#.into())]));
    gemini.push(Reply::Text("The external server says 42.".into()));
    let events = env.chat(json!({"message": "Add 40 and 2 with the fake server"})).await;
    assert_eq!(tokens(&events), "The external server says 42.", "{events:?}");
    let result = events_named(&events, "tool_result")[0];
    assert_eq!((result["name"].clone(), result["ok"].clone()), (json!("fake__add"), json!(true)), "{result}");
    assert!(result["output"].to_string().contains("42"), "{result}");
    // The model was offered the external tool by name, with its schema.
    let first = gemini.requests.lock().unwrap()[0].clone();
    assert!(first["tools"].to_string().contains("fake__add"), "{first}");
    env.finish().await;
}

/// A newcomer pastes a Telegram bot token in the API; an unknown account is asked to pair (the
/// brain is never reached), the owner approves it through the API, and the new user's question
/// is answered by the brain after a `system_info` call, on Telegram, with the turn stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_newcomer_pairs_and_chats_with_the_brain() {
    use crate::channels_doubles::Telegram;
    use crate::channels_telegram::{Nexus, pairing_code};

    const WAIT: Duration = Duration::from_secs(20);
    const OWNER: i64 = 111;
    const STRANGER: i64 = 222;
    let db = TestDb::sqlite().await;
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let tg = Telegram::start().await;
    let nexus = Nexus::start(
        &db.url,
        &[("TELEGRAM_API_URL", &tg.url), ("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)],
    )
    .await;

    let (status, view) = nexus
        .put(
            "/channels/telegram",
            json!({"enabled": true, "token": "123456:NEWCOMER-token", "allow_from": [OWNER.to_string()]}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    nexus.wait_status("telegram", WAIT, |s| s["connected"] == true).await;

    // An unknown account gets a pairing code and nothing else; the brain is not consulted.
    tg.private(STRANGER, "Newcomer", "hello, are you my server?");
    let replies = tg.wait_for(STRANGER, 1, WAIT).await;
    let code = pairing_code(&replies[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent_to(STRANGER).len(), 1, "{:?}", tg.sent_to(STRANGER));
    assert_eq!(gemini.request_count(), 0, "an unpaired sender reached the brain");

    let (status, approved) = nexus.post(&format!("/channels/telegram/pairings/{code}/approve"), json!({})).await;
    assert_eq!(status, 200, "{approved}");
    assert!(tg.wait_for(STRANGER, 2, WAIT).await[1].contains("approved"));
    assert_eq!(gemini.request_count(), 0);

    gemini.push(Reply::Tools(vec![("system_info".into(), r#"{"topic": "ram"}"#.into())]));
    gemini.push(Reply::Text("Your server has 16 GiB of memory, 5 GiB in use.".into()));
    tg.private(STRANGER, "Newcomer", "how much memory does my server have?");
    let deadline = Instant::now() + WAIT;
    while !tg.sent_to(STRANGER).iter().any(|t| t.contains("16 GiB")) {
        assert!(Instant::now() < deadline, "the brain's answer never reached Telegram: {:?}", tg.sent_to(STRANGER));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tg.sent_to(STRANGER).last().unwrap(), "Your server has 16 GiB of memory, 5 GiB in use.");
    assert_eq!(gemini.request_count(), 2, "one call for the tool, one for the answer");
    assert!(gemini.rejected.lock().unwrap().is_empty(), "{:?}", gemini.rejected.lock().unwrap());
    let first = gemini.requests.lock().unwrap()[0].clone();
    assert!(first["contents"].to_string().contains("how much memory does my server have?"), "{first}");
    // The real figures went back to the model in the function response.
    let response = &gemini.last_request()["contents"][2]["parts"][0]["functionResponse"];
    assert_eq!(response["name"], "system_info", "{response}");
    assert!(response["response"].to_string().contains("total"), "{response}");

    // The conversation is stored under the chat's key, tool call and answer included.
    let list = nexus.get("/conversations").await;
    let conversation = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == format!("telegram:{STRANGER}"))
        .unwrap_or_else(|| panic!("no telegram conversation: {list}"))
        .clone();
    let detail = nexus.get(&format!("/conversations/{}", conversation["id"].as_str().unwrap())).await;
    let stored = detail["messages"].to_string();
    assert!(stored.contains("how much memory does my server have?"), "{detail}");
    assert!(stored.contains("system_info"), "{detail}");
    assert!(stored.contains("16 GiB of memory"), "{detail}");
    assert!(!stored.contains("are you my server"), "the pairing request is not part of the conversation: {detail}");

    nexus.stop().await;
    db.cleanup().await;
}
