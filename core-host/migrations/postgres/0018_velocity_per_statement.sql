-- Velocity buckets for inserted transactions, once per statement (postgres).
-- A row-level trigger updated the same minute and hour bucket once per row:
-- inside one statement (a bulk import of history) PostgreSQL cannot prune
-- the versions its own statement made, so each update walked a longer chain
-- and a 1,000,000-row insert ran for tens of minutes. Aggregating the
-- statement's new rows first gives each bucket one update per statement,
-- with the same counts: a one-row insert still costs one upsert per width.
DROP TRIGGER velocity_on_insert ON transactions;

CREATE FUNCTION velocity_track_inserted() RETURNS trigger AS $$
BEGIN
    INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor)
    SELECT i.from_wallet, w.width_ms, i.created_at_ms - i.created_at_ms % w.width_ms, COUNT(*), SUM(i.amount_minor)
    FROM inserted AS i CROSS JOIN (VALUES (60000::BIGINT), (3600000::BIGINT)) AS w(width_ms)
    WHERE i.from_wallet IS NOT NULL AND i.status IN ('SETTLED', 'PENDING_REVIEW')
    GROUP BY i.from_wallet, w.width_ms, i.created_at_ms - i.created_at_ms % w.width_ms
    ON CONFLICT (wallet_id, width_ms, start_ms) DO UPDATE
    SET count = velocity_buckets.count + EXCLUDED.count,
        sum_minor = velocity_buckets.sum_minor + EXCLUDED.sum_minor;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER velocity_on_insert AFTER INSERT ON transactions
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION velocity_track_inserted();
