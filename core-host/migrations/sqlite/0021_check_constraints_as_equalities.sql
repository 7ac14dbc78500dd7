-- Every constant `IN` list of more than two values in a CHECK constraint,
-- rewritten as the same test made of equalities. SQLite evaluates
-- `x IN ('a', 'b', 'c')` by building a temporary index of the list (a page
-- cache created, filled and freed) each time the constraint is checked:
-- three times for every transfer in the ledger writer (the kind and status
-- of `transactions`, the kind of `transfers`), and on every change of a
-- job's, payout's or delivery's state. A chain of equalities is a few
-- comparisons. (The columns are NOT NULL; where a value is NULL both forms
-- are NULL, which a CHECK lets through, so they accept the same rows.)
--
-- SQLite cannot change a CHECK constraint with ALTER TABLE, and rebuilding
-- these tables would copy every row of the largest ones. A change to a
-- CHECK constraint that every stored row already satisfies leaves the file
-- format as it is, and SQLite documents editing the table's definition in
-- sqlite_schema for it (writable_schema); that is what this does, inside
-- the migration's transaction. `writable_schema = RESET` makes this
-- connection read the definitions again; the empty table created and
-- dropped after it moves the schema cookie, so every other connection does
-- too before its next statement. PostgreSQL needs none of this.
-- tests/tests/ledger.rs checks that no table keeps such a list and that the
-- constraints still refuse what they refused.
PRAGMA writable_schema = ON;

UPDATE sqlite_schema SET sql = replace(sql,
    'account_type IN (''platform'', ''individual'', ''business'')',
    '(account_type = ''platform'' OR account_type = ''individual'' OR account_type = ''business'')')
WHERE type = 'table' AND name = 'accounts';
UPDATE sqlite_schema SET sql = replace(sql,
    'verification_status IN (''unverified'', ''pending'', ''verified'', ''rejected'')',
    '(verification_status = ''unverified'' OR verification_status = ''pending'' OR verification_status = ''verified'' OR verification_status = ''rejected'')')
WHERE type = 'table' AND name = 'accounts';
UPDATE sqlite_schema SET sql = replace(sql,
    'kind IN (''wallet'', ''funding'', ''fx_liquidity'', ''fees'',
                                                  ''mpesa_clearing'', ''bank_clearing'')',
    '(kind = ''wallet'' OR kind = ''funding'' OR kind = ''fx_liquidity'' OR kind = ''fees'' OR kind = ''mpesa_clearing'' OR kind = ''bank_clearing'')')
WHERE type = 'table' AND name = 'ledger_accounts';
UPDATE sqlite_schema SET sql = replace(sql,
    'state IN (''available'', ''running'', ''succeeded'', ''dead'')',
    '(state = ''available'' OR state = ''running'' OR state = ''succeeded'' OR state = ''dead'')')
WHERE type = 'table' AND name = 'jobs';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''pending'', ''processing'', ''succeeded'', ''failed'', ''canceled'')',
    '(status = ''pending'' OR status = ''processing'' OR status = ''succeeded'' OR status = ''failed'' OR status = ''canceled'')')
WHERE type = 'table' AND name = 'payouts';
UPDATE sqlite_schema SET sql = replace(sql,
    'rail_state IN (''unsubmitted'', ''submitting'', ''submitted'', ''answered'')',
    '(rail_state = ''unsubmitted'' OR rail_state = ''submitting'' OR rail_state = ''submitted'' OR rail_state = ''answered'')')
WHERE type = 'table' AND name = 'payouts';
UPDATE sqlite_schema SET sql = replace(sql,
    'kind IN (''transfer'', ''deposit'', ''withdrawal'', ''payout'', ''funding'')',
    '(kind = ''transfer'' OR kind = ''deposit'' OR kind = ''withdrawal'' OR kind = ''payout'' OR kind = ''funding'')')
WHERE type = 'table' AND name = 'transactions';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''PENDING'', ''SETTLED'', ''PENDING_REVIEW'', ''DECLINED'', ''VOIDED'', ''EXPIRED'')',
    '(status = ''PENDING'' OR status = ''SETTLED'' OR status = ''PENDING_REVIEW'' OR status = ''DECLINED'' OR status = ''VOIDED'' OR status = ''EXPIRED'')')
WHERE type = 'table' AND name = 'transactions';
UPDATE sqlite_schema SET sql = replace(sql,
    'kind IN (''posted'', ''pending'', ''post_pending'', ''void_pending'')',
    '(kind = ''posted'' OR kind = ''pending'' OR kind = ''post_pending'' OR kind = ''void_pending'')')
WHERE type = 'table' AND name = 'transfers';
UPDATE sqlite_schema SET sql = replace(sql,
    'state IN (''pending'', ''delivered'', ''failed'')',
    '(state = ''pending'' OR state = ''delivered'' OR state = ''failed'')')
WHERE type = 'table' AND name = 'webhook_deliveries';
UPDATE sqlite_schema SET sql = replace(sql,
    'state IN (''submitting'', ''pending'', ''complete'', ''superseded'')',
    '(state = ''submitting'' OR state = ''pending'' OR state = ''complete'' OR state = ''superseded'')')
WHERE type = 'table' AND name = 'kyc_checks';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''initiating'', ''initiated'', ''succeeded'', ''failed'')',
    '(status = ''initiating'' OR status = ''initiated'' OR status = ''succeeded'' OR status = ''failed'')')
WHERE type = 'table' AND name = 'deposits';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''queued'', ''running'', ''succeeded'', ''failed'')',
    '(status = ''queued'' OR status = ''running'' OR status = ''succeeded'' OR status = ''failed'')')
WHERE type = 'table' AND name = 'async_payments';
UPDATE sqlite_schema SET sql = replace(sql,
    'status IN (''open'', ''approved'', ''declined'', ''expired'')',
    '(status = ''open'' OR status = ''approved'' OR status = ''declined'' OR status = ''expired'')')
WHERE type = 'table' AND name = 'reviews';

PRAGMA writable_schema = RESET;
CREATE TABLE schema_cookie_0021 (unused INTEGER);
DROP TABLE schema_cookie_0021;
