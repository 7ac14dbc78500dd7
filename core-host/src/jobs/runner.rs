//! The worker pool: claims due jobs with a lease, runs their handlers,
//! keeps the leases alive while they run, and records each outcome.
//!
//! Every replica runs one; the database decides who runs what. Claims,
//! completions and the periodic schedule are written through the ledger's
//! writer ([`Ledger::write_statements`]): on SQLite they join its group
//! commits rather than take the database's write lock beside it (a claim
//! through a pool connection waited over a second for that lock under
//! load, and the ledger's commits waited on the claim's). Completions are
//! written in batches (one transaction for many jobs), so a stream of small
//! jobs costs a fraction of a commit each.

use super::{JobState, NewJob, backoff_ms, error_text};
use crate::clock::Clock;
use crate::db::{Backend, Bind};
use crate::ledger::{Ledger, LedgerError, Statement};
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// Jobs one worker runs at once.
pub const CONCURRENCY_DEFAULT: usize = 32;
/// How long a claim lasts without a heartbeat.
pub const LEASE_MS_DEFAULT: i64 = 30_000;
/// How often an idle worker looks for due jobs (an in-process enqueue wakes it sooner).
pub const POLL_INTERVAL_MS_DEFAULT: u64 = 250;
/// Jobs claimed by one query at most.
pub const CLAIM_BATCH_MAX: usize = 128;
/// Outcomes written by one transaction at most.
pub const FINISH_BATCH_MAX: usize = 512;
/// Longest a handler may run before its attempt counts as failed.
pub const RUN_TIMEOUT_MS: u64 = 300_000;
/// How long shutdown waits for jobs in flight.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// A claimed job, handed to its handler.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    /// 1 on the first run.
    pub attempt: i64,
    pub max_attempts: i64,
}

pub type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What runs a kind of job.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, job: ClaimedJob) -> JobFuture;
}

impl<F, Fut> JobHandler for F
where
    F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    fn run(&self, job: ClaimedJob) -> JobFuture {
        Box::pin(self(job))
    }
}

/// Handlers by job kind, and the periodic jobs to keep scheduled.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
    periodic: Vec<(String, i64)>,
}

impl Registry {
    pub fn register(&mut self, kind: &str, handler: impl JobHandler) -> &mut Self {
        self.handlers.insert(kind.to_string(), Arc::new(handler));
        self
    }

    /// Keeps one `kind` job scheduled every `interval_ms` (unique across replicas).
    pub fn every(&mut self, kind: &str, interval_ms: i64) -> &mut Self {
        self.periodic.push((kind.to_string(), interval_ms));
        self
    }
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Fences this worker's claims; unique per process start.
    pub worker_id: String,
    pub concurrency: usize,
    pub lease_ms: i64,
    pub poll_interval_ms: u64,
    /// This worker is the database's only one while it lives (the process
    /// holds the SQLite serve lock). Its claims are then its own until it
    /// finishes them — a late heartbeat (a saturated writer) never stops a
    /// job — and a job left running by any other worker belongs to a process
    /// that died, so it is taken over at once instead of after its lease.
    pub sole_worker: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            worker_id: format!("wrk_{}", hex::encode(rand::random::<[u8; 8]>())),
            concurrency: CONCURRENCY_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            poll_interval_ms: POLL_INTERVAL_MS_DEFAULT,
            sole_worker: false,
        }
    }
}

/// Wakes the worker of this process (after an enqueue).
#[derive(Clone, Default, Debug)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

struct Outcome {
    job: ClaimedJob,
    result: Result<(), String>,
}

/// What this worker knows of its leases: when each running job's lease was
/// last confirmed (the instant before the claim or heartbeat that set it).
/// A job whose lease this worker cannot confirm in time is stopped before
/// the lease can pass, so a rescue by another replica never overlaps it.
#[derive(Default)]
struct Leases {
    confirmed: std::sync::Mutex<HashMap<i64, Instant>>,
    beat: Notify,
}

