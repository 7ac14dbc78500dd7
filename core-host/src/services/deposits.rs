//! Deposits (money in): an M-Pesa STK push prompts the payer's phone; the
//! wallet shows the amount as `pending` until Daraja's callback (or a
//! status query, when no callback comes) posts it or releases it.
//!
//! Crash safety: the deposit row is written (`initiating`) before Daraja is
//! called, and the pending incoming amount with the push's
//! `CheckoutRequestID` right after, in one ledger write with the job that
//! queries the push if no callback comes. A push whose answer was never
//! recorded cannot be matched to a payment (Daraja's callback names only
//! the CheckoutRequestID): its check job marks it failed, and its callback,
//! should one come, is refused as unknown. An answer applies once: the
//! hold is resolved once and the row's update is guarded on `initiated`.

use super::payouts::store::{self as payout_store, mask};
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::db::{Bind, Db};
use crate::jobs::NewJob;
use crate::jobs::runner::ClaimedJob;
use crate::ledger::{AccountKind, Effect, Environment, LedgerError, Leg, Movement, Resolution, Statement, TxStatus};
use crate::money::{Currency, MinorUnits};
use crate::providers::RailError;
use crate::providers::mpesa::{self, StkPush, StkStatus, daraja};
use nixo_api::payments::DepositRequest;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// How long after the push Nixo asks Daraja when no callback came.
pub const STK_RESULT_WAIT_MS: i64 = 60_000;
/// Queries made at most (waits grow: 1×, 2×, 3× … the wait).
pub const STK_QUERIES_MAX: i64 = 5;
/// How long the pending incoming amount lasts at most.
pub const DEPOSIT_HOLD_TIMEOUT_MS: i64 = 86_400_000;
/// The job that asks Daraja about a push without a callback.
pub const CHECK_JOB: &str = "deposit.check";
pub const DEPOSIT_SUCCEEDED: &str = "deposit.succeeded";
pub const DEPOSIT_FAILED: &str = "deposit.failed";
/// What the payer's phone shows (Daraja allows 13 characters).
const TRANSACTION_DESC: &str = "Deposit";

/// Where a deposit stands.
pub const INITIATING: &str = "initiating";
pub const INITIATED: &str = "initiated";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";

/// A deposit as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    pub id: String,
    pub environment: Environment,
    pub account_id: String,
    pub wallet_id: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    pub msisdn: String,
    pub status: String,
    pub checkout_request_id: Option<String>,
    pub merchant_request_id: Option<String>,
    pub transaction_id: Option<i64>,
    pub result_code: Option<i64>,
    pub result_desc: Option<String>,
    pub receipt: Option<String>,
    pub failure_code: Option<String>,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, environment, account_id, wallet_id, amount_minor, currency, msisdn, status,
    checkout_request_id, merchant_request_id, transaction_id, result_code, result_desc, receipt, failure_code,
    created_at_ms";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Deposit, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Protocol(format!("unknown stored {what}"));
    let environment: String = row.try_get(1)?;
    let currency: String = row.try_get(5)?;
    Ok(Deposit {
        id: row.try_get(0)?,
        environment: Environment::parse(&environment).ok_or_else(|| bad("environment"))?,
        account_id: row.try_get(2)?,
        wallet_id: row.try_get(3)?,
        amount_minor: row.try_get(4)?,
        currency: Currency::from_code(&currency).ok_or_else(|| bad("currency"))?,
        msisdn: row.try_get(6)?,
        status: row.try_get(7)?,
        checkout_request_id: row.try_get(8)?,
        merchant_request_id: row.try_get(9)?,
        transaction_id: row.try_get(10)?,
        result_code: row.try_get(11)?,
        result_desc: row.try_get(12)?,
        receipt: row.try_get(13)?,
        failure_code: row.try_get(14)?,
        created_at_ms: row.try_get(15)?,
    })
}

