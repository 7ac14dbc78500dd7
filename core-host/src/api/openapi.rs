//! The OpenAPI 3.1 document: generated from the routes (each registered
//! once with its `#[utoipa::path]` operation) and the types of
//! `nixo_api::types`, then completed here with what every operation shares —
//! the security scheme, the `Nixo-Version` and `Idempotency-Key` headers,
//! the errors any request can meet, the response headers and each route's
//! key scope (from the route table the gateway enforces).
//!
//! Served at `GET /v1/openapi.json` (no key) and printed by `nixo openapi`;
//! `docs/openapi.json` is a committed copy a test keeps equal.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use nixo_api::schema;
use nixo_api::versions;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// The API document.
///
/// This document, as JSON. No key needed.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "Meta",
    operation_id = "openapi_document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn serve() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| render(&super::openapi_document()));
    ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response()
}

/// The document as committed: pretty JSON with a final newline.
pub fn render(document: &Value) -> String {
    let mut text = serde_json::to_string_pretty(document).expect("a JSON value serialises");
    text.push('\n');
    text
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

/// Errors any keyed request can meet, by status.
fn shared_errors(method: &str) -> Vec<(&'static str, Value)> {
    let mut errors = vec![
        (
            "400",
            error_response(
                "invalid_request: a malformed body, a missing, unknown or wrong-typed parameter, an unknown \
                 Nixo-Version, a bad Idempotency-Key, a body that is not JSON (field names the culprit)",
            ),
        ),
        (
            "401",
            error_response("invalid_api_key: missing, malformed, unknown, revoked or expired key"),
        ),
        (
            "403",
            error_response("permission_denied: the key lacks this route's scope"),
        ),
    ];
    if method == "post" {
        errors.push(("413", error_response("invalid_request: body over 64 KiB (field body)")));
    }
    let mut limited = error_response("rate_limit_exceeded: wait Retry-After seconds");
    limited["headers"] = json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } });
    errors.push(("429", limited));
    errors.push((
        "500",
        error_response("internal_error: retry with backoff (with the same Idempotency-Key)"),
    ));
    errors.push(("502", error_response("internal_error: the core is unreachable; retry")));
    errors.push((
        "503",
        error_response("internal_error: at capacity; retry after Retry-After"),
    ));
    errors
}

fn header_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

fn components_headers() -> Value {
    json!({
        "Request-Id": {
            "description": "Made at the edge for every response; quote it to support",
            "schema": { "type": "string", "pattern": "^req_[0-9a-f]{24}$" }
        },
        "Nixo-Version": {
            "description": "The API version the response is rendered in",
            "schema": { "type": "string", "enum": versions::SUPPORTED_VERSIONS }
        },
        "Idempotent-Replayed": {
            "description": "\"true\" when this answer is the replay of an earlier request with the same Idempotency-Key",
            "schema": { "type": "string", "enum": ["true"] }
        },
        "RateLimit-Limit": { "description": "Requests allowed per window for this key", "schema": { "type": "integer" } },
        "RateLimit-Remaining": { "description": "Requests left in this window", "schema": { "type": "integer" } },
        "RateLimit-Reset": { "description": "Seconds until the window resets", "schema": { "type": "integer" } },
        "RateLimit-Policy": { "description": "limit;w=window seconds, e.g. 50;w=1", "schema": { "type": "string" } },
        "Retry-After": { "description": "Seconds to wait before retrying", "schema": { "type": "integer" } }
    })
}

fn parameters(method: &str) -> Vec<Value> {
    let mut list = vec![json!({
        "name": "Nixo-Version",
        "in": "header",
        "required": false,
        "description": "API version of this request; this document describes the current one. Without the \
                        header the account's pinned version applies (accounts are pinned to the current version \
                        at their first request). The older 2024-06-01 is still served: in it amounts are \
                        integers in minor units, and the gateway translates both ways.",
        "schema": { "type": "string", "enum": [versions::CURRENT] }
    })];
    if method == "post" || method == "delete" {
        list.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Makes a retry safe: 1–255 printable ASCII characters, scoped to your account and \
                            environment, kept 24 h. A retry with the same request gets the first answer again \
                            (Idempotent-Replayed: true); while the first still runs, 409 idempotency_key_in_use; \
                            with another request, 422 idempotency_key_reused. Answers to requests refused by \
                            validation (400) and server errors are not kept.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$" }
        }));
    }
    list
}

