//! `POST /v1/payments/transfer`: P2P between wallets (Nexbit document).

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::ledger::fx::{self, FxError};
use crate::ledger::{self, AccountKind, FxApplied, LedgerError, Leg, Movement, Recorded, TxStatus, Wallet};
use crate::money::{Currency, MinorUnits};
use crate::{accounts, rules};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nixo_gateway::schema::{self, TransferRequest};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const HOUR_MS: i64 = 3_600_000;
/// How long a transfer held for review keeps its funds before it voids itself.
pub const REVIEW_HOLD_TIMEOUT_MS: i64 = 72 * HOUR_MS;
/// Longest `Idempotency-Key` accepted (shared with the gateway).
pub use nixo_gateway::edge::IDEMPOTENCY_KEY_LEN_MAX;

fn parse(body: &[u8]) -> Result<TransferRequest, ApiError> {
    Ok(schema::transfer_request(body)?)
}

/// Loads a wallet the caller may use: the source must be the caller's own,
/// the destination any wallet of the same environment. Anything else is
/// reported as not found, so wallet ids of other customers do not leak.
async fn usable_wallet(
    state: &AppState,
    caller: &Caller,
    id: i64,
    field: &'static str,
    must_own: bool,
) -> Result<Wallet, ApiError> {
    let wallet = state.ledger.wallet(id).await?;
    wallet
        .filter(|w| w.environment == caller.principal.environment)
        .filter(|w| !must_own || w.owner_account_id == caller.principal.account_id)
        .ok_or_else(|| ApiError::not_found(format!("No such wallet: {id}")).with_field(field))
}

fn risk_score(score_bp: u16) -> Value {
    let text = Decimal::new(i64::from(score_bp), 4).normalize().to_string();
    Value::Number(text.parse().expect("a decimal is a JSON number"))
}

/// The ledger identity of a request: derived from the caller's account and
/// its `Idempotency-Key`, so a retry can never apply twice.
fn idempotency_id(headers: &HeaderMap, account_id: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if !nixo_gateway::edge::idempotency_key_ok(key) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters"),
        ));
    }
    let digest = Sha256::digest(format!("transfer\n{account_id}\n{key}").as_bytes());
    Ok(Some(hex::encode(digest)))
}

