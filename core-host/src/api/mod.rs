//! The core's HTTP API: routes, the gatekeeper in front of them, and the
//! mapping of every failure to a structured error.
//!
//! Every request must carry a valid gateway signature (only the gateway can
//! reach the core). The signature covers the principal the edge
//! authenticated, which the core then acts for; the edge learns principals
//! from the core's key resolution route. Both are checked in [`gatekeeper`]
//! before any handler runs.

mod accounts;
mod balances;
mod callbacks;
pub mod dashboard;
mod decisions;
mod events;
pub mod idempotency;
mod keys;
pub mod openapi;
mod ops;
mod payments;
mod payouts;
mod reviews;
mod transactions;
mod transfers;
mod webhooks;

use crate::auth::{self, KeyHasher, Principal};
use crate::error::ApiError;
use crate::services::{Actor, Services};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nixo_api::access::RESOLVE_PATH;
use nixo_api::signing::{self, SignedParts};
use nixo_api::versions;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use ops::PATHS as OPS_PATHS;

/// Largest request body the core reads.
pub const BODY_LEN_MAX_BYTES: usize = 64 * 1024;

/// Shared state of the API: one reference, cloned into every request
/// (cloning and dropping the fields one by one was ≈ 1 % of the edge's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    pub services: Services,
    pub idempotency: crate::idempotency::Store,
    pub hasher: KeyHasher,
    pub gateway_secret: Arc<Vec<u8>>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Who is calling and with which API version.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub version: &'static str,
}

impl Caller {
    /// The account and environment services act for: the customer account
    /// named by `Nixo-Account`, else the key's own.
    pub fn actor(&self) -> Actor {
        Actor {
            account_id: self
                .principal
                .on_behalf
                .clone()
                .unwrap_or_else(|| self.principal.account_id.clone()),
            environment: self.principal.environment,
        }
    }

    /// The key's own account (the platform), and whether the request acts
    /// for one of its customers instead.
    pub fn platform(&self) -> (Actor, bool) {
        let platform = Actor {
            account_id: self.principal.account_id.clone(),
            environment: self.principal.environment,
        };
        (platform, self.principal.on_behalf.is_some())
    }
}

/// The core's routes. API routes sit behind the gatekeeper (gateway
/// signature) and the idempotency layer; the operations routes
/// (`/healthz`, `/readyz`, `/metrics`) do not.
pub fn router(state: AppState) -> Router {
    let (documented, _) = documented_routes().split_for_parts();
    let api = documented
        .route(RESOLVE_PATH, post(keys::resolve))
        .route(nixo_api::schema::MPESA_B2C_RESULT_PATH, post(callbacks::mpesa_result))
        .route(nixo_api::schema::MPESA_B2C_TIMEOUT_PATH, post(callbacks::mpesa_timeout))
        .route(nixo_api::schema::MPESA_STK_CALLBACK_PATH, post(callbacks::mpesa_stk))
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), gatekeeper));
    Router::new()
        .merge(api)
        .merge(ops::router())
        .merge(dashboard::router())
        .fallback(not_found)
        .layer(middleware::from_fn(crate::metrics::track_requests))
        .with_state(state)
}

/// Every public route, each registered once with its OpenAPI operation:
/// a route cannot exist without being documented.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(transfers::create))
        .routes(routes!(balances::retrieve))
        .routes(routes!(decisions::list))
        .routes(routes!(openapi::serve))
        .routes(routes!(payouts::create, payouts::list))
        .routes(routes!(payouts::retrieve))
        .routes(routes!(payouts::cancel))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(
            webhooks::retrieve,
            webhooks::update,
            webhooks::replace,
            webhooks::delete
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(events::list))
        .routes(routes!(events::retrieve))
        .routes(routes!(events::resend))
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::retrieve, accounts::update))
        .routes(routes!(transactions::list))
        .routes(routes!(transactions::export))
        .routes(routes!(transactions::retrieve))
        .routes(routes!(payments::transact))
        .routes(routes!(payments::create_async))
        .routes(routes!(payments::retrieve_async))
        .routes(routes!(payments::retrieve))
        .routes(routes!(reviews::list))
        .routes(routes!(reviews::retrieve))
        .routes(routes!(reviews::approve))
        .routes(routes!(reviews::decline))
}

