//! Async payments: how many `POST /v1/payments/async` a server accepts per
//! second over HTTP through the gateway (each one durable: its row and its
//! job committed before the 202), and how fast the job worker then drains
//! them into ledger transfers, next to the rate of the same transfer sent
//! synchronously afterwards (the ledger's rate on that wallet and history).
//! SQLite, then PostgreSQL when it is reachable.
//!
//! `cargo bench -p nixo-tests --bench async_payments`
//! (NIXO_BENCH_ASYNC to change the count, default 5000; NIXO_BENCH_CONNECTIONS, default 32).

use futures_util::StreamExt;
use nixo_core::server::ServeConfig;
use nixo_tests::{PgDatabase, TestServer, env_count, start_with};
use std::time::{Duration, Instant};

const BODY: &str = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;

/// Posts `BODY` to `path` `count` times, `connections` at a time; returns
/// the HTTP statuses.
async fn post_all(server: &TestServer, path: &str, count: usize, connections: usize) -> Vec<u16> {
    let url = format!("{}{path}", server.base);
    futures_util::stream::iter(0..count)
        .map(|_| {
            let (client, url, key) = (server.client.clone(), url.clone(), server.key.clone());
            async move {
                let reply = client
                    .post(url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(BODY)
                    .send()
                    .await
                    .expect("the server answers");
                reply.status().as_u16()
            }
        })
        .buffer_unordered(connections)
        .collect()
        .await
}

async fn run(label: &str, server: &TestServer, count: usize, connections: usize) {
    let started = Instant::now();
    let statuses = post_all(server, "/v1/payments/async", count, connections).await;
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let accepting = started.elapsed();
    assert_eq!(accepted, count, "every payment accepted");
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM async_payments WHERE status IN ('queued', 'running')")
            .fetch_one(&server.db().pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let transfers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transactions WHERE kind = 'transfer'")
        .fetch_one(&server.db().pool)
        .await
        .unwrap();
    assert_eq!(transfers as usize, count, "one transfer per payment");
    // The ledger's rate for the same transfer, on the same wallet and history:
    // synchronous `POST /v1/payments/transfer` at the same concurrency.
    let sync_count = count / 5;
    let sync_started = Instant::now();
    let statuses = post_all(server, "/v1/payments/transfer", sync_count, connections).await;
    assert!(statuses.iter().all(|s| (200..300).contains(s)), "{statuses:?}");
    let sync_rate = sync_count as f64 / sync_started.elapsed().as_secs_f64();
    println!(
        "{label:<10} {count} async payments, {connections} connections: accepted {:>6.0}/s ({:.2} s); \
         all run after {:.2} s ({:>6.0} transfers/s end to end); the same transfer synchronously \
         on the same wallet afterwards: {sync_rate:>6.0}/s",
        count as f64 / accepting.as_secs_f64(),
        accepting.as_secs_f64(),
        drained.as_secs_f64(),
        count as f64 / drained.as_secs_f64(),
    );
}

fn config(dir: &std::path::Path, database_url: Option<String>) -> ServeConfig {
    let mut config = ServeConfig {
        database_url,
        ..ServeConfig::ephemeral(dir)
    };
    // The bench's own load is not a rate-limit test.
    config
        .edge_variables
        .insert("rate_limit_sandbox".into(), "1000000/1".into());
    config
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count = env_count("NIXO_BENCH_ASYNC", 5_000usize);
    let connections = env_count("NIXO_BENCH_CONNECTIONS", 32usize);
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path(), None), None).await;
    run("sqlite", &server, count, connections).await;
    server.stop().await;
    match PgDatabase::create("bench_async").await {
        Some(pg) => {
            let dir = tempfile::tempdir().unwrap();
            let server = start_with(config(dir.path(), Some(pg.url.clone())), None).await;
            run("postgres", &server, count, connections).await;
            server.stop().await;
        }
        None => println!("postgres   skipped: no server at {}", nixo_tests::POSTGRES_ADMIN_URL),
    }
}
