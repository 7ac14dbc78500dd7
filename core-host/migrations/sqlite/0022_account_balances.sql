-- An account's balances per currency (what GET /v1/balances answers and
-- every balance.updated event carries), kept as they change. They were
-- summed over all of the account's wallets each time: once per transfer in
-- the ledger writer, for the event, so a transfer cost more the more
-- wallets its account had (with 64 wallets the sum was a third of the
-- writer's time). Triggers keep the totals in the same transaction as any
-- change of a wallet, whichever code path makes it; `nixo ledger verify`
-- compares them with the sum. One row per account and currency: SQLite
-- has one writer. PostgreSQL keeps summing the wallets: there a shared row
-- would make an account's transfers wait for each other's commits, and
-- rows shared by several wallets would be locked out of the wallets'
-- ascending order (deadlocks).
CREATE TABLE account_balances (
    account_id      TEXT NOT NULL,
    currency        TEXT NOT NULL,
    available_minor INTEGER NOT NULL,
    pending_minor   INTEGER NOT NULL,
    reserved_minor  INTEGER NOT NULL,
    PRIMARY KEY (account_id, currency)
);

INSERT INTO account_balances (account_id, currency, available_minor, pending_minor, reserved_minor)
SELECT owner_account_id, currency, SUM(credits_posted - debits_posted - debits_pending), SUM(credits_pending),
       SUM(debits_pending)
FROM ledger_accounts WHERE kind = 'wallet' AND owner_account_id IS NOT NULL
GROUP BY owner_account_id, currency;

-- A wallet is created (its currency shows from then on, at zero).
CREATE TRIGGER account_balances_on_insert AFTER INSERT ON ledger_accounts
WHEN NEW.kind = 'wallet' AND NEW.owner_account_id IS NOT NULL
BEGIN
    INSERT INTO account_balances (account_id, currency, available_minor, pending_minor, reserved_minor)
    VALUES (NEW.owner_account_id, NEW.currency, NEW.credits_posted - NEW.debits_posted - NEW.debits_pending,
            NEW.credits_pending, NEW.debits_pending)
    ON CONFLICT (account_id, currency) DO UPDATE SET
        available_minor = available_minor + excluded.available_minor,
        pending_minor = pending_minor + excluded.pending_minor,
        reserved_minor = reserved_minor + excluded.reserved_minor;
END;

-- A wallet's totals change (every transfer): its row moves by the difference.
CREATE TRIGGER account_balances_on_totals AFTER UPDATE ON ledger_accounts
WHEN OLD.kind = 'wallet' AND NEW.kind = 'wallet' AND NEW.owner_account_id IS NOT NULL
    AND OLD.owner_account_id IS NEW.owner_account_id AND OLD.currency = NEW.currency
BEGIN
    UPDATE account_balances SET
        available_minor = available_minor + (NEW.credits_posted - NEW.debits_posted - NEW.debits_pending)
                                          - (OLD.credits_posted - OLD.debits_posted - OLD.debits_pending),
        pending_minor = pending_minor + NEW.credits_pending - OLD.credits_pending,
        reserved_minor = reserved_minor + NEW.debits_pending - OLD.debits_pending
    WHERE account_id = NEW.owner_account_id AND currency = NEW.currency;
END;

-- Anything else (no code path does it; kept exact all the same): a wallet
-- changes owner, kind or currency — out of the old row, into the new one.
CREATE TRIGGER account_balances_on_move AFTER UPDATE ON ledger_accounts
WHEN NOT (OLD.kind = 'wallet' AND NEW.kind = 'wallet' AND NEW.owner_account_id IS NOT NULL
          AND OLD.owner_account_id IS NEW.owner_account_id AND OLD.currency = NEW.currency)
    AND ((OLD.kind = 'wallet' AND OLD.owner_account_id IS NOT NULL)
         OR (NEW.kind = 'wallet' AND NEW.owner_account_id IS NOT NULL))
BEGIN
    UPDATE account_balances SET
        available_minor = available_minor - (OLD.credits_posted - OLD.debits_posted - OLD.debits_pending),
        pending_minor = pending_minor - OLD.credits_pending,
        reserved_minor = reserved_minor - OLD.debits_pending
    WHERE OLD.kind = 'wallet' AND account_id = OLD.owner_account_id AND currency = OLD.currency;
    INSERT INTO account_balances (account_id, currency, available_minor, pending_minor, reserved_minor)
    SELECT NEW.owner_account_id, NEW.currency, NEW.credits_posted - NEW.debits_posted - NEW.debits_pending,
           NEW.credits_pending, NEW.debits_pending
    WHERE NEW.kind = 'wallet' AND NEW.owner_account_id IS NOT NULL
    ON CONFLICT (account_id, currency) DO UPDATE SET
        available_minor = available_minor + excluded.available_minor,
        pending_minor = pending_minor + excluded.pending_minor,
        reserved_minor = reserved_minor + excluded.reserved_minor;
END;

CREATE TRIGGER account_balances_on_delete AFTER DELETE ON ledger_accounts
WHEN OLD.kind = 'wallet' AND OLD.owner_account_id IS NOT NULL
BEGIN
    UPDATE account_balances SET
        available_minor = available_minor - (OLD.credits_posted - OLD.debits_posted - OLD.debits_pending),
        pending_minor = pending_minor - OLD.credits_pending,
        reserved_minor = reserved_minor - OLD.debits_pending
    WHERE account_id = OLD.owner_account_id AND currency = OLD.currency;
END;
