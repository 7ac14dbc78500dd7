//! The reviews routes: parse, call the reviews service, render.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::reviews::{self, Decision};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{ErrorBody, ObjectType, Review, ReviewDecisionBody, ReviewList, ReviewsQuery};

/// List reviews.
///
/// Money held by a `review` verdict, newest first, in cursor pages; filter
/// by `open`, a `reason` code and creation time.
#[utoipa::path(
    get,
    path = "/v1/reviews",
    tag = "Reviews",
    operation_id = "list_reviews",
    params(ReviewsQuery),
    responses(
        (status = 200, description = "A page of reviews", body = ReviewList),
        (status = 404, description = "resource_not_found: the starting_after or ending_before review is not in this list", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, page) = nixo_api::reviews::reviews_query(query.as_deref())?;
    let (rows, has_more) = reviews::list(&state.services, &caller.actor(), &filter, &page).await?;
    let body = ReviewList {
        object: ObjectType::List,
        url: "/v1/reviews".into(),
        has_more,
        data: rows.iter().map(reviews::ReviewRow::render).collect(),
    };
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

/// Retrieve a review.
#[utoipa::path(
    get,
    path = "/v1/reviews/{id}",
    tag = "Reviews",
    operation_id = "retrieve_review",
    params(("id" = String, Path, description = "The review's id", pattern = "^rev_[A-Za-z0-9]+$", example = "rev_7Hc2K9dQ")),
    responses(
        (status = 200, description = "The review", body = Review),
        (status = 404, description = "resource_not_found: no such review of yours", body = ErrorBody),
    )
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let review = reviews::retrieve(&state.services, &caller.actor(), &id).await?;
    Ok(with_version(&caller, axum::Json(review.render()).into_response()))
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    body: Bytes,
    decision: Decision,
) -> Result<Response, ApiError> {
    let note = nixo_api::reviews::decision_request(&body)?;
    let services = &state.services;
    let review = reviews::retrieve(services, &caller.actor(), &id).await?;
    let closed = reviews::close(services, &review, decision, &caller.principal.key_id, note.as_deref()).await?;
    Ok(with_version(&caller, axum::Json(closed.render()).into_response()))
}

/// Approve a review.
///
/// The held money moves on: a transfer settles, a payout (or withdrawal)
/// goes to its rail. Once: a second approval, or one after the review
/// closed, is a 409 `review_closed`; after its hold expired, 409
/// `review_expired`.
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/approve",
    tag = "Reviews",
    operation_id = "approve_review",
    params(("id" = String, Path, description = "The review's id", pattern = "^rev_[A-Za-z0-9]+$", example = "rev_7Hc2K9dQ")),
    request_body(content = ReviewDecisionBody, description = "An optional note (the body may be empty)"),
    responses(
        (status = 200, description = "The closed review (approved)", body = Review),
        (status = 404, description = "resource_not_found: no such review of yours", body = ErrorBody),
        (status = 409, description = "review_closed or review_expired; or idempotency_key_in_use", body = ErrorBody),
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(state, caller, id, body, Decision::Approve).await
}

/// Decline a review.
///
/// The held money is released and the operation fails with
/// `declined_by_review` (a transfer VOIDED, a payout `failed`).
#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/decline",
    tag = "Reviews",
    operation_id = "decline_review",
    params(("id" = String, Path, description = "The review's id", pattern = "^rev_[A-Za-z0-9]+$", example = "rev_7Hc2K9dQ")),
    request_body(content = ReviewDecisionBody, description = "An optional note (the body may be empty)"),
    responses(
        (status = 200, description = "The closed review (declined)", body = Review),
        (status = 404, description = "resource_not_found: no such review of yours", body = ErrorBody),
        (status = 409, description = "review_closed or review_expired; or idempotency_key_in_use", body = ErrorBody),
    )
)]
pub async fn decline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(state, caller, id, body, Decision::Decline).await
}
