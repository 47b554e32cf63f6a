CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Queue items of the embedded bus. `receipt` changes on every delivery, so an ack from a consumer
-- whose visibility timeout already ran out cannot remove the redelivered item.
CREATE TABLE bus_queue (
    seq        BIGSERIAL PRIMARY KEY,
    queue      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    visible_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    receipt    TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX bus_queue_ready ON bus_queue (queue, visible_at, seq);

CREATE TABLE audit_log (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    ip     TEXT
);