async fn load_where(db: &Db, column: &'static str, value: Bind) -> Result<Option<Deposit>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM deposits WHERE {column} = $1");
    let query = sqlx::query(&sql);
    let query = match value {
        Bind::Text(text) => query.bind(text),
        Bind::Int(n) => query.bind(n),
        other => return Err(sqlx::Error::Protocol(format!("no deposit lookup by {other:?}"))),
    };
    query.fetch_optional(&db.pool).await?.as_ref().map(from_row).transpose()
}

pub async fn load(db: &Db, id: &str) -> Result<Option<Deposit>, sqlx::Error> {
    load_where(db, "id", Bind::Text(id.to_string())).await
}

/// The deposit whose pending amount is transaction `tx_id`.
pub async fn by_transaction(db: &Db, tx_id: i64) -> Result<Option<Deposit>, sqlx::Error> {
    load_where(db, "transaction_id", Bind::Int(tx_id)).await
}

/// The ledger identity of a deposit's pending amount.
fn hold_identity(id: &str) -> String {
    format!("deposit:{id}")
}

/// The job that asks Daraja about push `deposit_id` (query number `query`).
fn check_job(deposit_id: &str, query: i64, run_at_ms: i64, now_ms: i64) -> NewJob {
    NewJob::new(CHECK_JOB, json!({ "deposit_id": deposit_id, "query": query }), now_ms)
        .run_at(run_at_ms)
        .unique(format!("{CHECK_JOB}:{deposit_id}:{query}"))
}

/// The wallet a deposit credits: the one named (the actor's, in KES), else
/// the actor's wallet in the currency.
async fn credited_wallet(services: &Services, actor: &Actor, req: &DepositRequest) -> ServiceResult<i64> {
    if let Some(id) = req.wallet {
        let wallet = super::transfers::usable_wallet(services, actor, id, "wallet", true).await?;
        if wallet.currency != req.currency.code {
            return Err(ServiceError::invalid(
                "wallet",
                format!(
                    "Wallet {id} holds {}; an M-Pesa deposit is credited to a {} wallet",
                    wallet.currency, req.currency.code
                ),
            ));
        }
        return Ok(id);
    }
    super::payouts::wallet_in(services, actor, req.currency)
        .await?
        .ok_or_else(|| {
            ServiceError::invalid(
                "currency",
                format!("You have no {} wallet to deposit to", req.currency.code),
            )
        })
}

fn row_update(sql: &'static str, binds: Vec<Bind>, refusal: &'static str) -> Effect {
    Effect::Sql(Statement::new(sql, binds).must_change(refusal))
}

const DEPOSIT_EXISTS: &str = "deposit_exists";
const DEPOSIT_MOVED_ON: &str = "deposit_moved_on";

/// The answer to a retry that finds its deposit: the deposit once its
/// prompt is recorded (it has a payment to follow); while the first request
/// is still sending the prompt (or died doing so, until the check job closes
/// it), 409 `idempotency_key_in_use`; once closed without a payment, the
/// refusal it ended with — never a deposit without a `tx_id`.
fn retried(existing: Deposit) -> ServiceResult<Deposit> {
    if existing.transaction_id.is_some() {
        return Ok(existing);
    }
    if existing.status == INITIATING {
        return Err(ServiceError::Conflict {
            code: "idempotency_key_in_use",
            message: "The payment prompt of this deposit is still being sent; retry shortly".into(),
        });
    }
    match existing.failure_code.as_deref() {
        Some("rail_rejected") => Err(ServiceError::Provider {
            retryable: false,
            message: existing
                .result_desc
                .unwrap_or_else(|| "M-Pesa refused the payment prompt".into())
                .into(),
        }),
        _ => Err(ServiceError::Conflict {
            code: "deposit_unconfirmed",
            message: format!(
                "Deposit {} was closed as failed: its payment prompt was sent but M-Pesa's answer was lost, so it \
                 cannot be followed. Start a new deposit with a new Idempotency-Key",
                existing.id
            )
            .into(),
        }),
    }
}

