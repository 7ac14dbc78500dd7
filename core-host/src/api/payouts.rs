//! `/v1/payouts`: create, list, retrieve, cancel. Parse, call the payouts
//! service, render the payout object.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::payouts::{self, CreatePayout};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{ErrorBody, ObjectType, Payout, PayoutBody, PayoutList, PayoutsQuery};

fn render(caller: &Caller, status: StatusCode, payout: &payouts::store::Payout) -> Response {
    with_version(caller, (status, axum::Json(payout.render())).into_response())
}

/// Create a payout.
///
/// Sends money from your wallet in `currency` to a bank account
/// (`recipient.account_iban`, an ISO 20022 credit transfer) or an M-Pesa
/// number (`recipient.phone_number`, KES). The payout rule of the rail
/// validates the recipient (a bad IBAN is a 400 naming
/// `recipient.account_iban`); the fraud rules decide. Allowed: `processing`,
/// amount plus fee held until the rail answers. Held for review: `pending`
/// (history reason `review`). Declined: `failed` with `risk_declined`,
/// nothing held.
#[utoipa::path(
    post,
    path = "/v1/payouts",
    tag = "Payouts",
    operation_id = "create_payout",
    request_body = PayoutBody,
    responses(
        (status = 200, description = "The payout (processing, pending for review, or failed when declined)", body = Payout),
        (status = 402, description = "insufficient_funds: the wallet cannot cover amount plus fee", body = ErrorBody),
        (status = 409, description = "idempotency_key_in_use: a request with this key is still running", body = ErrorBody),
        (status = 422, description = "idempotency_key_reused: the key was used with another request", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let command = CreatePayout {
        actor: caller.actor(),
        request: nixo_api::payouts::payout_request(&body)?,
        idempotency_key: super::idempotency_key(&headers)?,
        from_wallet: None,
    };
    let payout = payouts::create(&state.services, command).await?;
    Ok(render(&caller, StatusCode::OK, &payout))
}

/// List payouts.
///
/// Your payouts, newest first, in cursor pages; filter by `status`,
/// `currency` and creation time (`created[gte]`, `created[lte]`, Unix seconds).
#[utoipa::path(
    get,
    path = "/v1/payouts",
    tag = "Payouts",
    operation_id = "list_payouts",
    params(PayoutsQuery),
    responses(
        (status = 200, description = "A page of payouts", body = PayoutList),
        (status = 404, description = "resource_not_found: the starting_after or ending_before payout is not in this list", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, page) = nixo_api::payouts::payouts_query(query.as_deref())?;
    let (payouts, has_more) = payouts::list(&state.services, &caller.actor(), &filter, &page).await?;
    let body = PayoutList {
        object: ObjectType::List,
        url: "/v1/payouts".into(),
        has_more,
        data: payouts.iter().map(payouts::store::Payout::render).collect(),
    };
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

/// Retrieve a payout, with its full status history.
#[utoipa::path(
    get,
    path = "/v1/payouts/{id}",
    tag = "Payouts",
    operation_id = "retrieve_payout",
    params(("id" = String, Path, description = "The payout's id", pattern = "^pyt_[A-Za-z0-9]+$", example = "pyt_1A2B3C4D5E6F")),
    responses(
        (status = 200, description = "The payout", body = Payout),
        (status = 404, description = "resource_not_found: no such payout of yours", body = ErrorBody),
    )
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let payout = payouts::retrieve(&state.services, &caller.actor(), &id).await?;
    Ok(render(&caller, StatusCode::OK, &payout))
}

/// Cancel a payout.
///
/// Only a `pending` payout, or a `processing` one its rail has not accepted
/// yet, can be canceled; its hold is released. Otherwise 409
/// `payout_not_cancelable`.
#[utoipa::path(
    delete,
    path = "/v1/payouts/{id}/cancel",
    tag = "Payouts",
    operation_id = "cancel_payout",
    params(("id" = String, Path, description = "The payout's id", pattern = "^pyt_[A-Za-z0-9]+$", example = "pyt_1A2B3C4D5E6F")),
    responses(
        (status = 200, description = "The canceled payout", body = Payout),
        (status = 404, description = "resource_not_found: no such payout of yours", body = ErrorBody),
        (status = 409, description = "payout_not_cancelable: it has ended, or its rail has it", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let payout = payouts::cancel(&state.services, &caller.actor(), &id).await?;
    Ok(render(&caller, StatusCode::OK, &payout))
}
