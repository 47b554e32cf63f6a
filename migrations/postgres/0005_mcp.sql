-- MCP (PostgreSQL): bearer tokens for MCP clients (only a SHA-256 of each random token is kept) and the
-- external MCP servers the client manager runs. Secret env/header values live in the vault.
CREATE TABLE mcp_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    allow_risky BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE TABLE mcp_servers (
    name       TEXT PRIMARY KEY NOT NULL,
    transport  TEXT NOT NULL,
    command    TEXT,
    args       TEXT NOT NULL DEFAULT '[]',
    url        TEXT,
    enabled    BIGINT NOT NULL DEFAULT 1,
    timeout_ms BIGINT NOT NULL DEFAULT 30000,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
