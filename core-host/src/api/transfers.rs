//! `POST /v1/payments/transfer`: P2P between wallets (Nexbit document).

use super::{AppState, Caller, parse_object, reject_unknown, with_version};
use crate::error::ApiError;
use crate::ledger::{self, LedgerError, Leg, Movement, TxStatus, Wallet};
use crate::money::{self, Currency};
use crate::{accounts, rules};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// Metadata: keys, key length and value length (Stripe's limits).
pub const METADATA_KEYS_MAX: usize = 50;
pub const METADATA_KEY_LEN_MAX: usize = 40;
pub const METADATA_VALUE_LEN_MAX: usize = 500;

const HOUR_MS: i64 = 3_600_000;

struct TransferRequest {
    from_wallet: i64,
    to_wallet: i64,
    amount_minor: i64,
    currency: Currency,
    metadata: Map<String, Value>,
}

fn parse_wallet_id(map: &Map<String, Value>, field: &'static str) -> Result<i64, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(ApiError::missing(field)),
        Some(Value::Number(n)) => n.as_i64().filter(|id| *id > 0).ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{field} must be a positive integer wallet id"),
            )
        }),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be an integer wallet id, such as 101"),
        )),
    }
}

/// Optional flat metadata with string values.
pub fn parse_metadata(value: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::invalid(
                "metadata",
                "metadata must be an object of string values",
            ));
        }
    };
    if map.len() > METADATA_KEYS_MAX {
        return Err(ApiError::invalid(
            "metadata",
            format!("metadata may have at most {METADATA_KEYS_MAX} keys"),
        ));
    }
    for (key, value) in map {
        let field = format!("metadata.{key}");
        if key.is_empty() || key.chars().count() > METADATA_KEY_LEN_MAX {
            return Err(ApiError::invalid(
                field,
                format!("metadata keys are 1 to {METADATA_KEY_LEN_MAX} characters"),
            ));
        }
        match value {
            Value::String(s) if s.chars().count() <= METADATA_VALUE_LEN_MAX => {}
            Value::String(_) => {
                return Err(ApiError::invalid(
                    field,
                    format!("metadata values are at most {METADATA_VALUE_LEN_MAX} characters"),
                ));
            }
            _ => return Err(ApiError::invalid(field, "metadata values must be strings")),
        }
    }
    Ok(map.clone())
}

fn parse(body: &[u8]) -> Result<TransferRequest, ApiError> {
    let map = parse_object(body)?;
    reject_unknown(
        &map,
        &["from_wallet", "to_wallet", "amount", "currency", "metadata"],
    )?;
    let from_wallet = parse_wallet_id(&map, "from_wallet")?;
    let to_wallet = parse_wallet_id(&map, "to_wallet")?;
    let currency = money::parse_currency(map.get("currency"), "currency")?;
    let amount_minor = money::parse_amount(map.get("amount"), currency, "amount")?;
    let metadata = parse_metadata(map.get("metadata"))?;
    if from_wallet == to_wallet {
        return Err(ApiError::invalid(
            "to_wallet",
            "to_wallet must differ from from_wallet",
        ));
    }
    Ok(TransferRequest {
        from_wallet,
        to_wallet,
        amount_minor,
        currency,
        metadata,
    })
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
    let wallet = ledger::wallet(&state.db, id).await?;
    wallet
        .filter(|w| w.environment == caller.principal.environment)
        .filter(|w| !must_own || w.owner_account_id == caller.principal.account_id)
        .ok_or_else(|| ApiError::not_found(format!("No such wallet: {id}")).with_field(field))
}

fn risk_score(score_bp: u16) -> Value {
    let text = Decimal::new(i64::from(score_bp), 4).normalize().to_string();
    Value::Number(text.parse().expect("a decimal is a JSON number"))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse(&body)?;
    let from = usable_wallet(&state, &caller, req.from_wallet, "from_wallet", true).await?;
    let to = usable_wallet(&state, &caller, req.to_wallet, "to_wallet", false).await?;
    for wallet in [&from, &to] {
        if wallet.currency != req.currency.code {
            return Err(ApiError::invalid(
                "currency",
                format!(
                    "Wallet {} holds {}, not {}",
                    wallet.id, wallet.currency, req.currency.code
                ),
            ));
        }
    }

    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let account = accounts::facts(&state.db, &caller.principal.account_id, now_ms).await?;
    let last_hour = ledger::velocity(&state.db, from.id, now_ms - HOUR_MS).await?;
    let last_day = ledger::velocity(&state.db, from.id, now_ms - 24 * HOUR_MS).await?;
    let amount_text = req.currency.to_decimal(req.amount_minor).to_string();
    let facts = rules::Transaction {
        kind: rules::TransactionKind::Transfer,
        amount: rules::Money {
            amount: amount_text,
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

    let (status, legs) = match verdicts.verdict {
        rules::Verdict::Allow => (TxStatus::Settled, Some(false)),
        rules::Verdict::Review => (TxStatus::PendingReview, Some(true)),
        rules::Verdict::Deny => (TxStatus::Declined, None),
    };
    let legs: Vec<Leg> = legs
        .map(|pending| Leg {
            debit: from.id,
            credit: to.id,
            amount_minor: req.amount_minor,
            pending,
        })
        .into_iter()
        .collect();
    let metadata_json = Value::Object(req.metadata).to_string();
    let movement = Movement {
        environment: caller.principal.environment,
        account_id: &caller.principal.account_id,
        kind: "transfer",
        status,
        amount_minor: req.amount_minor,
        currency: req.currency,
        from_wallet: Some(from.id),
        to_wallet: Some(to.id),
        risk_score_bp: Some(verdicts.score_bp),
        rules_applied: &verdicts.rules_applied,
        metadata_json: &metadata_json,
        error_code: (status == TxStatus::Declined).then_some("transfer_declined"),
        legs: &legs,
        now_ms,
    };
    let tx_id = match ledger::record(&state.db, &movement).await {
        Ok(id) => id,
        Err(LedgerError::InsufficientFunds { .. }) => {
            return Err(ApiError::insufficient_funds(
                "amount",
                format!(
                    "Wallet {} has insufficient available funds for this transfer",
                    from.id
                ),
            ));
        }
        Err(LedgerError::Db(err)) => return Err(err.into()),
    };

    let (http_status, envelope_status, error) = match status {
        TxStatus::Settled => (StatusCode::OK, "success", Value::Null),
        TxStatus::PendingReview => (StatusCode::ACCEPTED, "success", Value::Null),
        TxStatus::Declined => (
            StatusCode::PAYMENT_REQUIRED,
            "failed",
            json!({"code": "transfer_declined", "message": "The transfer was declined by risk rules", "reasons": verdicts.reasons}),
        ),
    };
    let body = json!({
        "status": envelope_status,
        "data": {
            "tx_id": tx_id.to_string(),
            "status": status.as_str(),
            "risk_score": risk_score(verdicts.score_bp),
            "rules_applied": verdicts.rules_applied,
            "error": error,
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        }
    });
    Ok(with_version(
        &caller,
        (http_status, axum::Json(body)).into_response(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_body_parses() {
        let body = br#"{"from_wallet":101,"to_wallet":102,"amount":"50.00","currency":"KES","metadata":{"note":"For lunch"}}"#;
        let req = parse(body).unwrap();
        assert_eq!(
            (req.from_wallet, req.to_wallet, req.amount_minor),
            (101, 102, 5_000)
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(&str, &str); 9] = [
            (
                r#"{"to_wallet":102,"amount":"1","currency":"KES"}"#,
                "from_wallet",
            ),
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
