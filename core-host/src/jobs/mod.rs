//! Durable background jobs, coordinated by the database alone.
//!
//! A job is a row in `jobs`. [`enqueue`] takes any connection or
//! transaction, so a job can be written in the same transaction as the
//! change that asks for it (it exists exactly when that change committed).
//! Workers ([`runner`]) claim due jobs with a lease — `UPDATE … RETURNING`
//! through the ledger's writer (on SQLite the database's one writing
//! connection: the queue's writes join its group commits instead of waiting
//! on its lock), `FOR UPDATE SKIP LOCKED` on PostgreSQL —
//! extend the lease while a job runs (heartbeat), and finish it fenced on
//! `(locked_by, attempt)`, so a job rescued after its lease passed cannot be
//! finished twice. Failures are retried with exponential backoff and jitter
//! until `max_attempts`, then the job is `dead` (visible, retryable by an
//! operator). At least once: a handler must be idempotent, and every handler
//! in Nixo is (ledger identities, unique keys, fenced updates).

pub mod runner;

use crate::db::Db;
use crate::ledger::{Ledger, LedgerError, Statement};
use serde_json::Value;
use sqlx::Row;

/// Attempts a job gets by default before it is `dead`.
pub const MAX_ATTEMPTS_DEFAULT: i64 = 20;
/// First retry delay; doubles per attempt.
pub const BACKOFF_BASE_MS: i64 = 1_000;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: i64 = 3_600_000;
/// Jitter applied to each delay: ± this percentage.
pub const BACKOFF_JITTER_PERCENT: i64 = 20;
/// Longest error text kept on a job.
pub const ERROR_TEXT_LEN_MAX: usize = 2_000;
/// Jobs listed at most by one call.
pub const LIST_LEN_MAX: i64 = 1_000;

/// States a job goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Available,
    Running,
    Succeeded,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Available,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub run_at_ms: i64,
    pub max_attempts: i64,
    /// At most one live (available or running) job holds a unique key; a
    /// second enqueue with it is a no-op.
    pub unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value, now_ms: i64) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            run_at_ms: now_ms,
            max_attempts: MAX_ATTEMPTS_DEFAULT,
            unique_key: None,
        }
    }

    pub fn run_at(mut self, run_at_ms: i64) -> NewJob {
        self.run_at_ms = run_at_ms;
        self
    }

    pub fn unique(mut self, key: impl Into<String>) -> NewJob {
        self.unique_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, n: i64) -> NewJob {
        self.max_attempts = n.max(1);
        self
    }
}

/// The statement that enqueues `job`: answers its id, or no row when a live
/// job already holds its unique key.
fn enqueue_statement(job: &NewJob, now_ms: i64) -> Statement {
    Statement::new(
        "INSERT INTO jobs (kind, payload, state, max_attempts, run_at_ms, unique_key, created_at_ms)
         VALUES ($1, $2, 'available', $3, $4, $5, $6)
         ON CONFLICT DO NOTHING RETURNING id",
        vec![
            job.kind.as_str().into(),
            job.payload.to_string().into(),
            job.max_attempts.into(),
            job.run_at_ms.into(),
            job.unique_key.as_deref().into(),
            now_ms.into(),
        ],
    )
}

/// Enqueues a job on `conn` (a transaction, to commit it with the change
/// that asks for it). Returns its id, or `None` when a live job already
/// holds its unique key.
pub async fn enqueue<C: crate::sql_exec::Exec>(
    conn: &mut C,
    job: &NewJob,
    now_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let statement = enqueue_statement(job, now_ms);
    let row = conn.fetch_optional(&statement.sql, &statement.binds).await?;
    row.map(|r| r.int(0)).transpose()
}

/// Enqueues a job in a transaction of its own, through the ledger's writer
/// (the database's one writing connection on SQLite).
pub async fn enqueue_now(ledger: &Ledger, job: &NewJob, now_ms: i64) -> Result<Option<i64>, LedgerError> {
    let answers = ledger.write_statements(vec![enqueue_statement(job, now_ms)]).await?;
    let id = answers
        .first()
        .and_then(|rows| rows.first())
        .map(|r| r.int(0))
        .transpose()?;
    Ok(id)
}

/// The delay before retry number `attempt` (1-based): doubling from
/// [`BACKOFF_BASE_MS`] up to [`BACKOFF_MAX_MS`], ± [`BACKOFF_JITTER_PERCENT`].
pub fn backoff_ms(attempt: i64, jitter_unit: f64) -> i64 {
    let exponent = (attempt.max(1) - 1).min(30) as u32;
    let delay = BACKOFF_BASE_MS.saturating_mul(1i64 << exponent).min(BACKOFF_MAX_MS);
    // jitter_unit is uniform in [0, 1): map it to [-jitter, +jitter].
    let jitter = (delay * BACKOFF_JITTER_PERCENT / 100) as f64 * (jitter_unit * 2.0 - 1.0);
    (delay as f64 + jitter).round() as i64
}

/// A job as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempt: i64,
    pub max_attempts: i64,
    pub run_at_ms: i64,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// Jobs, newest first, optionally of one state.
pub async fn list(db: &Db, state: Option<JobState>, limit: i64) -> Result<Vec<JobInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, state, attempt, max_attempts, run_at_ms, locked_by, last_error, created_at_ms, finished_at_ms
         FROM jobs WHERE ($1 = '' OR state = $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(state.map_or("", JobState::as_str))
    .bind(limit.clamp(1, LIST_LEN_MAX))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(JobInfo {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                state: r.try_get(2)?,
                attempt: r.try_get(3)?,
                max_attempts: r.try_get(4)?,
                run_at_ms: r.try_get(5)?,
                locked_by: r.try_get(6)?,
                last_error: r.try_get(7)?,
                created_at_ms: r.try_get(8)?,
                finished_at_ms: r.try_get(9)?,
            })
        })
        .collect()
}

/// Counts of jobs per state (for metrics).
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Makes a dead job available again, now, with a fresh set of attempts.
/// `false` when no dead job has that id.
pub async fn retry(db: &Db, id: i64, now_ms: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'available', attempt = 0, run_at_ms = $1, finished_at_ms = NULL, locked_by = NULL,
                lease_until_ms = NULL
         WHERE id = $2 AND state = 'dead'",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes finished jobs older than `before_ms`; returns how many.
pub async fn purge_finished(ledger: &Ledger, before_ms: i64) -> Result<u64, LedgerError> {
    ledger
        .purge(
            "jobs",
            "id",
            "state IN ('succeeded', 'dead') AND finished_at_ms < $1",
            vec![before_ms.into()],
        )
        .await
}

/// Bounded error text for a job row.
pub(crate) fn error_text(err: &anyhow::Error) -> String {
    let mut text = format!("{err:#}");
    if text.len() > ERROR_TEXT_LEN_MAX {
        let mut end = ERROR_TEXT_LEN_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_ceiling() {
        assert_eq!(backoff_ms(1, 0.5), 1_000);
        assert_eq!(backoff_ms(2, 0.5), 2_000);
        assert_eq!(backoff_ms(5, 0.5), 16_000);
        assert_eq!(backoff_ms(40, 0.5), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(1, 0.0), 800);
        assert!(backoff_ms(3, 0.999_999) <= 4_800 && backoff_ms(3, 0.999_999) > 4_790);
    }

    #[test]
    fn states_round_trip() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(JobState::parse("queued"), None);
    }
}
