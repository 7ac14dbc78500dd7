//! A job worker process for the jobs tests: the real worker pool of
//! `nixo_core::jobs` running one job kind, `probe`, that records each run so
//! a test can see every attempt, kill the process mid-job, and check that no
//! job ran twice at once or was lost.
//!
//! `nixo-test-worker DATABASE_URL NAME LEASE_MS [sole]` — prints `ready` once
//! it polls, and runs until killed or sent SIGTERM. `sole` makes it the
//! database's only worker, as `nixo serve` is on SQLite.
//!
//! The test creates `probe_runs (job_id, worker, attempt, started_at_us,
//! ended_at_us)` and `probe_done (job_id PRIMARY KEY, worker)`.

use nixo_core::clock::Clock;
use nixo_core::db::Db;
use nixo_core::jobs::runner::{self, ClaimedJob, Registry, RunnerConfig};
use nixo_core::ledger::Ledger;
use std::time::Duration;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn probe(db: Db, worker: String, job: ClaimedJob) -> anyhow::Result<()> {
    let started = now_us();
    sqlx::query("INSERT INTO probe_runs (job_id, worker, attempt, started_at_us) VALUES ($1, $2, $3, $4)")
        .bind(job.id)
        .bind(worker.as_str())
        .bind(job.attempt)
        .bind(started)
        .execute(&db.pool)
        .await?;
    let sleep_ms = job.payload["sleep_ms"].as_u64().unwrap_or(0);
    if sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    }
    sqlx::query("UPDATE probe_runs SET ended_at_us = $1 WHERE job_id = $2 AND worker = $3 AND attempt = $4")
        .bind(now_us())
        .bind(job.id)
        .bind(worker.as_str())
        .bind(job.attempt)
        .execute(&db.pool)
        .await?;
    sqlx::query("INSERT INTO probe_done (job_id, worker) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(job.id)
        .bind(worker.as_str())
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 4 || (args.len() == 5 && args[4] == "sole"),
        "usage: nixo-test-worker DATABASE_URL NAME LEASE_MS [sole]"
    );
    let db = Db::open(&args[1]).await?;
    let name = args[2].clone();
    let lease_ms: i64 = args[3].parse()?;
    let mut registry = Registry::default();
    let (handler_db, handler_name) = (db.clone(), name.clone());
    registry.register("probe", move |job| probe(handler_db.clone(), handler_name.clone(), job));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = RunnerConfig {
        worker_id: name,
        lease_ms,
        poll_interval_ms: 20,
        sole_worker: args.len() == 5,
        ..RunnerConfig::default()
    };
    let worker = runner::spawn(
        Ledger::new(db).await?,
        registry,
        Clock::system(),
        config,
        runner::Waker::default(),
        stopped,
    );
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    let _ = stop.send(true);
    worker.await??;
    Ok(())
}
