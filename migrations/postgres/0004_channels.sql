-- Replies waiting for (or done with) delivery through a channel adapter. `id` is the inbound inbox
-- item's id (or `out:<uuid>` for messages nobody asked for), so a redelivered inbound item whose
-- reply is already here is not answered twice. `parts_sent` lets a reply split into several
-- platform messages resume where a crash stopped it.
CREATE TABLE outbox (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    channel         TEXT NOT NULL,
    chat_id         TEXT NOT NULL,
    reply_to        TEXT,
    text            TEXT NOT NULL,
    status          TEXT NOT NULL,
    parts_sent      BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, seq);
CREATE INDEX outbox_chat ON outbox (channel, chat_id, status, seq);

-- Codes handed to unknown senders; the owner approves one to add the sender to the allowlist.
CREATE TABLE channel_pairings (
    code        TEXT PRIMARY KEY NOT NULL,
    channel     TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX channel_pairings_sender ON channel_pairings (channel, sender_id);

-- Per-sender settings set with !commands, usage counters, and a tool waiting for !yes / !no.
CREATE TABLE channel_sessions (
    channel       TEXT NOT NULL,
    sender_id     TEXT NOT NULL,
    think         TEXT NOT NULL DEFAULT 'medium',
    verbosity     TEXT NOT NULL DEFAULT 'off',
    tier          TEXT,
    epoch         BIGINT NOT NULL DEFAULT 0,
    messages      BIGINT NOT NULL DEFAULT 0,
    input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    pending       TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (channel, sender_id)
);
