-- Customer accounts with KYC (sqlite). Kept in step with migrations/postgres/0010_accounts.sql.

-- A platform account (the owner of API keys) has customer accounts under
-- it. Profile fields are JSON; the national id or passport number is
-- sealed (ChaCha20-Poly1305, key derived from the installation's secrets).
ALTER TABLE accounts ADD COLUMN platform_account_id TEXT REFERENCES accounts (id);
ALTER TABLE accounts ADD COLUMN account_type TEXT NOT NULL DEFAULT 'platform'
    CHECK (account_type IN ('platform', 'individual', 'business'));
ALTER TABLE accounts ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN id_number_sealed TEXT;
ALTER TABLE accounts ADD COLUMN verification_status TEXT NOT NULL DEFAULT 'unverified'
    CHECK (verification_status IN ('unverified', 'pending', 'verified', 'rejected'));
ALTER TABLE accounts ADD COLUMN verification_reasons TEXT NOT NULL DEFAULT '[]';
ALTER TABLE accounts ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN updated_at_ms INTEGER;
-- Accounts before this migration are platforms, verified at onboarding;
-- level 3 (enhanced) carries no transaction limits by default.
UPDATE accounts SET verification_status = 'verified', kyc_level = 3, updated_at_ms = created_at_ms;
CREATE INDEX accounts_platform ON accounts (platform_account_id, environment, created_at_ms, id);

-- Every verification status an account went through.
CREATE TABLE account_verifications (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    status        TEXT NOT NULL,
    reasons       TEXT NOT NULL DEFAULT '[]',           -- JSON array of codes
    check_id      TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX account_verifications_account ON account_verifications (account_id, id);
INSERT INTO account_verifications (account_id, status, created_at_ms)
SELECT id, 'verified', created_at_ms FROM accounts;

-- Checks sent to the KYC provider. Our id is the reference the provider
-- keys on, so a retried submission finds the check it created.
CREATE TABLE kyc_checks (
    id                TEXT PRIMARY KEY,                 -- kyc_…
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    provider_check_id TEXT,
    state             TEXT NOT NULL CHECK (state IN ('submitting', 'pending', 'complete', 'superseded')),
    outcome           TEXT,                             -- provider's answer (JSON), once complete
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL
);
CREATE INDEX kyc_checks_account ON kyc_checks (account_id, created_at_ms);

-- An account's transactions by time: limits (what it paid out today) and
-- the transactions list.
CREATE INDEX transactions_account ON transactions (account_id, environment, created_at_ms, id);
