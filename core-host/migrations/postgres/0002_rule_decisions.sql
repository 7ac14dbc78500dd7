-- Decision log: one row per rule call (PostgreSQL).
CREATE TABLE rule_decisions (
    id             TEXT PRIMARY KEY,              -- dec_…
    transaction_id BIGINT,
    account_id     TEXT NOT NULL,
    plugin_name    TEXT NOT NULL,
    plugin_version TEXT NOT NULL,
    plugin_sha256  TEXT NOT NULL,
    input          TEXT NOT NULL,                 -- JSON, personal data masked
    output         TEXT,                          -- JSON decision; NULL when the rule failed
    failure        TEXT,                          -- out_of_fuel, deadline_exceeded, trap, …
    policy         TEXT,                          -- the failure policy applied
    stdio          TEXT,                          -- what a WASI plugin printed (bounded)
    fuel_used      BIGINT NOT NULL,
    latency_us     BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
CREATE INDEX rule_decisions_transaction ON rule_decisions (transaction_id);
CREATE INDEX rule_decisions_account ON rule_decisions (account_id, created_at_ms);
