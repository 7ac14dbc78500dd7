//! The core's HTTP API: routes, the gatekeeper in front of them, and the
//! mapping of every failure to a structured error.
//!
//! Every request must carry a valid gateway signature (only the gateway can
//! reach the core) and a valid API key; both are checked in [`gatekeeper`]
//! before any handler runs.

mod balances;
mod decisions;
mod transfers;

use crate::auth::{self, KeyHasher, Principal};
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::rules::RuleHost;
use crate::rules::decision_log::DecisionLog;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nixo_gateway::signing::{self, SignedParts};
use std::sync::Arc;

/// API versions this core serves (shared with the gateway); the first is the default.
pub use nixo_gateway::edge::SUPPORTED_VERSIONS;
/// Largest request body the core reads.
pub const BODY_LEN_MAX_BYTES: usize = 64 * 1024;

/// Shared state of the API.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub hasher: KeyHasher,
    pub rules: Arc<RuleHost>,
    pub decisions: DecisionLog,
    pub gateway_secret: Arc<Vec<u8>>,
}

/// Who is calling and with which API version.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub version: &'static str,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/payments/transfer", post(transfers::create))
        .route("/v1/balances", get(balances::retrieve))
        .route("/v1/rules/decisions", get(decisions::list))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), gatekeeper))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("Unrecognized request URL")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "Method not allowed for this URL",
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn resolve_version(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    match header(headers, "nixo-version") {
        None => Ok(SUPPORTED_VERSIONS[0]),
        Some(asked) => SUPPORTED_VERSIONS
            .iter()
            .copied()
            .find(|v| *v == asked.trim())
            .ok_or_else(|| {
                ApiError::invalid(
                    "Nixo-Version",
                    format!(
                        "Unknown API version '{asked}'; supported: {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                )
            }),
    }
}

/// Checks the gateway signature, the API key and the version, then runs the
/// handler with a [`Caller`] in the request extensions.
async fn gatekeeper(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request.headers().get(signing::REQUEST_ID_HEADER).cloned();
    let mut response = match admit(&state, request).await {
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
    let authorization = header(&parts.headers, "authorization");
    let signed = SignedParts {
        method: parts.method.as_str(),
        path_and_query,
        body: &body,
        authorization: authorization.unwrap_or_default(),
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
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "Requests must come through the Nixo gateway",
        ));
    }
    let principal = auth::authenticate(&state.ledger.db, &state.hasher, authorization).await?;
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

/// Parses a JSON object body, naming what is wrong.
fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("body", "Request body is empty; send a JSON object"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("Request body is not valid JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "Request body must be a JSON object")),
    }
}

/// Refuses parameters the route does not know (typos must not pass silently).
fn reject_unknown(map: &serde_json::Map<String, serde_json::Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::invalid(
            unknown.clone(),
            format!("Received unknown parameter: {unknown}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_default_and_unknown_ones_name_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(resolve_version(&headers), Ok("2025-01-01"));
        headers.insert("nixo-version", HeaderValue::from_static("1999-01-01"));
        let err = resolve_version(&headers).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("Nixo-Version"));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(parse_object(b"{\"a\":1}").is_ok());
        for bad in [&b""[..], b"{", b"[]", b"42", b"{\"a\":1}x"] {
            assert_eq!(parse_object(bad).unwrap_err().code, "invalid_request");
        }
    }
}
