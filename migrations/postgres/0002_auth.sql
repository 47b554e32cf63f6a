-- Users of the dashboard and API. Usernames are stored lower-case (unique). The TOTP secret lives in
-- the vault (`auth.totp.<user id>`); `totp_last_step` is the last accepted 30-second step, so a
-- code cannot be used twice.
CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    totp_enabled   BIGINT NOT NULL DEFAULT 0,
    totp_last_step BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- One row per login. A token names its session (`sid`); logout or a password change revokes it.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
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
    max_turns      BIGINT NOT NULL DEFAULT 15,
    status         TEXT NOT NULL DEFAULT 'active',
    created_by     TEXT NOT NULL DEFAULT 'system',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_run_at    BIGINT,
    last_result    TEXT,
    run_count      BIGINT NOT NULL DEFAULT 0
);
