//! Provider callbacks: Daraja posts B2C results, queue time-outs and STK
//! push results (deposits) here.
//! Daraja does not sign them, so the URL carries a secret token, the body
//! is parsed strictly and cross-checked against the payout; a repeated
//! result is acknowledged and changes nothing. Not part of the public API
//! (no key, not in the OpenAPI document).

use super::AppState;
use crate::error::ApiError;
use crate::services::deposits;
use crate::services::payouts::rails;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

fn ack() -> Response {
    axum::Json(json!({ "ResultCode": 0, "ResultDesc": "Accepted" })).into_response()
}

fn refused(why: &dyn std::fmt::Display) -> Response {
    tracing::warn!(reason = %why, "M-Pesa callback refused");
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "ResultCode": 1, "ResultDesc": why.to_string() })),
    )
        .into_response()
}

fn token_ok(state: &AppState, token: &str) -> Result<(), ApiError> {
    if state.services.rails.token_ok(token) {
        Ok(())
    } else {
        Err(ApiError::not_found("Unrecognized request URL"))
    }
}

/// `POST /callbacks/mpesa/b2c/result/{token}`.
pub async fn mpesa_result(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    token_ok(&state, &token)?;
    match rails::ingest_mpesa_result(&state.services, &body).await? {
        Ok(_) => Ok(ack()),
        Err(why) => Ok(refused(&why)),
    }
}

/// `POST /callbacks/mpesa/b2c/timeout/{token}`.
pub async fn mpesa_timeout(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    token_ok(&state, &token)?;
    match rails::ingest_mpesa_timeout(&state.services, &body).await? {
        Ok(()) => Ok(ack()),
        Err(why) => Ok(refused(&why)),
    }
}

/// `POST /callbacks/mpesa/stk/{token}`.
pub async fn mpesa_stk(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    token_ok(&state, &token)?;
    match deposits::ingest_callback(&state.services, &body).await? {
        Ok(_) => Ok(ack()),
        Err(why) => Ok(refused(&why)),
    }
}
