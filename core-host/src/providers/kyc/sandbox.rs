//! A KYC provider sandbox that speaks the provider's protocol
//! ([`super::wire`]): token authentication, checks validated field by field
//! (the provider's error envelope for a bad one), a repeated `reference`
//! answered with the same check, and checks that stay `in_progress` for a
//! while before they complete.
//!
//! Outcomes by applicant data (the README lists them as magic values):
//!
//! | applicant | reports | Nixo's outcome |
//! |---|---|---|
//! | `id_number` (or business `registration_number`) ending in `0000` | identity `consider` | rejected, `identity_mismatch` |
//! | `last_name` `Watchlist` | watchlist `consider` | rejected, `watchlist_match` |
//! | no documents | document `missing` | requires input, `document_missing` |
//! | anything else | all `clear` | verified |

use super::wire::{CHECKS_PATH, Check, CreateCheck, ErrorBody, ErrorEnvelope, Report};
use crate::providers::journal::{self, Journaled};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct SandboxKycConfig {
    pub token: String,
    /// How long a check stays `in_progress`.
    pub complete_delay_ms: u64,
    /// Where the provider keeps its checks across restarts; in memory when `None`.
    pub state_file: Option<std::path::PathBuf>,
}

pub const MAGIC_ID_MISMATCH_SUFFIX: &str = "0000";
pub const MAGIC_WATCHLIST_LAST_NAME: &str = "Watchlist";
/// Longest reference accepted.
pub const REFERENCE_LEN_MAX: usize = 64;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Stored {
    check: Check,
    /// The reports once complete.
    reports: Vec<Report>,
    created_ms: i64,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Books {
    checks: HashMap<String, Stored>,
    by_reference: HashMap<String, String>,
    next: u64,
}

/// What moves the provider's books on (see [`journal`]): a check created
/// for a reference, numbered `n`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Created {
    id: String,
    reference: String,
    n: u64,
    stored: Stored,
}

impl journal::Books for Books {
    type Change = Created;

    fn apply(&mut self, created: Created) {
        self.next = self.next.max(created.n);
        self.by_reference.insert(created.reference, created.id.clone());
        self.checks.insert(created.id, created.stored);
    }
}

#[derive(Clone)]
struct Provider {
    config: SandboxKycConfig,
    books: Arc<Mutex<Journaled<Books>>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = ErrorEnvelope {
        error: ErrorBody {
            kind: kind.into(),
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

fn authorized(provider: &Provider, headers: &HeaderMap) -> bool {
    let expected = format!("Token token={}", provider.config.token);
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

/// The reports the sandbox gives an applicant.
fn judge(request: &CreateCheck) -> Vec<Report> {
    let profile = &request.applicant.profile;
    let number = request
        .applicant
        .id_number
        .clone()
        .or_else(|| profile["registration_number"].as_str().map(str::to_string))
        .unwrap_or_default();
    let last_name = profile["last_name"].as_str().unwrap_or_default();
    let result = |bad: bool| if bad { "consider" } else { "clear" };
    let mut reports = Vec::new();
    for name in &request.report_names {
        let result = match name.as_str() {
            "identity" => result(number.ends_with(MAGIC_ID_MISMATCH_SUFFIX)),
            "watchlist" => result(last_name == MAGIC_WATCHLIST_LAST_NAME),
            "document" if request.documents.is_empty() => "missing",
            _ => "clear",
        };
        reports.push(Report {
            name: name.clone(),
            result: result.into(),
        });
    }
    reports
}

fn validate(request: &CreateCheck) -> Result<(), String> {
    if request.reference.is_empty() || request.reference.len() > REFERENCE_LEN_MAX {
        return Err(format!("reference must be 1 to {REFERENCE_LEN_MAX} characters"));
    }
    if !["individual", "business"].contains(&request.applicant.kind.as_str()) {
        return Err("applicant.type must be individual or business".into());
    }
    if !request.applicant.profile.is_object() {
        return Err("applicant.profile must be an object".into());
    }
    if request.report_names.is_empty() {
        return Err("report_names must name at least one report".into());
    }
    if let Some(unknown) = request
        .report_names
        .iter()
        .find(|r| !["identity", "document", "watchlist"].contains(&r.as_str()))
    {
        return Err(format!("unknown report '{unknown}'"));
    }
    Ok(())
}

async fn create(State(provider): State<Provider>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorized(&provider, &headers) {
        return error(StatusCode::UNAUTHORIZED, "authorization_error", "Invalid token");
    }
    let request: CreateCheck = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", e.to_string()),
    };
    if let Err(why) = validate(&request) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", why);
    }
    let mut books = provider.books.lock().expect("books");
    if let Some(id) = books.by_reference.get(&request.reference).cloned() {
        let check = books.checks[&id].check.clone();
        return (StatusCode::OK, Json(check)).into_response();
    }
    let n = books.next + 1;
    let id = format!("chk_{n:08}");
    let created_ms = now_ms();
    let check = Check {
        id: id.clone(),
        reference: request.reference.clone(),
        status: "in_progress".into(),
        result: None,
        reports: Vec::new(),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    books.record(Created {
        id,
        reference: request.reference.clone(),
        n,
        stored: Stored {
            check: check.clone(),
            reports: judge(&request),
            created_ms,
        },
    });
    (StatusCode::CREATED, Json(check)).into_response()
}

async fn read(State(provider): State<Provider>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&provider, &headers) {
        return error(StatusCode::UNAUTHORIZED, "authorization_error", "Invalid token");
    }
    let books = provider.books.lock().expect("books");
    let Some(stored) = books.checks.get(&id) else {
        return error(StatusCode::NOT_FOUND, "resource_not_found", format!("No check {id}"));
    };
    let mut check = stored.check.clone();
    let done = now_ms() - stored.created_ms >= i64::try_from(provider.config.complete_delay_ms).unwrap_or(i64::MAX);
    if done {
        check.status = "complete".into();
        let clear = stored.reports.iter().all(|r| r.result == "clear");
        check.result = Some(if clear { "clear" } else { "consider" }.into());
        check.reports = stored.reports.clone();
    }
    Json(check).into_response()
}

pub fn router(config: SandboxKycConfig) -> Router {
    let books = Journaled::open(config.state_file.as_deref(), "KYC");
    let provider = Provider {
        config,
        books: Arc::new(Mutex::new(books)),
    };
    Router::new()
        .route(CHECKS_PATH, post(create))
        .route(&format!("{CHECKS_PATH}/{{id}}"), get(read))
        .with_state(provider)
}
