//! `GET /v1/balances`: available, pending and reserved funds per currency,
//! derived from the ledger (Nixo document shape).

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::{ledger, resources, services};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{BalanceObject, BalancesQuery, ErrorBody};

/// Balances per currency.
///
/// Available, pending (incoming, not settled) and reserved (outgoing, held)
/// funds of your wallets, or of one wallet, derived from the ledger.
#[utoipa::path(
    get,
    path = "/v1/balances",
    tag = "Balances",
    operation_id = "retrieve_balances",
    params(BalancesQuery),
    responses(
        (status = 200, description = "The balances", body = BalanceObject),
        (status = 404, description = "resource_not_found: the wallet does not exist or is not yours", body = ErrorBody),
    )
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let wallet_id = nixo_api::schema::balances_query(query.as_deref())?;
    let balances = services::balances::balances(&state.services, &caller.actor(), wallet_id).await?;
    let body = resources::balance(caller.principal.environment == ledger::Environment::Live, &balances);
    Ok(with_version(&caller, axum::Json(body).into_response()))
}
