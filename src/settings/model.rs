//! The shape of the Nexus configuration, its defaults (from the system it replaces), and how a
//! partial update is merged and checked.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::Config;

/// Model tiers, as in the seed system: the brain's own.
pub use crate::brain::Tier;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierModels {
    pub flash: String,
    pub haiku: String,
    pub sonnet: String,
    pub opus: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// 1–200 (default 30).
    pub max_turns: u32,
    /// 1000–2000000 (default 200000).
    pub max_tokens: u64,
    /// 10–3600 (default 600).
    pub timeout_secs: u64,
    pub tier: Tier,
    /// How deep subagents may nest, 0–10 (default 3).
    pub max_depth: u32,
    pub stream: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubagentLimits {
    /// 1–64 (default 8).
    pub max_concurrent: u32,
    /// 1–200 (default 15).
    pub max_turns: u32,
    /// 1000–2000000 (default 50000).
    pub max_tokens: u64,
    /// 10–3600 (default 120).
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveHours {
    /// `HH:MM`, 24-hour clock.
    pub start: String,
    /// `HH:MM`, 24-hour clock.
    pub end: String,
    /// IANA time zone, e.g. `Europe/Istanbul`.
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub enabled: bool,
    /// 5–1440 (default 30).
    pub interval_minutes: u32,
    /// `telegram`, `discord`, `whatsapp`, `all`, `none` or `last` (the last chat).
    pub target: String,
    pub active_hours: Option<ActiveHours>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// 1–10 (default 5).
    pub attempts: u32,
    /// 100–60000 (default 1000).
    pub initial_delay_ms: u64,
    /// 1000–600000 (default 30000).
    pub max_delay_ms: u64,
}

/// The run-time configuration (everything but secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NexusConfig {
    pub models: TierModels,
    pub fallback_enabled: bool,
    /// Tiers tried in this order when one fails.
    pub fallback_order: Vec<Tier>,
    pub agent: AgentSettings,
    pub subagents: SubagentLimits,
    pub heartbeat: Heartbeat,
    pub retry: RetrySettings,
}

impl NexusConfig {
    /// The seed system's defaults, with `DEFAULT_MODEL` for the flash/haiku/sonnet tiers.
    pub fn defaults(config: &Config) -> Self {
        let model = config.default_model.clone();
        Self {
            models: TierModels {
                flash: model.clone(),
                haiku: model.clone(),
                sonnet: model,
                opus: "gemini-2.5-pro".into(),
            },
            fallback_enabled: true,
            fallback_order: vec![Tier::Flash, Tier::Haiku, Tier::Sonnet, Tier::Opus],
            agent: AgentSettings {
                max_turns: 30,
                max_tokens: 200_000,
                timeout_secs: 600,
                tier: Tier::Sonnet,
                max_depth: 3,
                stream: true,
            },
            subagents: SubagentLimits { max_concurrent: 8, max_turns: 15, max_tokens: 50_000, timeout_secs: 120 },
            heartbeat: Heartbeat { enabled: false, interval_minutes: 30, target: "last".into(), active_hours: None },
            retry: RetrySettings { attempts: 5, initial_delay_ms: 1000, max_delay_ms: 30_000 },
        }
    }

    /// Every rule broken, each as a sentence naming the field.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut range = |name: &str, value: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&value) {
                out.push(format!("`{name}` must be between {lo} and {hi} (got {value})."));
            }
        };
        range("agent.max_turns", self.agent.max_turns.into(), 1, 200);
        range("agent.max_tokens", self.agent.max_tokens, 1000, 2_000_000);
        range("agent.timeout_secs", self.agent.timeout_secs, 10, 3600);
        range("agent.max_depth", self.agent.max_depth.into(), 0, 10);
        range("subagents.max_concurrent", self.subagents.max_concurrent.into(), 1, 64);
        range("subagents.max_turns", self.subagents.max_turns.into(), 1, 200);
        range("subagents.max_tokens", self.subagents.max_tokens, 1000, 2_000_000);
        range("subagents.timeout_secs", self.subagents.timeout_secs, 10, 3600);
        range("heartbeat.interval_minutes", self.heartbeat.interval_minutes.into(), 5, 1440);
        range("retry.attempts", self.retry.attempts.into(), 1, 10);
        range("retry.initial_delay_ms", self.retry.initial_delay_ms, 100, 60_000);
        range("retry.max_delay_ms", self.retry.max_delay_ms, 1000, 600_000);
        for (tier, model) in [
            ("flash", &self.models.flash),
            ("haiku", &self.models.haiku),
            ("sonnet", &self.models.sonnet),
            ("opus", &self.models.opus),
        ] {
            if model.trim().is_empty() || model.len() > 200 {
                out.push(format!("`models.{tier}` must be a model name of 1 to 200 characters."));
            }
        }
        if self.fallback_order.is_empty() || self.fallback_order.len() > 4 {
            out.push("`fallback_order` must list 1 to 4 tiers.".into());
        }
        if self.retry.initial_delay_ms > self.retry.max_delay_ms {
            out.push("`retry.initial_delay_ms` must not exceed `retry.max_delay_ms`.".into());
        }
        if !["telegram", "discord", "whatsapp", "all", "none", "last"].contains(&self.heartbeat.target.as_str()) {
            out.push("`heartbeat.target` must be telegram, discord, whatsapp, all, none or last.".into());
        }
        if let Some(hours) = &self.heartbeat.active_hours {
            for (name, value) in [("start", &hours.start), ("end", &hours.end)] {
                if !is_hh_mm(value) {
                    out.push(format!("`heartbeat.active_hours.{name}` must be HH:MM on a 24-hour clock."));
                }
            }
            if let Err(e) = crate::schedules::validate_timezone(&hours.timezone) {
                out.push(format!("`heartbeat.active_hours.timezone`: {e}"));
            }
        }
        out
    }
}

