//! `POST /internal/v1/keys/resolve`: the edge asks who an API key belongs to.
//!
//! Only the gateway can call it (the gatekeeper checks its signature; the
//! route is not public). The body is the key in clear; the answer is the
//! key's record — id, account, environment, scopes, rate limit, expiry and
//! the account's pinned API version — or 401 `invalid_api_key`.

use super::AppState;
use crate::auth;
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

pub async fn resolve(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let key = std::str::from_utf8(&body)
        .map(str::trim)
        .map_err(|_| ApiError::invalid_api_key("Invalid API key format"))?;
    let record = auth::resolve_key(&state.services.ledger, &state.hasher, key).await?;
    Ok(Json(record.to_json()).into_response())
}
