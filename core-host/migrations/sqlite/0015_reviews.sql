-- Reviews of money held by a review verdict (sqlite). Kept in step with the
-- other backend's 0015_reviews.sql.

-- One row per review verdict: what is held (a transfer's hold, or a payout
-- and its hold), why, and how it ended. Closed once: every close is an
-- update guarded on status = 'open', in the transaction that moves the money.
CREATE TABLE reviews (
    id             TEXT PRIMARY KEY,                         -- rev_…
    environment    TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    subject        TEXT NOT NULL CHECK (subject IN ('transfer', 'payout')),
    transaction_id INTEGER NOT NULL,                          -- the hold
    payout_id      TEXT,                                     -- subject = 'payout'
    amount_minor   INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    parties        TEXT NOT NULL,                            -- JSON, masked
    rules          TEXT NOT NULL,                            -- JSON: rules_applied
    reasons        TEXT NOT NULL,                            -- JSON: the rules' reason codes
    score_bp       INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('open', 'approved', 'declined', 'expired')),
    on_expiry      TEXT NOT NULL CHECK (on_expiry IN ('void', 'approve')),  -- the rules' policy
    closed_by      TEXT,                                     -- key id, or 'system' for an expiry
    note           TEXT,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    closed_at_ms   INTEGER
);
CREATE INDEX reviews_list ON reviews (account_id, environment, created_at_ms, id);
CREATE INDEX reviews_due ON reviews (status, expires_at_ms);
CREATE UNIQUE INDEX reviews_transaction ON reviews (transaction_id);
