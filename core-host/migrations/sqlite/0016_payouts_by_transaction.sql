-- A payment's status by tx_id finds its payout by the hold's transaction (sqlite).
CREATE INDEX payouts_transaction ON payouts (transaction_id);
