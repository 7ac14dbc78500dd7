//! Async payments (the Nexbit document's `POST /v1/payments/async`): the
//! transfer is accepted at once (a row and a durable job, one ledger
//! write) and run by the job worker. The transfer's ledger identity is
//! derived from the async payment's id, so a job that runs twice (a crash
//! after the transfer, a lease that ran out) moves the money once: the
//! second run finds the first's transaction and records its answer. The
//! payment's own id derives from the request's Idempotency-Key, so a retry
//! whose first answer was lost (the key's record not yet written when the
//! process died) finds the payment it already made instead of making a
//! second one.

use super::payments::PaymentView;
use super::transfers::{self, TransferCommand};
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::db::Db;
use crate::jobs::NewJob;
use crate::jobs::runner::ClaimedJob;
use crate::ledger::{Effect, Environment, LedgerError, Statement, TxStatus};
use crate::money::Currency;
use nixo_api::schema::TransferRequest;
use nixo_api::types::{AsyncPayment, AsyncPaymentStatus};
use serde_json::{Value, json};
use sqlx::Row;

/// The job that runs an async payment.
pub const RUN_JOB: &str = "payment.async";
pub const ASYNC_SUCCEEDED: &str = "async_payment.succeeded";
pub const ASYNC_FAILED: &str = "async_payment.failed";
/// Attempts before an async payment's job is dead (then an operator
/// retries it; the payment stays `running` meanwhile).
pub const RUN_ATTEMPTS_MAX: i64 = 10;
const ASYNC_EXISTS: &str = "async_payment_exists";
const ASYNC_FINISHED: &str = "async_payment_finished";

fn new_id() -> String {
    let bytes: [u8; nixo_api::payments::ASYNC_JOB_HEX_LEN / 2] = rand::random();
    format!("job_{}", hex::encode(bytes))
}

/// The id of the payment a request with this Idempotency-Key makes.
fn keyed_id(actor: &Actor, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "async\n{}\n{}\n{key}",
        actor.environment.as_str(),
        actor.account_id
    ));
    let hex = hex::encode(digest);
    format!("job_{}", &hex[..nixo_api::payments::ASYNC_JOB_HEX_LEN])
}

fn status_text(status: AsyncPaymentStatus) -> &'static str {
    match status {
        AsyncPaymentStatus::Queued => "queued",
        AsyncPaymentStatus::Running => "running",
        AsyncPaymentStatus::Succeeded => "succeeded",
        AsyncPaymentStatus::Failed => "failed",
    }
}

fn parse_status(text: &str) -> Option<AsyncPaymentStatus> {
    [
        AsyncPaymentStatus::Queued,
        AsyncPaymentStatus::Running,
        AsyncPaymentStatus::Succeeded,
        AsyncPaymentStatus::Failed,
    ]
    .into_iter()
    .find(|s| status_text(*s) == text)
}

/// Accepts an async payment: its row and its job, in one ledger write. With
/// an Idempotency-Key, a second accept of the same request answers with
/// the payment the first made.
pub async fn accept(
    services: &Services,
    actor: &Actor,
    req: &TransferRequest,
    idempotency_key: Option<&str>,
) -> ServiceResult<String> {
    let now_ms = services.clock.now_ms();
    let id = idempotency_key.map_or_else(new_id, |key| keyed_id(actor, key));
    let request = json!({
        "from_wallet": req.from_wallet,
        "to_wallet": req.to_wallet,
        "amount_minor": req.amount_minor,
        "currency": req.currency.code,
        "metadata": req.metadata,
    });
    let effects = vec![
        Effect::Sql(Statement::new("INSERT INTO async_payments (id, environment, account_id, request, status, created_at_ms, updated_at_ms)
                  VALUES ($1, $2, $3, $4, 'queued', $5, $5) ON CONFLICT DO NOTHING"
                    , vec![
                id.clone().into(),
                actor.environment.as_str().into(),
                actor.account_id.clone().into(),
                request.to_string().into(),
                now_ms.into(),
            ]).must_change(ASYNC_EXISTS)),
        Effect::Job(
            NewJob::new(RUN_JOB, json!({ "id": id }), now_ms)
                .unique(format!("{RUN_JOB}:{id}"))
                .max_attempts(RUN_ATTEMPTS_MAX),
        ),
    ];
    match services.ledger.apply_effects(effects, now_ms).await {
        Ok(()) => {}
        Err(LedgerError::EffectRefused(ASYNC_EXISTS)) if idempotency_key.is_some() => {
            let stored = load(&services.ledger.db, &id).await?;
            let same = stored.is_some_and(|s| {
                s.account_id == actor.account_id && s.environment == actor.environment && s.request == request
            });
            if !same {
                return Err(ServiceError::IdempotencyKeyReused {
                    message: "This Idempotency-Key was used for another async payment".into(),
                });
            }
        }
        Err(other) => return Err(other.into()),
    }
    services.jobs.wake();
    Ok(id)
}

