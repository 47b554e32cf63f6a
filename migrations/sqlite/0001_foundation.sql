CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Queue items of the embedded bus. `receipt` changes on every delivery, so an ack from a consumer
-- whose visibility timeout already ran out cannot remove the redelivered item.
CREATE TABLE bus_queue (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    queue      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    receipt    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX bus_queue_ready ON bus_queue (queue, visible_at, seq);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    ip     TEXT
);
