//! `/v1/events`: the account's events (kept 30 days), and resending one
//! to a webhook endpoint.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::webhooks;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{ErrorBody, Event, EventList, EventsQuery, ObjectType, ResendBody};

/// List events, newest first; filter by `type` and creation time.
#[utoipa::path(get, path = "/v1/events", tag = "Events", operation_id = "list_events",
    params(EventsQuery),
    responses((status = 200, description = "A page of events", body = EventList),
              (status = 404, description = "resource_not_found: the cursor is not in this list", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, page) = nixo_api::webhooks::events_query(query.as_deref())?;
    let (data, has_more) = webhooks::list_events(&state.services, &caller.actor(), &filter, &page).await?;
    let body = EventList {
        object: ObjectType::List,
        url: "/v1/events".into(),
        has_more,
        data,
    };
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

/// Retrieve an event.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "Events", operation_id = "retrieve_event",
    params(("id" = String, Path, pattern = "^evt_[A-Za-z0-9]+$")),
    responses((status = 200, description = "The event", body = Event),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = webhooks::retrieve_event(&state.services, &caller.actor(), &id).await?;
    Ok(with_version(
        &caller,
        axum::Json(webhooks::render_event(&row)).into_response(),
    ))
}

/// Resend an event to one of your webhook endpoints (a new attempt series).
#[utoipa::path(post, path = "/v1/events/{id}/resend", tag = "Events", operation_id = "resend_event",
    params(("id" = String, Path, pattern = "^evt_[A-Za-z0-9]+$")),
    request_body = ResendBody,
    responses((status = 200, description = "The event, queued for delivery", body = Event),
              (status = 404, description = "resource_not_found: the event or the endpoint", body = ErrorBody),
              (status = 409, description = "webhook_endpoint_disabled", body = ErrorBody)))]
pub async fn resend(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let endpoint = nixo_api::webhooks::resend_request(&body)?;
    let row = webhooks::resend(&state.services, &caller.actor(), &id, &endpoint).await?;
    Ok(with_version(
        &caller,
        axum::Json(webhooks::render_event(&row)).into_response(),
    ))
}
