//! Job throughput: how fast one worker (the real pool of `nixo_core::jobs`)
//! drains trivial jobs, on SQLite and on PostgreSQL. Jobs are enqueued in
//! one transaction first, then the worker starts and the clock runs until
//! the last one is recorded as succeeded.
//!
//! `cargo bench -p nixo-tests --bench jobs_throughput`
//! (NIXO_BENCH_JOBS to change the count, default 20000).

use nixo_core::clock::Clock;
use nixo_core::db::{self, Db};
use nixo_core::jobs::runner::{self, Registry, RunnerConfig};
use nixo_core::jobs::{self, NewJob};
use nixo_core::ledger::Ledger;
use nixo_tests::PgDatabase;
use serde_json::json;
use sqlx::Row;
use std::time::{Duration, Instant};

async fn drain(db: &Db, label: &str, count: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = db.pool.begin().await.unwrap();
    for _ in 0..count {
        jobs::enqueue(&mut *tx, &NewJob::new("noop", json!({}), now), now)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let mut registry = Registry::default();
    registry.register("noop", |_job| async { Ok(()) });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = RunnerConfig {
        concurrency: 128,
        poll_interval_ms: 10,
        ..RunnerConfig::default()
    };
    let started = Instant::now();
    let worker = runner::spawn(
        Ledger::new(db.clone()).await.unwrap(),
        registry,
        Clock::system(),
        config,
        runner::Waker::default(),
        stopped,
    );
    loop {
        let done: i64 = sqlx::query("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get(0);
        if done >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    worker.await.unwrap().unwrap();
    println!(
        "{label:<12} {count} trivial jobs drained in {:>6.2} s: {:>8.0} jobs/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: i64 = nixo_tests::env_count("NIXO_BENCH_JOBS", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open(&db::sqlite_url(&dir.path().join("jobs.db"))).await.unwrap();
    drain(&sqlite, "sqlite", count).await;
    if let Some(pg) = PgDatabase::create("bench_jobs").await {
        let postgres = Db::open(&pg.url).await.unwrap();
        drain(&postgres, "postgresql", count).await;
        postgres.close().await;
    }
}
