//! The risk dashboard: `/dashboard`, served by `nixo serve` beside the API
//! (the edge hands these paths to the host, like `/healthz`). A login page
//! takes an API key; the session is a cookie signed by the server (the key
//! id, account, environment, expiry and a CSRF token — never the key),
//! `HttpOnly`, `SameSite=Strict`, `Secure` for live keys. Every page checks
//! that the key is still valid (a revoked key ends its sessions); every
//! action checks the CSRF token and the key's scope. Server-rendered HTML
//! (`page.rs`), no build step.

mod page;

use super::AppState;
use crate::ledger::Environment;
use crate::services::Actor;
use crate::services::reviews::{self, Decision};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;

/// Paths under this prefix are the dashboard's.
pub const PREFIX: &str = "/dashboard";
/// The session cookie.
pub const COOKIE: &str = "nixo_session";
/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 8 * 3_600_000;
/// Longest form body read (a key or a token and a note).
pub const FORM_LEN_MAX_BYTES: usize = 4_096;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(home))
        .route("/dashboard/login", get(login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/reviews/{id}/{action}", post(decide))
}

/// A signed-in session.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Session {
    key_id: String,
    account_id: String,
    environment: String,
    expires_at_ms: i64,
    csrf: String,
}

fn session_key(state: &AppState) -> Hmac<Sha256> {
    let mut derive = Hmac::<Sha256>::new_from_slice(&state.gateway_secret).expect("HMAC takes any key");
    derive.update(b"nixo dashboard session");
    Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes()).expect("HMAC takes any key")
}

fn seal(state: &AppState, session: &Session) -> String {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(session).expect("a session serialises"));
    let mut mac = session_key(state);
    mac.update(payload.as_bytes());
    format!("{payload}.{}", hex::encode(mac.finalize().into_bytes()))
}

fn open(state: &AppState, cookie: &str) -> Option<Session> {
    let (payload, signature) = cookie.split_once('.')?;
    let mut mac = session_key(state);
    mac.update(payload.as_bytes());
    mac.verify_slice(&hex::decode(signature).ok()?).ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let session: Session = serde_json::from_slice(&bytes).ok()?;
    (session.expires_at_ms > chrono::Utc::now().timestamp_millis()).then_some(session)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The session of a request whose key is still valid, and the key's scopes.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(Session, Vec<String>)> {
    let session = open(state, &cookie_value(headers)?)?;
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT scopes FROM api_keys WHERE id = $1 AND revoked_at_ms IS NULL
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
    )
    .bind(session.key_id.as_str())
    .bind(chrono::Utc::now().timestamp_millis())
    .fetch_optional(&state.services.ledger.db.pool)
    .await
    .ok()?;
    let scopes = row?.0.split_whitespace().map(str::to_string).collect();
    Some((session, scopes))
}

/// The edge's rule (`KeyRecord::has_scope`): the scope itself, or `*`.
fn allows(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope || s == "*")
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

fn to_login() -> Response {
    Redirect::to("/dashboard/login").into_response()
}

/// `application/x-www-form-urlencoded` fields.
fn form(body: &[u8]) -> HashMap<String, String> {
    nixo_api::schema::query_pairs(std::str::from_utf8(body).ok()).collect()
}

async fn login_page() -> Response {
    html(StatusCode::OK, page::login(None))
}

async fn login(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    if body.len() > FORM_LEN_MAX_BYTES {
        return html(
            StatusCode::PAYLOAD_TOO_LARGE,
            page::login(Some("That is too long for a key.")),
        );
    }
    let fields = form(&body);
    let key = fields.get("key").map(|k| k.trim()).unwrap_or_default();
    let record = match crate::auth::resolve_key(&state.services.ledger, &state.hasher, key).await {
        Ok(record) => record,
        Err(_) => return html(StatusCode::UNAUTHORIZED, page::login(Some("That key is not valid."))),
    };
    let session = Session {
        key_id: record.key_id,
        account_id: record.account_id,
        environment: record.environment.as_str().to_string(),
        expires_at_ms: chrono::Utc::now().timestamp_millis() + SESSION_TTL_MS,
        csrf: hex::encode(rand::random::<[u8; 16]>()),
    };
    let secure = if session.environment == Environment::Live.as_str() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        seal(&state, &session),
        SESSION_TTL_MS / 1000
    );
    let mut response = Redirect::to("/dashboard").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some((session, _)) = signed_in(&state, &headers).await
        && form(&body).get("csrf") != Some(&session.csrf)
    {
        return html(
            StatusCode::FORBIDDEN,
            page::message("The form expired; reload the page."),
        );
    }
    let mut response = to_login();
    let gone = format!("{COOKIE}=; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn actor_of(session: &Session) -> Option<Actor> {
    Some(Actor {
        account_id: session.account_id.clone(),
        environment: Environment::parse(&session.environment)?,
    })
}

async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((session, scopes)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let Some(actor) = actor_of(&session) else {
        return to_login();
    };
    match page::home(
        &state.services,
        &actor,
        &session.csrf,
        allows(&scopes, "reviews:write"),
        &query,
    )
    .await
    {
        Ok(body) => html(StatusCode::OK, body),
        Err(err) => {
            tracing::error!(error = %err, "dashboard page failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page::message("Something went wrong; reload the page."),
            )
        }
    }
}

async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some((session, scopes)) = signed_in(&state, &headers).await else {
        return to_login();
    };
    let fields = form(&body);
    // The token is in the page only: a form posted from elsewhere has none.
    if body.len() > FORM_LEN_MAX_BYTES || fields.get("csrf") != Some(&session.csrf) {
        return html(
            StatusCode::FORBIDDEN,
            page::message("The form expired; reload the page."),
        );
    }
    if !allows(&scopes, "reviews:write") {
        return html(
            StatusCode::FORBIDDEN,
            page::message("This key may not close reviews (reviews:write)."),
        );
    }
    let decision = match action.as_str() {
        "approve" => Decision::Approve,
        "decline" => Decision::Decline,
        _ => return html(StatusCode::NOT_FOUND, page::message("No such action.")),
    };
    let Some(actor) = actor_of(&session) else {
        return to_login();
    };
    let note = fields
        .get("note")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(nixo_api::reviews::NOTE_LEN_MAX).collect::<String>());
    let services = &state.services;
    let outcome = match reviews::retrieve(services, &actor, &id).await {
        Ok(review) => reviews::close(services, &review, decision, &session.key_id, note.as_deref())
            .await
            .map(|_| ()),
        Err(err) => Err(err),
    };
    match outcome {
        Ok(()) => Redirect::to("/dashboard#reviews").into_response(),
        Err(err) => {
            let message = match &err {
                crate::services::ServiceError::Internal(cause) => {
                    tracing::error!(error = %cause, "dashboard action failed");
                    "Something went wrong; reload the page.".to_string()
                }
                other => other.to_string(),
            };
            html(StatusCode::CONFLICT, page::message(&message))
        }
    }
}