impl Leases {
    fn confirm(&self, ids: impl IntoIterator<Item = i64>, at: Instant) {
        let mut confirmed = self.confirmed.lock().expect("lease map");
        for id in ids {
            // Never backwards: a heartbeat that started before a claim of the
            // same job (a new attempt) must not date that claim's lease back.
            let entry = confirmed.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
        drop(confirmed);
        self.beat.notify_waiters();
    }

    fn confirmed_at(&self, id: i64) -> Option<Instant> {
        self.confirmed.lock().expect("lease map").get(&id).copied()
    }

    fn forget(&self, id: i64) {
        self.confirmed.lock().expect("lease map").remove(&id);
    }

    /// The jobs this worker holds: running, or finished and not yet recorded.
    fn held(&self) -> Vec<i64> {
        self.confirmed.lock().expect("lease map").keys().copied().collect()
    }
}

struct Worker {
    ledger: Ledger,
    registry: Registry,
    clock: Clock,
    config: RunnerConfig,
    leases: Leases,
}

impl Worker {
    /// How long after its last confirmation a job may keep running here: the
    /// lease less a safety margin of a quarter.
    fn lease_budget(&self) -> Duration {
        Duration::from_millis((self.config.lease_ms - self.config.lease_ms / 4).max(1) as u64)
    }
}

/// Starts the worker; it stops when `shutdown` changes.
pub fn spawn(
    ledger: Ledger,
    registry: Registry,
    clock: Clock,
    config: RunnerConfig,
    waker: Waker,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    let worker = Arc::new(Worker {
        ledger,
        registry,
        clock,
        config,
        leases: Leases::default(),
    });
    tokio::spawn(run(worker, waker, shutdown))
}

async fn run(worker: Arc<Worker>, waker: Waker, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let (finished, finish_queue) = mpsc::channel::<Outcome>(FINISH_BATCH_MAX * 4);
    let finisher = tokio::spawn(finish_loop(worker.clone(), finish_queue));
    let heartbeat = tokio::spawn(heartbeat_loop(worker.clone(), shutdown.clone()));
    let slots = Arc::new(Semaphore::new(worker.config.concurrency));
    let poll = Duration::from_millis(worker.config.poll_interval_ms);
    let mut next_schedule_ms = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now_ms = worker.clock.now_ms();
        if now_ms >= next_schedule_ms {
            if let Err(err) = schedule_periodic(&worker, now_ms).await {
                tracing::warn!(error = %format!("{err:#}"), "scheduling periodic jobs failed; retrying");
            }
            next_schedule_ms = now_ms + poll.as_millis() as i64 * 4;
        }
        // Wait for a free slot, then claim as many jobs as there are free slots.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            _ = shutdown.changed() => break,
        };
        let free = (slots.available_permits() + 1).min(CLAIM_BATCH_MAX);
        // The time of the claim itself: the wait for a slot may have been
        // long, and a lease counted from before it could be over already.
        let claim_started = Instant::now();
        let claimed = match claim(&worker, free, worker.clock.now_ms()).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "claiming jobs failed; retrying");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            drop(first);
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = waker.0.notified() => {}
                _ = shutdown.changed() => break,
            }
            continue;
        }
        let mut permits = vec![first];
        for _ in 1..claimed.len() {
            permits.push(slots.clone().acquire_owned().await?);
        }
        worker.leases.confirm(claimed.iter().map(|j| j.id), claim_started);
        for (job, permit) in claimed.into_iter().zip(permits) {
            let handler = worker.registry.handlers.get(&job.kind).cloned();
            let finished = finished.clone();
            let worker = worker.clone();
            tokio::spawn(async move {
                match run_leased(&worker, handler, job.clone()).await {
                    Some(result) => {
                        let _ = finished.send(Outcome { job, result }).await;
                    }
                    None => tracing::warn!(
                        job = job.id,
                        kind = %job.kind,
                        "stopped a job whose lease could not be renewed in time; another worker may take it over"
                    ),
                }
                drop(permit);
            });
        }
    }
    // Let the jobs in flight finish (bounded), then write their outcomes.
    let all = worker.config.concurrency as u32;
    let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), slots.acquire_many(all)).await;
    drop(finished);
    heartbeat.abort();
    finisher.await?;
    Ok(())
}

