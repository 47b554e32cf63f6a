//! `think` (reasoning effort) from the chat API down to each provider's own control, and Claude's
//! thinking blocks kept with the tool calls they led to (the API refuses a tool round without them).

use serde_json::json;

use crate::brain_agent::{Env, events_named, tokens};
use crate::brain_doubles::{self, KEY, Kind, Reply};
use crate::support::TestDb;

#[tokio::test]
async fn claude_thinking_blocks_go_back_with_their_tool_results() {
    let claude = brain_doubles::start(Kind::Anthropic).await;
    let env =
        Env::new(TestDb::sqlite().await, &[("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", &claude.base)]).await;
    claude.push(Reply::Tools(vec![("add_numbers".into(), r#"{"a": 2, "b": 3}"#.into())]));
    claude.push(Reply::Text("It is 5.".into()));
    let events = env.chat(json!({"message": "2+3?", "think": "high"})).await;
    assert_eq!(tokens(&events), "It is 5.", "{events:?}");
    assert!(claude.rejected.lock().unwrap().is_empty(), "{:?}", claude.rejected.lock().unwrap());

    let requests = claude.requests.lock().unwrap().clone();
    assert_eq!(requests[0]["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));
    assert!(requests[0]["max_tokens"].as_u64().unwrap() > 8192);
    let assistant = &requests[1]["messages"][1]["content"];
    assert_eq!(assistant[0]["type"], "thinking", "{assistant}");
    assert_eq!(assistant[0]["thinking"], "Let me think.");
    assert_eq!(assistant[0]["signature"], "sig-claude-0");
    assert_eq!(assistant[1]["type"], "tool_use");

    // Stored with the turn, so the next turn without thinking leaves the blocks out.
    let id = events_named(&events, "done")[0]["conversation_id"].as_str().unwrap().to_string();
    let detail = env.get(&format!("/api/conversations/{id}")).await;
    assert_eq!(detail["messages"][1]["parts"][0]["type"], "thinking");
    claude.push(Reply::Text("Still 5.".into()));
    env.chat(json!({"message": "And now?", "conversation_id": id})).await;
    let last = claude.last_request();
    assert!(last.get("thinking").is_none());
    assert!(!last.to_string().contains("\"type\":\"thinking\""), "{last}");
    assert!(claude.rejected.lock().unwrap().is_empty(), "{:?}", claude.rejected.lock().unwrap());
    env.finish().await;
}

#[tokio::test]
async fn claude_rejects_a_tool_round_that_lost_its_thinking_block() {
    // The double is as strict as the API: proven here, so the test above cannot pass by accident.
    let claude = brain_doubles::start(Kind::Anthropic).await;
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 9000, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 8192},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "2+3?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0_0", "name": "add", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0_0", "content": "5"}]},
        ],
    });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", claude.base))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("must start with a thinking block"));
}

#[tokio::test]
async fn think_levels_reach_gemini_and_openai_compatible_servers() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    gemini.push(Reply::Text("Hi.".into()));
    env.chat(json!({"message": "hi", "think": "high"})).await;
    assert_eq!(gemini.last_request()["generationConfig"]["thinkingConfig"], json!({"thinkingLevel": "high"}));
    gemini.push(Reply::Text("Hi.".into()));
    env.chat(json!({"message": "hi", "think": "off"})).await;
    // Gemini 3 Flash cannot switch thinking off: its lowest level.
    assert_eq!(gemini.last_request()["generationConfig"]["thinkingConfig"], json!({"thinkingLevel": "minimal"}));
    gemini.push(Reply::Text("Hi.".into()));
    env.chat(json!({"message": "hi"})).await;
    assert!(gemini.last_request()["generationConfig"].get("thinkingConfig").is_none());
    // 2.5 models take a token budget.
    env.settings(json!({"retry_base_ms": 10, "gemini_models": {"opus": "gemini-2.5-flash"}})).await;
    gemini.push(Reply::Text("Hi.".into()));
    env.chat(json!({"message": "hi", "think": "off", "tier": "opus"})).await;
    assert_eq!(gemini.last_request()["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 0}));
    let bad = env.http.post(format!("{}/api/chat", env.base)).json(&json!({"message": "hi", "think": "max"}));
    assert_eq!(bad.send().await.unwrap().status(), 400);
    assert!(gemini.rejected.lock().unwrap().is_empty(), "{:?}", gemini.rejected.lock().unwrap());
    env.finish().await;

    let local = brain_doubles::start(Kind::Openai).await;
    let base = format!("{}/v1", local.base);
    let env = Env::new(TestDb::sqlite().await, &[("OPENAI_BASE_URL", &base), ("DEFAULT_MODEL", "qwen3")]).await;
    local.push(Reply::Text("Hi.".into()));
    env.chat(json!({"message": "hi", "think": "xhigh"})).await;
    assert_eq!(local.last_request()["reasoning_effort"], "high");
    local.push(Reply::Text("Hi.".into()));
    env.chat(json!({"message": "hi"})).await;
    assert!(local.last_request().get("reasoning_effort").is_none());
    env.finish().await;
}
