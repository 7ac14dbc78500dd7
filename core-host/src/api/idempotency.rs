//! The `Idempotency-Key` layer: one mechanism for every POST and DELETE.
//!
//! Scoped to the caller's environment and account. The first request with a
//! key runs and its answer is stored; a retry with the same method, path and
//! body gets that answer again byte for byte with `Idempotent-Replayed:
//! true`; a retry while the first still runs gets 409
//! `idempotency_key_in_use`; the key with another request gets 422
//! `idempotency_key_reused`. Not stored, so a retry runs again: answers to
//! requests refused by validation (400), conflicts (409), rate limits (429)
//! and server errors (5xx) — the ledger's transaction identity, derived
//! from the same key, keeps a rerun from applying money twice.

use super::{AppState, Caller};
use crate::error::ApiError;
use crate::idempotency::{Begin, Scope, StoredResponse, TABLE_LEASE_RENEW_MS, request_hash};
use crate::metrics::Stage;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Response headers kept with a stored answer.
const STORED_HEADERS: [&str; 2] = ["content-type", "nixo-version"];

/// Whether an answer with this status is kept for replays.
fn storable(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::BAD_REQUEST
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::DELETE) {
        return next.run(request).await;
    }
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return next.run(request).await;
    };
    let key = match super::idempotency_key(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(err) => return err.into_response(),
    };
    let (parts, body) = request.into_parts();
    // The gatekeeper has read and bounded the body already.
    let body = match axum::body::to_bytes(body, super::BODY_LEN_MAX_BYTES).await {
        Ok(body) => body,
        Err(_) => return ApiError::invalid("body", "The request body could not be read").into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let hash = request_hash(parts.method.as_str(), path_and_query, &body);
    let scope = Scope {
        environment: caller.principal.environment,
        // Keys are the acting account's: a platform's and each customer's apart.
        account_id: caller.actor().account_id,
        key,
    };
    let store = &state.idempotency;
    let started = std::time::Instant::now();
    let begun = store.begin(&scope, &hash, state.services.clock.now_ms()).await;
    Stage::IdempotencyBegin.done(started);
    let lease = match begun {
        Ok(Begin::Proceed(lease)) => lease,
        Ok(Begin::Replay(stored)) => return replay(stored),
        Ok(Begin::InProgress) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry after it finishes",
            )
            .with_field("Idempotency-Key")
            .into_response();
        }
        Ok(Begin::Reused) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request (method, path or body)",
            )
            .with_field("Idempotency-Key")
            .into_response();
        }
        Err(err) => return ApiError::from(err).into_response(),
    };

    let running = next.run(Request::from_parts(parts, Body::from(body)));
    let response = if store.renews_leases() {
        // A short lease, renewed while the request runs: if this process
        // dies, a retry elsewhere takes the key over soon after.
        tokio::pin!(running);
        let mut renew = tokio::time::interval(std::time::Duration::from_millis(TABLE_LEASE_RENEW_MS));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            tokio::select! {
                response = &mut running => break response,
                _ = renew.tick() => {
                    if let Err(err) = store.renew(&lease, state.services.clock.now_ms()).await {
                        tracing::warn!(error = %err, "renewing an idempotency lease failed");
                    }
                }
            }
        }
    } else {
        running.await
    };
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, crate::edge::RELAY_BODY_LEN_MAX_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            let _ = store.release(&lease).await;
            return ApiError::internal(&anyhow::anyhow!("reading a handler's answer: {err}")).into_response();
        }
    };
    let started = std::time::Instant::now();
    let outcome = if storable(parts.status) {
        let headers = STORED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(*name)?.to_str().ok()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect();
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            headers,
            body: body.to_vec(),
        };
        store.complete(&lease, &stored).await.map(drop)
    } else {
        store.release(&lease).await
    };
    Stage::IdempotencyComplete.done(started);
    if let Err(err) = outcome {
        // The answer stands (its effects are committed); a retry runs again
        // and the ledger recognises it.
        tracing::warn!(error = %err, "storing an idempotent answer failed");
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_failures_and_server_errors_are_not_stored() {
        for kept in [200, 201, 202, 402, 404, 422] {
            assert!(storable(StatusCode::from_u16(kept).unwrap()), "{kept}");
        }
        for not_kept in [400, 409, 429, 500, 502, 503] {
            assert!(!storable(StatusCode::from_u16(not_kept).unwrap()), "{not_kept}");
        }
    }

    #[test]
    fn the_hash_covers_method_path_and_body() {
        let a = request_hash("POST", "/v1/x", b"{}");
        assert_ne!(a, request_hash("POST", "/v1/y", b"{}"));
        assert_ne!(a, request_hash("DELETE", "/v1/x", b"{}"));
        assert_ne!(a, request_hash("POST", "/v1/x", b"{ }"));
        assert_eq!(a, request_hash("POST", "/v1/x", b"{}"));
    }
}