/// The legs of a transfer: direct in one currency; across currencies
/// through the liquidity accounts of both, with the fee as its own leg.
async fn plan_legs(
    state: &AppState,
    caller: &Caller,
    from: &Wallet,
    to: &Wallet,
    amount_minor: i64,
    currency: Currency,
    hold_until_ms: Option<i64>,
) -> Result<(Vec<Leg>, Option<FxApplied>), ApiError> {
    let leg = |debit, credit, amount_minor, currency| Leg {
        debit,
        credit,
        amount_minor,
        currency,
        pending_timeout_at_ms: hold_until_ms,
    };
    let to_currency = Currency::from_code(&to.currency)
        .ok_or_else(|| ApiError::invalid("to_wallet", "unsupported wallet currency"))?;
    if to_currency == currency {
        return Ok((vec![leg(from.id, to.id, amount_minor, currency)], None));
    }
    let rate = fx::latest_rate(&state.ledger.db, currency, to_currency)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "currency",
                format!(
                    "No exchange rate from {} to {} is available",
                    currency.code, to_currency.code
                ),
            )
        })?;
    let conversion = fx::convert(amount_minor, currency, to_currency, rate.rate, rate.fee_bp).map_err(|e| match e {
        FxError::TooSmall => ApiError::invalid("amount", "Amount is too small to convert"),
        other => ApiError::invalid("amount", other.to_string()),
    })?;
    let env = caller.principal.environment;
    let source_pool = state
        .ledger
        .system_account(env, AccountKind::FxLiquidity, currency)
        .await?;
    let destination_pool = state
        .ledger
        .system_account(env, AccountKind::FxLiquidity, to_currency)
        .await?;
    let mut legs = vec![
        leg(from.id, source_pool, conversion.net_minor, currency),
        leg(destination_pool, to.id, conversion.to_amount_minor, to_currency),
    ];
    if conversion.fee_minor > 0 {
        let fees = state.ledger.system_account(env, AccountKind::Fees, currency).await?;
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

fn respond(caller: &Caller, recorded: &Recorded, reasons: &[String]) -> Response {
    let (http_status, envelope_status, error) = match recorded.status {
        TxStatus::Settled => (StatusCode::OK, "success", Value::Null),
        TxStatus::PendingReview => (StatusCode::ACCEPTED, "success", Value::Null),
        TxStatus::Declined => (
            StatusCode::PAYMENT_REQUIRED,
            "failed",
            json!({"code": "transfer_declined", "message": "The transfer was declined by risk rules", "reasons": reasons}),
        ),
        TxStatus::Voided | TxStatus::Expired => (
            StatusCode::OK,
            "failed",
            json!({"code": "transfer_voided", "message": "The transfer's hold was released without settling"}),
        ),
    };
    let timestamp = chrono::DateTime::from_timestamp_millis(recorded.created_at_ms).unwrap_or_default();
    let body = json!({
        "status": envelope_status,
        "data": {
            "tx_id": recorded.tx_id.to_string(),
            "status": recorded.status.as_str(),
            "risk_score": risk_score(recorded.risk_score_bp.unwrap_or(0)),
            "rules_applied": recorded.rules_applied,
            "error": error,
            "timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        }
    });
    let mut response = with_version(caller, (http_status, axum::Json(body)).into_response());
    if recorded.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse(&body)?;
    let idempotency_id = idempotency_id(&headers, &caller.principal.account_id)?;
    let from = usable_wallet(&state, &caller, req.from_wallet, "from_wallet", true).await?;
    let to = usable_wallet(&state, &caller, req.to_wallet, "to_wallet", false).await?;
    if from.currency != req.currency.code {
        return Err(ApiError::invalid(
            "currency",
            format!(
                "Wallet {} holds {}; the amount must be in {}",
                from.id, from.currency, from.currency
            ),
        ));
    }

    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let account = accounts::facts(&state.ledger.db, &caller.principal.account_id, now_ms).await?;
    let last_hour = state.ledger.velocity(from.id, now_ms - HOUR_MS).await?;
    let last_day = state.ledger.velocity(from.id, now_ms - 24 * HOUR_MS).await?;
    let facts = rules::Transaction {
        kind: rules::TransactionKind::Transfer,
        amount: rules::Money {
            amount: req.currency.to_decimal(req.amount_minor).to_string(),
            currency: req.currency.code.to_string(),
        },
        source: from.id.to_string(),
        destination: to.id.to_string(),
        destination_country: None,
        account: rules::AccountFacts {
            kyc_level: account.kyc_level,
            age_days: account.age_days,
            sandbox: caller.principal.environment == ledger::Environment::Sandbox,
        },
        velocity: rules::VelocityFacts {
            count_last_hour: last_hour.count,
            sum_last_hour: req.currency.to_decimal(last_hour.sum_minor).to_string(),
            count_last_day: last_day.count,
            sum_last_day: req.currency.to_decimal(last_day.sum_minor).to_string(),
        },
        metadata: req
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    };
    let verdicts = state.rules.check_fraud(&facts);
    // What the rules saw, for the decision log (wallet ids are not personal data).
    let logged_input = json!({
        "kind": "transfer",
        "amount": facts.amount.amount,
        "currency": facts.amount.currency,
        "source": facts.source,
        "destination": facts.destination,
        "account": { "kyc_level": account.kyc_level, "age_days": account.age_days },
        "velocity": { "count_last_hour": last_hour.count, "count_last_day": last_day.count },
    });

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
                &state,
                &caller,
                &from,
                &to,
                req.amount_minor,
                req.currency,
                hold_until_ms,
            )
            .await?
        }
    };
    let movement = Movement {
        idempotency_id,
        environment: caller.principal.environment,
        account_id: caller.principal.account_id.clone(),
        kind: "transfer",
        status,
        amount_minor: req.amount_minor,
        currency: req.currency,
        fx,
        from_wallet: Some(from.id),
        to_wallet: Some(to.id),
        risk_score_bp: Some(verdicts.score_bp),
        rules_applied: verdicts.rules_applied,
        metadata_json: Value::Object(req.metadata).to_string(),
        error_code: (status == TxStatus::Declined).then_some("transfer_declined"),
        legs,
        now_ms,
    };
    let recorded = state.ledger.record(movement).await;
    let decided_tx = recorded.as_ref().ok().filter(|r| !r.replayed).map(|r| r.tx_id);
    if decided_tx.is_some() || recorded.is_err() {
        state.decisions.record(
            decided_tx,
            &caller.principal.account_id,
            &logged_input,
            &verdicts.decisions,
        );
    }
    let recorded = match recorded {
        Ok(recorded) => recorded,
        Err(LedgerError::InsufficientFunds { .. }) => {
            return Err(ApiError::insufficient_funds(
                "amount",
                format!("Wallet {} has insufficient available funds for this transfer", from.id),
            ));
        }
        Err(LedgerError::IdempotencyConflict(_)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "This Idempotency-Key was already used with different parameters",
            )
            .with_field("Idempotency-Key"));
        }
        Err(LedgerError::Db(err)) => return Err(err.into()),
        Err(other) => return Err(ApiError::internal(&anyhow::Error::new(other))),
    };
    Ok(respond(&caller, &recorded, &verdicts.reasons))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_body_parses() {
        let body =
            br#"{"from_wallet":101,"to_wallet":102,"amount":"50.00","currency":"KES","metadata":{"note":"For lunch"}}"#;
        let req = parse(body).unwrap();
        assert_eq!((req.from_wallet, req.to_wallet, req.amount_minor), (101, 102, 5_000));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(&str, &str); 9] = [
            (r#"{"to_wallet":102,"amount":"1","currency":"KES"}"#, "from_wallet"),
            (
                r#"{"from_wallet":"101","to_wallet":102,"amount":"1","currency":"KES"}"#,
                "from_wallet",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":-2,"amount":"1","currency":"KES"}"#,
                "to_wallet",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":101,"amount":"1","currency":"KES"}"#,
                "to_wallet",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"XYZ"}"#,
                "currency",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":102,"amount":"0","currency":"KES"}"#,
                "amount",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":102,"amount":"1.001","currency":"KES"}"#,
                "amount",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"KES","metadata":{"a":1}}"#,
                "metadata.a",
            ),
            (
                r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"KES","memo":"x"}"#,
                "memo",
            ),
        ];
        for (body, field) in cases {
            let err = parse(body.as_bytes()).err().unwrap();
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn risk_scores_are_exact_decimals() {
        assert_eq!(risk_score(500).to_string(), "0.05");
        assert_eq!(risk_score(10_000).to_string(), "1");
        assert_eq!(risk_score(0).to_string(), "0");
    }
}
