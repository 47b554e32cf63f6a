-- Users of the dashboard and API. Usernames are stored lower-case (unique). The TOTP secret lives in
-- the vault (`auth.totp.<user id>`); `totp_last_step` is the last accepted 30-second step, so a
-- code cannot be used twice.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    totp_enabled   INTEGER NOT NULL DEFAULT 0,
    totp_last_step INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- One row per login. A token names its session (`sid`); logout or a password change revokes it.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    ip         TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Subagents (seed shape: kebab-case id, skills list or "*", optional cron schedule).
CREATE TABLE subagents (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    skills         TEXT NOT NULL DEFAULT '[]',
    system_prompt  TEXT,
    schedule       TEXT,
    timezone       TEXT,
    scheduled_task TEXT,
    loop_config    TEXT,
    tier           TEXT NOT NULL DEFAULT 'sonnet',
    max_turns      INTEGER NOT NULL DEFAULT 15,
    status         TEXT NOT NULL DEFAULT 'active',
    created_by     TEXT NOT NULL DEFAULT 'system',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_run_at    INTEGER,
    last_result    TEXT,
    run_count      INTEGER NOT NULL DEFAULT 0
);
