//! P2P transfers between wallets (the Nexbit document's
//! `POST /v1/payments/transfer`): ownership checks, fraud rules, then one
//! ledger movement — posted, held for review, or recorded as declined.

use super::{Actor, ServiceError, ServiceResult, Services};
use crate::ledger::fx::{self, FxError};
use crate::ledger::{AccountKind, FxApplied, LedgerError, Leg, Movement, Recorded, TxStatus, Wallet};
use crate::metrics::Stage;
use crate::money::Currency;
use crate::rules;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::time::Instant;

const HOUR_MS: i64 = 3_600_000;
/// How long a transfer held for review keeps its funds before the ledger
/// voids it by itself: the review's window and a grace hour, so the review
/// expires first and its policy (void, or approve) decides.
pub const REVIEW_HOLD_TIMEOUT_MS: i64 = super::reviews::REVIEW_WINDOW_MS + REVIEW_HOLD_GRACE_MS;
pub const REVIEW_HOLD_GRACE_MS: i64 = HOUR_MS;

/// A transfer as the client asked for it, already validated in shape.
#[derive(Debug, Clone)]
pub struct TransferCommand {
    pub actor: Actor,
    pub from_wallet: i64,
    pub to_wallet: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    pub metadata: Map<String, Value>,
    /// The client's `Idempotency-Key`: the ledger derives the transaction's
    /// identity from it, so a retry can never apply twice.
    pub idempotency_key: Option<String>,
}

/// What became of a transfer.
#[derive(Debug, Clone)]
pub struct TransferOutcome {
    pub recorded: Recorded,
    /// Reason codes the rules gave (for a decline).
    pub reasons: Vec<String>,
}

/// The ledger identity of a request: derived from the caller's account and
/// its idempotency key.
fn ledger_identity(account_id: &str, key: Option<&str>) -> Option<String> {
    key.map(|key| hex::encode(Sha256::digest(format!("transfer\n{account_id}\n{key}").as_bytes())))
}

/// A wallet the actor may use: the source must be the actor's own, the
/// destination any wallet of the same environment. Anything else is "not
/// found", so wallet ids of other customers do not leak.
pub(crate) async fn usable_wallet(
    services: &Services,
    actor: &Actor,
    id: i64,
    field: &'static str,
    must_own: bool,
) -> ServiceResult<Wallet> {
    let wallet = services.ledger.wallet(id).await?;
    wallet
        .filter(|w| w.environment == actor.environment)
        .filter(|w| !must_own || w.owner_account_id == actor.account_id)
        .ok_or_else(|| ServiceError::not_found(field, format!("No such wallet: {id}")))
}

/// The legs of a transfer: direct in one currency; across currencies
/// through the liquidity accounts of both, with the fee as its own leg.
async fn plan_legs(
    services: &Services,
    actor: &Actor,
    from: &Wallet,
    to: &Wallet,
    amount_minor: i64,
    currency: Currency,
    hold_until_ms: Option<i64>,
) -> ServiceResult<(Vec<Leg>, Option<FxApplied>)> {
    let leg = |debit, credit, amount_minor, currency| Leg {
        debit,
        credit,
        amount_minor,
        currency,
        pending_timeout_at_ms: hold_until_ms,
    };
    let to_currency = Currency::from_code(&to.currency)
        .ok_or_else(|| ServiceError::invalid("to_wallet", "unsupported wallet currency"))?;
    if to_currency == currency {
        return Ok((vec![leg(from.id, to.id, amount_minor, currency)], None));
    }
    let ledger = &services.ledger;
    let rate = fx::latest_rate(&ledger.db, currency, to_currency)
        .await?
        .ok_or_else(|| {
            ServiceError::invalid(
                "currency",
                format!(
                    "No exchange rate from {} to {} is available",
                    currency.code, to_currency.code
                ),
            )
        })?;
    let conversion = fx::convert(amount_minor, currency, to_currency, rate.rate, rate.fee_bp).map_err(|e| match e {
        FxError::TooSmall => ServiceError::invalid("amount", "Amount is too small to convert"),
        other => ServiceError::invalid("amount", other.to_string()),
    })?;
    let env = actor.environment;
    let source_pool = ledger.system_account(env, AccountKind::FxLiquidity, currency).await?;
    let destination_pool = ledger
        .system_account(env, AccountKind::FxLiquidity, to_currency)
        .await?;
    let mut legs = vec![
        leg(from.id, source_pool, conversion.net_minor, currency),
        leg(destination_pool, to.id, conversion.to_amount_minor, to_currency),
    ];
    if conversion.fee_minor > 0 {
        let fees = ledger.system_account(env, AccountKind::Fees, currency).await?;
        legs.push(leg(from.id, fees, conversion.fee_minor, currency));
    }
    let applied = FxApplied {
        to_amount_minor: conversion.to_amount_minor,
        to_currency,
        rate: rate.rate.normalize().to_string(),
        fee_minor: conversion.fee_minor,
    };
    Ok((legs, Some(applied)))
}

