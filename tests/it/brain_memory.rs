//! Long-term memory: hybrid search (full text + embeddings from the provider double), the API and
//! the tools, on SQLite and PostgreSQL.

use nexus::tools::Caller;
use serde_json::{Value, json};

use crate::brain_agent::Env;
use crate::brain_doubles::{self, KEY, Kind};
use crate::support::TestDb;

async fn hybrid_memory(db: TestDb) {
    let gemini = brain_doubles::start(Kind::Gemini).await;
    let env = Env::new(db, &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &gemini.base)]).await;
    let mut ids = Vec::new();
    for (content, tags) in [
        ("My kitten is called Tom", json!(["pets"])),
        ("The car is parked in the garage", json!([])),
        ("Backups go to the NAS every night at 3", json!(["ops"])),
    ] {
        let r = env
            .http
            .post(format!("{}/api/memory", env.base))
            .json(&json!({"content": content, "tags": tags}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let item: Value = r.json().await.unwrap();
        ids.push(item["id"].as_str().unwrap().to_string());
    }
    // Only the meaning matches: no word of "feline" is in the memory.
    let found = env.get("/api/memory/search?q=feline").await;
    assert_eq!(found["memories"][0]["content"], "My kitten is called Tom", "{found}");
    assert_eq!(found["memories"][0]["matched"], json!(["semantic"]));
    // A word match and a meaning match rank first together.
    let found = env.get("/api/memory/search?q=garage").await;
    assert_eq!(found["memories"][0]["content"], "The car is parked in the garage", "{found}");
    assert_eq!(found["memories"][0]["matched"], json!(["text", "semantic"]));
    // Tags are searchable; prefixes match.
    let found = env.get("/api/memory/search?q=pet").await;
    assert_eq!(found["memories"][0]["id"], ids[0], "{found}");

    // The tools reach the same memory.
    let out = env
        .state
        .tools
        .call("memory_add", json!({"content": "Dinner is pizza on Fridays", "tags": ["food"]}), Caller::System)
        .await
        .unwrap();
    assert_eq!(out["stored"], true);
    let out = env
        .state
        .tools
        .call("memory_search", json!({"query": "what is for dinner", "limit": 1}), Caller::System)
        .await
        .unwrap();
    assert_eq!(out["results"][0]["content"], "Dinner is pizza on Fridays", "{out}");
    let bad = env.state.tools.call("memory_add", json!({"content": ""}), Caller::System).await;
    assert!(bad.is_err());

    let list = env.get("/api/memory").await;
    assert_eq!(list["memories"].as_array().unwrap().len(), 4);
    let r = env.http.delete(format!("{}/api/memory/{}", env.base, ids[1])).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = env.http.delete(format!("{}/api/memory/{}", env.base, ids[1])).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let found = env.get("/api/memory/search?q=garage").await;
    assert!(found["memories"].as_array().unwrap().iter().all(|m| m["id"] != ids[1].as_str()), "{found}");
    for bad in [json!({"content": "   "}), json!({"content": "x", "extra": 1})] {
        let r = env.http.post(format!("{}/api/memory", env.base)).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    for bad in ["/api/memory/search?q=", "/api/memory/search?q=x&limit=many", "/api/memory?limit=abc"] {
        let r = env.http.get(format!("{}{bad}", env.base)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"], "validation_failed", "{bad}");
    }
    env.finish().await;
}

#[tokio::test]
async fn hybrid_memory_sqlite() {
    hybrid_memory(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn hybrid_memory_postgres() {
    hybrid_memory(TestDb::postgres().await).await;
}

#[tokio::test]
async fn memory_search_without_a_provider_is_full_text() {
    let env = Env::new(TestDb::postgres().await, &[]).await;
    env.state
        .tools
        .call("memory_add", json!({"content": "The router password is on the fridge"}), Caller::System)
        .await
        .unwrap();
    let out = env.state.tools.call("memory_search", json!({"query": "router"}), Caller::System).await.unwrap();
    assert_eq!(out["results"][0]["matched"], json!(["text"]), "{out}");
    let out = env.state.tools.call("memory_search", json!({"query": "feline"}), Caller::System).await.unwrap();
    assert_eq!(out["results"], json!([]));
    env.finish().await;
}
