//! A sandbox bank that speaks the same host-to-host protocol as
//! [`super::host_to_host`]: it validates each `pain.001.001.09` as a bank's
//! schema check would (structure, sums, IBAN check digits), answers at once
//! with a `pain.002` (ACTC, or RJCT for a refused file), recognises a
//! message it has seen (same MsgId and content: the same answer, nothing
//! paid twice; same MsgId, other content: DU01) and publishes the outcome
//! of each transfer to its report feed.
//!
//! Outcomes by the last four digits of the creditor IBAN (documented in the
//! README as the sandbox's magic values):
//!
//! | ends in | outcome |
//! |---|---|
//! | `0001` | RJCT `AC01` incorrect account number |
//! | `0004` | RJCT `AC04` closed account |
//! | `0404` | RJCT `AM04` insufficient funds |
//! | `0009` | ACSP at once, ACSC after the slow delay (stays processing) |
//! | anything else | ACSC after the settle delay |

use super::host_to_host::{CURSOR_HEADER, XML_CONTENT_TYPE};
use super::{StatusReport, TransactionStatus, pain001, pain002};
use crate::providers::journal::{self, Journaled};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How the sandbox bank behaves.
#[derive(Debug, Clone)]
pub struct SandboxBankConfig {
    /// The bearer token it expects.
    pub token: String,
    /// Delay before an ordinary transfer settles.
    pub settle_delay_ms: u64,
    /// Delay before a `…0009` transfer settles.
    pub slow_delay_ms: u64,
    /// Where the bank keeps its books across restarts (a real bank does not
    /// forget a transfer when Nixo crashes); in memory only when `None`.
    pub state_file: Option<std::path::PathBuf>,
}

/// Magic endings of creditor IBANs.
pub const MAGIC_AC01: &str = "0001";
pub const MAGIC_AC04: &str = "0004";
pub const MAGIC_AM04: &str = "0404";
pub const MAGIC_SLOW: &str = "0009";

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Books {
    /// MsgId → (sha256 of the message, the answer given).
    messages: HashMap<String, (String, String)>,
    /// Reports not yet due: (due at, document).
    scheduled: Vec<(i64, String)>,
    /// Reports published, in order; a cursor is an index into it.
    feed: Vec<String>,
    next_report: u64,
}

/// What moves the bank's books on (see [`journal`]).
#[derive(serde::Serialize, serde::Deserialize)]
enum Change {
    /// Report numbers up to this one are taken.
    Numbered(u64),
    /// A `pain.001` accepted: the answer it got and the reports it schedules.
    Accepted {
        message_id: String,
        digest: String,
        answer: String,
        scheduled: Vec<(i64, String)>,
        next_report: u64,
    },
    /// The reports due by this instant went to the feed, in due order.
    Published { until_ms: i64 },
}

impl journal::Books for Books {
    type Change = Change;

    fn apply(&mut self, change: Change) {
        match change {
            Change::Numbered(n) => self.next_report = self.next_report.max(n),
            Change::Accepted {
                message_id,
                digest,
                answer,
                scheduled,
                next_report,
            } => {
                self.messages.insert(message_id, (digest, answer));
                self.scheduled.extend(scheduled);
                self.next_report = self.next_report.max(next_report);
            }
            Change::Published { until_ms } => {
                self.scheduled.sort_by_key(|(due, _)| *due);
                let due = self.scheduled.iter().take_while(|(at, _)| *at <= until_ms).count();
                let published: Vec<String> = self.scheduled.drain(..due).map(|(_, doc)| doc).collect();
                self.feed.extend(published);
            }
        }
    }
}

fn report_id(n: u64) -> String {
    format!("SBX-STS-{n:08}")
}

/// Takes the next report number for an answer that changes nothing else.
fn number_report(books: &mut Journaled<Books>) -> String {
    let n = books.next_report + 1;
    books.record(Change::Numbered(n));
    report_id(n)
}

/// The books this sandbox keeps in `state_file`, as JSON.
pub fn books_on_disk(state_file: &std::path::Path) -> serde_json::Value {
    journal::read_json::<Books>(state_file, "bank")
}

#[derive(Clone)]
struct Bank {
    config: SandboxBankConfig,
    books: Arc<Mutex<Journaled<Books>>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// The bank's HTTP interface.
pub fn router(config: SandboxBankConfig) -> Router {
    let books = Journaled::open(config.state_file.as_deref(), "bank");
    let bank = Bank {
        config,
        books: Arc::new(Mutex::new(books)),
    };
    Router::new()
        .route("/pain.001", post(submit))
        .route("/pain.002", get(next_report))
        .with_state(bank)
}

fn authorised(bank: &Bank, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == bank.config.token)
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, XML_CONTENT_TYPE)], body).into_response()
}

