-- Webhook deliveries (SQLite). Kept in step with migrations/postgres/0009_webhook_deliveries.sql.

-- One row per delivery series of an event to an endpoint. Each endpoint has
-- at most one pump job, which delivers that endpoint's due rows with bounded
-- concurrency: a slow or dead endpoint holds one worker, never the pool.
CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id   TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    attempt       INTEGER NOT NULL,                  -- the number of the next (or last) attempt
    state         TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    run_at_ms     INTEGER NOT NULL,                  -- when the next attempt is due
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, run_at_ms, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at_ms) WHERE state <> 'pending';

-- Deliveries queued as jobs before this migration carry on as rows.
INSERT INTO webhook_deliveries (endpoint_id, event_id, attempt, state, run_at_ms, created_at_ms, updated_at_ms)
SELECT json_extract(payload, '$.endpoint_id'), json_extract(payload, '$.event_id'),
       COALESCE(json_extract(payload, '$.attempt'), 1), 'pending', run_at_ms, created_at_ms, created_at_ms
FROM jobs WHERE kind = 'webhook.deliver' AND state IN ('available', 'running');
DELETE FROM jobs WHERE kind = 'webhook.deliver' AND state IN ('available', 'running');
