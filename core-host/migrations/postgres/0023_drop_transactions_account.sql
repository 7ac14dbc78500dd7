-- Every list of an account's transactions reads account_transactions;
-- nothing reads transactions by (account_id, environment, created_at_ms)
-- any more, and every insert paid for keeping that index.
DROP INDEX IF EXISTS transactions_account;