/// Starts a deposit: the row, the STK push, then the pending amount.
pub async fn initiate(
    services: &Services,
    actor: &Actor,
    req: &DepositRequest,
    idempotency_key: Option<&str>,
) -> ServiceResult<Deposit> {
    let db = &services.ledger.db;
    let idempotency_id = idempotency_key.map(|key| {
        hex::encode(Sha256::digest(
            format!("deposit\n{}\n{}\n{key}", actor.environment.as_str(), actor.account_id).as_bytes(),
        ))
    });
    if let Some(id) = &idempotency_id
        && let Some(existing) = load_where(db, "idempotency_id", Bind::Text(id.clone())).await?
    {
        return retried(existing);
    }
    let wallet = credited_wallet(services, actor, req).await?;
    let now_ms = services.clock.now_ms();
    let id = crate::ids::new_id("dep_");
    let rails = &services.rails;
    let metadata = Value::Object(req.metadata.clone()).to_string();
    let insert = Effect::Sql(
        Statement::new(
            "INSERT INTO deposits (id, environment, account_id, wallet_id, amount_minor, currency, msisdn, status,
                  metadata, idempotency_id, created_at_ms, updated_at_ms)
              VALUES ($1, $2, $3, $4, $5, $6, $7, 'initiating', $8, $9, $10, $10)
              ON CONFLICT DO NOTHING",
            vec![
                id.clone().into(),
                actor.environment.as_str().into(),
                actor.account_id.clone().into(),
                wallet.into(),
                req.amount_minor.into(),
                req.currency.code.into(),
                req.msisdn.clone().into(),
                metadata.into(),
                idempotency_id.clone().into(),
                now_ms.into(),
            ],
        )
        .must_change(DEPOSIT_EXISTS),
    );
    // If nothing records the push's answer, this job closes the deposit.
    let orphan_check = Effect::Job(check_job(&id, 0, now_ms + rails.stk_result_wait_ms, now_ms));
    match services.ledger.apply_effects(vec![insert, orphan_check], now_ms).await {
        Ok(()) => {}
        Err(LedgerError::EffectRefused(DEPOSIT_EXISTS)) => {
            let key = idempotency_id.unwrap_or_default();
            let existing = load_where(db, "idempotency_id", Bind::Text(key))
                .await?
                .ok_or_else(|| {
                    ServiceError::Internal(anyhow::anyhow!("a deposit conflicted with one that is not there"))
                })?;
            return retried(existing);
        }
        Err(other) => return Err(other.into()),
    }

    let push = StkPush {
        msisdn: req.msisdn.clone(),
        amount_kes: req.amount_minor / 100,
        account_reference: format!("NIXO{}", &id[id.len() - 8..]),
        description: TRANSACTION_DESC.into(),
        callback_url: rails.callback_url(nixo_api::schema::MPESA_STK_CALLBACK_PATH),
    };
    let accepted = match rails.mpesa.stk_push(&push).await {
        Ok(accepted) => accepted,
        Err(err) => {
            let (code, retryable, message) = match &err {
                RailError::Rejected { code, message } => (
                    "rail_rejected",
                    false,
                    format!("M-Pesa refused the payment prompt ({code}): {message}"),
                ),
                RailError::Transient(_) => (
                    "provider_unavailable",
                    true,
                    "M-Pesa could not be reached to prompt the payer; try again".to_string(),
                ),
            };
            tracing::warn!(deposit = %id, error = %err, "STK push failed");
            // A retryable failure gives its idempotency identity back, so the
            // client's retry with the same key prompts the payer again; a
            // refusal keeps it (the retry answers the same failure).
            let failed = row_update(
                "UPDATE deposits SET status = 'failed', failure_code = $2, result_desc = $3, updated_at_ms = $4,
                     idempotency_id = CASE WHEN $5 = 1 THEN NULL ELSE idempotency_id END
                 WHERE id = $1 AND status = 'initiating'",
                vec![
                    id.clone().into(),
                    code.into(),
                    message.clone().into(),
                    services.clock.now_ms().into(),
                    i64::from(retryable).into(),
                ],
                DEPOSIT_MOVED_ON,
            );
            services.ledger.apply_effects(vec![failed], now_ms).await?;
            return Err(ServiceError::Provider {
                retryable,
                message: message.into(),
            });
        }
    };

    let now_ms = services.clock.now_ms();
    let clearing = services
        .ledger
        .system_account(actor.environment, AccountKind::MpesaClearing, req.currency)
        .await?;
    let identity = hold_identity(&id);
    let initiated = row_update(
        "UPDATE deposits SET status = 'initiated', checkout_request_id = $2, merchant_request_id = $3,
             transaction_id = (SELECT id FROM transactions WHERE idempotency_id = $4), updated_at_ms = $5
         WHERE id = $1 AND status = 'initiating'",
        vec![
            id.clone().into(),
            accepted.checkout_request_id.clone().into(),
            accepted.merchant_request_id.clone().into(),
            identity.clone().into(),
            now_ms.into(),
        ],
        DEPOSIT_MOVED_ON,
    );
    let movement = Movement {
        idempotency_id: Some(identity),
        environment: actor.environment,
        account_id: actor.account_id.clone(),
        kind: "deposit",
        status: TxStatus::Pending,
        amount_minor: req.amount_minor,
        currency: req.currency,
        fx: None,
        from_wallet: None,
        to_wallet: Some(wallet),
        risk_score_bp: None,
        rules_applied: Vec::new(),
        metadata_json: json!({ "deposit": id, "provider_ref": accepted.checkout_request_id }).to_string(),
        error_code: None,
        legs: vec![Leg {
            debit: clearing,
            credit: wallet,
            amount_minor: req.amount_minor,
            currency: req.currency,
            pending_timeout_at_ms: Some(now_ms + DEPOSIT_HOLD_TIMEOUT_MS),
        }],
        effects: vec![
            initiated,
            Effect::Job(check_job(&id, 1, now_ms + rails.stk_result_wait_ms, now_ms)),
        ],
        now_ms,
    };
    match services.ledger.record(movement).await {
        Ok(_) => {}
        // The check job closed the deposit while the push was still in
        // flight (a push slower than the wait): the payer was prompted but
        // the deposit is closed; its answer is the closed deposit's.
        Err(LedgerError::EffectRefused(DEPOSIT_MOVED_ON)) => {
            tracing::error!(deposit = %id, "a deposit was closed while its STK push was still being sent");
            let closed = load(db, &id)
                .await?
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("deposit {id} vanished")))?;
            return retried(closed);
        }
        Err(other) => return Err(other.into()),
    }
    services.jobs.wake();
    tracing::info!(deposit = %id, payer = %mask(&req.msisdn), checkout = %accepted.checkout_request_id, "deposit initiated");
    load(db, &id)
        .await?
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("deposit {id} vanished after it was recorded")))
}

