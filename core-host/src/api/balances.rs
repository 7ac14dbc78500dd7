//! `GET /v1/balances`: available, pending and reserved funds per currency,
//! derived from the ledger (Nixo document shape).

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::ledger;
use crate::money::{Currency, MinorUnits};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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
    let wallet_id = nixo_gateway::schema::balances_query(query.as_deref())?;
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