/// The OpenAPI 3.1 document of the served API, generated from the routes
/// and the types of `nixo_api::types`.
pub fn openapi_document() -> serde_json::Value {
    openapi::finish(documented_routes().into_openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("Unrecognized request URL")
}

async fn method_not_allowed(request: Request) -> Response {
    let allow = nixo_api::schema::allowed_methods(request.uri().path());
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "Method not allowed for this URL",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(axum::http::header::ALLOW, value);
    }
    response
}

/// The request's `Idempotency-Key`, checked: `None` when there is none.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(idempotency::KEY_HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if !nixo_api::headers::idempotency_key_ok(key) {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            format!(
                "Idempotency-Key must be 1 to {} printable ASCII characters",
                nixo_api::headers::IDEMPOTENCY_KEY_LEN_MAX
            ),
        ));
    }
    Ok(Some(key.to_string()))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The core speaks only the current version; the edge translates older ones.
fn resolve_version(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    match header(headers, "nixo-version") {
        None => Ok(versions::CURRENT),
        Some(asked) if asked.trim() == versions::CURRENT => Ok(versions::CURRENT),
        Some(asked) => Err(ApiError::invalid(
            "Nixo-Version",
            format!(
                "The core serves API version {} only (the gateway translates others), not '{asked}'",
                versions::CURRENT
            ),
        )),
    }
}

fn not_through_gateway() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_denied",
        "Requests must come through the Nixo gateway",
    )
}

/// Checks the gateway signature, the API key and the version, then runs the
/// handler with a [`Caller`] in the request extensions.
async fn gatekeeper(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request.headers().get(signing::REQUEST_ID_HEADER).cloned();
    let started = std::time::Instant::now();
    let admitted = admit(&state, request).await;
    crate::metrics::Stage::CoreAdmit.done(started);
    let mut response = match admitted {
        Ok(request) => next.run(request).await,
        Err(err) => err.into_response(),
    };
    if let Some(id) = request_id {
        response.headers_mut().insert(signing::REQUEST_ID_HEADER, id);
    }
    response
}

async fn admit(state: &AppState, request: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, BODY_LEN_MAX_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "Request body is too large",
        )
        .with_field("body")
    })?;
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let principal = header(&parts.headers, signing::PRINCIPAL_HEADER).unwrap_or_default();
    let signed = SignedParts {
        method: parts.method.as_str(),
        path_and_query,
        body: &body,
        principal,
        request_id: header(&parts.headers, signing::REQUEST_ID_HEADER).unwrap_or_default(),
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(why) = signing::verify(
        &state.gateway_secret,
        header(&parts.headers, signing::SIGNATURE_HEADER),
        &signed,
        now,
    ) {
        tracing::warn!(?why, path = %parts.uri.path(), "refused a request without a valid gateway signature");
        return Err(not_through_gateway());
    }
    let public = nixo_api::schema::find_route(parts.method.as_str(), parts.uri.path()).is_ok_and(|r| r.is_public());
    if parts.uri.path() == RESOLVE_PATH || public {
        // The edge's own key lookup, or a route anyone may call: no principal.
        if !principal.is_empty() {
            return Err(not_through_gateway());
        }
        return Ok(Request::from_parts(parts, Body::from(body)));
    }
    let principal = auth::parse_principal(principal).ok_or_else(not_through_gateway)?;
    if let Some(customer) = &principal.on_behalf
        && !crate::accounts::belongs_to(
            &state.services.ledger.db,
            customer,
            &principal.account_id,
            principal.environment,
        )
        .await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            format!("Nixo-Account: {customer} is not an account of your platform"),
        )
        .with_field("Nixo-Account"));
    }
    let version = resolve_version(&parts.headers)?;
    parts.extensions.insert(Caller { principal, version });
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// Adds the version header every API response carries.
fn with_version(caller: &Caller, mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("nixo-version", HeaderValue::from_static(caller.version));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_default_and_unknown_ones_name_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(resolve_version(&headers), Ok("2025-01-01"));
        headers.insert("nixo-version", HeaderValue::from_static("2024-06-01"));
        let err = resolve_version(&headers).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("Nixo-Version"));
    }
}
