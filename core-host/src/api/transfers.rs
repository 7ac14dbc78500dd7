//! `POST /v1/payments/transfer`: parse, run the transfer service, render
//! the Nexbit document's envelope.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::payments::PaymentView;
use crate::services::transfers::{self, TransferCommand};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nixo_api::schema::{self, TransferRequest};
use nixo_api::types::{ErrorBody, TransferBody, TransferRefused, TransferResponse, TransferStatus};

fn parse(body: &[u8]) -> Result<TransferRequest, ApiError> {
    Ok(schema::transfer_request(body)?)
}

/// The HTTP status of a payment answer: 200 when it ended, 202 while money
/// is held (review, in flight), 402 when the risk rules declined it.
pub(super) fn http_status(status: TransferStatus) -> StatusCode {
    match status {
        TransferStatus::Settled | TransferStatus::Voided | TransferStatus::Expired | TransferStatus::Failed => {
            StatusCode::OK
        }
        TransferStatus::PendingReview | TransferStatus::Processing => StatusCode::ACCEPTED,
        TransferStatus::Declined => StatusCode::PAYMENT_REQUIRED,
    }
}

/// Renders a payment answer in the caller's version; `replayed` marks the
/// ledger's replay of an earlier request with the same key.
pub(super) fn respond(caller: &Caller, view: &PaymentView, replayed: bool) -> Response {
    let body = view.envelope();
    let mut response = with_version(caller, (http_status(view.status), axum::Json(body)).into_response());
    if replayed {
        // The ledger found the transaction this key made before (its
        // idempotency record was purged, or the first call died answering).
        response.headers_mut().insert(
            super::idempotency::REPLAYED_HEADER,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// P2P transfer between wallets.
///
/// Same currency, or across currencies at the latest rate with the fee as
/// its own leg. Every fraud rule plugin decides: all allow → 200 `SETTLED`;
/// any review → 202 `PENDING_REVIEW` (funds held); any deny → 402
/// `DECLINED` (nothing moves).
#[utoipa::path(
    post,
    path = "/v1/payments/transfer",
    tag = "Payments",
    operation_id = "create_transfer",
    request_body = TransferBody,
    responses(
        (status = 200, description = "Settled (or, for a replay of a voided hold, failed)", body = TransferResponse),
        (status = 202, description = "Held for review", body = TransferResponse),
        (status = 402, description = "Declined by the risk rules (the envelope, status failed), or insufficient_funds (an error)", body = TransferRefused),
        (status = 404, description = "resource_not_found: a wallet that does not exist or is not yours (field names it)", body = ErrorBody),
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
    let req = parse(&body)?;
    let command = TransferCommand {
        actor: caller.actor(),
        from_wallet: req.from_wallet,
        to_wallet: req.to_wallet,
        amount_minor: req.amount_minor,
        currency: req.currency,
        metadata: req.metadata,
        idempotency_key: super::idempotency_key(&headers)?,
    };
    let outcome = transfers::transfer(&state.services, command).await?;
    let view = PaymentView::of_transfer(&outcome.recorded, &outcome.reasons);
    Ok(respond(&caller, &view, outcome.recorded.replayed))
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
        use crate::services::payments::risk_score;
        assert_eq!(risk_score(500).to_string(), "0.05");
        assert_eq!(risk_score(10_000).to_string(), "1");
        assert_eq!(risk_score(0).to_string(), "0");
    }
}
