//! Subagents: named helpers with their own prompt, skills, tier and optional cron schedule or loop
//! (the seed system's model). Stored in the `subagents` table; `/api/subagents` CRUD. Changes are
//! published on [`TOPIC`] so the scheduler and the agent see them at once.

pub mod model;
mod routes;
pub mod store;

pub use model::{LoopConfig, NewSubagent, Status, Subagent, SubagentPatch};
pub use routes::routes;

/// Bus topic announcing a change; the message is `{"id": …, "action": "created"|"updated"|"deleted"}`.
pub const TOPIC: &str = "subagents.updated";

/// Publishes a change (best effort: the row is the truth, the message only wakes listeners).
pub async fn announce(state: &crate::app::AppState, topic: &str, message: serde_json::Value) {
    if let Err(e) = state.bus.publish(topic, &message.to_string()).await {
        tracing::warn!(error = %e, topic, "change not published");
    }
}
