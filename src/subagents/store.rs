//! Subagent rows in the Store (portable SQL; lists and the loop as JSON text).

use super::model::{LoopConfig, Status, Subagent};
use crate::settings::Tier;
use crate::store::{Store, StoreError};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    description: String,
    skills: String,
    system_prompt: Option<String>,
    schedule: Option<String>,
    timezone: Option<String>,
    scheduled_task: Option<String>,
    loop_config: Option<String>,
    tier: String,
    max_turns: i64,
    status: String,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    last_run_at: Option<i64>,
    last_result: Option<String>,
    run_count: i64,
}

const COLUMNS: &str = "id, name, description, skills, system_prompt, schedule, timezone, scheduled_task, \
     loop_config, tier, max_turns, status, created_by, created_at, updated_at, last_run_at, last_result, run_count";

impl TryFrom<Row> for Subagent {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        let bad = |what: &str| StoreError::Data(format!("subagent '{}': bad {what}", r.id));
        let json = |s: &str| serde_json::Value::String(s.to_string());
        Ok(Subagent {
            skills: serde_json::from_str(&r.skills).map_err(|_| bad("skills"))?,
            loop_config: match &r.loop_config {
                Some(text) => Some(serde_json::from_str::<LoopConfig>(text).map_err(|_| bad("loop"))?),
                None => None,
            },
            tier: serde_json::from_value::<Tier>(json(&r.tier)).map_err(|_| bad("tier"))?,
            status: serde_json::from_value::<Status>(json(&r.status)).map_err(|_| bad("status"))?,
            id: r.id,
            name: r.name,
            description: r.description,
            system_prompt: r.system_prompt,
            schedule: r.schedule,
            timezone: r.timezone,
            scheduled_task: r.scheduled_task,
            max_turns: r.max_turns,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_run_at: r.last_run_at,
            last_result: r.last_result,
            run_count: r.run_count,
        })
    }
}

fn tier_text(tier: Tier) -> String {
    serde_json::to_value(tier).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "sonnet".into())
}

fn encode(s: &Subagent) -> Result<(String, Option<String>), StoreError> {
    let skills = serde_json::to_string(&s.skills).map_err(|e| StoreError::Data(e.to_string()))?;
    let loop_config =
        s.loop_config.as_ref().map(serde_json::to_string).transpose().map_err(|e| StoreError::Data(e.to_string()))?;
    Ok((skills, loop_config))
}

pub async fn list(store: &Store) -> Result<Vec<Subagent>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subagents ORDER BY id")))
        .fetch_all(store.pool())
        .await?;
    rows.into_iter().map(Subagent::try_from).collect()
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Subagent>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM subagents WHERE id = $1")))
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    row.map(Subagent::try_from).transpose()
}

/// Inserts a new subagent; a taken id is a unique violation.
pub async fn insert(store: &Store, s: &Subagent) -> Result<(), StoreError> {
    let (skills, loop_config) = encode(s)?;
    sqlx::query(
        "INSERT INTO subagents (id, name, description, skills, system_prompt, schedule, timezone, scheduled_task,
             loop_config, tier, max_turns, status, created_by, created_at, updated_at, run_count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0)",
    )
    .bind(&s.id)
    .bind(&s.name)
    .bind(&s.description)
    .bind(skills)
    .bind(&s.system_prompt)
    .bind(&s.schedule)
    .bind(&s.timezone)
    .bind(&s.scheduled_task)
    .bind(loop_config)
    .bind(tier_text(s.tier))
    .bind(s.max_turns)
    .bind(s.status.as_str())
    .bind(&s.created_by)
    .bind(s.created_at)
    .bind(s.updated_at)
    .execute(&mut *store.write().await?)
    .await?;
    Ok(())
}

/// Writes the editable fields back; false when the subagent is gone.
pub async fn update(store: &Store, s: &Subagent) -> Result<bool, StoreError> {
    let (skills, loop_config) = encode(s)?;
    let done = sqlx::query(
        "UPDATE subagents SET name = $1, description = $2, skills = $3, system_prompt = $4, schedule = $5,
             timezone = $6, scheduled_task = $7, loop_config = $8, tier = $9, max_turns = $10, status = $11,
             updated_at = $12
         WHERE id = $13",
    )
    .bind(&s.name)
    .bind(&s.description)
    .bind(skills)
    .bind(&s.system_prompt)
    .bind(&s.schedule)
    .bind(&s.timezone)
    .bind(&s.scheduled_task)
    .bind(loop_config)
    .bind(tier_text(s.tier))
    .bind(s.max_turns)
    .bind(s.status.as_str())
    .bind(s.updated_at)
    .bind(&s.id)
    .execute(&mut *store.write().await?)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM subagents WHERE id = $1").bind(id).execute(&mut *store.write().await?).await?;
    Ok(done.rows_affected() == 1)
}

/// Records a run's outcome (for the scheduler and the agent).
pub async fn record_run(store: &Store, id: &str, at: i64, result: &str) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE subagents SET last_run_at = $1, last_result = $2, run_count = run_count + 1 WHERE id = $3")
            .bind(at)
            .bind(result)
            .bind(id)
            .execute(&mut *store.write().await?)
            .await?;
    Ok(done.rows_affected() == 1)
}
