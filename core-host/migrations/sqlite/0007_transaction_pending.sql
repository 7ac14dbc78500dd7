-- Transactions may be PENDING: funds held while the money is on its way (a
-- payout on its rail). SQLite cannot change a CHECK constraint in place, and
-- sqlx runs this inside a transaction (foreign keys stay on), so the table
-- and the one table referring to it (transfers) are rebuilt together: both
-- renamed aside (references follow the renames), recreated under their
-- names, filled with the same rows and ids, and the old ones dropped, child
-- first. Foreign keys are checked at commit.
-- Kept in step with migrations/postgres/0007_transaction_pending.sql.
PRAGMA defer_foreign_keys = ON;
ALTER TABLE transfers RENAME TO transfers_before_0007;
ALTER TABLE transactions RENAME TO transactions_before_0007;
DROP INDEX transactions_velocity;
DROP INDEX transfers_transaction;
DROP INDEX transfers_open_pending;

CREATE TABLE transactions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_id  TEXT UNIQUE,
    environment     TEXT NOT NULL,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    kind            TEXT NOT NULL CHECK (kind IN ('transfer', 'deposit', 'withdrawal', 'payout', 'funding')),
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'SETTLED', 'PENDING_REVIEW', 'DECLINED', 'VOIDED', 'EXPIRED')),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    currency        TEXT NOT NULL,
    to_amount_minor INTEGER,
    to_currency     TEXT,
    fx_rate         TEXT,
    fee_minor       INTEGER NOT NULL DEFAULT 0,
    from_wallet     INTEGER REFERENCES ledger_accounts (id),
    to_wallet       INTEGER REFERENCES ledger_accounts (id),
    risk_score_bp   INTEGER,
    rules_applied   TEXT NOT NULL DEFAULT '[]',
    metadata        TEXT NOT NULL DEFAULT '{}',
    error_code      TEXT,
    created_at_ms   INTEGER NOT NULL
);
INSERT INTO transactions SELECT * FROM transactions_before_0007;
-- Ids keep starting above 10000.
UPDATE sqlite_sequence SET seq = MAX(seq, 10000) WHERE name = 'transactions';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'transactions', 10000 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'transactions');
CREATE INDEX transactions_velocity ON transactions (from_wallet, created_at_ms);

CREATE TABLE transfers (
    id                INTEGER PRIMARY KEY,
    transaction_id    INTEGER NOT NULL REFERENCES transactions (id),
    kind              TEXT NOT NULL CHECK (kind IN ('posted', 'pending', 'post_pending', 'void_pending')),
    debit_account_id  INTEGER NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id INTEGER NOT NULL REFERENCES ledger_accounts (id),
    amount_minor      INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer' AND amount_minor >= 0),
    currency          TEXT NOT NULL,
    pending_id        INTEGER UNIQUE REFERENCES transfers (id),
    timeout_at_ms     INTEGER,
    created_at_ms     INTEGER NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL))
);
CREATE INDEX transfers_transaction ON transfers (transaction_id);
CREATE INDEX transfers_open_pending ON transfers (timeout_at_ms) WHERE kind = 'pending';
INSERT INTO transfers SELECT * FROM transfers_before_0007;

DROP TABLE transfers_before_0007;
DROP TABLE transactions_before_0007;
