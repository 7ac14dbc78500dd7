-- What each account sent per currency per UTC day (postgres): the sum of
-- its outgoing transactions (transfer, payout, withdrawal) that are settled,
-- on their way or held (SETTLED, PENDING, PENDING_REVIEW), kept by triggers
-- in the same database transaction as every insert (once per statement) and
-- status change, so the daily limit reads one row instead of summing the
-- day's history.
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

CREATE FUNCTION outgoing_daily_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
    SELECT i.account_id, i.currency, i.created_at_ms - i.created_at_ms % 86400000, SUM(i.amount_minor)
    FROM inserted AS i
    WHERE i.kind IN ('transfer', 'payout', 'withdrawal') AND i.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
    GROUP BY i.account_id, i.currency, i.created_at_ms - i.created_at_ms % 86400000
    ON CONFLICT (account_id, currency, day_start_ms) DO UPDATE
    SET sum_minor = outgoing_daily.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER outgoing_daily_on_insert AFTER INSERT ON transactions
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION outgoing_daily_inserted();

CREATE FUNCTION outgoing_daily_status() RETURNS trigger AS $$
DECLARE
    outgoing BOOLEAN := NEW.kind IN ('transfer', 'payout', 'withdrawal');
    was_counted BOOLEAN := OLD.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW');
    is_counted BOOLEAN := NEW.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW');
BEGIN
    IF NOT outgoing OR was_counted = is_counted THEN
        RETURN NULL;
    END IF;
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor)
    VALUES (NEW.account_id, NEW.currency, NEW.created_at_ms - NEW.created_at_ms % 86400000,
            CASE WHEN is_counted THEN NEW.amount_minor ELSE -NEW.amount_minor END)
    ON CONFLICT (account_id, currency, day_start_ms) DO UPDATE
    SET sum_minor = outgoing_daily.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER outgoing_daily_on_status AFTER UPDATE OF status ON transactions
FOR EACH ROW EXECUTE FUNCTION outgoing_daily_status();
