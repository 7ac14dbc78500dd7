-- Nixo schema (SQLite). Money is always INTEGER minor units; times are unix ms.
-- Kept in step with migrations/postgres/0001_foundation.sql.

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,               -- acct_…
    environment   TEXT NOT NULL CHECK (environment IN ('sandbox', 'live')),
    name          TEXT NOT NULL,
    kyc_level     INTEGER NOT NULL DEFAULT 0 CHECK (kyc_level BETWEEN 0 AND 3),
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,              -- key_…
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    environment    TEXT NOT NULL CHECK (environment IN ('sandbox', 'live')),
    key_hash       BLOB NOT NULL UNIQUE,          -- HMAC-SHA256(pepper, key); never the key
    display_prefix TEXT NOT NULL,                 -- e.g. sk_sandbox_Ab3x…
    created_at_ms  INTEGER NOT NULL,
    revoked_at_ms  INTEGER
);

-- Ledger accounts: customer wallets (the integer wallet ids of the API) and
-- system accounts. Automatic ids start above 1000; wallets 101/102 are pinned.
CREATE TABLE ledger_accounts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_account_id TEXT REFERENCES accounts (id),
    environment      TEXT NOT NULL CHECK (environment IN ('sandbox', 'live')),
    kind             TEXT NOT NULL CHECK (kind IN ('wallet', 'funding', 'fx_liquidity', 'fees',
                                                  'mpesa_clearing', 'bank_clearing')),
    currency         TEXT NOT NULL CHECK (length(currency) = 3),
    -- bit 0: debits must not exceed credits (no overdraft)
    flags            INTEGER NOT NULL DEFAULT 0,
    debits_pending   INTEGER NOT NULL DEFAULT 0 CHECK (typeof(debits_pending) = 'integer' AND debits_pending >= 0),
    debits_posted    INTEGER NOT NULL DEFAULT 0 CHECK (typeof(debits_posted) = 'integer' AND debits_posted >= 0),
    credits_pending  INTEGER NOT NULL DEFAULT 0 CHECK (typeof(credits_pending) = 'integer' AND credits_pending >= 0),
    credits_posted   INTEGER NOT NULL DEFAULT 0 CHECK (typeof(credits_posted) = 'integer' AND credits_posted >= 0),
    created_at_ms    INTEGER NOT NULL,
    CHECK ((flags & 1) = 0 OR debits_posted + debits_pending <= credits_posted)
);
INSERT INTO sqlite_sequence (name, seq) VALUES ('ledger_accounts', 1000);
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner_account_id, currency);
CREATE UNIQUE INDEX ledger_accounts_system ON ledger_accounts (environment, kind, currency)
    WHERE kind <> 'wallet';

-- What a client sees: one row per payment operation. Ids start above 10000.
CREATE TABLE transactions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Client-derivable identity (e.g. from the Idempotency-Key): a retry
    -- with the same identity finds this row instead of applying twice.
    idempotency_id  TEXT UNIQUE,
    environment     TEXT NOT NULL,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    kind            TEXT NOT NULL CHECK (kind IN ('transfer', 'deposit', 'withdrawal', 'payout', 'funding')),
    status          TEXT NOT NULL CHECK (status IN ('SETTLED', 'PENDING_REVIEW', 'DECLINED', 'VOIDED', 'EXPIRED')),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
    currency        TEXT NOT NULL,
    -- Cross-currency: what the destination receives, the rate used
    -- (exact decimal text, destination units per source unit) and the fee.
    to_amount_minor INTEGER,
    to_currency     TEXT,
    fx_rate         TEXT,
    fee_minor       INTEGER NOT NULL DEFAULT 0,
    from_wallet     INTEGER REFERENCES ledger_accounts (id),
    to_wallet       INTEGER REFERENCES ledger_accounts (id),
    risk_score_bp   INTEGER,
    rules_applied   TEXT NOT NULL DEFAULT '[]',  -- JSON array of "Rule: VERDICT"
    metadata        TEXT NOT NULL DEFAULT '{}',  -- JSON object
    error_code      TEXT,
    created_at_ms   INTEGER NOT NULL
);
INSERT INTO sqlite_sequence (name, seq) VALUES ('transactions', 10000);
CREATE INDEX transactions_velocity ON transactions (from_wallet, created_at_ms);

-- Immutable double-entry transfers. `kind`: posted (moves money now),
-- pending (holds it), post_pending / void_pending (resolve one pending
-- transfer, named by pending_id; at most one resolution each).
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

-- Exchange rates: every rate ever set is kept; the latest one applies.
CREATE TABLE fx_rates (
    id             INTEGER PRIMARY KEY,
    base_currency  TEXT NOT NULL,
    quote_currency TEXT NOT NULL,
    rate           TEXT NOT NULL,                 -- exact decimal: quote units per base unit
    fee_bp         INTEGER NOT NULL DEFAULT 0 CHECK (fee_bp BETWEEN 0 AND 10000),
    set_at_ms      INTEGER NOT NULL
);
CREATE INDEX fx_rates_latest ON fx_rates (base_currency, quote_currency, set_at_ms);
