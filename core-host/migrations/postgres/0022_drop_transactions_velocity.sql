-- The velocity facts are read from velocity_buckets; nothing reads
-- transactions by (from_wallet, created_at_ms) any more, and every transfer
-- paid for keeping that index.
DROP INDEX IF EXISTS transactions_velocity;
