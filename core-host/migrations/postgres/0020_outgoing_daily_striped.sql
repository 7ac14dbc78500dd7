-- The daily outgoing totals in 32 stripes per (account, currency, day),
-- picked by the transaction's id: on PostgreSQL every writer of one account
-- otherwise waited on that account's single row (its lock held from the
-- transaction's insert to its commit), so an account's transfers from
-- different wallets ran one at a time. The daily limit sums the stripes
-- (at most 32 rows). A transaction's status change moves the stripe its
-- insert counted in (the same id).
ALTER TABLE outgoing_daily ADD COLUMN stripe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outgoing_daily DROP CONSTRAINT outgoing_daily_pkey;
ALTER TABLE outgoing_daily ADD PRIMARY KEY (account_id, currency, day_start_ms, stripe);

CREATE OR REPLACE FUNCTION outgoing_daily_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, stripe, sum_minor)
    SELECT i.account_id, i.currency, i.created_at_ms - i.created_at_ms % 86400000, i.id % 32, SUM(i.amount_minor)
    FROM inserted AS i
    WHERE i.kind IN ('transfer', 'payout', 'withdrawal') AND i.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
    GROUP BY i.account_id, i.currency, i.created_at_ms - i.created_at_ms % 86400000, i.id % 32
    ON CONFLICT (account_id, currency, day_start_ms, stripe) DO UPDATE
    SET sum_minor = outgoing_daily.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION outgoing_daily_status() RETURNS trigger AS $$
DECLARE
    outgoing BOOLEAN := NEW.kind IN ('transfer', 'payout', 'withdrawal');
    was_counted BOOLEAN := OLD.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW');
    is_counted BOOLEAN := NEW.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW');
BEGIN
    IF NOT outgoing OR was_counted = is_counted THEN
        RETURN NULL;
    END IF;
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, stripe, sum_minor)
    VALUES (NEW.account_id, NEW.currency, NEW.created_at_ms - NEW.created_at_ms % 86400000, NEW.id % 32,
            CASE WHEN is_counted THEN NEW.amount_minor ELSE -NEW.amount_minor END)
    ON CONFLICT (account_id, currency, day_start_ms, stripe) DO UPDATE
    SET sum_minor = outgoing_daily.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
