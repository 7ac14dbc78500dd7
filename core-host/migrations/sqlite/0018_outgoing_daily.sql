-- What each account sent per currency per UTC day (sqlite): the sum of its
-- outgoing transactions (transfer, payout, withdrawal) that are settled, on
-- their way or held (SETTLED, PENDING, PENDING_REVIEW), kept by triggers in
-- the same database transaction as every insert and status change, so the
-- daily limit reads one row instead of summing the day's history.
CREATE TABLE outgoing_daily (
    account_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    day_start_ms BIGINT NOT NULL,
    sum_minor BIGINT NOT NULL,
    PRIMARY KEY (account_id, currency, day_start_ms)
);

INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
SELECT account_id, currency, created_at_ms - created_at_ms % 86400000, SUM(amount_minor)
FROM transactions
WHERE kind IN ('transfer', 'payout', 'withdrawal') AND status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
GROUP BY account_id, currency, created_at_ms - created_at_ms % 86400000;

CREATE TRIGGER outgoing_daily_on_insert AFTER INSERT ON transactions
WHEN NEW.kind IN ('transfer', 'payout', 'withdrawal') AND NEW.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
    VALUES (NEW.account_id, NEW.currency, NEW.created_at_ms - NEW.created_at_ms % 86400000, NEW.amount_minor)
    ON CONFLICT (account_id, currency, day_start_ms) DO UPDATE SET sum_minor = sum_minor + excluded.sum_minor;
END;

CREATE TRIGGER outgoing_daily_on_counted AFTER UPDATE OF status ON transactions
WHEN NEW.kind IN ('transfer', 'payout', 'withdrawal') AND NEW.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
    AND OLD.status NOT IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
    VALUES (NEW.account_id, NEW.currency, NEW.created_at_ms - NEW.created_at_ms % 86400000, NEW.amount_minor)
    ON CONFLICT (account_id, currency, day_start_ms) DO UPDATE SET sum_minor = sum_minor + excluded.sum_minor;
END;

CREATE TRIGGER outgoing_daily_on_uncounted AFTER UPDATE OF status ON transactions
WHEN NEW.kind IN ('transfer', 'payout', 'withdrawal') AND OLD.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
    AND NEW.status NOT IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
BEGIN
    UPDATE outgoing_daily SET sum_minor = sum_minor - NEW.amount_minor
    WHERE account_id = NEW.account_id AND currency = NEW.currency
        AND day_start_ms = NEW.created_at_ms - NEW.created_at_ms % 86400000;
END;
