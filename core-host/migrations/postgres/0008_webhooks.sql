-- Webhooks (PostgreSQL). Kept in step with migrations/sqlite/0008_webhooks.sql.

-- Where an account wants its events. The signing secret is stored sealed
-- (ChaCha20-Poly1305 under a key derived from the installation's pepper);
-- during a rotation the previous one signs too until it expires.
CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,          -- we_…
    account_id                  TEXT NOT NULL,
    environment                 TEXT NOT NULL CHECK (environment IN ('sandbox', 'live')),
    url                         TEXT NOT NULL,
    description                 TEXT,
    enabled_events              TEXT NOT NULL,             -- JSON array: ["*"] or event types
    api_version                 TEXT,
    metadata                    TEXT NOT NULL DEFAULT '{}',
    status                      TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
    disabled_reason             TEXT,
    secret_sealed               TEXT NOT NULL,
    previous_secret_sealed      TEXT,
    previous_secret_expires_at_ms BIGINT,
    failing_since_ms            BIGINT,                   -- first failure of the current streak
    deleted_at_ms               BIGINT,
    created_at_ms               BIGINT NOT NULL,
    updated_at_ms               BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, environment, created_at_ms, id);

-- Every delivery attempt.
CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY,                     -- wha_…
    endpoint_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    http_status      BIGINT,
    latency_ms       BIGINT NOT NULL,
    error            TEXT,
    next_retry_at_ms BIGINT,
    created_at_ms    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, created_at_ms, id);

-- Events not yet handed to the endpoints' delivery jobs.
ALTER TABLE events ADD COLUMN dispatched_at_ms BIGINT;
CREATE INDEX events_undispatched ON events (created_at_ms, id) WHERE dispatched_at_ms IS NULL;
CREATE INDEX events_created ON events (created_at_ms);
