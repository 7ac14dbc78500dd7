//! Durable jobs with real worker processes (`nixo-test-worker`, the real
//! worker pool running a `probe` job that records every run): a worker
//! killed with SIGKILL mid-job is replaced and the job completes once; two
//! workers on one PostgreSQL drain 1,000 jobs with none lost and none run
//! twice, including jobs that outlive their lease (heartbeats keep them);
//! the sole worker of a SQLite database (as `nixo serve` is) keeps its jobs
//! while the writer is held past their lease, and takes over a dead
//! worker's job at once.

use nixo_core::db::{self, Backend, Db};
use nixo_core::jobs::{self, NewJob};
use nixo_core::ledger::Ledger;
use nixo_tests::PgDatabase;
use serde_json::json;
use sqlx::Row;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WORKER: &str = env!("CARGO_BIN_EXE_nixo-test-worker");

struct Worker(Child);

impl Worker {
    fn start(url: &str, name: &str, lease_ms: i64) -> Worker {
        Worker::spawn(&[url, name, &lease_ms.to_string()])
    }

    /// The database's only worker (`RunnerConfig::sole_worker`).
    fn start_sole(url: &str, name: &str, lease_ms: i64) -> Worker {
        Worker::spawn(&[url, name, &lease_ms.to_string(), "sole"])
    }

    fn spawn(args: &[&str]) -> Worker {
        let mut child = Command::new(WORKER)
            .args(args)
            .env("NIXO_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        Worker(child)
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn prepare(url: &str) -> Db {
    let db = Db::open(url).await.unwrap();
    let int = match db.backend {
        Backend::Sqlite => "INTEGER",
        Backend::Postgres => "BIGINT",
    };
    for sql in [
        format!(
            "CREATE TABLE probe_runs (job_id {int} NOT NULL, worker TEXT NOT NULL, attempt {int} NOT NULL,
                 started_at_us {int} NOT NULL, ended_at_us {int})"
        ),
        format!("CREATE TABLE probe_done (job_id {int} PRIMARY KEY, worker TEXT NOT NULL)"),
    ] {
        sqlx::query(&sql).execute(&db.pool).await.unwrap();
    }
    db
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(&db.pool).await.unwrap().try_get(0).unwrap()
}

async fn wait_for(db: &Db, sql: &str, want: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = scalar(db, sql).await;
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for `{sql}` to reach {want}; it is {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_replaced_and_the_job_completes_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = db::sqlite_url(&dir.path().join("jobs.db"));
    let db = prepare(&url).await;
    let job = NewJob::new("probe", json!({ "sleep_ms": 3_000 }), now_ms());
    let ledger = Ledger::new(db.clone()).await.unwrap();
    let id = jobs::enqueue_now(&ledger, &job, now_ms()).await.unwrap().unwrap();

    let mut first = Worker::start(&url, "worker-a", 1_500);
    wait_for(&db, "SELECT COUNT(*) FROM probe_runs", 1, Duration::from_secs(10)).await;
    first.kill();
    let running: String = sqlx::query("SELECT state FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        running, "running",
        "the killed worker's claim outlives it until its lease passes"
    );

    let _second = Worker::start(&url, "worker-b", 1_500);
    wait_for(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'",
        1,
        Duration::from_secs(30),
    )
    .await;
    let row = sqlx::query("SELECT attempt, locked_by FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>(0), 2, "one rerun after the kill");
    assert_eq!(row.get::<Option<String>, _>(1), None);
    let runs = sqlx::query("SELECT worker, attempt, ended_at_us FROM probe_runs ORDER BY attempt")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let runs: Vec<(String, i64, Option<i64>)> = runs.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0].0.as_str(), runs[0].1, runs[0].2),
        ("worker-a", 1, None),
        "killed mid-job"
    );
    assert_eq!((runs[1].0.as_str(), runs[1].1), ("worker-b", 2));
    assert!(runs[1].2.is_some());
    let done: Vec<String> = sqlx::query("SELECT worker FROM probe_done")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(done, ["worker-b"], "completed once");
}

/// The runs of job `id`: (worker, attempt, ended).
async fn runs_of(db: &Db, id: i64) -> Vec<(String, i64, bool)> {
    sqlx::query("SELECT worker, attempt, ended_at_us FROM probe_runs WHERE job_id = $1 ORDER BY started_at_us")
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<Option<i64>, _>(2).is_some()))
        .collect()
}

/// How long the test holds SQLite's write lock: past the workers' lease.
const WRITER_HELD_MS: u64 = 3_000;
const SHORT_LEASE_MS: i64 = 1_000;