/// How a deposit ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Paid {
        receipt: Option<String>,
        description: String,
    },
    NotPaid {
        result_code: i64,
        description: String,
    },
}

fn event(d: &Deposit, event_type: &'static str, status: &str, failure_code: Option<&str>) -> Effect {
    let mut object = Map::new();
    object.insert("object".into(), json!("deposit"));
    object.insert("id".into(), json!(d.id));
    object.insert("tx_id".into(), json!(d.transaction_id.map(|t| t.to_string())));
    object.insert("status".into(), json!(status));
    object.insert("amount".into(), d.currency.to_json_number(d.amount_minor));
    object.insert("currency".into(), json!(d.currency.code));
    object.insert("wallet".into(), json!(d.wallet_id));
    object.insert("phone_number".into(), json!(mask(&d.msisdn)));
    object.insert("provider_ref".into(), json!(d.checkout_request_id));
    object.insert("failure_code".into(), json!(failure_code));
    Effect::Event {
        event_type,
        account_id: d.account_id.clone(),
        environment: d.environment,
        object: Value::Object(object),
    }
}

/// Posts or releases the deposit's pending amount, once. `Ok(false)` when
/// it had already ended (a duplicate or late answer).
pub async fn conclude(services: &Services, d: &Deposit, outcome: Outcome) -> ServiceResult<bool> {
    if d.status != INITIATED {
        tracing::info!(deposit = %d.id, status = %d.status, "M-Pesa answer for a deposit already ended: ignored");
        return Ok(false);
    }
    let tx = d
        .transaction_id
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("deposit {} has no pending amount", d.id)))?;
    let now_ms = services.clock.now_ms();
    let (resolution, effects) = match &outcome {
        Outcome::Paid { receipt, description } => (
            Resolution::Post(None),
            vec![
                row_update(
                    "UPDATE deposits SET status = 'succeeded', result_code = 0, result_desc = $2, receipt = $3,
                         updated_at_ms = $4
                     WHERE id = $1 AND status = 'initiated'",
                    vec![
                        d.id.clone().into(),
                        description.clone().into(),
                        receipt.clone().into(),
                        now_ms.into(),
                    ],
                    DEPOSIT_MOVED_ON,
                ),
                event(d, DEPOSIT_SUCCEEDED, SUCCEEDED, None),
            ],
        ),
        Outcome::NotPaid {
            result_code,
            description,
        } => {
            let code = mpesa::deposit_failure_code(*result_code);
            (
                Resolution::Void,
                vec![
                    row_update(
                        "UPDATE deposits SET status = 'failed', result_code = $2, result_desc = $3, failure_code = $4,
                             updated_at_ms = $5
                         WHERE id = $1 AND status = 'initiated'",
                        vec![
                            d.id.clone().into(),
                            (*result_code).into(),
                            description.clone().into(),
                            code.into(),
                            now_ms.into(),
                        ],
                        DEPOSIT_MOVED_ON,
                    ),
                    event(d, DEPOSIT_FAILED, FAILED, Some(code)),
                ],
            )
        }
    };
    match services.ledger.resolve_with(tx, resolution, effects, now_ms).await {
        Ok(_) => {
            tracing::info!(deposit = %d.id, paid = matches!(outcome, Outcome::Paid { .. }), "deposit ended");
            Ok(true)
        }
        Err(LedgerError::EffectRefused(_) | LedgerError::NotPending(_)) => Ok(false),
        Err(LedgerError::PendingExpired(_)) => {
            tracing::error!(deposit = %d.id, "M-Pesa answered after the deposit's pending amount expired; an operator must reconcile");
            Ok(false)
        }
        Err(other) => Err(other.into()),
    }
}

