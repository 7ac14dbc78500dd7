-- Every transaction an account sees (postgres). Kept in step with migrations/sqlite/0011_account_transactions.sql.

-- One row per (account, transaction) for the account that made it and for
-- each account whose wallet it touched (a transfer in, a deposit), written
-- in the transaction's own database transaction. The list and the export
-- page through it by (created, id) on an index per filter; what can change
-- (the status) is read from transactions.
CREATE TABLE account_transactions (
    account_id     TEXT NOT NULL,
    environment    TEXT NOT NULL,
    transaction_id BIGINT NOT NULL REFERENCES transactions (id),
    kind           TEXT NOT NULL,
    currency       TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (account_id, transaction_id)
);
CREATE INDEX account_transactions_created ON account_transactions (account_id, environment, created_at_ms, transaction_id);
CREATE INDEX account_transactions_kind ON account_transactions (account_id, environment, kind, created_at_ms, transaction_id);
CREATE INDEX account_transactions_currency ON account_transactions (account_id, environment, currency, created_at_ms, transaction_id);

INSERT INTO account_transactions (account_id, environment, transaction_id, kind, currency, amount_minor, created_at_ms)
SELECT account_id, environment, id, kind, currency, amount_minor, created_at_ms FROM transactions;
INSERT INTO account_transactions (account_id, environment, transaction_id, kind, currency, amount_minor, created_at_ms)
SELECT DISTINCT w.owner_account_id, t.environment, t.id, t.kind, t.currency, t.amount_minor, t.created_at_ms
FROM transactions t
JOIN transfers tr ON tr.transaction_id = t.id
JOIN ledger_accounts w ON w.id = tr.debit_account_id OR w.id = tr.credit_account_id
WHERE w.kind = 'wallet' AND w.owner_account_id IS NOT NULL AND w.owner_account_id <> t.account_id
ON CONFLICT DO NOTHING;
