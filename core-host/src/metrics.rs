//! Prometheus metrics: the process-wide recorder, the request middleware,
//! and the gauges read at scrape time (jobs by state, database pool).
//!
//! Series: `nixo_http_requests_total` and `nixo_http_request_duration_seconds`
//! by route, method and status; `nixo_rule_decisions_total` and
//! `nixo_rule_decision_duration_seconds` by plugin and outcome;
//! `nixo_ledger_transactions_total` by kind and status;
//! `nixo_jobs_finished_total` by kind and state; `nixo_jobs` by state;
//! `nixo_db_pool_connections` by state (idle, in use);
//! `nixo_stage_duration_seconds` by stage of a request's path (see [`Stage`]).

use crate::db::Db;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Histogram buckets for request latency, in seconds (100 µs to 5 s).
const REQUEST_BUCKETS_S: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Histogram buckets for rule decisions, in seconds (5 µs to 100 ms).
const DECISION_BUCKETS_S: [f64; 10] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.01, 0.05, 0.1,
];

/// Histogram buckets for the stages of a request, in seconds (5 µs to 1 s).
const STAGE_BUCKETS_S: [f64; 14] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
];

/// A stage of a request's path through the product, timed on every request
/// into `nixo_stage_duration_seconds{stage}` (where the time goes, from the
/// outside in: the edge's whole answer contains its instantiation and its
/// call to the core; the core's answer contains the signature check, the
/// idempotency record and the service's steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The edge: request in to response head out, through the gateway component.
    EdgeRequest,
    /// The edge: a fresh gateway instance from the pool.
    EdgeInstantiate,
    /// The edge: the component's call to the core, to the core's response head.
    EdgeCoreCall,
    /// The edge: the component's own work before it calls the core (reading
    /// the request, the key and its rate limit, validation, signing), from
    /// the instance being ready.
    EdgeGuestRequest,
    /// The edge: the component's own work after the core answered (reading
    /// that answer, translating it for an older version), to the response
    /// head it hands back.
    EdgeGuestResponse,
    /// The core: the gateway signature, the key's principal and the version.
    CoreAdmit,
    /// The core: taking the Idempotency-Key (before the handler runs).
    IdempotencyBegin,
    /// The core: storing the answer under the Idempotency-Key.
    IdempotencyComplete,
    /// A transfer: wallets, currency and account limits.
    TransferChecks,
    /// A transfer: velocity facts and every fraud rule's decision.
    TransferRules,
    /// A transfer: the ledger write, queue and commit (durable when it ends).
    TransferLedger,
    /// The SQLite ledger writer: an operation's wait in its queue, until
    /// the group commit that takes it begins (one per operation).
    LedgerQueue,
    /// The SQLite ledger writer: a group commit's statements, from `BEGIN`
    /// to its `COMMIT` (one per group commit).
    LedgerApply,
    /// The SQLite ledger writer: a group commit's `COMMIT` — writing the
    /// WAL, its fsync, and the checkpoint that follows when the log is long
    /// enough (one per group commit).
    LedgerCommit,
    /// The SQLite ledger writer's answer to an operation, from its sending
    /// to the waiting task running again (one per operation).
    LedgerReply,
}

impl Stage {
    pub const ALL: [Stage; 15] = [
        Stage::EdgeRequest,
        Stage::EdgeInstantiate,
        Stage::EdgeCoreCall,
        Stage::EdgeGuestRequest,
        Stage::EdgeGuestResponse,
        Stage::CoreAdmit,
        Stage::IdempotencyBegin,
        Stage::IdempotencyComplete,
        Stage::TransferChecks,
        Stage::TransferRules,
        Stage::TransferLedger,
        Stage::LedgerQueue,
        Stage::LedgerApply,
        Stage::LedgerCommit,
        Stage::LedgerReply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::EdgeRequest => "edge.request",
            Stage::EdgeInstantiate => "edge.instantiate",
            Stage::EdgeCoreCall => "edge.core_call",
            Stage::EdgeGuestRequest => "edge.guest_request",
            Stage::EdgeGuestResponse => "edge.guest_response",
            Stage::CoreAdmit => "core.admit",
            Stage::IdempotencyBegin => "idempotency.begin",
            Stage::IdempotencyComplete => "idempotency.complete",
            Stage::TransferChecks => "transfer.checks",
            Stage::TransferRules => "transfer.rules",
            Stage::TransferLedger => "transfer.ledger",
            Stage::LedgerQueue => "ledger.queue",
            Stage::LedgerApply => "ledger.apply",
            Stage::LedgerCommit => "ledger.commit",
            Stage::LedgerReply => "ledger.reply",
        }
    }

    /// Records how long the stage took since `started`.
    pub fn done(self, started: Instant) {
        stage_histograms()[self as usize].record(started.elapsed().as_secs_f64());
    }
}

/// One histogram handle per stage, in [`Stage::ALL`]'s order, registered
/// once: a stage is timed several times per request, and looking its series
/// up in the registry each time (hashing name and label) cost more than
/// recording it.
fn stage_histograms() -> &'static [metrics::Histogram] {
    static HISTOGRAMS: OnceLock<Vec<metrics::Histogram>> = OnceLock::new();
    HISTOGRAMS.get_or_init(|| {
        // The recorder first, so the handles are its and not no-ops.
        handle();
        Stage::ALL
            .iter()
            .map(|stage| metrics::histogram!("nixo_stage_duration_seconds", "stage" => stage.as_str()))
            .collect()
    })
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("nixo_http_request_duration_seconds".into()),
                &REQUEST_BUCKETS_S,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("nixo_rule_decision_duration_seconds".into()),
                    &DECISION_BUCKETS_S,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("nixo_stage_duration_seconds".into()), &STAGE_BUCKETS_S)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (a test harness): ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Counts and times every request by its matched route.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("nixo_http_requests_total", &labels).increment(1);
    metrics::histogram!("nixo_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

/// The text exposition, with the gauges read now.
pub async fn render(db: &Db) -> String {
    match crate::jobs::counts(db).await {
        Ok(counts) => {
            for state in crate::jobs::JobState::ALL {
                let n = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
                metrics::gauge!("nixo_jobs", "state" => state.as_str()).set(n as f64);
            }
        }
        Err(err) => tracing::warn!(error = %err, "counting jobs for metrics failed"),
    }
    let size = db.pool.size() as f64;
    let idle = db.pool.num_idle() as f64;
    metrics::gauge!("nixo_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("nixo_db_pool_connections", "state" => "in_use").set(size - idle);
    handle().render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_records_into_its_own_series() {
        for (index, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(*stage as usize, index, "Stage::ALL is in declaration order");
        }
        Stage::LedgerReply.done(Instant::now());
        Stage::LedgerReply.done(Instant::now());
        Stage::EdgeInstantiate.done(Instant::now());
        let text = handle().render();
        let count = |stage: &str| {
            text.lines()
                .find(|line| line.starts_with(&format!("nixo_stage_duration_seconds_count{{stage=\"{stage}\"}}")))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        assert!(count("ledger.reply").is_some_and(|n| n >= 2), "{text}");
        assert!(count("edge.instantiate").is_some_and(|n| n >= 1), "{text}");
    }
}