/// Why a Daraja STK callback was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefused {
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("does not match a deposit: {0}")]
    Mismatch(String),
}

/// Applies Daraja's STK callback: strict parsing, the push and the amount
/// cross-checked; a repeated callback changes nothing.
pub async fn ingest_callback(services: &Services, body: &[u8]) -> ServiceResult<Result<bool, CallbackRefused>> {
    let callback = match daraja::parse_stk_callback(body) {
        Ok(callback) => callback,
        Err(why) => return Ok(Err(CallbackRefused::Unreadable(why))),
    };
    let db = &services.ledger.db;
    let Some(d) = load_where(
        db,
        "checkout_request_id",
        Bind::Text(callback.checkout_request_id.clone()),
    )
    .await?
    else {
        return Ok(Err(CallbackRefused::Mismatch(format!(
            "no deposit has CheckoutRequestID {}",
            callback.checkout_request_id
        ))));
    };
    if d.merchant_request_id.as_deref() != Some(callback.merchant_request_id.as_str()) {
        return Ok(Err(CallbackRefused::Mismatch(
            "MerchantRequestID differs from Daraja's acceptance".into(),
        )));
    }
    let result_code = daraja::integer(&callback.result_code).unwrap_or(-1);
    let outcome = if result_code == 0 {
        let expected = d.amount_minor / 100;
        let paid = callback.item("Amount").and_then(daraja::whole_shillings);
        if paid != Some(expected) {
            return Ok(Err(CallbackRefused::Mismatch(format!(
                "Amount {paid:?} is not the deposit's {expected} KES"
            ))));
        }
        let receipt = callback
            .item("MpesaReceiptNumber")
            .and_then(Value::as_str)
            .map(str::to_string);
        if receipt.is_none() {
            return Ok(Err(CallbackRefused::Mismatch(
                "a paid callback without MpesaReceiptNumber".into(),
            )));
        }
        Outcome::Paid {
            receipt,
            description: callback.result_desc.clone(),
        }
    } else {
        Outcome::NotPaid {
            result_code,
            description: callback.result_desc.clone(),
        }
    };
    let now_ms = services.clock.now_ms();
    services
        .ledger
        .apply_effects(
            vec![payout_store::rail_message(
                "mpesa",
                "in",
                "stk.callback",
                None,
                Some(format!("stk:{}:{result_code}", callback.checkout_request_id)),
                &String::from_utf8_lossy(body),
                now_ms,
            )],
            now_ms,
        )
        .await?;
    Ok(Ok(conclude(services, &d, outcome).await?))
}

