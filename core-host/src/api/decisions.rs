//! `GET /v1/rules/decisions`: the decision log of the caller's account,
//! newest first; `?transaction_id=10003` narrows it to one transaction,
//! `?limit=` (1-100, default 10) bounds it.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::rules::decision_log::{self, LIST_LIMIT_MAX};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Default page size.
pub const LIST_LIMIT_DEFAULT: i64 = 10;

fn parse_query(query: Option<&str>) -> Result<(Option<i64>, i64), ApiError> {
    let (mut transaction_id, mut limit) = (None, LIST_LIMIT_DEFAULT);
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "transaction_id" => {
                let id = value.parse::<i64>().ok().filter(|id| *id > 0);
                transaction_id = Some(id.ok_or_else(|| {
                    ApiError::invalid(
                        "transaction_id",
                        "transaction_id must be a transaction id such as 10056",
                    )
                })?);
            }
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=LIST_LIMIT_MAX).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", format!("limit must be between 1 and {LIST_LIMIT_MAX}"))
                    })?;
            }
            other => {
                return Err(ApiError::invalid(
                    other.to_string(),
                    format!("Received unknown parameter: {other}"),
                ));
            }
        }
    }
    Ok((transaction_id, limit))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (transaction_id, limit) = parse_query(query.as_deref())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(parse_query(None), Ok((None, LIST_LIMIT_DEFAULT)));
        assert_eq!(parse_query(Some("transaction_id=10003&limit=5")), Ok((Some(10_003), 5)));
        assert_eq!(
            parse_query(Some("limit=0")).unwrap_err().field.as_deref(),
            Some("limit")
        );
        assert_eq!(
            parse_query(Some("limit=101")).unwrap_err().field.as_deref(),
            Some("limit")
        );
        assert_eq!(parse_query(Some("x=1")).unwrap_err().field.as_deref(), Some("x"));
    }
}
