-- Transactions may be PENDING: funds held while the money is on its way (a
-- payout on its rail). Kept in step with migrations/sqlite/0007_transaction_pending.sql.
ALTER TABLE transactions DROP CONSTRAINT transactions_status_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_status_check
    CHECK (status IN ('PENDING', 'SETTLED', 'PENDING_REVIEW', 'DECLINED', 'VOIDED', 'EXPIRED'));