/// The `deposit.check` job: no callback yet? Ask Daraja, and look again
/// later. Query 0 closes a deposit whose push was never recorded.
pub async fn check(services: &Services, job: &ClaimedJob) -> anyhow::Result<()> {
    let deposit_id = job.payload["deposit_id"].as_str().unwrap_or_default().to_string();
    let query = job.payload["query"].as_i64().unwrap_or(1);
    let db = &services.ledger.db;
    let Some(d) = load(db, &deposit_id).await? else {
        return Ok(());
    };
    let now_ms = services.clock.now_ms();
    if d.status == INITIATING {
        let failed = row_update(
            "UPDATE deposits SET status = 'failed', failure_code = 'initiation_unconfirmed', updated_at_ms = $2
             WHERE id = $1 AND status = 'initiating'",
            vec![d.id.clone().into(), now_ms.into()],
            DEPOSIT_MOVED_ON,
        );
        match services.ledger.apply_effects(vec![failed], now_ms).await {
            Ok(()) => {
                tracing::error!(deposit = %d.id, "a deposit's STK push answer was never recorded; closed as failed")
            }
            Err(LedgerError::EffectRefused(_)) => {}
            Err(other) => return Err(other.into()),
        }
        return Ok(());
    }
    if d.status != INITIATED || query == 0 {
        return Ok(());
    }
    let checkout = d.checkout_request_id.clone().unwrap_or_default();
    match services.rails.mpesa.stk_query(&checkout).await {
        Ok(StkStatus::Final {
            result_code,
            description,
        }) => {
            let outcome = if result_code == 0 {
                Outcome::Paid {
                    receipt: None,
                    description,
                }
            } else {
                Outcome::NotPaid {
                    result_code,
                    description,
                }
            };
            conclude(services, &d, outcome).await?;
        }
        Ok(StkStatus::Pending) if query < STK_QUERIES_MAX => {
            let wait = services.rails.stk_result_wait_ms * (query + 1);
            let next = check_job(&d.id, query + 1, now_ms + wait, now_ms);
            crate::jobs::enqueue_now(&services.ledger, &next, now_ms).await?;
        }
        Ok(StkStatus::Pending) => {
            tracing::error!(deposit = %d.id, "no M-Pesa answer after {STK_QUERIES_MAX} queries; the pending amount expires by itself");
        }
        Err(err) => anyhow::bail!("STK push query for deposit {}: {err}", d.id),
    }
    Ok(())
}
