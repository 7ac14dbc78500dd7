-- Two costs every transfer paid for nothing.
--
-- transactions_account: every list of an account's transactions reads
-- account_transactions (0011); nothing reads transactions by
-- (account_id, environment, created_at_ms) any more, and each insert kept
-- that index (one more B-tree page in each commit).
DROP INDEX IF EXISTS transactions_account;

-- The daily-outgoing triggers (0018) tested `x IN ('a', 'b', 'c')`. SQLite
-- evaluates a constant list of more than two values by building a
-- temporary index of it, every time the trigger fires: a B-tree opened,
-- filled and freed twice per transfer in the ledger writer. The same
-- conditions as chains of equalities (kind and status are NOT NULL, so
-- NOT (… OR …) is NOT IN) cost a few comparisons.
DROP TRIGGER IF EXISTS outgoing_daily_on_insert;
DROP TRIGGER IF EXISTS outgoing_daily_on_counted;
DROP TRIGGER IF EXISTS outgoing_daily_on_uncounted;

CREATE TRIGGER outgoing_daily_on_insert AFTER INSERT ON transactions
WHEN (NEW.kind = 'transfer' OR NEW.kind = 'payout' OR NEW.kind = 'withdrawal')
    AND (NEW.status = 'SETTLED' OR NEW.status = 'PENDING' OR NEW.status = 'PENDING_REVIEW')
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
    VALUES (NEW.account_id, NEW.currency, NEW.created_at_ms - NEW.created_at_ms % 86400000, NEW.amount_minor)
    ON CONFLICT (account_id, currency, day_start_ms) DO UPDATE SET sum_minor = sum_minor + excluded.sum_minor;
END;

CREATE TRIGGER outgoing_daily_on_counted AFTER UPDATE OF status ON transactions
WHEN (NEW.kind = 'transfer' OR NEW.kind = 'payout' OR NEW.kind = 'withdrawal')
    AND (NEW.status = 'SETTLED' OR NEW.status = 'PENDING' OR NEW.status = 'PENDING_REVIEW')
    AND NOT (OLD.status = 'SETTLED' OR OLD.status = 'PENDING' OR OLD.status = 'PENDING_REVIEW')
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
    VALUES (NEW.account_id, NEW.currency, NEW.created_at_ms - NEW.created_at_ms % 86400000, NEW.amount_minor)
    ON CONFLICT (account_id, currency, day_start_ms) DO UPDATE SET sum_minor = sum_minor + excluded.sum_minor;
END;

CREATE TRIGGER outgoing_daily_on_uncounted AFTER UPDATE OF status ON transactions
WHEN (NEW.kind = 'transfer' OR NEW.kind = 'payout' OR NEW.kind = 'withdrawal')
    AND (OLD.status = 'SETTLED' OR OLD.status = 'PENDING' OR OLD.status = 'PENDING_REVIEW')
    AND NOT (NEW.status = 'SETTLED' OR NEW.status = 'PENDING' OR NEW.status = 'PENDING_REVIEW')
BEGIN
    UPDATE outgoing_daily SET sum_minor = sum_minor - NEW.amount_minor
    WHERE account_id = NEW.account_id AND currency = NEW.currency
        AND day_start_ms = NEW.created_at_ms - NEW.created_at_ms % 86400000;
END;
