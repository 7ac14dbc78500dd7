//! `GET /v1/balances`: available, pending and reserved funds per currency,
//! derived from the ledger (Nixo document shape).

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::ledger;
use crate::money::Currency;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `?wallet_id=101` narrows the balance to one of the caller's wallets.
fn parse_query(query: Option<&str>) -> Result<Option<i64>, ApiError> {
    let mut wallet_id = None;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "wallet_id" => {
                let id = value.parse::<i64>().ok().filter(|id| *id > 0);
                wallet_id =
                    Some(id.ok_or_else(|| {
                        ApiError::invalid("wallet_id", "wallet_id must be a positive integer wallet id")
                    })?);
            }
            other => {
                return Err(ApiError::invalid(
                    other.to_string(),
                    format!("Received unknown parameter: {other}"),
                ));
            }
        }
    }
    Ok(wallet_id)
}

fn entries(balances: &[ledger::Balance], pick: impl Fn(&ledger::Balance) -> i64) -> Vec<Value> {
    balances
        .iter()
        .filter_map(|b| {
            let currency = Currency::from_code(&b.currency)?;
            Some(json!({ "currency": b.currency, "amount": currency.to_json_number(pick(b)) }))
        })
        .collect()
}

pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let wallet_id = parse_query(query.as_deref())?;
    if let Some(id) = wallet_id {
        let owned = state.ledger.wallet(id).await?.is_some_and(|w| {
            w.owner_account_id == caller.principal.account_id && w.environment == caller.principal.environment
        });
        if !owned {
            return Err(ApiError::not_found(format!("No such wallet: {id}")).with_field("wallet_id"));
        }
    }
    let balances = state.ledger.balances(&caller.principal.account_id, wallet_id).await?;
    let body = json!({
        "object": "balance",
        "livemode": caller.principal.environment == ledger::Environment::Live,
        "available": entries(&balances, |b| b.available_minor),
        "pending": entries(&balances, |b| b.pending_minor),
        "reserved": entries(&balances, |b| b.reserved_minor),
    });
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(parse_query(None), Ok(None));
        assert_eq!(parse_query(Some("wallet_id=101")), Ok(Some(101)));
        assert_eq!(
            parse_query(Some("wallet_id=x")).unwrap_err().field.as_deref(),
            Some("wallet_id")
        );
        assert_eq!(
            parse_query(Some("limit=5")).unwrap_err().field.as_deref(),
            Some("limit")
        );
    }
}
