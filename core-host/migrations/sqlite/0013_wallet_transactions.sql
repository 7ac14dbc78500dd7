-- Every wallet a transaction's legs touch (sqlite), so the wallet filter has
-- an index of its own. Kept in step with migrations/postgres/0013_wallet_transactions.sql.
CREATE TABLE wallet_transactions (
    wallet_id      INTEGER NOT NULL,
    transaction_id INTEGER NOT NULL REFERENCES transactions (id),
    account_id     TEXT NOT NULL,                  -- the wallet's owner
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (wallet_id, transaction_id)
);
CREATE INDEX wallet_transactions_created ON wallet_transactions (wallet_id, created_at_ms, transaction_id);

INSERT INTO wallet_transactions (wallet_id, transaction_id, account_id, created_at_ms)
SELECT DISTINCT w.id, t.id, w.owner_account_id, t.created_at_ms
FROM transactions t
JOIN transfers tr ON tr.transaction_id = t.id
JOIN ledger_accounts w ON w.id = tr.debit_account_id OR w.id = tr.credit_account_id
WHERE w.kind = 'wallet' AND w.owner_account_id IS NOT NULL
ON CONFLICT DO NOTHING;
