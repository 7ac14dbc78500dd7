-- Velocity buckets in 8 stripes per (wallet, width, start), picked by the
-- transaction's id, as the daily totals are (0020): every transfer from one
-- wallet otherwise waited on that wallet's minute and hour rows, whose locks
-- its insert took first and held to its commit, so a busy wallet's
-- transfers ran one at a time. The velocity read sums the stripes (at most
-- (60 + 24) × 8 rows). A status change moves the stripe its insert counted
-- in (the same id). Rows are upserted in (wallet, width, start, stripe)
-- order, the order the status trigger uses (0021: no deadlock between them).
ALTER TABLE velocity_buckets ADD COLUMN stripe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE velocity_buckets DROP CONSTRAINT velocity_buckets_pkey;
ALTER TABLE velocity_buckets ADD PRIMARY KEY (wallet_id, width_ms, start_ms, stripe);

CREATE OR REPLACE FUNCTION velocity_track_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, stripe, count, sum_minor)
    SELECT i.from_wallet, w.width_ms, i.created_at_ms - i.created_at_ms % w.width_ms, i.id % 8,
           COUNT(*), SUM(i.amount_minor)
    FROM inserted AS i CROSS JOIN (VALUES (60000::BIGINT), (3600000::BIGINT)) AS w(width_ms)
    WHERE i.from_wallet IS NOT NULL AND i.status IN ('SETTLED', 'PENDING_REVIEW')
    GROUP BY i.from_wallet, w.width_ms, i.created_at_ms - i.created_at_ms % w.width_ms, i.id % 8
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (wallet_id, width_ms, start_ms, stripe) DO UPDATE
    SET count = velocity_buckets.count + EXCLUDED.count,
        sum_minor = velocity_buckets.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION velocity_track() RETURNS trigger AS $$
DECLARE
    was_counted BOOLEAN := TG_OP = 'UPDATE' AND OLD.status IN ('SETTLED', 'PENDING_REVIEW');
    is_counted BOOLEAN := NEW.status IN ('SETTLED', 'PENDING_REVIEW');
    step BIGINT;
BEGIN
    IF NEW.from_wallet IS NULL OR was_counted = is_counted THEN
        RETURN NULL;
    END IF;
    step := CASE WHEN is_counted THEN 1 ELSE -1 END;
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, stripe, count, sum_minor)
    SELECT NEW.from_wallet, w, NEW.created_at_ms - NEW.created_at_ms % w, NEW.id % 8, step, step * NEW.amount_minor
    FROM (VALUES (60000::BIGINT), (3600000::BIGINT)) AS widths(w)
    ORDER BY 2
    ON CONFLICT (wallet_id, width_ms, start_ms, stripe) DO UPDATE
    SET count = velocity_buckets.count + EXCLUDED.count,
        sum_minor = velocity_buckets.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
