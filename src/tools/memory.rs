//! Long-term memory: `memory_add` / `memory_search` tools and `/api/memory`.
//!
//! Search is hybrid: full-text always (SQLite FTS5 `bm25`, PostgreSQL `tsvector` + `ts_rank`), and
//! when a provider with an embedding API is configured (Gemini `embedContent`, OpenAI-compatible
//! `/embeddings`), cosine similarity over the stored vectors of the same model. The two rankings
//! are merged by reciprocal-rank fusion, which needs no tuning between their unrelated scales.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Risk, Tool, ToolError};
use crate::agent::api::ApiQuery;
use crate::api::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::app::AppState;
use crate::store::{Backend, Store, StoreError, now_ms};

const MAX_CONTENT_CHARS: usize = 10_000;
/// Candidates each ranking contributes before fusion.
const CANDIDATES: i64 = 50;
/// Vectors compared per search (the newest); a home server's memory stays well below this.
const SEMANTIC_SCAN: i64 = 5000;
/// Reciprocal-rank-fusion constant (the usual 60).
const RRF_K: f64 = 60.0;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemoryItem {
    pub id: String,
    pub content: String,
    pub tags: Vec<String>,
    pub source: String,
    pub created_at: i64,
    /// Fused rank score of a search (higher is better).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Which rankings found it: `text`, `semantic`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<&'static str>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    content: String,
    tags: String,
    source: String,
    created_at: i64,
}

impl Row {
    fn item(self) -> MemoryItem {
        MemoryItem {
            tags: serde_json::from_str(&self.tags).unwrap_or_default(),
            id: self.id,
            content: self.content,
            source: self.source,
            created_at: self.created_at,
            score: None,
            matched: Vec::new(),
        }
    }
}