/// Starts a 2 s job on `worker`, then holds the database's write lock for
/// [`WRITER_HELD_MS`] (as a saturated writer would), and waits for the job
/// to succeed; returns its runs.
async fn hold_the_writer_under(db: &Db, url: &str, worker: &str, sole: bool) -> Vec<(String, i64, bool)> {
    let job = NewJob::new("probe", json!({ "sleep_ms": 2_000 }), now_ms());
    let ledger = Ledger::new(db.clone()).await.unwrap();
    let id = jobs::enqueue_now(&ledger, &job, now_ms()).await.unwrap().unwrap();
    let _worker = if sole {
        Worker::start_sole(url, worker, SHORT_LEASE_MS)
    } else {
        Worker::start(url, worker, SHORT_LEASE_MS)
    };
    wait_for(
        db,
        &format!("SELECT COUNT(*) FROM probe_runs WHERE job_id = {id}"),
        1,
        Duration::from_secs(10),
    )
    .await;
    let mut writer = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO writer_held (at_ms) VALUES ($1)")
        .bind(now_ms())
        .execute(&mut *writer)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(WRITER_HELD_MS)).await;
    writer.commit().await.unwrap();
    wait_for(
        db,
        &format!("SELECT COUNT(*) FROM jobs WHERE id = {id} AND state = 'succeeded'"),
        1,
        Duration::from_secs(30),
    )
    .await;
    runs_of(db, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sole_worker_keeps_its_job_while_the_writer_is_held_past_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = db::sqlite_url(&dir.path().join("jobs.db"));
    let db = prepare(&url).await;
    sqlx::query("CREATE TABLE writer_held (at_ms INTEGER NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();

    // A worker that shares the database cannot confirm its lease while the
    // writer is held: it stops the job before the lease passes, and the job
    // runs again once the lease has passed.
    let shared = hold_the_writer_under(&db, &url, "shared", false).await;
    assert_eq!(
        shared,
        [("shared".to_string(), 1, false), ("shared".to_string(), 2, true)],
        "a lease-bound worker stops its job when the heartbeat cannot get through"
    );

    // The database's only worker keeps it: one run, to its end.
    let sole = hold_the_writer_under(&db, &url, "sole", true).await;
    assert_eq!(
        sole,
        [("sole".to_string(), 1, true)],
        "the sole worker's job ran once, to its end, though its lease lapsed in the table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sole_worker_takes_over_a_dead_workers_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = db::sqlite_url(&dir.path().join("jobs.db"));
    let db = prepare(&url).await;
    let job = NewJob::new("probe", json!({ "sleep_ms": 1_000 }), now_ms());
    let ledger = Ledger::new(db.clone()).await.unwrap();
    let id = jobs::enqueue_now(&ledger, &job, now_ms()).await.unwrap().unwrap();
    // A lease far longer than the test may wait: only the sole worker's
    // knowledge that the other worker is gone lets the job run again.
    let lease_ms = 120_000;
    let mut first = Worker::start_sole(&url, "first", lease_ms);
    wait_for(&db, "SELECT COUNT(*) FROM probe_runs", 1, Duration::from_secs(10)).await;
    first.kill();

    let started = Instant::now();
    let _second = Worker::start_sole(&url, "second", lease_ms);
    wait_for(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'",
        1,
        Duration::from_secs(20),
    )
    .await;
    eprintln!(
        "the dead worker's job succeeded {:?} after the second started",
        started.elapsed()
    );
    assert_eq!(
        runs_of(&db, id).await,
        [("first".to_string(), 1, false), ("second".to_string(), 2, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_postgresql_drain_a_thousand_jobs_once_each() {
    let Some(pg) = PgDatabase::create("jobs_two_workers").await else {
        return;
    };
    let db = prepare(&pg.url).await;
    let now = now_ms();
    let mut tx = db.pool.begin().await.unwrap();
    for i in 0..1_000 {
        // Every 50th job outlives the lease: only heartbeats keep it from
        // being taken over by the other worker.
        let sleep_ms = if i % 50 == 0 { 4_000 } else { 0 };
        let job = NewJob::new("probe", json!({ "sleep_ms": sleep_ms }), now);
        jobs::enqueue(&mut *tx, &job, now).await.unwrap();
    }
    tx.commit().await.unwrap();

    let _a = Worker::start(&pg.url, "worker-a", 1_500);
    let _b = Worker::start(&pg.url, "worker-b", 1_500);
    wait_for(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'",
        1_000,
        Duration::from_secs(90),
    )
    .await;
    let reruns = sqlx::query(
        "SELECT job_id, worker, attempt, started_at_us, ended_at_us FROM probe_runs
         WHERE job_id IN (SELECT job_id FROM probe_runs GROUP BY job_id HAVING COUNT(*) > 1)
         ORDER BY job_id, started_at_us LIMIT 12",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for r in &reruns {
        eprintln!(
            "rerun: job {} by {} attempt {} from {} to {:?}",
            r.get::<i64, _>(0),
            r.get::<String, _>(1),
            r.get::<i64, _>(2),
            r.get::<i64, _>(3),
            r.get::<Option<i64>, _>(4)
        );
    }
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM probe_done").await, 1_000, "none lost");
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM probe_runs").await,
        1_000,
        "none run twice"
    );
    assert_eq!(scalar(&db, "SELECT MAX(attempt) FROM jobs").await, 1);
    let overlapping = scalar(
        &db,
        "SELECT COUNT(*) FROM probe_runs a JOIN probe_runs b
           ON a.job_id = b.job_id AND a.worker < b.worker
          AND a.started_at_us < COALESCE(b.ended_at_us, 9223372036854775807)
          AND b.started_at_us < COALESCE(a.ended_at_us, 9223372036854775807)",
    )
    .await;
    assert_eq!(overlapping, 0);
    for worker in ["worker-a", "worker-b"] {
        let mine = sqlx::query("SELECT COUNT(*) FROM probe_done WHERE worker = $1")
            .bind(worker)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get::<i64, _>(0);
        assert!(mine > 0, "{worker} took part");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_back_off_then_die_visibly_and_an_operator_can_retry() {
    use nixo_core::clock::Clock;
    use nixo_core::jobs::JobState;
    use nixo_core::jobs::runner::{self, Registry, RunnerConfig};
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&db::sqlite_url(&dir.path().join("jobs.db"))).await.unwrap();
    let clock = Clock::system();
    let mut registry = Registry::default();
    registry.register("always-fails", |_job| async { anyhow::bail!("the provider said no") });
    let job = NewJob::new("always-fails", json!({}), clock.now_ms())
        .max_attempts(3)
        .unique("refund:42");
    let ledger = Ledger::new(db.clone()).await.unwrap();
    let id = jobs::enqueue_now(&ledger, &job, clock.now_ms()).await.unwrap().unwrap();
    assert_eq!(
        jobs::enqueue_now(&ledger, &job, clock.now_ms()).await.unwrap(),
        None,
        "a unique key admits one live job"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = RunnerConfig {
        poll_interval_ms: 20,
        ..RunnerConfig::default()
    };
    let worker = runner::spawn(
        ledger.clone(),
        registry,
        clock.clone(),
        config,
        runner::Waker::default(),
        stopped,
    );

    let state = |db: Db| async move {
        let row = sqlx::query("SELECT state, attempt, run_at_ms, last_error FROM jobs WHERE id = 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (
            row.get::<String, _>(0),
            row.get::<i64, _>(1),
            row.get::<i64, _>(2),
            row.get::<Option<String>, _>(3),
        )
    };
    for attempt in 1..=2 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, a, run_at, error) = state(db.clone()).await;
            if s == "available" && a == attempt {
                let delay = run_at - clock.now_ms();
                let base = 1_000 << (attempt - 1);
                assert!(
                    delay > base * 7 / 10 && delay <= base * 12 / 10,
                    "backoff {delay} ms after attempt {attempt}"
                );
                assert_eq!(error.as_deref(), Some("the provider said no"));
                break;
            }
            assert!(Instant::now() < deadline, "attempt {attempt} did not fail as expected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        clock.advance(5_000);
    }
    wait_for(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'dead'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let (_, attempts, _, error) = state(db.clone()).await;
    assert_eq!(attempts, 3);
    assert_eq!(error.as_deref(), Some("the provider said no"));
    let dead = jobs::list(&db, Some(JobState::Dead), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].finished_at_ms.is_some());

    // An operator can run a dead job again.
    let _ = stop.send(true);
    worker.await.unwrap().unwrap();
    assert!(jobs::retry(&db, id, clock.now_ms()).await.unwrap());
    assert!(
        !jobs::retry(&db, id, clock.now_ms()).await.unwrap(),
        "only dead jobs are retried"
    );
    let (s, a, _, _) = state(db.clone()).await;
    assert_eq!((s.as_str(), a), ("available", 0));
}