fn report(
    id: String,
    original: &str,
    group: Option<(&str, Option<&str>)>,
    payment: Option<(&str, Vec<TransactionStatus>)>,
) -> String {
    let (payment_id, transactions) = match payment {
        Some((id, txs)) => (Some(id.to_string()), txs),
        None => (None, Vec::new()),
    };
    pain002::render(&StatusReport {
        message_id: id,
        created_at: now_text(),
        original_message_id: original.to_string(),
        original_message_name: pain001::MESSAGE_NAME.to_string(),
        group_status: group.map(|(s, _)| s.to_string()),
        group_reason: group.and_then(|(_, r)| r.map(str::to_string)),
        original_payment_id: payment_id,
        transactions,
    })
}

fn outcome(iban: &str) -> (&'static str, Option<(&'static str, &'static str)>) {
    let ending = &iban[iban.len().saturating_sub(4)..];
    match ending {
        MAGIC_AC01 => ("RJCT", Some(("AC01", "Incorrect account number"))),
        MAGIC_AC04 => ("RJCT", Some(("AC04", "Creditor account closed"))),
        MAGIC_AM04 => ("RJCT", Some(("AM04", "Insufficient funds"))),
        _ => ("ACSC", None),
    }
}

async fn submit(State(bank): State<Bank>, headers: HeaderMap, body: String) -> Response {
    if !authorised(&bank, &headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    let parsed = pain001::parse(&body);
    let mut books = bank.books.lock().expect("bank books");
    let message = match parsed {
        Err(invalid) => {
            let original = crate::providers::xml::parse(&body)
                .ok()
                .and_then(|d| d.text_at(&["CstmrCdtTrfInitn", "GrpHdr", "MsgId"]).map(str::to_string))
                .unwrap_or_else(|| "UNKNOWN".into());
            let id = number_report(&mut books);
            tracing::info!(code = invalid.code, reason = %invalid.message, "sandbox bank refused a pain.001");
            return xml(
                StatusCode::UNPROCESSABLE_ENTITY,
                report(id, &original, Some(("RJCT", Some(invalid.code))), None),
            );
        }
        Ok(message) => message,
    };
    if let Some((seen, answer)) = books.messages.get(&message.message_id) {
        if *seen == digest {
            return xml(StatusCode::OK, answer.clone());
        }
        let id = number_report(&mut books);
        return xml(
            StatusCode::CONFLICT,
            report(id, &message.message_id, Some(("RJCT", Some("DU01"))), None),
        );
    }
    let mut n = books.next_report;
    let mut next_id = || {
        n += 1;
        report_id(n)
    };
    let accepted = report(next_id(), &message.message_id, Some(("ACTC", None)), None);
    let mut scheduled = Vec::new();
    let now = now_ms();
    for tx in &message.transactions {
        let (code, reason) = outcome(&tx.creditor_iban);
        let slow = tx.creditor_iban.ends_with(MAGIC_SLOW);
        let status = |code: &str, reason: Option<(&str, &str)>| TransactionStatus {
            end_to_end_id: tx.end_to_end_id.clone(),
            code: code.to_string(),
            reason: reason.map(|(c, _)| c.to_string()),
            info: reason.map(|(_, i)| i.to_string()),
        };
        if slow {
            let in_process = report(
                next_id(),
                &message.message_id,
                Some(("ACSP", None)),
                Some((&message.payment_id, vec![status("ACSP", None)])),
            );
            scheduled.push((now, in_process));
        }
        let delay = if slow {
            bank.config.slow_delay_ms
        } else {
            bank.config.settle_delay_ms
        };
        let last = report(
            next_id(),
            &message.message_id,
            Some((code, None)),
            Some((&message.payment_id, vec![status(code, reason)])),
        );
        scheduled.push((now + delay as i64, last));
    }
    books.record(Change::Accepted {
        message_id: message.message_id.clone(),
        digest,
        answer: accepted.clone(),
        scheduled,
        next_report: n,
    });
    xml(StatusCode::OK, accepted)
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    after: Option<usize>,
}

async fn next_report(State(bank): State<Bank>, headers: HeaderMap, Query(query): Query<FeedQuery>) -> Response {
    if !authorised(&bank, &headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    }
    let mut books = bank.books.lock().expect("bank books");
    let now = now_ms();
    // Publish what is due, in due order.
    if books.scheduled.iter().any(|(at, _)| *at <= now) {
        books.record(Change::Published { until_ms: now });
    }
    let position = query.after.unwrap_or(0);
    match books.feed.get(position) {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(doc) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE.as_str().to_string(), XML_CONTENT_TYPE.to_string()),
                (CURSOR_HEADER.to_string(), (position + 1).to_string()),
            ],
            doc.clone(),
        )
            .into_response(),
    }
}
