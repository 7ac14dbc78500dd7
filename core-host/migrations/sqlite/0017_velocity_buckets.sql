-- Velocity facts kept as they happen (sqlite): per source wallet, the count
-- and sum of its counted transactions (status SETTLED or PENDING_REVIEW) per
-- minute and per hour of creation. Triggers keep them in the same database
-- transaction as the change, whichever code path writes it, so the fraud
-- facts are read from at most 60 + 24 rows instead of a scan of the history.
CREATE TABLE velocity_buckets (
    wallet_id BIGINT NOT NULL,
    width_ms BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    count BIGINT NOT NULL,
    sum_minor BIGINT NOT NULL,
    PRIMARY KEY (wallet_id, width_ms, start_ms)
);

INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
SELECT from_wallet, 60000, created_at_ms - created_at_ms % 60000, COUNT(*), SUM(amount_minor)
FROM transactions WHERE from_wallet IS NOT NULL AND status IN ('SETTLED', 'PENDING_REVIEW')
GROUP BY from_wallet, created_at_ms - created_at_ms % 60000;
INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
SELECT from_wallet, 3600000, created_at_ms - created_at_ms % 3600000, COUNT(*), SUM(amount_minor)
FROM transactions WHERE from_wallet IS NOT NULL AND status IN ('SETTLED', 'PENDING_REVIEW')
GROUP BY from_wallet, created_at_ms - created_at_ms % 3600000;

-- A counted transaction is written.
CREATE TRIGGER velocity_on_insert AFTER INSERT ON transactions
WHEN NEW.from_wallet IS NOT NULL AND NEW.status IN ('SETTLED', 'PENDING_REVIEW')
BEGIN
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
    VALUES (NEW.from_wallet, 60000, NEW.created_at_ms - NEW.created_at_ms % 60000, 1, NEW.amount_minor)
    ON CONFLICT (wallet_id, width_ms, start_ms)
    DO UPDATE SET count = count + excluded.count, sum_minor = sum_minor + excluded.sum_minor;
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
    VALUES (NEW.from_wallet, 3600000, NEW.created_at_ms - NEW.created_at_ms % 3600000, 1, NEW.amount_minor)
    ON CONFLICT (wallet_id, width_ms, start_ms)
    DO UPDATE SET count = count + excluded.count, sum_minor = sum_minor + excluded.sum_minor;
END;

-- A transaction becomes counted (a hold posted: PENDING -> SETTLED).
CREATE TRIGGER velocity_on_counted AFTER UPDATE OF status ON transactions
WHEN NEW.from_wallet IS NOT NULL AND NEW.status IN ('SETTLED', 'PENDING_REVIEW')
    AND OLD.status NOT IN ('SETTLED', 'PENDING_REVIEW')
BEGIN
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
    VALUES (NEW.from_wallet, 60000, NEW.created_at_ms - NEW.created_at_ms % 60000, 1, NEW.amount_minor)
    ON CONFLICT (wallet_id, width_ms, start_ms)
    DO UPDATE SET count = count + excluded.count, sum_minor = sum_minor + excluded.sum_minor;
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
    VALUES (NEW.from_wallet, 3600000, NEW.created_at_ms - NEW.created_at_ms % 3600000, 1, NEW.amount_minor)
    ON CONFLICT (wallet_id, width_ms, start_ms)
    DO UPDATE SET count = count + excluded.count, sum_minor = sum_minor + excluded.sum_minor;
END;

-- A transaction stops being counted (voided, declined, expired, reviewed into a held payout).
CREATE TRIGGER velocity_on_uncounted AFTER UPDATE OF status ON transactions
WHEN NEW.from_wallet IS NOT NULL AND OLD.status IN ('SETTLED', 'PENDING_REVIEW')
    AND NEW.status NOT IN ('SETTLED', 'PENDING_REVIEW')
BEGIN
    UPDATE velocity_buckets SET count = count - 1, sum_minor = sum_minor - NEW.amount_minor
    WHERE wallet_id = NEW.from_wallet AND width_ms = 60000 AND start_ms = NEW.created_at_ms - NEW.created_at_ms % 60000;
    UPDATE velocity_buckets SET count = count - 1, sum_minor = sum_minor - NEW.amount_minor
    WHERE wallet_id = NEW.from_wallet AND width_ms = 3600000
        AND start_ms = NEW.created_at_ms - NEW.created_at_ms % 3600000;
END;
