-- Payouts (SQLite). Kept in step with migrations/postgres/0006_payouts.sql.

-- One row per payout. The money is held in the ledger (transaction_id) from
-- creation until the rail's answer posts or voids it. The recipient's
-- account is stored in canonical form and shown masked.
CREATE TABLE payouts (
    id                       TEXT PRIMARY KEY,                 -- pyt_…
    environment              TEXT NOT NULL,
    account_id               TEXT NOT NULL,
    status                   TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'succeeded', 'failed', 'canceled')),
    status_reason            TEXT,                             -- review, …
    method                   TEXT NOT NULL CHECK (method IN ('bank', 'mpesa')),
    wallet_id                INTEGER NOT NULL,
    amount_minor             INTEGER NOT NULL,
    currency                 TEXT NOT NULL,
    fee_minor                INTEGER NOT NULL,
    destination_country      TEXT NOT NULL,
    destination_amount_minor INTEGER NOT NULL,
    destination_currency     TEXT NOT NULL,
    fx_rate                  TEXT,                             -- destination units per source unit
    recipient_name           TEXT NOT NULL,
    recipient_account        TEXT NOT NULL,                    -- canonical IBAN or MSISDN
    description              TEXT,
    metadata                 TEXT NOT NULL DEFAULT '{}',
    transaction_id           INTEGER,                          -- the ledger hold
    rail_state               TEXT NOT NULL CHECK (rail_state IN ('unsubmitted', 'submitting', 'submitted', 'answered')),
    rail_reference           TEXT,                             -- pain.001 MsgId, Daraja ConversationID
    rail_status              TEXT,                             -- last status the rail gave (ACCP, ACSC, 0, 2001 …)
    rail_receipt             TEXT,                             -- M-Pesa TransactionID
    failure_code             TEXT,
    failure_message          TEXT,
    idempotency_id           TEXT UNIQUE,
    created_at_ms            INTEGER NOT NULL,
    updated_at_ms            INTEGER NOT NULL
);
CREATE INDEX payouts_list ON payouts (account_id, environment, created_at_ms, id);
CREATE INDEX payouts_open ON payouts (status, method);

-- Every status a payout took, with when and why.
CREATE TABLE payout_status_history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    payout_id TEXT NOT NULL REFERENCES payouts (id),
    status    TEXT NOT NULL,
    reason    TEXT,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX payout_status_history_payout ON payout_status_history (payout_id, id);

-- Messages exchanged with rails (audit; dedupe_key makes ingestion idempotent).
CREATE TABLE rail_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rail        TEXT NOT NULL,                                 -- bank, mpesa
    direction   TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    kind        TEXT NOT NULL,                                 -- pain.001, pain.002, b2c.request, b2c.result …
    payout_id   TEXT,
    dedupe_key  TEXT UNIQUE,
    body        TEXT NOT NULL,
    at_ms       INTEGER NOT NULL
);
CREATE INDEX rail_messages_payout ON rail_messages (payout_id, id);

-- Where reading a rail's report feed got to.
CREATE TABLE rail_cursors (
    rail   TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