fn is_hh_mm(value: &str) -> bool {
    let Some((h, m)) = value.split_once(':') else { return false };
    h.len() == 2 && m.len() == 2 && h.parse::<u8>().is_ok_and(|h| h < 24) && m.parse::<u8>().is_ok_and(|m| m < 60)
}

/// Merges `patch` into `base` recursively (objects merge, anything else replaces; `null` resets a
/// field to `base`'s value), then checks the result.
pub fn apply_patch(base: &NexusConfig, patch: &serde_json::Value) -> Result<NexusConfig, Vec<String>> {
    if !patch.is_object() {
        return Err(vec!["The configuration must be a JSON object.".into()]);
    }
    let mut merged = serde_json::to_value(base).map_err(|e| vec![e.to_string()])?;
    merge(&mut merged, patch);
    let config: NexusConfig = serde_json::from_value(merged).map_err(|e| vec![e.to_string()])?;
    let problems = config.problems();
    if problems.is_empty() { Ok(config) } else { Err(problems) }
}

fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (key, value) in p {
                match t.get_mut(key) {
                    Some(existing) if value.is_object() && existing.is_object() => merge(existing, value),
                    Some(_) if value.is_null() => {}
                    _ => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> NexusConfig {
        NexusConfig::defaults(&Config::from_vars(&Default::default()).unwrap())
    }

    #[test]
    fn partial_updates_merge_and_bad_ones_say_why() {
        let d = defaults();
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        let c = apply_patch(&d, &json!({"agent": {"max_turns": 12}, "heartbeat": {"enabled": true}})).unwrap();
        assert_eq!((c.agent.max_turns, c.agent.max_tokens, c.heartbeat.enabled), (12, 200_000, true));
        let e = apply_patch(&d, &json!({"agent": {"max_turns": 0}})).unwrap_err();
        assert!(e[0].contains("agent.max_turns"), "{e:?}");
        let e = apply_patch(&d, &json!({"agnet": {}})).unwrap_err();
        assert!(e[0].contains("unknown field"), "{e:?}");
        let e = apply_patch(&d, &json!({"fallback_order": ["gpt"]})).unwrap_err();
        assert!(e[0].contains("unknown variant"), "{e:?}");
        let e = apply_patch(
            &d,
            &json!({"heartbeat": {"active_hours": {"start": "25:00", "end": "08:00", "timezone": "Mars/Base"}}}),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(apply_patch(&d, &json!([1])).is_err());
    }
}