/// Stores a memory (with an embedding when a provider can make one) in one transaction.
pub async fn add(state: &AppState, content: &str, tags: &[String], source: &str) -> Result<MemoryItem, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let tags_json = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
    let embedding = crate::brain::embed(state, content).await;
    let (model, vector) = match &embedding {
        Some((model, v)) => (Some(model.clone()), Some(serde_json::to_string(v).unwrap_or_default())),
        None => (None, None),
    };
    let now = now_ms();
    let mut writer = state.store.write().await?;
    let mut tx = writer.begin().await?;
    sqlx::query(
        "INSERT INTO memories (id, content, tags, source, embedding, embedding_model, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(content)
    .bind(&tags_json)
    .bind(source)
    .bind(vector)
    .bind(model)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if state.store.backend() == Backend::Sqlite {
        sqlx::query("INSERT INTO memories_fts (memory_id, content, tags) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(content)
            .bind(tags.join(" "))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(MemoryItem {
        id,
        content: content.to_string(),
        tags: tags.to_vec(),
        source: source.to_string(),
        created_at: now,
        score: None,
        matched: Vec::new(),
    })
}

pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let mut writer = store.write().await?;
    let mut tx = writer.begin().await?;
    let done = sqlx::query("DELETE FROM memories WHERE id = $1").bind(id).execute(&mut *tx).await?;
    if store.backend() == Backend::Sqlite {
        sqlx::query("DELETE FROM memories_fts WHERE memory_id = $1").bind(id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// Newest first.
pub async fn list(store: &Store, limit: i64, offset: i64) -> Result<Vec<MemoryItem>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, content, tags, source, created_at FROM memories ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(Row::item).collect())
}

/// Words of a query, reduced to letters and digits (so nothing reaches the FTS query syntax).
fn terms(query: &str) -> Vec<String> {
    query.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).take(16).collect()
}

/// Full-text ranking: best first.
async fn text_ranking(store: &Store, query: &str) -> Result<Vec<Row>, StoreError> {
    let terms = terms(query);
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let rows = match store.backend() {
        Backend::Sqlite => {
            let expr = terms.iter().map(|t| format!("\"{t}\"*")).collect::<Vec<_>>().join(" OR ");
            sqlx::query_as(
                "SELECT m.id, m.content, m.tags, m.source, m.created_at FROM memories_fts f
                 JOIN memories m ON m.id = f.memory_id
                 WHERE memories_fts MATCH $1 ORDER BY bm25(memories_fts) LIMIT $2",
            )
            .bind(expr)
            .bind(CANDIDATES)
            .fetch_all(store.pool())
            .await?
        }
        Backend::Postgres => {
            let expr = terms.iter().map(|t| format!("{t}:*")).collect::<Vec<_>>().join(" | ");
            sqlx::query_as(
                "SELECT id, content, tags, source, created_at FROM memories
                 WHERE tsv @@ to_tsquery('simple', $1)
                 ORDER BY ts_rank(tsv, to_tsquery('simple', $1)) DESC, created_at DESC LIMIT $2",
            )
            .bind(expr)
            .bind(CANDIDATES)
            .fetch_all(store.pool())
            .await?
        }
    };
    Ok(rows)
}

#[derive(sqlx::FromRow)]
struct VectorRow {
    id: String,
    content: String,
    tags: String,
    source: String,
    created_at: i64,
    embedding: String,
}

/// Semantic ranking by cosine similarity: best first. Empty when no provider can embed.
async fn semantic_ranking(state: &AppState, query: &str) -> Result<Vec<Row>, StoreError> {
    let Some((model, q)) = crate::brain::embed(state, query).await else { return Ok(Vec::new()) };
    let rows: Vec<VectorRow> = sqlx::query_as(
        "SELECT id, content, tags, source, created_at, embedding FROM memories
         WHERE embedding_model = $1 ORDER BY created_at DESC LIMIT $2",
    )
    .bind(&model)
    .bind(SEMANTIC_SCAN)
    .fetch_all(state.store.pool())
    .await?;
    let mut scored: Vec<(f32, Row)> = rows
        .into_iter()
        .filter_map(|r| {
            let v: Vec<f32> = serde_json::from_str(&r.embedding).ok()?;
            let sim = cosine(&q, &v)?;
            Some((sim, Row { id: r.id, content: r.content, tags: r.tags, source: r.source, created_at: r.created_at }))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(scored.into_iter().take(CANDIDATES as usize).map(|(_, r)| r).collect())
}

fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (na > 0.0 && nb > 0.0).then(|| dot / (na.sqrt() * nb.sqrt()))
}

/// Hybrid search: both rankings fused, best first.
pub async fn search(state: &AppState, query: &str, limit: usize) -> Result<Vec<MemoryItem>, StoreError> {
    let (text, semantic) = tokio::join!(text_ranking(&state.store, query), semantic_ranking(state, query));
    let mut fused: HashMap<String, MemoryItem> = HashMap::new();
    for (kind, ranking) in [("text", text?), ("semantic", semantic?)] {
        for (rank, row) in ranking.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f64 + 1.0);
            let item = fused.entry(row.id.clone()).or_insert_with(|| row.item());
            item.score = Some(item.score.unwrap_or(0.0) + add);
            item.matched.push(kind);
        }
    }
    let mut items: Vec<MemoryItem> = fused.into_values().collect();
    items.sort_by(|a, b| {
        b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)).then(b.created_at.cmp(&a.created_at))
    });
    items.truncate(limit);
    Ok(items)
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Registers `memory_add` and `memory_search` in the shared registry.
pub fn register(state: &AppState) {
    // The handlers hold a clone of the state (whose registry holds them): the pair lives as long
    // as the process, which is what a built-in tool does anyway.
    let st = state.clone();
    let add_tool = Tool::new(
        "memory_add",
        "Remember a durable fact or note for later conversations (preferences, server facts, decisions).",
        json!({
            "type": "object",
            "properties": {
                "content": {"type": "string", "minLength": 1, "maxLength": MAX_CONTENT_CHARS, "description": "What to remember."},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20, "description": "Keywords."},
                "source": {"type": "string", "maxLength": 200, "description": "Where the fact came from."}
            },
            "required": ["content"],
            "additionalProperties": false
        }),
        Risk::Write,
        move |args, _caller| {
            let st = st.clone();
            async move {
                let content = args["content"].as_str().unwrap_or_default().trim().to_string();
                let source = args["source"].as_str().unwrap_or("agent").to_string();
                let item = add(&st, &content, &string_list(&args["tags"]), &source)
                    .await
                    .map_err(|e| ToolError::Failed(format!("the memory could not be stored: {e}")))?;
                Ok(json!({"id": item.id, "stored": true}))
            }
        },
    );
    let st = state.clone();
    let search_tool = Tool::new(
        "memory_search",
        "Search long-term memory by keywords and meaning; returns the best matching notes.",
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "What to look for."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "How many results (default 5)."}
            },
            "required": ["query"],
            "additionalProperties": false
        }),
        Risk::Read,
        move |args, _caller| {
            let st = st.clone();
            async move {
                let query = args["query"].as_str().unwrap_or_default();
                let limit = args["limit"].as_u64().unwrap_or(5) as usize;
                let results = search(&st, query, limit)
                    .await
                    .map_err(|e| ToolError::Failed(format!("memory search failed: {e}")))?;
                Ok(json!({"results": results}))
            }
        },
    );
    for tool in [add_tool, search_tool] {
        match tool {
            Ok(tool) => state.tools.register(tool),
            Err(e) => tracing::error!(error = %e, "a memory tool has a broken schema"),
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_memories, add_memory))
        .routes(routes!(search_memories))
        .routes(routes!(delete_memory))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct MemoryList {
    pub memories: Vec<MemoryItem>,
}

