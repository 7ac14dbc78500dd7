//! `GET /v1/rules/decisions`: the decision log of the caller's account,
//! newest first, in cursor pages; `?transaction_id=10003` narrows it to one
//! transaction.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::{pagination, rules::decision_log};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (transaction_id, page) = nixo_api::schema::decisions_query(query.as_deref())?;
    let (data, has_more) = decision_log::list(
        &state.services.ledger.db,
        &caller.principal.account_id,
        transaction_id,
        &page,
    )
    .await?;
    let body = pagination::render("/v1/rules/decisions", data, has_more);
    Ok(with_version(&caller, axum::Json(body).into_response()))
}
