//! The Nexbit document's money-in and money-out routes: deposits and
//! withdrawals (`POST /v1/payments/transact`), a payment's status
//! (`GET /v1/payments/{tx_id}`) and async payments. Parse, call one
//! service, render.

use super::transfers::respond;
use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::{async_payments, deposits, payments, withdrawals};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nixo_api::payments::TransactRequest;
use nixo_api::types::{
    AsyncAccepted, AsyncPayment, DepositResponse, ErrorBody, TransactBody, TransactResponse, TransferBody,
    TransferRefused, TransferResponse,
};

/// What the payer is told when the prompt is on its way.
const DEPOSIT_MESSAGE: &str = "Deposit initiated successfully. Please complete the payment on your device.";
const ASYNC_MESSAGE: &str = "Transaction queued for processing.";

/// Deposit or withdrawal.
///
/// `type: "deposit"`: an M-Pesa STK push asks the payer (`phone_number`) to
/// approve the amount (KES, whole shillings); the wallet (`wallet`, else
/// your KES wallet) shows it as `pending` until M-Pesa confirms, then it is
/// credited (`balance.updated`, `deposit.succeeded`) or released
/// (`deposit.failed`). Follow it with `GET /v1/payments/{tx_id}`.
///
/// `type: "withdrawal"`: money from `from_wallet` to an M-Pesa number or an
/// IBAN (`metadata.gateway` `mpesa` | `bank`, or the destination's form).
/// The amount and the rail's fee are held while the rail works; the answer
/// waits a few seconds for it: 200 `SETTLED` when it confirmed, otherwise
/// 202 `PROCESSING` (it settles or is reversed later, with
/// `balance.updated`). A review holds the funds: 202 `PENDING_REVIEW`.
#[utoipa::path(
    post,
    path = "/v1/payments/transact",
    tag = "Payments",
    operation_id = "create_transaction",
    request_body = TransactBody,
    responses(
        (status = 200, description = "A deposit initiated (DepositResponse), or a withdrawal settled or failed on its rail (the payment envelope)", body = TransactResponse),
        (status = 202, description = "A withdrawal in flight on its rail (PROCESSING) or held for review (PENDING_REVIEW)", body = TransferResponse),
        (status = 402, description = "A withdrawal declined by the risk rules (the envelope), or insufficient_funds (an error)", body = TransferRefused),
        (status = 404, description = "resource_not_found: a wallet that does not exist or is not yours (field names it)", body = ErrorBody),
        (status = 409, description = "idempotency_key_in_use: a request with this key is still running; deposit_unconfirmed: a retried deposit whose payment prompt was sent but whose answer was lost, closed as failed (start a new deposit with a new key)", body = ErrorBody),
        (status = 422, description = "idempotency_key_reused: the key was used with another request", body = ErrorBody),
    )
)]
pub async fn transact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = nixo_api::payments::transact_request(&body)?;
    let key = super::idempotency_key(&headers)?;
    let services = &state.services;
    let actor = caller.actor();
    match request {
        TransactRequest::Deposit(deposit) => {
            let d = deposits::initiate(services, &actor, &deposit, key.as_deref()).await?;
            let failed = d.status == deposits::FAILED;
            let body = DepositResponse {
                success: !failed,
                status: if failed { "failed".into() } else { "initiated".into() },
                provider_ref: d.checkout_request_id.clone(),
                redirect_url: None,
                message: if failed {
                    "The deposit did not go through; start a new one".into()
                } else {
                    DEPOSIT_MESSAGE.into()
                },
                tx_id: d.transaction_id.map(|t| t.to_string()).unwrap_or_default(),
            };
            Ok(with_version(&caller, axum::Json(body).into_response()))
        }
        TransactRequest::Withdrawal(withdrawal) => {
            let payout = withdrawals::withdraw(services, &actor, &withdrawal, key.as_deref()).await?;
            let view = payments::of_payout(services, &actor, &payout).await?;
            Ok(respond(&caller, &view, false))
        }
    }
}

/// Retrieve a payment's status.
///
/// Any payment of yours by its `tx_id`: a transfer, a withdrawal
/// (PROCESSING until its rail answers, then SETTLED or FAILED with the
/// rail's reason) or a deposit (PROCESSING until the payer approves, then
/// SETTLED or FAILED with M-Pesa's result).
#[utoipa::path(
    get,
    path = "/v1/payments/{tx_id}",
    tag = "Payments",
    operation_id = "retrieve_payment",
    params(("tx_id" = String, Path, description = "The payment's transaction id", pattern = "^[0-9]+$", example = "10057")),
    responses(
        (status = 200, description = "The payment as it stands", body = TransferResponse),
        (status = 404, description = "resource_not_found: no such payment of yours", body = ErrorBody),
    )
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tx_id): Path<String>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::not_found(format!("No such payment: '{tx_id}'"));
    let id = nixo_api::payments::tx_id(&tx_id).ok_or_else(missing)?;
    let view = payments::status(&state.services, &caller.actor(), id).await?;
    let body = view.envelope();
    Ok(with_version(
        &caller,
        (StatusCode::OK, axum::Json(body)).into_response(),
    ))
}

/// Queue a payment.
///
/// The transfer of `POST /v1/payments/transfer`, accepted at once (202)
/// and run in the background; follow it with
/// `GET /v1/payments/async/{job_id}` or the `async_payment.succeeded` /
/// `async_payment.failed` events. It moves money exactly once, even if its
/// job runs twice.
#[utoipa::path(
    post,
    path = "/v1/payments/async",
    tag = "Payments",
    operation_id = "create_async_payment",
    request_body = TransferBody,
    responses(
        (status = 202, description = "Accepted", body = AsyncAccepted),
        (status = 409, description = "idempotency_key_in_use: a request with this key is still running", body = ErrorBody),
        (status = 422, description = "idempotency_key_reused: the key was used with another request", body = ErrorBody),
    )
)]
pub async fn create_async(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = nixo_api::schema::transfer_request(&body)?;
    let key = super::idempotency_key(&headers)?;
    let job_id = async_payments::accept(&state.services, &caller.actor(), &request, key.as_deref()).await?;
    let body = AsyncAccepted {
        status: "accepted".into(),
        job_id,
        message: ASYNC_MESSAGE.into(),
    };
    Ok(with_version(
        &caller,
        (StatusCode::ACCEPTED, axum::Json(body)).into_response(),
    ))
}

/// Retrieve an async payment.
///
/// `queued`, `running`, then `succeeded` (the transfer's answer in
/// `result`) or `failed` (a DECLINED answer in `result`, or the error that
/// stopped it in `error`).
#[utoipa::path(
    get,
    path = "/v1/payments/async/{job_id}",
    tag = "Payments",
    operation_id = "retrieve_async_payment",
    params(("job_id" = String, Path, description = "The async payment's id", pattern = "^job_[0-9a-f]{12}$", example = "job_a1b2c3d4e5f6")),
    responses(
        (status = 200, description = "The async payment", body = AsyncPayment),
        (status = 404, description = "resource_not_found: no such async payment of yours", body = ErrorBody),
    )
)]
pub async fn retrieve_async(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let payment = async_payments::retrieve(&state.services, &caller.actor(), &job_id).await?;
    Ok(with_version(&caller, axum::Json(payment).into_response()))
}
