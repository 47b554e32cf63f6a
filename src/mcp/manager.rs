//! The client manager: one supervisor task per enabled external MCP server. A supervisor
//! connects, registers the server's tools as `<server>__<tool>`, checks the connection, and on
//! failure removes the tools and reconnects with exponential backoff. Configuration changes
//! arrive on the bus topic `mcp.servers` (so every instance hears them); each supervisor reports
//! its state under the bus key `mcp:status:<name>`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{self, Connection, SEPARATOR, Spec};
use super::servers;
use crate::app::AppState;
use crate::store::now_ms;

const TOPIC: &str = "mcp.servers";
/// How often a supervisor looks at its connection (a dead stdio child is noticed this fast).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often a live server is asked for its tool list (a hung server is noticed this fast).
const PROBE_EVERY: Duration = Duration::from_secs(15);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Status keys outlive a crashed instance only this long.
const STATUS_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Added, updated or removed: reload from the Store.
    Changed,
    Restart,
}

/// Tells every instance's manager about a change. Best effort: a lost message is repaired by the
/// next change or restart; the Store already holds the truth.
pub async fn announce(state: &AppState, change: Change, name: &str) {
    let kind = match change {
        Change::Changed => "changed",
        Change::Restart => "restart",
    };
    if let Err(e) = state.bus.publish(TOPIC, &format!("{kind}:{name}")).await {
        tracing::warn!(server = %name, error = %e, "cannot announce MCP server change");
    }
}

fn status_key(name: &str) -> String {
    format!("mcp:status:{name}")
}

/// The last status a supervisor reported, or what can be said without one.
pub async fn status(state: &AppState, name: &str, enabled: bool) -> Value {
    if !enabled {
        return json!({"state": "disabled", "tools": []});
    }
    match state.bus.get(&status_key(name)).await {
        Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|_| json!({"state": "unknown"})),
        _ => json!({"state": "unknown", "tools": []}),
    }
}

async fn report(state: &AppState, name: &str, value: Value) {
    if let Err(e) = state.bus.set(&status_key(name), &value.to_string(), Some(STATUS_TTL)).await {
        tracing::debug!(server = %name, error = %e, "cannot store MCP server status");
    }
}

struct Supervisor {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Subscribes to changes, starts every enabled server, and keeps them running until shutdown.
pub async fn start(state: &AppState) -> Result<(), crate::bus::BusError> {
    let mut changes = state.bus.subscribe(TOPIC).await?;
    let names = servers::names(state).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read MCP servers; none started");
        Vec::new()
    });
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        let mut running: HashMap<String, Supervisor> = HashMap::new();
        for name in names {
            reload(&state, &mut running, &name).await;
        }
        loop {
            let message = tokio::select! {
                _ = state.shutdown.cancelled() => break,
                message = changes.recv() => message,
            };
            let Some(message) = message else { break };
            let Some((_kind, name)) = message.split_once(':') else { continue };
            // Both kinds mean: stop what runs, start again from the Store's current truth.
            reload(&state, &mut running, name).await;
        }
        for (_, supervisor) in running.drain() {
            supervisor.cancel.cancel();
            let _ = supervisor.handle.await;
        }
    });
    Ok(())
}

async fn reload(state: &AppState, running: &mut HashMap<String, Supervisor>, name: &str) {
    if let Some(old) = running.remove(name) {
        old.cancel.cancel();
        // Wait, so the old tools are gone before the new connection registers its own.
        let _ = old.handle.await;
    }
    match servers::enabled_spec(state, name).await {
        Ok(Some(spec)) => {
            let cancel = state.shutdown.child_token();
            let handle = tokio::spawn(supervise(state.clone(), spec, cancel.clone()));
            running.insert(name.to_string(), Supervisor { cancel, handle });
        }
        Ok(None) => {
            let _ = state.bus.delete(&status_key(name)).await;
        }
        Err(e) => tracing::error!(server = %name, error = %e.message, "cannot load MCP server"),
    }
}

fn prefix(name: &str) -> String {
    format!("{name}{SEPARATOR}")
}

fn register(state: &AppState, spec: &Spec, connection: &Connection) -> Vec<String> {
    state.tools.unregister_prefix(&prefix(&spec.name));
    let tools = connection.registry_tools(spec);
    let names = tools.iter().map(|t| t.name.clone()).collect();
    for tool in tools {
        state.tools.register(tool);
    }
    names
}

fn backoff(attempt: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1u32 << attempt.min(10)).min(BACKOFF_MAX)
}

/// Keeps one server connected until `cancel`.
async fn supervise(state: AppState, spec: Spec, cancel: CancellationToken) {
    let name = spec.name.clone();
    let mut attempt: u32 = 0;
    let mut restarts: u64 = 0;
    loop {
        report(&state, &name, json!({"state": "starting", "tools": [], "restarts": restarts})).await;
        let connected = tokio::select! {
            _ = cancel.cancelled() => break,
            connected = client::connect(&spec) => connected,
        };
        let error = match connected {
            Ok(mut connection) => {
                let mut tools = register(&state, &spec, &connection);
                tracing::info!(server = %name, tools = tools.len(), "MCP server connected");
                let since = now_ms();
                report(
                    &state,
                    &name,
                    json!({"state": "running", "tools": tools, "restarts": restarts, "since": since}),
                )
                .await;
                let mut last_probe = tokio::time::Instant::now();
                let error = loop {
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            state.tools.unregister_prefix(&prefix(&name));
                            connection.close().await;
                            return;
                        }
                        _ = tokio::time::sleep(CHECK_EVERY) => {}
                    }
                    if connection.is_closed() {
                        break "the server closed the connection (exited?)".to_string();
                    }
                    if last_probe.elapsed() >= PROBE_EVERY {
                        last_probe = tokio::time::Instant::now();
                        if let Err(e) = connection.probe(spec.timeout.min(Duration::from_secs(10))).await {
                            break format!("health check failed: {e}");
                        }
                        // Healthy for a whole probe period: the next failure starts backoff afresh.
                        attempt = 0;
                        // The tool list may have changed; re-registering also refreshes the TTL'd status.
                        tools = register(&state, &spec, &connection);
                        let status = json!({"state": "running", "tools": tools, "restarts": restarts, "since": since});
                        report(&state, &name, status).await;
                    }
                };
                state.tools.unregister_prefix(&prefix(&name));
                connection.close().await;
                error
            }
            Err(e) => e.to_string(),
        };
        metrics::counter!("nexus_mcp_client_errors_total", "server" => name.clone()).increment(1);
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        restarts += 1;
        tracing::warn!(server = %name, error = %error, retry_in_ms = delay.as_millis() as u64, "MCP server down");
        report(
            &state,
            &name,
            json!({"state": "backoff", "tools": [], "error": error, "restarts": restarts, "retry_in_ms": delay.as_millis() as u64}),
        )
        .await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    state.tools.unregister_prefix(&prefix(&name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
