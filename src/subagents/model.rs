//! The subagent resource: its shape (the seed's fields, snake_case; the seed's camelCase names
//! are accepted on input too) and its validation.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::settings::Tier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// Re-runs the subagent's task every `interval_ms`, up to `max_iterations` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// 1000–86400000.
    #[serde(alias = "intervalMs")]
    pub interval_ms: i64,
    /// 1–10000; unset = until stopped.
    #[serde(default, alias = "maxIterations")]
    pub max_iterations: Option<i64>,
    pub task: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subagent {
    /// kebab-case, 1–64 characters.
    pub id: String,
    pub name: String,
    pub description: String,
    /// Skill names this subagent may use; `["*"]` = all.
    pub skills: Vec<String>,
    pub system_prompt: Option<String>,
    /// Cron expression (see `/api/schedules`).
    pub schedule: Option<String>,
    /// IANA time zone of `schedule`.
    pub timezone: Option<String>,
    pub scheduled_task: Option<String>,
    #[serde(rename = "loop")]
    #[schema(rename = "loop")]
    pub loop_config: Option<LoopConfig>,
    pub tier: Tier,
    pub max_turns: i64,
    pub status: Status,
    /// Who created it: `user:<name>`, `api-key`, a chat id, or `system`.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub last_run_at: Option<i64>,
    pub last_result: Option<String>,
    pub run_count: i64,
}

/// `skills` as a list, or the string `"*"` for all.
fn skills<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Skills {
        All(String),
        List(Vec<String>),
    }
    match Skills::deserialize(d)? {
        Skills::All(s) if s == "*" => Ok(vec!["*".into()]),
        Skills::All(_) => Err(serde::de::Error::custom("`skills` must be a list of skill names or \"*\"")),
        Skills::List(list) => Ok(list),
    }
}

fn some_skills<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    skills(d).map(Some)
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubagent {
    /// kebab-case, 1–64 characters.
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)]
    pub id: String,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A list of skill names, or `"*"` for all.
    #[serde(default, deserialize_with = "skills")]
    pub skills: Vec<String>,
    #[serde(default, alias = "systemPrompt")]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default, alias = "scheduledTask")]
    pub scheduled_task: Option<String>,
    #[serde(default, rename = "loop")]
    #[schema(rename = "loop")]
    pub loop_config: Option<LoopConfig>,
    /// Default `sonnet`.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// 1–100, default 15.
    #[serde(default, alias = "maxTurns")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_turns: Option<i64>,
    /// Default `active`.
    #[serde(default)]
    pub status: Option<Status>,
    /// Default: the caller (`user:<name>` or `api-key`).
    #[serde(default, alias = "createdBy")]
    pub created_by: Option<String>,
}

/// A partial update: fields left out keep their value; `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubagentPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "some_skills")]
    #[schema(value_type = Option<Vec<String>>)]
    pub skills: Option<Vec<String>>,
    #[serde(default, alias = "systemPrompt", deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    #[serde(default, alias = "scheduledTask", deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub scheduled_task: Option<Option<String>>,
    #[serde(default, rename = "loop", deserialize_with = "nullable")]
    #[schema(rename = "loop", value_type = Option<LoopConfig>)]
    pub loop_config: Option<Option<LoopConfig>>,
    pub tier: Option<Tier>,
    #[serde(alias = "maxTurns")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_turns: Option<i64>,
    pub status: Option<Status>,
}

pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .split('-')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!("`id` must be kebab-case (a-z, 0-9, single dashes), 1 to 64 characters; got `{id}`."))
    }
}

fn text(out: &mut Vec<String>, field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min || len > max {
        out.push(if min > 0 {
            format!("`{field}` must be {min} to {max} characters long.")
        } else {
            format!("`{field}` must be at most {max} characters long.")
        });
    }
}

impl Subagent {
    /// Every rule broken, each a sentence naming the field.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = validate_id(&self.id) {
            out.push(e);
        }
        if self.name.trim().is_empty() {
            out.push("`name` must not be empty.".into());
        }
        text(&mut out, "name", &self.name, 1, 100);
        text(&mut out, "description", &self.description, 0, 2000);
        text(&mut out, "created_by", &self.created_by, 1, 200);
        if let Some(p) = &self.system_prompt {
            text(&mut out, "system_prompt", p, 0, 50_000);
        }
        if self.skills.len() > 100 {
            out.push("`skills` may list at most 100 skills.".into());
        }
        for skill in &self.skills {
            let ok = skill == "*"
                || ((1..=64).contains(&skill.len())
                    && skill.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
            if !ok {
                out.push(format!("`skills`: `{skill}` is not a skill name (letters, digits, - _ ., up to 64)."));
            }
        }
        if !(1..=100).contains(&self.max_turns) {
            out.push(format!("`max_turns` must be between 1 and 100 (got {}).", self.max_turns));
        }
        if let Some(cron) = &self.schedule {
            if let Err(e) = crate::schedules::validate_cron(cron) {
                out.push(format!("`schedule`: {e}"));
            }
            if self.scheduled_task.as_deref().is_none_or(|t| t.trim().is_empty()) {
                out.push("`scheduled_task` is needed with a `schedule`: what should run when it fires?".into());
            }
        }
        if let Some(task) = &self.scheduled_task {
            text(&mut out, "scheduled_task", task, 0, 10_000);
        }
        if let Some(tz) = &self.timezone
            && let Err(e) = crate::schedules::validate_timezone(tz)
        {
            out.push(format!("`timezone`: {e}"));
        }
        if let Some(l) = &self.loop_config {
            if !(1000..=86_400_000).contains(&l.interval_ms) {
                out.push("`loop.interval_ms` must be between 1000 and 86400000.".into());
            }
            if l.max_iterations.is_some_and(|n| !(1..=10_000).contains(&n)) {
                out.push("`loop.max_iterations` must be between 1 and 10000.".into());
            }
            text(&mut out, "loop.task", &l.task, 1, 10_000);
        }
        out
    }

    pub fn apply(&mut self, patch: SubagentPatch) {
        if let Some(v) = patch.name {
            self.name = v;
        }
        if let Some(v) = patch.description {
            self.description = v;
        }
        if let Some(v) = patch.skills {
            self.skills = v;
        }
        if let Some(v) = patch.system_prompt {
            self.system_prompt = v;
        }
        if let Some(v) = patch.schedule {
            self.schedule = v;
        }
        if let Some(v) = patch.timezone {
            self.timezone = v;
        }
        if let Some(v) = patch.scheduled_task {
            self.scheduled_task = v;
        }
        if let Some(v) = patch.loop_config {
            self.loop_config = v;
        }
        if let Some(v) = patch.tier {
            self.tier = v;
        }
        if let Some(v) = patch.max_turns {
            self.max_turns = v;
        }
        if let Some(v) = patch.status {
            self.status = v;
        }
    }
}
