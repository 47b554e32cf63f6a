//! Tiers, model maps and tunables of the brain and the agent loop. Defaults match the system we
//! replace; everything can be changed at run time through the `brain` setting (a JSON document in
//! the Store), read at each call so no restart is needed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ProviderKind;
use crate::config::Config;

/// How capable (and costly) a model the turn asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Flash,
    Haiku,
    Sonnet,
    Opus,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Flash => "flash",
            Tier::Haiku => "haiku",
            Tier::Sonnet => "sonnet",
            Tier::Opus => "opus",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "flash" => Some(Tier::Flash),
            "haiku" => Some(Tier::Haiku),
            "sonnet" => Some(Tier::Sonnet),
            "opus" => Some(Tier::Opus),
            _ => None,
        }
    }
}

/// Reasoning effort of a turn (`!think <level>`). `Medium`, the default, leaves each model at its
/// own default; the other levels map onto each provider's control (Gemini `thinkingConfig`,
/// Anthropic extended thinking, OpenAI-compatible `reasoning_effort`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Think {
    Off,
    Minimal,
    Low,
    #[default]
    Medium,
    High,
    Xhigh,
}

impl Think {
    pub const ALL: [Think; 6] = [Think::Off, Think::Minimal, Think::Low, Think::Medium, Think::High, Think::Xhigh];

    pub fn name(self) -> &'static str {
        match self {
            Think::Off => "off",
            Think::Minimal => "minimal",
            Think::Low => "low",
            Think::Medium => "medium",
            Think::High => "high",
            Think::Xhigh => "xhigh",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.name() == text)
    }
}

/// The `brain` setting. Every field is optional; unset means the default named in its comment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BrainSettings {
    /// Providers in failover order (default gemini, anthropic, openai — only configured ones run).
    pub chain: Option<Vec<ProviderKind>>,
    /// Tier → model overrides per provider.
    pub gemini_models: BTreeMap<Tier, String>,
    pub claude_models: BTreeMap<Tier, String>,
    pub openai_models: BTreeMap<Tier, String>,
    /// Tier of a turn that names none (default sonnet, as the system we replace).
    pub default_tier: Option<Tier>,
    /// Attempts per provider before failing over (default 3).
    pub retry_attempts: Option<u32>,
    /// First backoff delay in ms, doubled each attempt with ±20 % jitter (default 1000, cap 30 s).
    pub retry_base_ms: Option<u64>,
    /// A Retry-After longer than this (s) fails over at once instead of waiting (default 30).
    pub retry_max_wait_secs: Option<u64>,
    /// Consecutive failed calls that open a provider's breaker (default 3) and for how long (s, 60).
    pub breaker_threshold: Option<u32>,
    pub breaker_cooldown_secs: Option<u64>,
    /// Output tokens per model call (default 8192).
    pub max_output_tokens: Option<u32>,
    /// History sent to the model, in tokens; older turns are summarised (default 100000).
    pub history_token_budget: Option<u64>,
    /// Tool rounds per turn (default 30) and wall time per turn in s (default 600).
    pub max_tool_rounds: Option<u32>,
    pub turn_timeout_secs: Option<u64>,
    /// Embedding models (default gemini-embedding-001 and text-embedding-3-small).
    pub gemini_embedding_model: Option<String>,
    pub openai_embedding_model: Option<String>,
    /// Replaces the built-in system prompt.
    pub system_prompt: Option<String>,
}

/// The setting key in the Store.
pub const SETTING_KEY: &str = "brain";

impl BrainSettings {
    pub async fn load(store: &crate::store::Store) -> Self {
        match store.get_setting_cached::<BrainSettings>(SETTING_KEY).await {
            Ok(found) => found.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "the brain setting cannot be read; using defaults");
                Self::default()
            }
        }
    }

    pub fn chain(&self) -> Vec<ProviderKind> {
        self.chain.clone().unwrap_or_else(|| vec![ProviderKind::Gemini, ProviderKind::Anthropic, ProviderKind::Openai])
    }

    pub fn default_tier(&self) -> Tier {
        self.default_tier.unwrap_or(Tier::Sonnet)
    }

    /// The model a provider uses for a tier.
    pub fn model(&self, config: &Config, kind: ProviderKind, tier: Tier) -> String {
        let overrides = match kind {
            ProviderKind::Gemini => &self.gemini_models,
            ProviderKind::Anthropic => &self.claude_models,
            ProviderKind::Openai => &self.openai_models,
        };
        if let Some(model) = overrides.get(&tier) {
            return model.clone();
        }
        match (kind, tier) {
            (ProviderKind::Gemini, Tier::Opus) => "gemini-2.5-pro".into(),
            (ProviderKind::Gemini, _) => config.default_model.clone(),
            (ProviderKind::Anthropic, Tier::Flash | Tier::Haiku) => "claude-haiku-4-5".into(),
            (ProviderKind::Anthropic, Tier::Sonnet) => "claude-sonnet-4-5".into(),
            (ProviderKind::Anthropic, Tier::Opus) => "claude-opus-4-1".into(),
            // A local server serves whatever DEFAULT_MODEL names; a Gemini or Claude id means the
            // owner kept the default, so use OpenAI's small model there.
            (ProviderKind::Openai, _) => {
                let m = &config.default_model;
                if m.starts_with("gemini") || m.starts_with("claude") { "gpt-4o-mini".into() } else { m.clone() }
            }
        }
    }

    pub fn retry_attempts(&self) -> u32 {
        self.retry_attempts.unwrap_or(3).clamp(1, 10)
    }
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms.unwrap_or(1000))
    }
    pub fn retry_max_wait(&self) -> Duration {
        Duration::from_secs(self.retry_max_wait_secs.unwrap_or(30))
    }
    pub fn breaker_threshold(&self) -> u32 {
        self.breaker_threshold.unwrap_or(3)
    }
    pub fn breaker_cooldown(&self) -> Duration {
        Duration::from_secs(self.breaker_cooldown_secs.unwrap_or(60))
    }
    pub fn max_output_tokens(&self) -> u32 {
        self.max_output_tokens.unwrap_or(8192)
    }
    pub fn history_token_budget(&self) -> u64 {
        self.history_token_budget.unwrap_or(100_000).max(500)
    }
    pub fn max_tool_rounds(&self) -> u32 {
        self.max_tool_rounds.unwrap_or(30).max(1)
    }
    pub fn turn_timeout(&self) -> Duration {
        Duration::from_secs(self.turn_timeout_secs.unwrap_or(600).max(1))
    }
    pub fn embedding_model(&self, kind: ProviderKind) -> Option<String> {
        match kind {
            ProviderKind::Gemini => {
                Some(self.gemini_embedding_model.clone().unwrap_or_else(|| "gemini-embedding-001".into()))
            }
            ProviderKind::Openai => {
                Some(self.openai_embedding_model.clone().unwrap_or_else(|| "text-embedding-3-small".into()))
            }
            ProviderKind::Anthropic => None,
        }
    }
}
