//! The run-time Nexus configuration (`/api/nexus/config`): model tiers, failover, agent and
//! subagent limits, heartbeat. Stored as one JSON setting (`nexus.config`); changes are published on
//! the bus topic [`TOPIC`] so running modules pick them up without a restart.
//!
//! Provider keys (`gemini_api_key`, `anthropic_api_key`, `openai_api_key`) are accepted by PUT but
//! go to the vault, under the same names, and are never returned: GET shows `<name>_set` flags.
//! A key set here wins over the environment variable (see [`provider_key`]).

mod model;
mod routes;

pub use model::{ActiveHours, AgentSettings, Heartbeat, NexusConfig, RetrySettings, SubagentLimits, Tier, TierModels};
pub use routes::routes;

use crate::app::AppState;
use crate::config::Secret;
use crate::store::StoreError;

/// The settings key of the configuration document.
pub const SETTING_KEY: &str = "nexus.config";
/// Bus topic announcing a change; the message is `{"key": "nexus.config"}`.
pub const TOPIC: &str = "config.updated";
/// Write-only provider keys: field names in PUT, and their names in the vault.
pub const SECRET_FIELDS: [&str; 3] = ["gemini_api_key", "anthropic_api_key", "openai_api_key"];

/// The current configuration: the stored document over the defaults.
pub async fn current(state: &AppState) -> Result<NexusConfig, StoreError> {
    let defaults = NexusConfig::defaults(&state.config);
    let stored: Option<serde_json::Value> = state.store.get_setting(SETTING_KEY).await?;
    Ok(match stored {
        Some(patch) => model::apply_patch(&defaults, &patch).unwrap_or_else(|errors| {
            tracing::warn!(?errors, "stored nexus.config no longer valid; using defaults");
            defaults
        }),
        None => defaults,
    })
}

/// A provider key: the one set through the API (vault) first, else the environment.
pub async fn provider_key(state: &AppState, field: &str) -> Option<Secret> {
    match state.vault.get(field).await {
        Ok(Some(secret)) => return Some(secret),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, field, "cannot read provider key from the vault"),
    }
    match field {
        "gemini_api_key" => state.config.gemini_api_key.clone(),
        "anthropic_api_key" => state.config.anthropic_api_key.clone(),
        "openai_api_key" => state.config.openai_api_key.clone(),
        _ => None,
    }
}
