-- A transaction's status beside each account's row of it (postgres), so a
-- status filter has an index of its own. Kept in step with
-- migrations/sqlite/0012_account_transaction_status.sql.
ALTER TABLE account_transactions ADD COLUMN status TEXT NOT NULL DEFAULT 'SETTLED';
UPDATE account_transactions SET status = (SELECT t.status FROM transactions t WHERE t.id = account_transactions.transaction_id);
CREATE INDEX account_transactions_status ON account_transactions (account_id, environment, status, created_at_ms, transaction_id);
