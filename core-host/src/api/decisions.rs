//! `GET /v1/rules/decisions`: the decision log of the caller's account,
//! newest first, in cursor pages; `?transaction_id=10003` narrows it to one
//! transaction.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{DecisionsQuery, ErrorBody, ObjectType, RuleDecisionList};

/// The decision log.
///
/// Every rule call on your account's transactions, newest first: plugin
/// name, version and sha256, the masked input, the output or failure with
/// the policy applied, fuel and latency.
#[utoipa::path(
    get,
    path = "/v1/rules/decisions",
    tag = "Rules",
    operation_id = "list_rule_decisions",
    params(DecisionsQuery),
    responses(
        (status = 200, description = "A page of decisions", body = RuleDecisionList),
        (status = 404, description = "resource_not_found: the starting_after or ending_before object is not in this list", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (transaction_id, page) = nixo_api::schema::decisions_query(query.as_deref())?;
    let (data, has_more) = services::decisions::list(&state.services, &caller.actor(), transaction_id, &page).await?;
    let body = RuleDecisionList {
        object: ObjectType::List,
        url: "/v1/rules/decisions".into(),
        has_more,
        data,
    };
    Ok(with_version(&caller, axum::Json(body).into_response()))
}
