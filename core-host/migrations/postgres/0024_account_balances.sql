-- An account's balances per currency (what GET /v1/balances answers and
-- every balance.updated event carries), kept as they change instead of
-- summed over all of the account's wallets each time (once per transfer,
-- for the event: the more wallets, the dearer every transfer). A trigger
-- keeps them in the same transaction as any change of a wallet; `nixo ledger
-- verify` compares them with the sum. In 32 stripes per (account,
-- currency), picked by the wallet's id: one row would make every transfer
-- of an account wait for the one before it to commit (its lock is held to
-- the commit), where wallets alone let them run side by side. A read sums
-- the stripes (at most 32 rows per currency).
-- Kept in step with migrations/sqlite/0022_account_balances.sql.
CREATE TABLE account_balances (
    account_id      TEXT NOT NULL,
    currency        TEXT NOT NULL,
    stripe          INTEGER NOT NULL,
    available_minor BIGINT NOT NULL,
    pending_minor   BIGINT NOT NULL,
    reserved_minor  BIGINT NOT NULL,
    PRIMARY KEY (account_id, currency, stripe)
);

INSERT INTO account_balances (account_id, currency, stripe, available_minor, pending_minor, reserved_minor)
SELECT owner_account_id, currency, id % 32, SUM(credits_posted - debits_posted - debits_pending),
       SUM(credits_pending), SUM(debits_pending)
FROM ledger_accounts WHERE kind = 'wallet' AND owner_account_id IS NOT NULL
GROUP BY owner_account_id, currency, id % 32;

-- Out of the old row's stripe, into the new row's: one upsert when the
-- wallet keeps its owner and currency (every transfer), two otherwise.
CREATE FUNCTION account_balances_changed() RETURNS trigger AS $$
DECLARE
    was_counted BOOLEAN := TG_OP <> 'INSERT' AND OLD.kind = 'wallet' AND OLD.owner_account_id IS NOT NULL;
    is_counted BOOLEAN := TG_OP <> 'DELETE' AND NEW.kind = 'wallet' AND NEW.owner_account_id IS NOT NULL;
    available BIGINT := 0;
    pending BIGINT := 0;
    reserved BIGINT := 0;
BEGIN
    IF is_counted THEN
        available := NEW.credits_posted - NEW.debits_posted - NEW.debits_pending;
        pending := NEW.credits_pending;
        reserved := NEW.debits_pending;
    END IF;
    IF was_counted THEN
        IF is_counted AND OLD.owner_account_id = NEW.owner_account_id AND OLD.currency = NEW.currency
                AND OLD.id = NEW.id THEN
            available := available - (OLD.credits_posted - OLD.debits_posted - OLD.debits_pending);
            pending := pending - OLD.credits_pending;
            reserved := reserved - OLD.debits_pending;
        ELSE
            UPDATE account_balances SET
                available_minor = available_minor - (OLD.credits_posted - OLD.debits_posted - OLD.debits_pending),
                pending_minor = pending_minor - OLD.credits_pending,
                reserved_minor = reserved_minor - OLD.debits_pending
            WHERE account_id = OLD.owner_account_id AND currency = OLD.currency AND stripe = OLD.id % 32;
        END IF;
    END IF;
    IF is_counted THEN
        INSERT INTO account_balances (account_id, currency, stripe, available_minor, pending_minor, reserved_minor)
        VALUES (NEW.owner_account_id, NEW.currency, NEW.id % 32, available, pending, reserved)
        ON CONFLICT (account_id, currency, stripe) DO UPDATE SET
            available_minor = account_balances.available_minor + EXCLUDED.available_minor,
            pending_minor = account_balances.pending_minor + EXCLUDED.pending_minor,
            reserved_minor = account_balances.reserved_minor + EXCLUDED.reserved_minor;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER account_balances_on_change AFTER INSERT OR UPDATE OR DELETE ON ledger_accounts
FOR EACH ROW EXECUTE FUNCTION account_balances_changed();
