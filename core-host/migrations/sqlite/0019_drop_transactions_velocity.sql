-- The velocity facts are read from velocity_buckets (0017); nothing reads
-- transactions by (from_wallet, created_at_ms) any more, and every transfer
-- paid for keeping that index (one more B-tree page in each commit).
DROP INDEX IF EXISTS transactions_velocity;
