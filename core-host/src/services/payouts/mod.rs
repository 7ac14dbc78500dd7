//! Payouts (the Nixo document's `/v1/payouts`): money from one of the
//! actor's wallets to a bank account (ISO 20022) or an M-Pesa number
//! (Daraja B2C).
//!
//! Create: the payout rule for the rail validates and normalises the
//! recipient (fail closed), the fraud rules decide, then one ledger
//! operation holds amount + fee (two-phase: reserved) and writes the payout,
//! its history, its events and its submission job. Allowed payouts start
//! `processing`; a `review` holds them `pending`; a `deny` records them
//! `failed` with nothing held. [`rails`] submits them and turns the rail's
//! answer into `succeeded` (hold posted) or `failed` (hold voided).

pub mod rails;
pub mod store;

use super::{Actor, ServiceError, ServiceResult, Services};
use crate::jobs::NewJob;
use crate::ledger::fx::{self, FxError};
use crate::ledger::{AccountKind, Effect, FxApplied, LedgerError, Leg, Movement, Resolution, TxStatus};
use crate::money::{Currency, MinorUnits};
use crate::pagination::{self, Bind, Listing};
use crate::rules;
use nixo_api::pagination::ListParams;
use nixo_api::payouts::{PayoutFilter, PayoutMethod, PayoutRequest, RecipientAccount};
use nixo_api::types::PayoutStatus;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use store::Payout;

/// Nixo's fee per method, in basis points of the amount (rounded up to the
/// currency's minor unit), charged besides the amount.
pub const FEE_BANK_BP: i64 = 50;
pub const FEE_MPESA_BP: i64 = 100;
/// How long a payout's hold lasts at most; a payout still unanswered by
/// then is released (the rail is asked before that, see [`rails`]).
pub const HOLD_TIMEOUT_MS: i64 = 30 * 86_400_000;
const DAY_MS: i64 = 86_400_000;
/// The submission job of a payout.
pub const SUBMIT_JOB: &str = "payout.submit";

/// A payout as the client asked for it, already valid in shape.
#[derive(Debug, Clone)]
pub struct CreatePayout {
    pub actor: Actor,
    pub request: PayoutRequest,
    pub idempotency_key: Option<String>,
    /// The wallet to pay from (a withdrawal names it); else the actor's
    /// wallet in the currency.
    pub from_wallet: Option<i64>,
}

/// Fee in minor units: `bp` basis points of `amount`, rounded up.
pub fn fee_minor(amount_minor: i64, bp: i64) -> i64 {
    let product = i128::from(amount_minor) * i128::from(bp);
    i64::try_from((product + 9_999) / 10_000).unwrap_or(i64::MAX)
}

/// The request field a payout rule's field stands for.
fn request_field(rule_field: &str, account: &RecipientAccount) -> String {
    match rule_field {
        "destination" | "rail" => account.field().to_string(),
        other => other.to_string(),
    }
}