/// Runs a job while its lease holds; `None` when the lease could not be
/// confirmed in time and the handler was stopped. A sole worker's lease
/// cannot pass to anyone else, so its jobs always run to their end.
async fn run_leased(
    worker: &Worker,
    handler: Option<Arc<dyn JobHandler>>,
    job: ClaimedJob,
) -> Option<Result<(), String>> {
    let id = job.id;
    let run = execute(handler, job);
    if worker.config.sole_worker {
        return Some(run.await);
    }
    tokio::pin!(run);
    let outcome = loop {
        let Some(confirmed) = worker.leases.confirmed_at(id) else {
            break None;
        };
        let deadline = tokio::time::Instant::from_std(confirmed + worker.lease_budget());
        let beat = worker.leases.beat.notified();
        tokio::select! {
            result = &mut run => break Some(result),
            _ = beat => continue,
            _ = tokio::time::sleep_until(deadline) => {
                if worker.leases.confirmed_at(id).is_some_and(|at| at + worker.lease_budget() > Instant::now()) {
                    continue;
                }
                break None;
            }
        }
    };
    if outcome.is_none() {
        // Not ours any more: the heartbeat must stop renewing it, so its
        // lease can pass and another worker can take it over.
        worker.leases.forget(id);
    }
    outcome
}

async fn execute(handler: Option<Arc<dyn JobHandler>>, job: ClaimedJob) -> Result<(), String> {
    let Some(handler) = handler else {
        return Err(format!("no handler for job kind '{}'", job.kind));
    };
    let run = tokio::spawn(handler.run(job));
    // Stopping this future (a lost lease) stops the handler too.
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _stop = AbortOnDrop(run.abort_handle());
    match tokio::time::timeout(Duration::from_millis(RUN_TIMEOUT_MS), run).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(err))) => Err(error_text(&err)),
        Ok(Err(join)) => Err(format!("the handler panicked: {join}")),
        Err(_) => Err(format!("the handler ran longer than {RUN_TIMEOUT_MS} ms")),
    }
}

