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
