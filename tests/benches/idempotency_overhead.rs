//! What the Idempotency-Key layer adds to a POST: taking the key and
//! storing the answer for a first request, and finding the stored answer for
//! a retry, on SQLite (in-process front, answers written behind) and
//! PostgreSQL (the table row is the lock), one request at a time.
//!
//! `cargo bench -p nixo-tests --bench idempotency_overhead`
//! (NIXO_BENCH_REQUESTS to change the count, default 5000).

use nixo_core::db::{self, Db};
use nixo_core::idempotency::{Begin, Scope, Store, StoredResponse};
use nixo_core::ledger::Environment;
use nixo_tests::PgDatabase;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

async fn measure(db: &Db, label: &str, count: usize) {
    let ledger = nixo_core::ledger::Ledger::new(db.clone()).await.unwrap();
    let store = Store::open(&ledger, chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let response = StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"status":"success","data":{"tx_id":"10056","status":"SETTLED"}}"#.to_vec(),
    };
    let scope = |i: usize| Scope {
        environment: Environment::Sandbox,
        account_id: "acct_bench".into(),
        key: format!("order-{i}"),
    };
    let (mut first, mut replay) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let started = Instant::now();
        let now = chrono::Utc::now().timestamp_millis();
        let Begin::Proceed(lease) = store.begin(&scope(i), "hash", now).await.unwrap() else {
            panic!("a new key proceeds");
        };
        assert!(store.complete(&lease, &response).await.unwrap());
        first.push(started.elapsed());
        let started = Instant::now();
        let again = store.begin(&scope(i), "hash", now).await.unwrap();
        replay.push(started.elapsed());
        assert!(matches!(again, Begin::Replay(_)));
    }
    store.flush().await;
    // The floor: one statement's round trip through the same pool.
    let mut floor = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&db.relaxed).await.unwrap();
        floor.push(started.elapsed());
    }
    floor.sort();
    first.sort();
    replay.sort();
    println!(
        "{label:<12} first request (take + store): p50 {:>6.1} µs  p99 {:>7.1} µs | retry (replay): p50 {:>6.1} µs  p99 {:>7.1} µs | one statement (SELECT 1): p50 {:>6.1} µs",
        percentile(&first, 50),
        percentile(&first, 99),
        percentile(&replay, 50),
        percentile(&replay, 99),
        percentile(&floor, 50)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = nixo_tests::env_count("NIXO_BENCH_REQUESTS", 5_000);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::open(&db::sqlite_url(&dir.path().join("idem.db"))).await.unwrap();
    measure(&sqlite, "sqlite", count).await;
    if let Some(pg) = PgDatabase::create("bench_idempotency").await {
        let postgres = Db::open(&pg.url).await.unwrap();
        measure(&postgres, "postgresql", count).await;
        postgres.close().await;
    }
}