/// An async payment as stored.
struct Stored {
    environment: Environment,
    account_id: String,
    request: Value,
    status: AsyncPaymentStatus,
    result: Option<Value>,
    error: Option<Value>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

async fn load(db: &Db, id: &str) -> ServiceResult<Option<Stored>> {
    let row = sqlx::query(
        "SELECT environment, account_id, request, status, result, error, created_at_ms, updated_at_ms
         FROM async_payments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let bad = |what: &str| ServiceError::Internal(anyhow::anyhow!("unknown stored {what} of async payment {id}"));
    let environment: String = row.try_get(0)?;
    let request: String = row.try_get(2)?;
    let status: String = row.try_get(3)?;
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str::<Value>(&t).ok());
    Ok(Some(Stored {
        environment: Environment::parse(&environment).ok_or_else(|| bad("environment"))?,
        account_id: row.try_get(1)?,
        request: serde_json::from_str(&request).map_err(|_| bad("request"))?,
        status: parse_status(&status).ok_or_else(|| bad("status"))?,
        result: json(row.try_get(4)?),
        error: json(row.try_get(5)?),
        created_at_ms: row.try_get(6)?,
        updated_at_ms: row.try_get(7)?,
    }))
}

fn render(id: &str, s: &Stored) -> AsyncPayment {
    AsyncPayment {
        job_id: id.to_string(),
        status: s.status,
        created: s.created_at_ms / 1000,
        updated: s.updated_at_ms / 1000,
        result: s.result.clone(),
        error: s.error.clone(),
    }
}

/// One of the actor's async payments.
pub async fn retrieve(services: &Services, actor: &Actor, id: &str) -> ServiceResult<AsyncPayment> {
    let missing = || ServiceError::NotFound {
        field: None,
        message: format!("No such async payment: '{id}'").into(),
    };
    if !nixo_api::payments::async_job_id_ok(id) {
        return Err(missing());
    }
    let db = &services.ledger.db;
    let mut stored = load(db, id)
        .await?
        .filter(|s| s.account_id == actor.account_id && s.environment == actor.environment)
        .ok_or_else(missing)?;
    if stored.status == AsyncPaymentStatus::Queued {
        // `state IN (…)` lets the partial unique index on live jobs find it.
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE unique_key = $1 AND state IN ('available', 'running') AND state = 'running'",
        )
        .bind(format!("{RUN_JOB}:{id}"))
        .fetch_optional(&db.pool)
        .await?;
        if running.is_some() {
            stored.status = AsyncPaymentStatus::Running;
        }
    }
    Ok(render(id, &stored))
}

/// The `payment.async` job: run the transfer (once, whatever the number of
/// runs), record its answer and the completion event.
pub async fn run(services: &Services, job: &ClaimedJob) -> anyhow::Result<()> {
    let id = job.payload["id"].as_str().unwrap_or_default().to_string();
    let Some(stored) = load(&services.ledger.db, &id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        anyhow::bail!("no async payment {id}");
    };
    if matches!(
        stored.status,
        AsyncPaymentStatus::Succeeded | AsyncPaymentStatus::Failed
    ) {
        return Ok(());
    }
    // `running` is the job's own state (read on retrieve): no write here,
    // so a run costs the ledger one write for its transfer and one for its answer.
    let r = &stored.request;
    let currency = r["currency"]
        .as_str()
        .and_then(Currency::from_code)
        .ok_or_else(|| anyhow::anyhow!("async payment {id}: stored currency unreadable"))?;
    let actor = Actor {
        account_id: stored.account_id.clone(),
        environment: stored.environment,
    };
    let command = TransferCommand {
        actor,
        from_wallet: r["from_wallet"].as_i64().unwrap_or_default(),
        to_wallet: r["to_wallet"].as_i64().unwrap_or_default(),
        amount_minor: r["amount_minor"].as_i64().unwrap_or_default(),
        currency,
        metadata: r["metadata"].as_object().cloned().unwrap_or_default(),
        // The ledger identity: a second run replays the first's transaction.
        idempotency_key: Some(format!("async:{id}")),
    };
    let (status, result, error, tx_id) = match transfers::transfer(services, command).await {
        Ok(outcome) => {
            let view = PaymentView::of_transfer(&outcome.recorded, &outcome.reasons);
            let status = if outcome.recorded.status == TxStatus::Declined {
                AsyncPaymentStatus::Failed
            } else {
                AsyncPaymentStatus::Succeeded
            };
            let result = serde_json::to_value(view.envelope())?;
            (status, Some(result), None, Some(outcome.recorded.tx_id))
        }
        Err(ServiceError::Internal(cause)) => return Err(cause),
        Err(refused) => {
            let body = crate::error::ApiError::from(refused).body();
            (
                AsyncPaymentStatus::Failed,
                None,
                Some(serde_json::to_value(body.error)?),
                None,
            )
        }
    };
    let now_ms = services.clock.now_ms();
    let finished = Stored {
        status,
        result: result.clone(),
        error: error.clone(),
        updated_at_ms: now_ms,
        ..stored
    };
    let event_type = if status == AsyncPaymentStatus::Succeeded {
        ASYNC_SUCCEEDED
    } else {
        ASYNC_FAILED
    };
    let effects = vec![
        Effect::Sql(
            Statement::new(
                "UPDATE async_payments SET status = $2, result = $3, error = $4, tx_id = $5, updated_at_ms = $6
                  WHERE id = $1 AND status IN ('queued', 'running')",
                vec![
                    id.clone().into(),
                    status_text(status).into(),
                    result.map(|v| v.to_string()).into(),
                    error.map(|v| v.to_string()).into(),
                    tx_id.into(),
                    now_ms.into(),
                ],
            )
            .must_change(ASYNC_FINISHED),
        ),
        Effect::Event {
            event_type,
            account_id: finished.account_id.clone(),
            environment: finished.environment,
            object: serde_json::to_value(render(&id, &finished))?,
        },
    ];
    match services.ledger.apply_effects(effects, now_ms).await {
        Ok(()) | Err(LedgerError::EffectRefused(ASYNC_FINISHED)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}