/// Memories, newest first.
#[utoipa::path(get, path = "/memory", tag = "memory", params(ListQuery), responses((status = 200, body = MemoryList)))]
async fn list_memories(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ApiJson<MemoryList>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    Ok(ApiJson(MemoryList { memories: list(&state.store, limit, q.offset.unwrap_or(0).max(0)).await? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMemory {
    pub content: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub source: Option<String>,
}

/// Remembers something.
#[utoipa::path(post, path = "/memory", tag = "memory", request_body = NewMemory,
    responses((status = 201, body = MemoryItem), (status = 400, body = ErrorBody)))]
async fn add_memory(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewMemory>,
) -> ApiResult<(StatusCode, ApiJson<MemoryItem>)> {
    let content = body.content.trim();
    if content.is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
        return Err(ApiError::validation(format!("content must have 1 to {MAX_CONTENT_CHARS} characters.")));
    }
    if body.tags.len() > 20 || body.tags.iter().any(|t| t.chars().count() > 100) {
        return Err(ApiError::validation("at most 20 tags of at most 100 characters each."));
    }
    let item = add(&state, content, &body.tags, body.source.as_deref().unwrap_or("api")).await?;
    Ok((StatusCode::CREATED, ApiJson(item)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Words to look for.
    pub q: Option<String>,
    /// 1–50, default 10.
    pub limit: Option<usize>,
}

/// Hybrid (full-text + semantic) search.
#[utoipa::path(get, path = "/memory/search", tag = "memory", params(SearchQuery),
    responses((status = 200, body = MemoryList), (status = 400, body = ErrorBody)))]
async fn search_memories(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<ApiJson<MemoryList>> {
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::validation("q must not be empty."));
    }
    let limit = q.limit.unwrap_or(10).clamp(1, 50);
    Ok(ApiJson(MemoryList { memories: search(&state, text, limit).await? }))
}

/// Forgets one memory.
#[utoipa::path(delete, path = "/memory/{id}", tag = "memory", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_memory(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if delete(&state.store, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("No memory with that id."))
    }
}