/// Completes the generated document.
pub fn finish(openapi: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(openapi).expect("the document serialises");
    doc["info"] = json!({
        "title": "Nixo API",
        "version": versions::CURRENT,
        "description": "Payments API for cross-border payouts and mobile money. Authenticate with \
                        `Authorization: Bearer sk_sandbox_…` (or `sk_live_…`). Versions are dates sent in \
                        `Nixo-Version`. Money is exact: amounts are read from their JSON text, never through a \
                        float. Errors are `{\"error\":{\"code\",\"message\",\"field\"}}` with a `Request-Id` header. \
                        A platform acts for one of its customer accounts by sending `Nixo-Account: acct_…` \
                        on any request (another platform's account: 403 permission_denied).",
        "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
    });
    doc["servers"] = json!([{ "url": "http://127.0.0.1:8080", "description": "nixo serve (embedded gateway)" }]);
    doc["security"] = json!([{ "bearer": [] }]);
    let components = doc["components"].as_object_mut().expect("generated components");
    components.insert(
        "securitySchemes".into(),
        json!({ "bearer": { "type": "http", "scheme": "bearer",
                "description": "Secret API key sk_sandbox_… or sk_live_… (Nixo keeps only a keyed hash)" } }),
    );
    components.insert("headers".into(), components_headers());
    let schemas = components
        .entry("schemas")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("schemas");
    for (name, schema) in nixo_api::types::document_schemas::all() {
        schemas.insert(name.to_string(), schema);
    }
    let mut sorted: Vec<(String, Value)> = std::mem::take(schemas).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    schemas.extend(sorted);

    let paths = doc["paths"].as_object_mut().expect("generated paths");
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            let route = schema::find_route(&method.to_ascii_uppercase(), path).ok();
            let public = route.is_some_and(|r| r.is_public());
            complete_operation(method, operation, route.map(|r| r.scope), public);
        }
    }
    doc
}

fn complete_operation(method: &str, operation: &mut Value, scope: Option<&str>, public: bool) {
    let op = operation.as_object_mut().expect("an operation object");
    if public {
        op.insert("security".into(), json!([]));
    } else {
        let params = op.entry("parameters").or_insert_with(|| json!([]));
        let list = params.as_array_mut().expect("a parameter list");
        let mut shared = parameters(method);
        shared.append(list);
        *list = shared;
        if let Some(scope) = scope {
            op.insert("x-nixo-scope".into(), json!(scope));
        }
    }
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses");
    if !public {
        for (status, response) in shared_errors(method) {
            responses.entry(status).or_insert(response);
        }
    } else {
        for (status, response) in shared_errors(method) {
            // No key, so no 401/403; limited per client address instead.
            if matches!(status, "400" | "413" | "429" | "500" | "502" | "503") {
                responses.entry(status).or_insert(response);
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        let headers = response
            .as_object_mut()
            .expect("a response")
            .entry("headers")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("headers");
        let mut add = |name: &str| {
            headers.entry(name.to_string()).or_insert_with(|| header_ref(name));
        };
        add("Request-Id");
        if public {
            continue;
        }
        if status != "401" && status != "400" {
            for name in [
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ] {
                add(name);
            }
        }
        if status.starts_with('2') {
            add("Nixo-Version");
            if method == "post" || method == "delete" {
                add("Idempotent-Replayed");
            }
        }
    }
    sort_responses(responses);
}

fn sort_responses(responses: &mut Map<String, Value>) {
    let mut entries: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(entries);
}

/// Every documented operation as (METHOD, path).
pub fn operations(document: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            found.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixo_api::schema::ROUTES;

    #[test]
    fn every_documented_route_is_the_gateways_and_the_other_way_round() {
        let doc = super::super::openapi_document();
        let mut known: Vec<(String, String)> = ROUTES
            .iter()
            .filter(|r| r.documented)
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        known.sort();
        assert_eq!(operations(&doc), known);
        for route in ROUTES.iter().filter(|r| r.documented) {
            let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
            if route.is_public() {
                assert_eq!(op["security"], json!([]));
            } else {
                assert_eq!(op["x-nixo-scope"], route.scope);
                assert!(op["responses"]["401"].is_object());
            }
        }
    }
}
