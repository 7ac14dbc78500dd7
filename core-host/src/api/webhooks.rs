//! `/v1/webhook_endpoints`: create, list, retrieve, update, delete, rotate
//! the secret, list attempts. Parse, call the webhooks service, render.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::webhooks;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{
    DeletedWebhookEndpoint, ErrorBody, ObjectType, PageQuery, RotateSecretBody, WebhookAttemptList, WebhookEndpoint,
    WebhookEndpointCreateBody, WebhookEndpointList, WebhookEndpointUpdateBody,
};
use nixo_api::webhooks as rules;

fn json<T: serde::Serialize>(caller: &Caller, body: &T) -> Response {
    with_version(caller, axum::Json(body).into_response())
}

/// Create a webhook endpoint.
///
/// Its signing secret (`whsec_…`) is in this answer only: Nixo keeps it
/// sealed and never shows it again (rotate it to get a new one). Live
/// endpoints must be https and may not resolve to private addresses.
#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "Webhooks", operation_id = "create_webhook_endpoint",
    request_body = WebhookEndpointCreateBody,
    responses((status = 200, description = "The endpoint, with its secret", body = WebhookEndpoint)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = rules::endpoint_request(&body, false)?;
    let (endpoint, secret) = webhooks::create(&state.services, &caller.actor(), req).await?;
    Ok(json(&caller, &endpoint.render(Some(&secret))))
}

/// List webhook endpoints.
#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "Webhooks", operation_id = "list_webhook_endpoints",
    params(PageQuery),
    responses((status = 200, description = "A page of endpoints", body = WebhookEndpointList),
              (status = 404, description = "resource_not_found: the cursor is not in this list", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = rules::list_query(query.as_deref())?;
    let (endpoints, has_more) = webhooks::list(&state.services, &caller.actor(), &page).await?;
    let body = WebhookEndpointList {
        object: ObjectType::List,
        url: "/v1/webhook_endpoints".into(),
        has_more,
        data: endpoints.iter().map(|e| e.render(None)).collect(),
    };
    Ok(json(&caller, &body))
}

/// Retrieve a webhook endpoint.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "Webhooks", operation_id = "retrieve_webhook_endpoint",
    params(("id" = String, Path, pattern = "^we_[A-Za-z0-9]+$")),
    responses((status = 200, description = "The endpoint", body = WebhookEndpoint),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let endpoint = webhooks::retrieve(&state.services, &caller.actor(), &id).await?;
    Ok(json(&caller, &endpoint.render(None)))
}

async fn apply_update(state: AppState, caller: Caller, id: String, body: Bytes) -> Result<Response, ApiError> {
    let req = rules::endpoint_request(&body, true)?;
    let endpoint = webhooks::update(&state.services, &caller.actor(), &id, req).await?;
    Ok(json(&caller, &endpoint.render(None)))
}

/// Update a webhook endpoint (what the body names changes).
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}", tag = "Webhooks", operation_id = "update_webhook_endpoint",
    params(("id" = String, Path, pattern = "^we_[A-Za-z0-9]+$")),
    request_body = WebhookEndpointUpdateBody,
    responses((status = 200, description = "The endpoint", body = WebhookEndpoint),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    apply_update(state, caller, id, body).await
}

/// Update a webhook endpoint (the same as `POST`).
#[utoipa::path(put, path = "/v1/webhook_endpoints/{id}", tag = "Webhooks", operation_id = "replace_webhook_endpoint",
    params(("id" = String, Path, pattern = "^we_[A-Za-z0-9]+$")),
    request_body = WebhookEndpointUpdateBody,
    responses((status = 200, description = "The endpoint", body = WebhookEndpoint),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    apply_update(state, caller, id, body).await
}

/// Delete a webhook endpoint.
#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", tag = "Webhooks", operation_id = "delete_webhook_endpoint",
    params(("id" = String, Path, pattern = "^we_[A-Za-z0-9]+$")),
    responses((status = 200, description = "Deleted", body = DeletedWebhookEndpoint),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = webhooks::delete(&state.services, &caller.actor(), &id).await?;
    let body = DeletedWebhookEndpoint {
        id,
        object: ObjectType::WebhookEndpoint,
        deleted: true,
    };
    Ok(json(&caller, &body))
}

/// Rotate the signing secret.
///
/// The new secret is in this answer only. For `expires_in` seconds
/// (default 86400) deliveries carry a `v1` signature for both secrets.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/rotate_secret", tag = "Webhooks",
    operation_id = "rotate_webhook_secret",
    params(("id" = String, Path, pattern = "^we_[A-Za-z0-9]+$")),
    request_body = Option<RotateSecretBody>,
    responses((status = 200, description = "The endpoint, with its new secret", body = WebhookEndpoint),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let grace = rules::rotate_request(&body)?;
    let (endpoint, secret) = webhooks::rotate_secret(&state.services, &caller.actor(), &id, grace).await?;
    Ok(json(&caller, &endpoint.render(Some(&secret))))
}

/// List an endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}/attempts", tag = "Webhooks",
    operation_id = "list_webhook_attempts",
    params(("id" = String, Path, pattern = "^we_[A-Za-z0-9]+$"), PageQuery),
    responses((status = 200, description = "A page of attempts", body = WebhookAttemptList),
              (status = 404, description = "resource_not_found", body = ErrorBody)))]
pub async fn attempts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = rules::list_query(query.as_deref())?;
    let (data, has_more) = webhooks::attempts(&state.services, &caller.actor(), &id, &page).await?;
    let body = WebhookAttemptList {
        object: ObjectType::List,
        url: format!("/v1/webhook_endpoints/{id}/attempts"),
        has_more,
        data,
    };
    Ok(json(&caller, &body))
}
