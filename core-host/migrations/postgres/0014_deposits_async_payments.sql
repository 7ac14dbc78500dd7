-- Deposits by M-Pesa STK push and async payments (postgres). Kept in step with
-- the other backend's 0014_deposits_async_payments.sql.

-- One row per deposit. Written as 'initiating' before the STK push, so a
-- push whose answer was never recorded is still known; the pending incoming
-- amount (transaction_id) is recorded with the push's CheckoutRequestID and
-- posted or voided by Daraja's callback or a status query.
CREATE TABLE deposits (
    id                  TEXT PRIMARY KEY,                    -- dep_…
    environment         TEXT NOT NULL,
    account_id          TEXT NOT NULL,
    wallet_id           BIGINT NOT NULL,
    amount_minor        BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    msisdn              TEXT NOT NULL,                       -- canonical 254…, shown masked
    status              TEXT NOT NULL CHECK (status IN ('initiating', 'initiated', 'succeeded', 'failed')),
    checkout_request_id TEXT UNIQUE,                         -- ws_CO_…
    merchant_request_id TEXT,
    transaction_id      BIGINT,                              -- the pending incoming amount
    result_code         BIGINT,                              -- Daraja's ResultCode
    result_desc         TEXT,
    receipt             TEXT,                                -- MpesaReceiptNumber
    failure_code        TEXT,
    queries             BIGINT NOT NULL DEFAULT 0,           -- STK push queries made
    metadata            TEXT NOT NULL DEFAULT '{}',
    idempotency_id      TEXT UNIQUE,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);
CREATE INDEX deposits_transaction ON deposits (transaction_id);

-- One row per async payment: the request as accepted, then the transfer's
-- answer (result) or the structured error. The job that runs it is keyed
-- on the id; the transfer's ledger identity is derived from it, so a job
-- that runs twice moves the money once.
CREATE TABLE async_payments (
    id            TEXT PRIMARY KEY,                          -- job_…
    environment   TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    request       TEXT NOT NULL,                             -- the body, as accepted
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    result        TEXT,                                      -- JSON: the transfer's answer
    error         TEXT,                                      -- JSON: the structured error
    tx_id         BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
