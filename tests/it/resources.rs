//! The seed-compatible resources over real HTTP, on SQLite and PostgreSQL: `/api/nexus/config`
//! (secrets write-only, changes published on the bus), `/api/subagents`, `/api/schedules`.
//! Each with good input and bad input (missing fields, wrong types, oversize bodies, unknown ids);
//! bad input changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::{API_KEY, Api};

crate::both_backends!(nexus_config_round_trip, subagents_crud, schedules_follow_subagents);

async fn nexus_config_round_trip(api: &Api) {
    let token = api.setup_and_login().await;
    let t = Some(token.as_str());
    let (s, initial) = api.call(Method::GET, "/api/nexus/config", t, None).await;
    assert_eq!(s, 200, "{initial}");
    assert_eq!(initial["agent"]["max_turns"], 30);
    assert_eq!(initial["models"]["flash"], "gemini-3-flash-preview");
    assert_eq!(initial["gemini_api_key_set"], false);

    let mut changes = api.state().bus.subscribe(nexus::settings::TOPIC).await.unwrap();
    let secret = "AIza-this-must-never-come-back";
    let (s, b) = api
        .call(Method::PUT, "/api/nexus/config", t, Some(json!({"agent": {"max_turns": 12}, "gemini_api_key": secret})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!((b["agent"]["max_turns"].as_i64(), b["agent"]["max_tokens"].as_i64()), (Some(12), Some(200_000)));
    assert_eq!(b["gemini_api_key_set"], true);
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv()).await.unwrap().unwrap();
    assert!(message.contains("nexus.config"), "{message}");
    let raw = api.req(Method::GET, "/api/nexus/config").bearer_auth(&token).send().await.unwrap().text().await.unwrap();
    assert!(!raw.contains(secret), "a secret never comes back");
    assert_eq!(
        api.state().vault.get("gemini_api_key").await.unwrap().unwrap().expose(),
        secret,
        "kept encrypted in the vault"
    );
    assert_eq!(nexus::settings::provider_key(api.state(), "gemini_api_key").await.unwrap().expose(), secret);

    // Bad input: 400, nothing changes.
    let bad = [
        json!({"agent": {"max_turns": 0}}),
        json!({"agent": {"max_turns": "many"}}),
        json!({"agnet": {"max_turns": 3}}),
        json!({"fallback_order": ["gpt-5"]}),
        json!({"heartbeat": {"active_hours": {"start": "8am", "end": "22:00", "timezone": "UTC"}}}),
        json!({"heartbeat": {"active_hours": {"start": "08:00", "end": "22:00", "timezone": "Mars/Base"}}}),
        json!({"anthropic_api_key": 42}),
        json!({"agent": {"max_turns": 20}, "openai_api_key": ["x"]}),
        json!([1, 2]),
        json!("text"),
    ];
    for body in bad {
        let (s, b) = api.call(Method::PUT, "/api/nexus/config", t, Some(body.clone())).await;
        assert_eq!(s, 400, "{body} → {b}");
        assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
        let (s, v) = api.call(Method::POST, "/api/nexus/config/validate", t, Some(body.clone())).await;
        if body.is_object() {
            assert_eq!((s, v["valid"].as_bool()), (200, Some(false)), "{body} → {v}");
            assert!(!v["errors"].as_array().unwrap().is_empty());
        } else {
            assert_eq!((s, v["valid"].as_bool()), (200, Some(false)), "{body} → {v}");
        }
    }
    let oversize = json!({"models": {"flash": "x".repeat(70_000)}});
    assert_eq!(api.call(Method::PUT, "/api/nexus/config", t, Some(oversize)).await.0, 413);
    let (_, after) = api.call(Method::GET, "/api/nexus/config", t, None).await;
    assert_eq!(after["agent"]["max_turns"], 12, "bad updates changed nothing");
    assert_eq!(after["anthropic_api_key_set"], false);

    let (s, v) =
        api.call(Method::POST, "/api/nexus/config/validate", t, Some(json!({"heartbeat": {"enabled": true}}))).await;
    assert_eq!((s, v["valid"].as_bool()), (200, Some(true)));
    let (_, after) = api.call(Method::GET, "/api/nexus/config", t, None).await;
    assert_eq!(after["heartbeat"]["enabled"], false, "validate does not save");

    // Removing a secret; the API key may change settings too.
    let (s, b) = api.call_key(Method::PUT, "/api/nexus/config", API_KEY, Some(json!({"gemini_api_key": null}))).await;
    assert_eq!((s, b["gemini_api_key_set"].as_bool()), (200, Some(false)), "{b}");

    let (s, b) = api.call(Method::POST, "/api/nexus/config/reset", t, None).await;
    assert_eq!(s, 200);
    assert_eq!(b["agent"]["max_turns"], 30);
    let (_, audit) = api.call(Method::GET, "/api/audit", t, None).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"config.updated") && actions.contains(&"config.reset"), "{actions:?}");
}