/// Claims up to `n` due jobs (and jobs whose lease passed) for this worker.
async fn claim(worker: &Worker, n: usize, now_ms: i64) -> Result<Vec<ClaimedJob>, LedgerError> {
    let lock = match worker.ledger.db.backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, locked_by = $1, lease_until_ms = $2
         WHERE id IN (SELECT id FROM jobs
                      WHERE (state = 'available' AND run_at_ms <= $3)
                         OR (state = 'running' AND {orphaned} AND attempt < max_attempts)
                      ORDER BY run_at_ms, id LIMIT $4{lock})
         RETURNING id, kind, payload, attempt, max_attempts",
        orphaned = orphaned(worker, "$3", "$1")
    );
    let binds = vec![
        worker.config.worker_id.as_str().into(),
        (now_ms + worker.config.lease_ms).into(),
        now_ms.into(),
        (n as i64).into(),
    ];
    let answers = worker.ledger.write_statements(vec![Statement::new(sql, binds)]).await?;
    let rows = answers.into_iter().next().unwrap_or_default();
    let jobs = rows
        .iter()
        .map(|r| {
            let payload = r.text(2)?;
            Ok(ClaimedJob {
                id: r.int(0)?,
                kind: r.text(1)?,
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                attempt: r.int(3)?,
                max_attempts: r.int(4)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(jobs)
}

/// When a running job's worker is gone: its lease passed before `now` or,
/// for a sole worker, it is any worker's but this one (`me`); both are
/// parameter names.
fn orphaned(worker: &Worker, now: &str, me: &str) -> String {
    if worker.config.sole_worker {
        format!("locked_by <> {me}")
    } else {
        format!("lease_until_ms < {now}")
    }
}

/// Keeps the periodic jobs scheduled and buries jobs whose last attempt's
/// worker died, in one transaction.
async fn schedule_periodic(worker: &Worker, now_ms: i64) -> Result<(), LedgerError> {
    let mut statements: Vec<Statement> = worker
        .registry
        .periodic
        .iter()
        .map(|(kind, interval_ms)| {
            let job = NewJob::new(kind.clone(), Value::Null, now_ms)
                .run_at(now_ms + interval_ms)
                .unique(format!("periodic:{kind}"));
            super::enqueue_statement(&job, now_ms)
        })
        .collect();
    let sql = format!(
        "UPDATE jobs SET state = 'dead', finished_at_ms = $1, locked_by = NULL, lease_until_ms = NULL,
                last_error = 'the worker running the last attempt stopped'
         WHERE state = 'running' AND {orphaned} AND attempt >= max_attempts
         RETURNING id",
        orphaned = orphaned(worker, "$1", "$2")
    );
    let mut binds: Vec<Bind> = vec![now_ms.into()];
    if worker.config.sole_worker {
        binds.push(worker.config.worker_id.as_str().into());
    }
    statements.push(Statement::new(sql, binds));
    worker.ledger.write_statements(statements).await?;
    Ok(())
}

/// Extends the leases of this worker's running jobs every third of a lease,
/// on a connection of its own (a busy pool must not starve it), and
/// confirms each extended lease to the jobs running here.
async fn heartbeat_loop(worker: Arc<Worker>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis((worker.config.lease_ms / 3).max(1) as u64);
    let mut conn: Option<sqlx::AnyConnection> = None;
    let mut retry_now = false;
    loop {
        let pause = if std::mem::take(&mut retry_now) {
            Duration::from_millis(10)
        } else {
            every
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        if conn.is_none() {
            match worker.ledger.db.dedicated_connection().await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "job heartbeat cannot connect; leases may lapse");
                    continue;
                }
            }
        }
        let held = worker.leases.held();
        if held.is_empty() {
            continue;
        }
        let started = Instant::now();
        let now_ms = worker.clock.now_ms();
        let ids: Vec<String> = held.iter().map(i64::to_string).collect();
        // Only the jobs still held here, and only while their lease holds;
        // rows are locked in id order, as the finisher writes them, so the
        // two cannot deadlock on PostgreSQL.
        let lock = match worker.ledger.db.backend {
            Backend::Postgres => " ORDER BY id FOR UPDATE",
            Backend::Sqlite => "",
        };
        // A sole worker's lease cannot pass to another: it renews a late one
        // too (the row only shows operators that its worker is alive). A
        // heartbeat only extends: one that waited for the write lock while
        // this worker claimed the job again (its next attempt) leaves that
        // claim's later lease as it is.
        let live = if worker.config.sole_worker {
            ""
        } else {
            " AND lease_until_ms >= $3"
        };
        let sql = format!(
            "UPDATE jobs SET lease_until_ms = $1
             WHERE id IN (SELECT id FROM jobs
                          WHERE state = 'running' AND locked_by = $2{live} AND lease_until_ms <= $1
                            AND id IN ({}){lock})
             RETURNING id",
            ids.join(", ")
        );
        let mut extend = sqlx::query(&sql)
            .bind(now_ms + worker.config.lease_ms)
            .bind(worker.config.worker_id.as_str());
        if !worker.config.sole_worker {
            extend = extend.bind(now_ms);
        }
        let extended = extend.fetch_all(conn.as_mut().expect("connected")).await;
        match extended {
            Ok(rows) => {
                let ids = rows.iter().filter_map(|r| r.try_get::<i64, _>(0).ok());
                worker.leases.confirm(ids, started);
            }
            Err(err) => {
                tracing::warn!(error = %err, "job heartbeat failed; retrying at once");
                conn = None;
                retry_now = true;
            }
        }
    }
}

/// Writes outcomes in batches until every sender is gone.
async fn finish_loop(worker: Arc<Worker>, mut queue: mpsc::Receiver<Outcome>) {
    let mut batch = Vec::with_capacity(FINISH_BATCH_MAX);
    while queue.recv_many(&mut batch, FINISH_BATCH_MAX).await > 0 {
        loop {
            match finish_batch(&worker, &batch).await {
                Ok(()) => break,
                Err(err) => {
                    // Unrecorded outcomes would rerun after the lease: retry the write.
                    tracing::warn!(error = %err, jobs = batch.len(), "recording job outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        batch.clear();
    }
}

async fn finish_batch(worker: &Worker, batch: &[Outcome]) -> Result<(), LedgerError> {
    finish_rows(worker, batch).await?;
    for outcome in batch {
        worker.leases.forget(outcome.job.id);
    }
    Ok(())
}

/// What an attempt's outcome makes of its job: its next state, when it runs
/// again (a retry) and the error it leaves.
fn next_state(job: &ClaimedJob, result: &Result<(), String>, now_ms: i64) -> (JobState, Option<i64>, Option<String>) {
    match result {
        Ok(()) => (JobState::Succeeded, None, None),
        Err(why) if job.attempt >= job.max_attempts => (JobState::Dead, None, Some(why.clone())),
        Err(why) => (
            JobState::Available,
            Some(now_ms + backoff_ms(job.attempt, rand::random::<f64>())),
            Some(why.clone()),
        ),
    }
}

async fn finish_rows(worker: &Worker, batch: &[Outcome]) -> Result<(), LedgerError> {
    let now_ms = worker.clock.now_ms();
    let mut ordered: Vec<&Outcome> = batch.iter().collect();
    // Ascending ids, as the heartbeat locks them (no deadlock between the two).
    ordered.sort_by_key(|o| o.job.id);
    let next: Vec<_> = ordered
        .iter()
        .map(|Outcome { job, result }| next_state(job, result, now_ms))
        .collect();
    // Fenced: a job rescued by another worker (after our lease passed)
    // has another attempt number or owner, and is not ours to finish.
    let statements = ordered
        .iter()
        .zip(&next)
        .map(|(Outcome { job, .. }, (state, run_at_ms, error))| {
            let finished_at_ms = matches!(state, JobState::Succeeded | JobState::Dead).then_some(now_ms);
            Statement::new(
                "UPDATE jobs SET state = $1, run_at_ms = COALESCE($2, run_at_ms), last_error = COALESCE($3, last_error),
                        finished_at_ms = $4, locked_by = NULL, lease_until_ms = NULL
                 WHERE id = $5 AND locked_by = $6 AND attempt = $7 AND state = 'running'
                 RETURNING id",
                vec![
                    state.as_str().into(),
                    (*run_at_ms).into(),
                    error.clone().into(),
                    finished_at_ms.into(),
                    job.id.into(),
                    worker.config.worker_id.as_str().into(),
                    job.attempt.into(),
                ],
            )
        })
        .collect();
    let answers = worker.ledger.write_statements(statements).await?;
    for ((Outcome { job, .. }, (state, _, error)), rows) in ordered.iter().zip(&next).zip(&answers) {
        if rows.is_empty() {
            tracing::warn!(job = job.id, kind = %job.kind, "a job finished after its lease passed; its new owner decides");
        }
        match (state, error) {
            (JobState::Dead, Some(why)) => {
                tracing::error!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %why, "job is dead")
            }
            (JobState::Available, Some(why)) => {
                tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %why, "job failed; will retry")
            }
            _ => {}
        }
        metrics::counter!("nixo_jobs_finished_total", "kind" => job.kind.clone(), "state" => state.as_str())
            .increment(1);
    }
    Ok(())
}