/// Runs a transfer: checks, fraud rules, ledger.
pub async fn transfer(services: &Services, cmd: TransferCommand) -> ServiceResult<TransferOutcome> {
    let actor = &cmd.actor;
    let started = Instant::now();
    let from = usable_wallet(services, actor, cmd.from_wallet, "from_wallet", true).await?;
    let to = usable_wallet(services, actor, cmd.to_wallet, "to_wallet", false).await?;
    if from.currency != cmd.currency.code {
        return Err(ServiceError::invalid(
            "currency",
            format!(
                "Wallet {} holds {}; the amount must be in {}",
                from.id, from.currency, from.currency
            ),
        ));
    }

    let now_ms = services.clock.now_ms();
    crate::limits::check_outgoing(
        &services.ledger.db,
        &services.limits,
        &actor.account_id,
        cmd.currency,
        cmd.amount_minor,
        now_ms,
    )
    .await?;
    Stage::TransferChecks.done(started);
    let ledger = &services.ledger;
    let started = Instant::now();
    // Wallet ids are not personal data: the log keeps the destination as is.
    let (verdicts, logged_input) = super::risk::assess(
        services,
        actor,
        super::risk::Subject {
            kind: rules::TransactionKind::Transfer,
            wallet: from.id,
            amount_minor: cmd.amount_minor,
            currency: cmd.currency,
            destination: to.id.to_string(),
            logged_destination: to.id.to_string(),
            destination_country: None,
            metadata: &cmd.metadata,
        },
    )
    .await?;
    Stage::TransferRules.done(started);

    let status = match verdicts.verdict {
        rules::Verdict::Allow => TxStatus::Settled,
        rules::Verdict::Review => TxStatus::PendingReview,
        rules::Verdict::Deny => TxStatus::Declined,
    };
    let (legs, fx) = match status {
        TxStatus::Declined => (Vec::new(), None),
        _ => {
            let hold_until_ms = (status == TxStatus::PendingReview).then_some(now_ms + REVIEW_HOLD_TIMEOUT_MS);
            plan_legs(
                services,
                actor,
                &from,
                &to,
                cmd.amount_minor,
                cmd.currency,
                hold_until_ms,
            )
            .await?
        }
    };
    // A review verdict opens a review with the hold.
    let effects = if status == TxStatus::PendingReview {
        super::reviews::open_effects(
            actor,
            &super::reviews::Opening {
                subject: "transfer",
                payout_id: None,
                amount_minor: cmd.amount_minor,
                currency: cmd.currency,
                parties: nixo_api::types::ReviewParties {
                    from_wallet: Some(from.id),
                    to_wallet: Some(to.id),
                    recipient: None,
                },
                rules_applied: verdicts.rules_applied.clone(),
                reasons: verdicts.reasons.clone(),
                score_bp: verdicts.score_bp,
                on_expiry: verdicts.review_expiry,
            },
            now_ms,
        )
    } else {
        Vec::new()
    };
    let movement = Movement {
        idempotency_id: ledger_identity(&actor.account_id, cmd.idempotency_key.as_deref()),
        environment: actor.environment,
        account_id: actor.account_id.clone(),
        kind: "transfer",
        status,
        amount_minor: cmd.amount_minor,
        currency: cmd.currency,
        fx,
        from_wallet: Some(from.id),
        to_wallet: Some(to.id),
        risk_score_bp: Some(verdicts.score_bp),
        rules_applied: verdicts.rules_applied,
        metadata_json: Value::Object(cmd.metadata).to_string(),
        error_code: (status == TxStatus::Declined).then_some("transfer_declined"),
        legs,
        effects,
        now_ms,
    };
    let started = Instant::now();
    let recorded = ledger.record(movement).await;
    Stage::TransferLedger.done(started);
    let decided_tx = recorded.as_ref().ok().filter(|r| !r.replayed).map(|r| r.tx_id);
    if decided_tx.is_some() || recorded.is_err() {
        services
            .decisions
            .record(decided_tx, &actor.account_id, &logged_input, &verdicts.decisions);
    }
    let recorded = recorded.map_err(|err| match err {
        LedgerError::InsufficientFunds { .. } => ServiceError::InsufficientFunds {
            field: "amount".into(),
            message: format!("Wallet {} has insufficient available funds for this transfer", from.id).into(),
        },
        LedgerError::IdempotencyConflict(_) => ServiceError::IdempotencyKeyReused {
            message: "This Idempotency-Key was already used with different parameters".into(),
        },
        other => other.into(),
    })?;
    Ok(TransferOutcome {
        recorded,
        reasons: verdicts.reasons,
    })
}
