-- Conversations of the agent loop: one row per conversation key (telegram:<chat>, a dashboard id…).
CREATE TABLE conversations (
    id            TEXT PRIMARY KEY NOT NULL,
    key           TEXT NOT NULL UNIQUE,
    title         TEXT NOT NULL DEFAULT '',
    provider      TEXT,
    model         TEXT,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX conversations_updated ON conversations (updated_at);

-- Messages in the neutral model of src/brain: `parts` is a JSON array of text / tool_call /
-- tool_result parts (tool calls keep Gemini's thoughtSignature).
CREATE TABLE conversation_messages (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    parts           TEXT NOT NULL,
    provider        TEXT,
    model           TEXT,
    input_tokens    BIGINT NOT NULL DEFAULT 0,
    output_tokens   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);
CREATE INDEX conversation_messages_conv ON conversation_messages (conversation_id, id);

-- The oldest turns of a long conversation, summarised: messages up to `through_message_id` are
-- no longer sent to the model; the newest summary stands in for them.
CREATE TABLE conversation_summaries (
    id                 BIGSERIAL PRIMARY KEY,
    conversation_id    TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    through_message_id BIGINT NOT NULL,
    text               TEXT NOT NULL,
    created_at         BIGINT NOT NULL
);
CREATE INDEX conversation_summaries_conv ON conversation_summaries (conversation_id, id);

CREATE TABLE tool_calls (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    call_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    arguments       TEXT NOT NULL,
    output          TEXT NOT NULL,
    ok              BIGINT NOT NULL,
    duration_ms     BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX tool_calls_conv ON tool_calls (conversation_id, id);

-- Token usage per day (UTC, YYYY-MM-DD), provider, model and conversation.
CREATE TABLE usage_daily (
    day             TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    requests        BIGINT NOT NULL DEFAULT 0,
    input_tokens    BIGINT NOT NULL DEFAULT 0,
    output_tokens   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, provider, model, conversation_id)
);

-- Long-term memory: full-text always, an embedding when a provider could make one.
CREATE TABLE memories (
    id              TEXT PRIMARY KEY NOT NULL,
    content         TEXT NOT NULL,
    tags            TEXT NOT NULL DEFAULT '[]',
    source          TEXT NOT NULL DEFAULT '',
    embedding       TEXT,
    embedding_model TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX memories_created ON memories (created_at);
ALTER TABLE memories ADD COLUMN tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', content || ' ' || tags)) STORED;
CREATE INDEX memories_tsv ON memories USING GIN (tsv);
