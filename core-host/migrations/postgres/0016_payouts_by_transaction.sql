-- A payment's status by tx_id finds its payout by the hold's transaction (postgres).
CREATE INDEX payouts_transaction ON payouts (transaction_id);