fn full_subagent() -> Value {
    json!({
        "id": "disk-watcher",
        "name": "Disk watcher",
        "description": "Warns when a disk fills up",
        "skills": ["server-health"],
        "system_prompt": "You watch disks.",
        "schedule": "0 9 * * 1-5",
        "timezone": "Europe/Istanbul",
        "scheduled_task": "Check disk usage",
        "tier": "flash",
        "max_turns": 5
    })
}

async fn subagents_crud(api: &Api) {
    let token = api.setup_and_login().await;
    let t = Some(token.as_str());
    let (s, b) = api.call(Method::POST, "/api/subagents", t, Some(full_subagent())).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["created_by"].as_str(), b["run_count"].as_i64()),
        (Some("active"), Some("user:alice"), Some(0))
    );
    let (s, b) = api.call(Method::POST, "/api/subagents", t, Some(full_subagent())).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("already_exists")));

    // The seed's camelCase and `"*"` skills are accepted; defaults fill the rest.
    let (s, b) = api
        .call_key(
            Method::POST,
            "/api/subagents",
            API_KEY,
            Some(json!({"id": "helper", "name": "Helper", "skills": "*", "maxTurns": 3, "systemPrompt": "Be brief."})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (b["skills"].clone(), b["tier"].as_str(), b["max_turns"].as_i64()),
        (json!(["*"]), Some("sonnet"), Some(3))
    );
    assert_eq!(b["created_by"], "api-key");

    let bad = [
        (json!({"name": "No id"}), "id"),
        (json!({"id": "Not_Kebab", "name": "x"}), "kebab-case"),
        (json!({"id": "x"}), "name"),
        (json!({"id": "x", "name": 7}), "name"),
        (json!({"id": "x", "name": "x", "tier": "ultra"}), "tier"),
        (json!({"id": "x", "name": "x", "max_turns": 0}), "max_turns"),
        (json!({"id": "x", "name": "x", "schedule": "61 * * * *", "scheduled_task": "t"}), "cron"),
        (json!({"id": "x", "name": "x", "schedule": "0 9 * * *"}), "scheduled_task"),
        (json!({"id": "x", "name": "x", "timezone": "Nowhere/City"}), "time zone"),
        (json!({"id": "x", "name": "x", "loop": {"interval_ms": 5, "task": "t"}}), "interval_ms"),
        (json!({"id": "x", "name": "x", "skills": "all"}), "skills"),
        (json!({"id": "x", "name": "x", "colour": "red"}), "unknown field"),
    ];
    for (body, needle) in bad {
        let (s, b) = api.call(Method::POST, "/api/subagents", t, Some(body.clone())).await;
        assert_eq!(s, 400, "{body} → {b}");
        assert!(b["message"].as_str().unwrap().contains(needle), "{body} → {b}");
    }
    let big = json!({"id": "big", "name": "x", "system_prompt": "x".repeat(70_000)});
    assert_eq!(api.call(Method::POST, "/api/subagents", t, Some(big)).await.0, 413);
    let (_, list) = api.call(Method::GET, "/api/subagents", t, None).await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["disk-watcher", "helper"], "bad input created nothing");

    // Read, partial update, null clears, delete.
    let (s, b) = api.call(Method::GET, "/api/subagents/disk-watcher", t, None).await;
    assert_eq!((s, b["timezone"].as_str()), (200, Some("Europe/Istanbul")));
    for unknown in ["/api/subagents/nope", "/api/subagents/NOT%20VALID"] {
        let (s, b) = api.call(Method::GET, unknown, t, None).await;
        assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{unknown}");
    }
    let (s, b) = api
        .call(Method::PUT, "/api/subagents/disk-watcher", t, Some(json!({"status": "paused", "system_prompt": null})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["system_prompt"].is_null(), b["name"].as_str()),
        (Some("paused"), true, Some("Disk watcher"))
    );
    let (s, _) = api.call(Method::PUT, "/api/subagents/disk-watcher", t, Some(json!({"status": "sleeping"}))).await;
    assert_eq!(s, 400);
    let (s, _) = api.call(Method::PUT, "/api/subagents/disk-watcher", t, Some(json!({"id": "renamed"}))).await;
    assert_eq!(s, 400, "the id cannot change");
    let (s, _) = api.call(Method::PUT, "/api/subagents/disk-watcher", t, Some(json!({"schedule": "not cron"}))).await;
    assert_eq!(s, 400);
    let (s, _) = api.call(Method::PUT, "/api/subagents/nope", t, Some(json!({"name": "x"}))).await;
    assert_eq!(s, 404);
    let (_, b) = api.call(Method::GET, "/api/subagents/disk-watcher", t, None).await;
    assert_eq!(
        (b["status"].as_str(), b["schedule"].as_str()),
        (Some("paused"), Some("0 9 * * 1-5")),
        "bad updates changed nothing"
    );

    let (s, _) = api.call(Method::DELETE, "/api/subagents/disk-watcher", t, None).await;
    assert_eq!(s, 204);
    let (s, _) = api.call(Method::DELETE, "/api/subagents/disk-watcher", t, None).await;
    assert_eq!(s, 404);
    let (_, list) = api.call(Method::GET, "/api/subagents", t, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

async fn schedules_follow_subagents(api: &Api) {
    let token = api.setup_and_login().await;
    let t = Some(token.as_str());
    let (s, _) = api.call(Method::POST, "/api/subagents", t, Some(json!({"id": "reporter", "name": "Reporter"}))).await;
    assert_eq!(s, 201);
    let (_, list) = api.call(Method::GET, "/api/schedules", t, None).await;
    assert_eq!(list, json!([]));

    let bad = [
        (json!({"subagent_id": "reporter", "cron": "* * *", "task": "report"}), 400, "3 field"),
        (json!({"subagent_id": "reporter", "cron": "0 25 * * *", "task": "report"}), 400, "not valid"),
        (
            json!({"subagent_id": "reporter", "cron": "0 9 * * *", "task": "report", "timezone": "Atlantis/Capital"}),
            400,
            "time zone",
        ),
        (json!({"subagent_id": "reporter", "cron": "0 9 * * *", "task": ""}), 400, "task"),
        (json!({"subagent_id": "reporter", "task": "report"}), 400, "cron"),
        (json!({"subagent_id": "reporter", "cron": 9, "task": "report"}), 400, "cron"),
        (json!({"subagent_id": "ghost", "cron": "0 9 * * *", "task": "report"}), 404, "ghost"),
    ];
    for (body, status, needle) in bad {
        let (s, b) = api.call(Method::POST, "/api/schedules", t, Some(body.clone())).await;
        assert_eq!(s, status, "{body} → {b}");
        assert!(b["message"].as_str().unwrap().contains(needle), "{body} → {b}");
    }
    assert_eq!(api.call(Method::GET, "/api/schedules", t, None).await.1, json!([]), "nothing set by bad input");

    let mut changes = api.state().bus.subscribe(nexus::schedules::TOPIC).await.unwrap();
    let (s, b) = api
        .call(Method::POST, "/api/schedules", t, Some(json!({"subagentId": "reporter", "cron": "30 8 * * *", "task": "Morning report", "timezone": "America/New_York"})))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b,
        json!({"subagent_id": "reporter", "subagent_name": "Reporter", "cron": "30 8 * * *", "timezone": "America/New_York", "task": "Morning report", "status": "active"})
    );
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv()).await.unwrap().unwrap();
    assert!(message.contains("reporter"), "{message}");
    let (_, list) = api.call(Method::GET, "/api/schedules", t, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, sub) = api.call(Method::GET, "/api/subagents/reporter", t, None).await;
    assert_eq!(sub["schedule"], "30 8 * * *", "the schedule lives on the subagent");

    let (s, _) = api.call(Method::DELETE, "/api/schedules/reporter", t, None).await;
    assert_eq!(s, 204);
    for gone in ["/api/schedules/reporter", "/api/schedules/ghost", "/api/schedules/Bad%20Id"] {
        let (s, _) = api.call(Method::DELETE, gone, t, None).await;
        assert_eq!(s, 404, "{gone}");
    }
    assert_eq!(api.call(Method::GET, "/api/schedules", t, None).await.1, json!([]));
    let (s, _) = api.call(Method::GET, "/api/subagents/reporter", t, None).await;
    assert_eq!(s, 200, "the subagent stays");
}
