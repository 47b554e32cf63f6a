//! Provider-level rules through `nexus::brain` directly: mid-stream errors, no retry after tokens,
//! Gemini's RetryInfo delay, token counting.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nexus::brain::{self, BrainError, ChatRequest, Message, Tier};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::brain_agent::Env;
use crate::brain_doubles::{self, KEY, Kind, Reply};
use crate::support::TestDb;

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        system: "Be brief.".into(),
        messages: vec![Message::user_text(text)],
        tools: Vec::new(),
        tier: Tier::Sonnet,
        max_tokens: 256,
        think: Default::default(),
    }
}

#[tokio::test]
async fn anthropic_mid_stream_errors_retry_only_before_the_first_token() {
    let claude = brain_doubles::start(Kind::Anthropic).await;
    let env =
        Env::new(TestDb::sqlite().await, &[("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", &claude.base)]).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let cancel = CancellationToken::new();

    // Overloaded before any token: retried, and the answer arrives.
    claude.push(Reply::Overloaded(String::new()));
    claude.push(Reply::Text("Fine.".into()));
    let done = brain::complete(&env.state, &request("hi"), Some(&tx), &cancel).await.unwrap();
    assert_eq!(done.message.text(), "Fine.");
    assert_eq!(done.model, "claude-sonnet-4-5");
    assert_eq!(claude.calls.load(Ordering::SeqCst), 2);
    while rx.try_recv().is_ok() {}

    // Overloaded after tokens reached the client: no second attempt.
    claude.push(Reply::Overloaded("Half an ans".into()));
    claude.push(Reply::Text("never sent".into()));
    let err = brain::complete(&env.state, &request("hi"), Some(&tx), &cancel).await.unwrap_err();
    assert!(matches!(err, BrainError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("please ask again"), "{err}");
    assert_eq!(claude.calls.load(Ordering::SeqCst), 3, "no retry after streamed tokens");
    assert!(claude.rejected.lock().unwrap().is_empty());
    env.finish().await;
}

#[tokio::test]
async fn gemini_retry_info_delay_is_honoured_and_tokens_are_counted() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let claude = brain_doubles::start(Kind::Anthropic).await;
    let env = Env::new(
        TestDb::sqlite().await,
        &[
            ("GEMINI_API_KEY", KEY),
            ("GEMINI_BASE_URL", &gemini.base),
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", &claude.base),
        ],
    )
    .await;
    gemini.push(Reply::Error {
        status: 429,
        body: json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.6s"}]}}),
        retry_after: None,
    });
    gemini.push(Reply::Text("After the pause.".into()));
    let started = Instant::now();
    let done = brain::complete(&env.state, &request("hi"), None, &CancellationToken::new()).await.unwrap();
    assert_eq!(done.message.text(), "After the pause.");
    assert!(started.elapsed() >= Duration::from_millis(550), "RetryInfo.retryDelay was not honoured");
    // Non-streaming (no client watching) uses generateContent; the thoughtSignature is kept.
    assert!(
        matches!(&done.message.parts[..], [nexus::brain::Part::Text { signature: Some(_), .. }]),
        "{:?}",
        done.message
    );

    assert_eq!(brain::count_tokens(&env.state, &request("count me")).await, 42, "Gemini countTokens");
    env.settings(json!({"chain": ["anthropic"]})).await;
    assert_eq!(brain::count_tokens(&env.state, &request("count me")).await, 42, "Anthropic count_tokens");
    env.finish().await;
}

#[tokio::test]
async fn a_wrong_key_fails_over_and_says_so() {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(TestDb::sqlite().await, &[("GEMINI_API_KEY", "wrong"), ("GEMINI_BASE_URL", &gemini.base)]).await;
    let err = brain::complete(&env.state, &request("hi"), None, &CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("gemini refused the request (400)"), "{err}");
    assert_eq!(gemini.request_count(), 0);
    env.finish().await;
}
