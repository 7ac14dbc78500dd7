//! `GET /v1/rules/decisions`: the decision log of the caller's account,
//! newest first; `?transaction_id=10003` narrows it to one transaction,
//! `?limit=` (1-100, default 10) bounds it.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::rules::decision_log;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (transaction_id, limit) = nixo_gateway::schema::decisions_query(query.as_deref())?;
    // One more than asked tells whether there is more.
    let mut rows = decision_log::list(
        &state.ledger.db,
        &caller.principal.account_id,
        transaction_id,
        limit + 1,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let body = json!({ "object": "list", "url": "/v1/rules/decisions", "has_more": has_more, "data": rows });
    Ok(with_version(&caller, axum::Json(body).into_response()))
}
