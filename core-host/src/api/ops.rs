//! Operations routes: liveness, readiness and metrics. They carry no
//! customer data and need no key; in embedded mode the edge serves them on
//! the public port without running the gateway component.

use super::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

/// Paths answered here.
pub const PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up and serving.
async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready to take traffic: the database answers with every migration
/// applied, and the rule plugins are loaded.
async fn readyz(State(state): State<AppState>) -> Response {
    let services = &state.services;
    let mut problems = Vec::new();
    match services.ledger.db.migrations_pending().await {
        Ok(0) => {}
        Ok(n) => problems.push(format!("{n} database migrations are not applied")),
        Err(err) => problems.push(format!("the database is unreachable: {err}")),
    }
    if services.rules.active_names().is_empty() {
        problems.push("no rule plugin is loaded".to_string());
    }
    if problems.is_empty() {
        return axum::Json(json!({ "status": "ready" })).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "not_ready", "reasons": problems })),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = crate::metrics::render(&state.services.ledger.db).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
