-- A recording's velocity buckets in one order: the per-statement insert
-- trigger took them in the order its hash aggregate emitted them (for some
-- keys the hour bucket before the minute bucket), while a status change
-- (a hold declined, a payout settled) takes the minute bucket first. A
-- recording and a resolution on one wallet could then each hold one bucket
-- and wait for the other: a deadlock, rolled back after PostgreSQL's
-- deadlock_timeout. Rows are now upserted by (wallet, width, start), the
-- order the status trigger uses; the daily totals likewise.
CREATE OR REPLACE FUNCTION velocity_track_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
    SELECT i.from_wallet, w.width_ms, i.created_at_ms - i.created_at_ms % w.width_ms, COUNT(*), SUM(i.amount_minor)
    FROM inserted AS i CROSS JOIN (VALUES (60000::BIGINT), (3600000::BIGINT)) AS w(width_ms)
    WHERE i.from_wallet IS NOT NULL AND i.status IN ('SETTLED', 'PENDING_REVIEW')
    GROUP BY i.from_wallet, w.width_ms, i.created_at_ms - i.created_at_ms % w.width_ms
    ORDER BY 1, 2, 3
    ON CONFLICT (wallet_id, width_ms, start_ms) DO UPDATE
    SET count = velocity_buckets.count + EXCLUDED.count,
        sum_minor = velocity_buckets.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION outgoing_daily_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO outgoing_daily (account_id, currency, day_start_ms, stripe, sum_minor)
    SELECT i.account_id, i.currency, i.created_at_ms - i.created_at_ms % 86400000, i.id % 32, SUM(i.amount_minor)
    FROM inserted AS i
    WHERE i.kind IN ('transfer', 'payout', 'withdrawal') AND i.status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')
    GROUP BY i.account_id, i.currency, i.created_at_ms - i.created_at_ms % 86400000, i.id % 32
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, currency, day_start_ms, stripe) DO UPDATE
    SET sum_minor = outgoing_daily.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
