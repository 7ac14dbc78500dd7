-- Platform (SQLite): idempotency records, durable jobs, the events outbox.
-- Kept in step with migrations/postgres/0005_platform.sql.

-- One row per (environment, account, Idempotency-Key). The row is the lock
-- while a request runs (state in_progress, with a lease), then the stored
-- answer that retries replay byte for byte (state done). Purged after 24 h.
CREATE TABLE idempotency_keys (
    environment      TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,                -- hex sha256 of method, path and body
    state            TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    lock_token       TEXT,                         -- the holder of the lease while in progress
    lease_until_ms   INTEGER,
    response_status  INTEGER,
    response_headers TEXT,                         -- JSON object of the headers replayed
    response_body    BLOB,
    created_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (environment, account_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);

-- Durable background jobs. Claimed with a lease; a job whose worker died is
-- claimed again once its lease has passed. attempt fences completions.
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL DEFAULT '{}',     -- JSON
    state          TEXT NOT NULL CHECK (state IN ('available', 'running', 'succeeded', 'dead')),
    attempt        INTEGER NOT NULL DEFAULT 0,
    max_attempts   INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at_ms      INTEGER NOT NULL,
    locked_by      TEXT,
    lease_until_ms INTEGER,
    unique_key     TEXT,
    last_error     TEXT,
    created_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
);
CREATE INDEX jobs_due ON jobs (run_at_ms, id) WHERE state = 'available';
CREATE INDEX jobs_leased ON jobs (lease_until_ms) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at_ms) WHERE state IN ('succeeded', 'dead');
CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running');

-- The events outbox: written in the same database transaction as the change
-- it describes; webhooks deliver from here.
CREATE TABLE events (
    id            TEXT PRIMARY KEY,                -- evt_…
    type          TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    environment   TEXT NOT NULL CHECK (environment IN ('sandbox', 'live')),
    api_version   TEXT NOT NULL,
    data          TEXT NOT NULL,                   -- JSON: {"object": …}
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX events_account ON events (account_id, created_at_ms, id);
