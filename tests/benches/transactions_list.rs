//! The transactions list and export with a long history, on SQLite and
//! PostgreSQL, over HTTP through the gateway: p50/p99 of a 100-row page at
//! the start and 1,000 pages in (keyset: the same cost), of a filtered page,
//! and the CSV export's rows per second.
//!
//! `cargo bench -p nixo-tests --bench transactions_list`
//! (NIXO_BENCH_TRANSACTIONS to change the history, default 1,000,000).

use nixo_core::db::Backend;
use nixo_core::server::ServeConfig;
use nixo_tests::bench::{Goal, figure, peak_rss_kib};
use nixo_tests::{PgDatabase, TestServer, env_count, start_with};
use std::time::{Duration, Instant};

const SAMPLES: usize = 200;
const PAGE: usize = 100;
/// Goal: a 100-row page with 1,000,000 rows, p50.
const PAGE_P50_GOAL_MS: f64 = 10.0;
/// Goal: a page far in costs what page 1 does (within the spread of the
/// machine).
const FAR_PAGE_RATIO_GOAL: f64 = 1.25;

async fn seed(server: &TestServer, n: i64) {
    let started = Instant::now();
    nixo_tests::seed_transfers(server, n, 1).await;
    if server.db().backend == Backend::Postgres {
        sqlx::query("ANALYZE").execute(&server.db().pool).await.unwrap();
    }
    println!("  seeded {n} transactions in {:.1} s", started.elapsed().as_secs_f64());
}

async fn timed_page(server: &TestServer, query: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let reply = server.get(&format!("/v1/transactions?{query}")).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    (took, reply.body)
}

/// Times `SAMPLES` pages of `query`; prints and answers p50.
async fn measure(server: &TestServer, label: &str, query: &str) -> Duration {
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let (took, body) = timed_page(server, query).await;
        assert_eq!(body["data"].as_array().unwrap().len(), PAGE, "{query}");
        times.push(took);
    }
    times.sort();
    println!(
        "  {label:<34} p50 {:>6.2} ms  p99 {:>6.2} ms",
        times[SAMPLES / 2].as_secs_f64() * 1e3,
        times[SAMPLES * 99 / 100].as_secs_f64() * 1e3
    );
    times[SAMPLES / 2]
}

async fn run(label: &str, server: TestServer, n: i64) {
    println!("{label}:");
    seed(&server, n).await;
    let first = measure(&server, "page 1", &format!("limit={PAGE}")).await;
    // The id 1,000 pages in (fewer with a short history): walk there once,
    // then time the page after it.
    let pages = (usize::try_from(n).unwrap_or(0) / PAGE).saturating_sub(2).min(1_000);
    let mut cursor = String::new();
    for _ in 0..pages {
        let query = if cursor.is_empty() {
            format!("limit={PAGE}")
        } else {
            format!("limit={PAGE}&starting_after={cursor}")
        };
        let (_, body) = timed_page(&server, &query).await;
        cursor = body["data"][PAGE - 1]["id"].to_string();
    }
    let far = format!("page {}", pages + 1);
    let later = measure(&server, &far, &format!("limit={PAGE}&starting_after={cursor}")).await;
    figure(
        &format!("{label}: page of {PAGE}, {n} rows, p50"),
        first.as_secs_f64() * 1e3,
        "ms",
        Goal::AtMost(PAGE_P50_GOAL_MS),
    );
    figure(
        &format!("{label}: {far} p50 / page 1 p50"),
        later.as_secs_f64() / first.as_secs_f64(),
        "x",
        Goal::AtMost(FAR_PAGE_RATIO_GOAL),
    );
    measure(
        &server,
        "filtered (type, currency, amount)",
        &format!("limit={PAGE}&type=transfer&currency=KES&amount[gte]=100.00&amount[lte]=900.00"),
    )
    .await;

    let peak_before = peak_rss_kib();
    let started = Instant::now();
    let response = server
        .client
        .get(format!("{}/v1/transactions/export?format=csv", server.base))
        .header("authorization", format!("Bearer {}", server.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the export answers");
    let mut response = response;
    let mut lines = 0usize;
    while let Some(chunk) = response.chunk().await.unwrap() {
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  export: {} rows in {secs:.2} s = {:.0} rows/s",
        lines - 1,
        (lines - 1) as f64 / secs
    );
    // The server runs in this process: its peak memory must not grow with the rows.
    println!(
        "  peak RSS of the process: {} MiB before the export, {} MiB after",
        peak_before / 1024,
        peak_rss_kib() / 1024
    );
    server.stop().await;
}

/// A server whose sandbox rate limit does not get in the way.
async fn server(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    let mut config = ServeConfig {
        database_url,
        ..ServeConfig::ephemeral(dir)
    };
    config
        .edge_variables
        .insert("rate_limit_sandbox".into(), "1000000/1".into());
    start_with(config, None).await
}

#[tokio::main]
async fn main() {
    let n: i64 = env_count("NIXO_BENCH_TRANSACTIONS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    run("SQLite", server(dir.path(), None).await, n).await;
    if let Some(pg) = PgDatabase::create("bench_transactions").await {
        let dir = tempfile::tempdir().unwrap();
        run("PostgreSQL", server(dir.path(), Some(pg.url.clone())).await, n).await;
    }
}