/// The actor's first wallet in `currency`, if it has one.
pub(crate) async fn wallet_in(services: &Services, actor: &Actor, currency: Currency) -> ServiceResult<Option<i64>> {
    let row = sqlx::query(
        "SELECT id FROM ledger_accounts
         WHERE owner_account_id = $1 AND environment = $2 AND kind = 'wallet' AND currency = $3
         ORDER BY id LIMIT 1",
    )
    .bind(actor.account_id.as_str())
    .bind(actor.environment.as_str())
    .bind(currency.code)
    .fetch_optional(&services.ledger.db.pool)
    .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The wallet a payout leaves from: the one named (the actor's, in the
/// payout's currency), else the actor's wallet in the currency.
async fn source_wallet(services: &Services, cmd: &CreatePayout) -> ServiceResult<i64> {
    let currency = cmd.request.currency;
    if let Some(id) = cmd.from_wallet {
        let wallet = super::transfers::usable_wallet(services, &cmd.actor, id, "from_wallet", true).await?;
        if wallet.currency != currency.code {
            return Err(ServiceError::invalid(
                "currency",
                format!(
                    "Wallet {id} holds {}; the amount must be in {}",
                    wallet.currency, wallet.currency
                ),
            ));
        }
        return Ok(id);
    }
    wallet_in(services, &cmd.actor, currency).await?.ok_or_else(|| {
        ServiceError::invalid(
            "currency",
            format!("You have no {} wallet to pay out from", currency.code),
        )
    })
}

/// What the recipient receives, and the legs that carry it to the rail's
/// clearing account (held), with the FX record when it converts.
struct Plan {
    destination_currency: Currency,
    destination_amount_minor: i64,
    fx: Option<FxApplied>,
    legs: Vec<Leg>,
}

async fn plan(services: &Services, cmd: &CreatePayout, wallet: i64, fee: i64, now_ms: i64) -> ServiceResult<Plan> {
    let ledger = &services.ledger;
    let env = cmd.actor.environment;
    let hold = Some(now_ms + HOLD_TIMEOUT_MS);
    let leg = |debit, credit, amount_minor, currency| Leg {
        debit,
        credit,
        amount_minor,
        currency,
        pending_timeout_at_ms: hold,
    };
    let clearing_kind = match cmd.request.method {
        PayoutMethod::Bank => AccountKind::BankClearing,
        PayoutMethod::Mpesa => AccountKind::MpesaClearing,
    };
    let to = cmd.request.destination_currency.unwrap_or(cmd.request.currency);
    let mut legs = Vec::new();
    if fee > 0 {
        let fees = ledger
            .system_account(env, AccountKind::Fees, cmd.request.currency)
            .await?;
        legs.push(leg(wallet, fees, fee, cmd.request.currency));
    }
    if to == cmd.request.currency {
        let clearing = ledger.system_account(env, clearing_kind, to).await?;
        legs.push(leg(wallet, clearing, cmd.request.amount_minor, to));
        return Ok(Plan {
            destination_currency: to,
            destination_amount_minor: cmd.request.amount_minor,
            fx: None,
            legs,
        });
    }
    let rate = fx::latest_rate(&ledger.db, cmd.request.currency, to)
        .await?
        .ok_or_else(|| {
            ServiceError::invalid(
                "destination_currency",
                format!(
                    "No exchange rate from {} to {} is available",
                    cmd.request.currency.code, to.code
                ),
            )
        })?;
    let conversion = fx::convert(
        cmd.request.amount_minor,
        cmd.request.currency,
        to,
        rate.rate,
        rate.fee_bp,
    )
    .map_err(|e| match e {
        FxError::TooSmall => ServiceError::invalid("amount", "Amount is too small to convert"),
        other => ServiceError::invalid("amount", other.to_string()),
    })?;
    let source_pool = ledger
        .system_account(env, AccountKind::FxLiquidity, cmd.request.currency)
        .await?;
    let destination_pool = ledger.system_account(env, AccountKind::FxLiquidity, to).await?;
    let clearing = ledger.system_account(env, clearing_kind, to).await?;
    legs.push(leg(wallet, source_pool, conversion.net_minor, cmd.request.currency));
    legs.push(leg(destination_pool, clearing, conversion.to_amount_minor, to));
    if conversion.fee_minor > 0 {
        let fees = ledger
            .system_account(env, AccountKind::Fees, cmd.request.currency)
            .await?;
        legs.push(leg(wallet, fees, conversion.fee_minor, cmd.request.currency));
    }
    Ok(Plan {
        destination_currency: to,
        destination_amount_minor: conversion.to_amount_minor,
        fx: Some(FxApplied {
            to_amount_minor: conversion.to_amount_minor,
            to_currency: to,
            rate: rate.rate.normalize().to_string(),
            fee_minor: conversion.fee_minor,
        }),
        legs,
    })
}

/// Creates a payout: validate the recipient, decide, hold, record.
pub async fn create(services: &Services, cmd: CreatePayout) -> ServiceResult<Payout> {
    let actor = &cmd.actor;
    let idempotency_id = cmd.idempotency_key.as_deref().map(|key| {
        hex::encode(Sha256::digest(
            format!("payout\n{}\n{}\n{key}", actor.environment.as_str(), actor.account_id).as_bytes(),
        ))
    });
    if let Some(id) = &idempotency_id
        && let Some(existing) = store::by_idempotency_id(&services.ledger.db, id).await?
    {
        return Ok(existing);
    }
    if cmd.request.method == PayoutMethod::Mpesa && cmd.request.destination_currency.is_some_and(|c| c.code != "KES") {
        return Err(ServiceError::invalid(
            "destination_currency",
            "M-Pesa payouts are received in KES",
        ));
    }
    if cmd.request.method == PayoutMethod::Mpesa && cmd.request.currency.code != "KES" {
        return Err(ServiceError::invalid(
            "currency",
            "M-Pesa payouts are paid from a KES wallet: currency must be KES",
        ));
    }
    let now_ms = services.clock.now_ms();
    let wallet = source_wallet(services, &cmd).await?;
    crate::limits::check_outgoing(
        &services.ledger.db,
        &services.limits,
        &actor.account_id,
        cmd.request.currency,
        cmd.request.amount_minor,
        now_ms,
    )
    .await?;
    let sent_today = store::sent_since(
        &services.ledger.db,
        wallet,
        cmd.request.method.as_str(),
        now_ms - DAY_MS,
    )
    .await?;

    // The payout rule of the rail: validates and normalises (fail closed).
    let request = rules::PayoutRequest {
        rail: match cmd.request.method {
            PayoutMethod::Bank => rules::Rail::Bank,
            PayoutMethod::Mpesa => rules::Rail::Mpesa,
        },
        destination: cmd.request.account.text().to_string(),
        amount: rules::PayoutMoney {
            amount: cmd.request.currency.to_decimal(cmd.request.amount_minor).to_string(),
            currency: cmd.request.currency.code.to_string(),
        },
        destination_country: cmd.request.destination_country.clone(),
        sent_today: cmd.request.currency.to_decimal(sent_today).to_string(),
    };
    let rule_host = services.rules.clone();
    let routing = tokio::task::spawn_blocking(move || rule_host.check_payout(&request))
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("payout rule task: {e}")))?
        .map_err(|refusal| {
            let field = request_field(&refusal.field, &cmd.request.account);
            ServiceError::invalid(field, format!("{} ({})", refusal.message, refusal.code))
        })?;
    let fact = |key: &str| routing.facts.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let destination_country = cmd
        .request
        .destination_country
        .clone()
        .or_else(|| fact("country"))
        .or_else(|| (cmd.request.method == PayoutMethod::Mpesa).then(|| "KE".to_string()))
        .ok_or_else(|| ServiceError::invalid("destination_country", "destination_country is required"))?;

    let fee = fee_minor(
        cmd.request.amount_minor,
        match cmd.request.method {
            PayoutMethod::Bank => FEE_BANK_BP,
            PayoutMethod::Mpesa => FEE_MPESA_BP,
        },
    );
    let plan = plan(services, &cmd, wallet, fee, now_ms).await?;

    let (verdicts, logged_input) = super::risk::assess(
        services,
        actor,
        super::risk::Subject {
            kind: rules::TransactionKind::Payout,
            wallet,
            amount_minor: cmd.request.amount_minor,
            currency: cmd.request.currency,
            destination: routing.destination.clone(),
            logged_destination: store::mask(&routing.destination),
            destination_country: Some(destination_country.clone()),
            metadata: &cmd.request.metadata,
        },
    )
    .await?;
    let ledger = &services.ledger;

    let id = crate::ids::new_id("pyt_");
    let created = Payout {
        id: id.clone(),
        environment: actor.environment,
        account_id: actor.account_id.clone(),
        status: PayoutStatus::Pending,
        status_reason: None,
        method: cmd.request.method,
        wallet_id: wallet,
        amount_minor: cmd.request.amount_minor,
        currency: cmd.request.currency,
        fee_minor: fee,
        destination_country,
        destination_amount_minor: plan.destination_amount_minor,
        destination_currency: plan.destination_currency,
        fx_rate: plan.fx.as_ref().map(|f| f.rate.clone()),
        recipient_name: cmd.request.full_name.clone(),
        recipient_account: routing.destination.clone(),
        description: cmd.request.description.clone(),
        metadata: cmd.request.metadata.clone(),
        transaction_id: None,
        rail_state: store::RAIL_UNSUBMITTED,
        rail_reference: None,
        rail_status: None,
        rail_receipt: None,
        failure_code: None,
        failure_message: None,
        idempotency_id: idempotency_id.clone(),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        history: Vec::new(),
    };
    let hold_identity = format!("payout:{id}");
    let outcome = match verdicts.verdict {
        rules::Verdict::Deny => {
            let pending = created.moved(PayoutStatus::Pending, None, now_ms);
            let mut failed = pending.moved(PayoutStatus::Failed, Some("risk_declined"), now_ms);
            failed.failure_code = Some("risk_declined".into());
            failed.failure_message = Some(format!(
                "The payout was declined by risk rules ({})",
                verdicts.reasons.join(", ")
            ));
            failed.rail_state = store::RAIL_ANSWERED;
            // Recorded as a declined transaction (nothing moves), like a
            // declined transfer: its score and rules stay on record.
            let effects = store::insert(
                &failed,
                Some(&hold_identity),
                &[(store::PAYOUT_CREATED, &pending), (store::PAYOUT_FAILED, &failed)],
            );
            let movement = Movement {
                idempotency_id: Some(hold_identity.clone()),
                environment: actor.environment,
                account_id: actor.account_id.clone(),
                kind: "payout",
                status: TxStatus::Declined,
                amount_minor: cmd.request.amount_minor,
                currency: cmd.request.currency,
                fx: None,
                from_wallet: Some(wallet),
                to_wallet: None,
                risk_score_bp: Some(verdicts.score_bp),
                rules_applied: verdicts.rules_applied.clone(),
                metadata_json: json!({ "payout": id }).to_string(),
                error_code: Some("risk_declined"),
                legs: Vec::new(),
                effects,
                now_ms,
            };
            ledger.record(movement).await.map(|recorded| {
                let mut failed = failed;
                failed.transaction_id = Some(recorded.tx_id);
                failed
            })
        }
        verdict => {
            let review = verdict == rules::Verdict::Review;
            let pending = created.moved(PayoutStatus::Pending, review.then_some("review"), now_ms);
            let (record, events): (Payout, Vec<(&'static str, &Payout)>) = if review {
                (pending.clone(), vec![(store::PAYOUT_CREATED, &pending)])
            } else {
                let processing = pending.moved(PayoutStatus::Processing, None, now_ms);
                (processing, vec![(store::PAYOUT_CREATED, &pending)])
            };
            let mut effects = store::insert(&record, Some(&hold_identity), &events);
            if review {
                effects.extend(super::reviews::open_effects(
                    actor,
                    &super::reviews::Opening {
                        subject: "payout",
                        payout_id: Some(record.id.clone()),
                        amount_minor: cmd.request.amount_minor,
                        currency: cmd.request.currency,
                        parties: nixo_api::types::ReviewParties {
                            from_wallet: Some(wallet),
                            to_wallet: None,
                            recipient: Some(store::mask(&record.recipient_account)),
                        },
                        rules_applied: verdicts.rules_applied.clone(),
                        reasons: verdicts.reasons.clone(),
                        score_bp: verdicts.score_bp,
                        on_expiry: verdicts.review_expiry,
                    },
                    now_ms,
                ));
            }
            if !review {
                effects.push(record_event(&record, store::PAYOUT_PROCESSING));
                effects.push(Effect::Job(submit_job(&record.id, now_ms)));
            }
            let movement = Movement {
                idempotency_id: Some(hold_identity.clone()),
                environment: actor.environment,
                account_id: actor.account_id.clone(),
                kind: "payout",
                status: if review {
                    TxStatus::PendingReview
                } else {
                    TxStatus::Pending
                },
                amount_minor: cmd.request.amount_minor,
                currency: cmd.request.currency,
                fx: plan.fx.clone(),
                from_wallet: Some(wallet),
                to_wallet: None,
                risk_score_bp: Some(verdicts.score_bp),
                rules_applied: verdicts.rules_applied.clone(),
                metadata_json: json!({ "payout": id }).to_string(),
                error_code: None,
                legs: plan.legs,
                effects,
                now_ms,
            };
            ledger.record(movement).await.map(|recorded| {
                let mut record = record;
                record.transaction_id = Some(recorded.tx_id);
                record
            })
        }
    };
    let payout = match outcome {
        Ok(payout) => {
            services.decisions.record(
                payout.transaction_id,
                &actor.account_id,
                &logged_input,
                &verdicts.decisions,
            );
            services.jobs.wake();
            payout
        }
        Err(LedgerError::InsufficientFunds { .. }) => {
            return Err(ServiceError::InsufficientFunds {
                field: "amount".into(),
                message: format!(
                    "Wallet {wallet} has insufficient available funds for this payout and its fee ({} {})",
                    cmd.request.currency.minor_to_text(cmd.request.amount_minor + fee),
                    cmd.request.currency.code
                )
                .into(),
            });
        }
        Err(LedgerError::EffectRefused(store::PAYOUT_EXISTS)) => {
            // The same idempotency identity won a race with this request.
            let id = idempotency_id.as_deref().unwrap_or_default();
            return store::by_idempotency_id(&ledger.db, id).await?.ok_or_else(|| {
                ServiceError::Internal(anyhow::anyhow!("a payout conflicted with one that is not there"))
            });
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(payout = %payout.id, status = store::status_text(payout.status), method = payout.method.as_str(),
        recipient = %store::mask(&payout.recipient_account), "payout created");
    Ok(payout)
}

fn record_event(p: &Payout, event_type: &'static str) -> Effect {
    Effect::Event {
        event_type,
        account_id: p.account_id.clone(),
        environment: p.environment,
        object: serde_json::to_value(p.render()).expect("a payout serialises"),
    }
}

/// The job that hands a payout to its rail.
pub fn submit_job(payout_id: &str, now_ms: i64) -> NewJob {
    NewJob::new(SUBMIT_JOB, json!({ "payout_id": payout_id }), now_ms).unique(format!("{SUBMIT_JOB}:{payout_id}"))
}

/// One of the actor's payouts.
pub async fn retrieve(services: &Services, actor: &Actor, id: &str) -> ServiceResult<Payout> {
    let not_found = || ServiceError::NotFound {
        field: None,
        message: format!("No such payout: '{id}'").into(),
    };
    if !nixo_api::payouts::payout_id_ok(id) {
        return Err(not_found());
    }
    let payout = store::load(&services.ledger.db, id).await?;
    payout
        .filter(|p| p.account_id == actor.account_id && p.environment == actor.environment)
        .ok_or_else(not_found)
}

/// A page of the actor's payouts, newest first, and whether more follow.
pub async fn list(
    services: &Services,
    actor: &Actor,
    filter: &PayoutFilter,
    page: &ListParams,
) -> ServiceResult<(Vec<Payout>, bool)> {
    let mut scope = pagination::Scope::owned_by(actor);
    if let Some(status) = filter.status {
        scope.and("status =", Bind::Text(status.into()));
    }
    if let Some(currency) = filter.currency {
        scope.and("currency =", Bind::Text(currency.code.into()));
    }
    scope.created(filter.created);
    let listing = Listing::by_created(store::COLUMNS, "payouts", scope);
    let rows = pagination::fetch(&services.ledger.db, &listing, page).await?;
    let payouts = rows.rows.iter().map(store::from_row).collect::<Result<Vec<_>, _>>()?;
    let payouts = store::with_history(&services.ledger.db, payouts).await?;
    Ok((payouts, rows.has_more))
}

/// Cancels a payout that is pending, or processing but not yet handed to
/// its rail: the hold is released.
pub async fn cancel(services: &Services, actor: &Actor, id: &str) -> ServiceResult<Payout> {
    let payout = retrieve(services, actor, id).await?;
    let refuse = |p: &Payout, why: String| ServiceError::Conflict {
        code: "payout_not_cancelable",
        message: format!("Payout {} cannot be canceled: {why}", p.id).into(),
    };
    match payout.status {
        PayoutStatus::Pending | PayoutStatus::Processing => {}
        other => {
            return Err(refuse(
                &payout,
                format!(
                    "it is {}; only pending or processing payouts can be canceled",
                    store::status_text(other)
                ),
            ));
        }
    }
    if payout.rail_state != store::RAIL_UNSUBMITTED {
        return Err(refuse(
            &payout,
            format!("it was already submitted to the {} rail", payout.method.as_str()),
        ));
    }
    let now_ms = services.clock.now_ms();
    let mut canceled = payout.moved(PayoutStatus::Canceled, Some("canceled_by_client"), now_ms);
    canceled.rail_state = store::RAIL_ANSWERED;
    let effects = store::update(&payout, &canceled, Some(store::PAYOUT_CANCELED));
    let tx = payout
        .transaction_id
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("payout {} has no hold", payout.id)))?;
    match services
        .ledger
        .resolve_with(tx, Resolution::Void, effects, now_ms)
        .await
    {
        Ok(_) => Ok(canceled),
        Err(LedgerError::EffectRefused(_) | LedgerError::NotPending(_)) => {
            // Moved on meanwhile (submitted, answered): say what it is now.
            let now = retrieve(services, actor, id).await?;
            Err(refuse(
                &now,
                format!("it is {} and was handed to its rail", store::status_text(now.status)),
            ))
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fees_round_up_to_the_minor_unit() {
        assert_eq!(super::fee_minor(25_000, 50), 125);
        assert_eq!(super::fee_minor(1, 50), 1);
        assert_eq!(super::fee_minor(10_000, 100), 100);
        assert_eq!(super::fee_minor(0, 100), 0);
    }
}
