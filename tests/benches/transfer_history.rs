//! Transfer throughput against history: the seed transfer (wallet 101 ->
//! 102, a fresh Idempotency-Key each) through the embedded gateway, the fraud
//! rules and a durable SQLite commit, at 16 connections, on an empty ledger
//! and again after 1,000,000 earlier transfers from the same wallet spread
//! over the last day (inside the velocity windows the fraud facts read).
//! The ratio is the figure: history must not slow a busy wallet down.
//!
//! `cargo bench -p nixo-tests --bench transfer_history`
//! (NIXO_BENCH_HISTORY, default 1000000; NIXO_BENCH_TRANSFERS per run,
//! default 5000; NIXO_BENCH_CONNECTIONS, default 16).

use futures_util::StreamExt;
use nixo_core::server::ServeConfig;
use nixo_tests::{TestServer, env_count, seed_transfers_between, start_with};
use std::time::Instant;

const BODY: &str = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;

/// Transfers per second over `count` transfers, `connections` at a time.
async fn transfers_per_s(server: &TestServer, run: &str, count: usize, connections: usize) -> f64 {
    let url = format!("{}/v1/payments/transfer", server.base);
    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..count)
        .map(|i| {
            let (client, url, key) = (server.client.clone(), url.clone(), server.key.clone());
            let idempotency_key = format!("{run}-{i}");
            async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .header("idempotency-key", idempotency_key)
                    .body(BODY)
                    .send()
                    .await
                    .expect("the server answers")
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(connections)
        .collect()
        .await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let settled = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(settled, count, "every transfer settled (200): {statuses:?}");
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let history = env_count("NIXO_BENCH_HISTORY", 1_000_000i64);
    let count = env_count("NIXO_BENCH_TRANSFERS", 5_000usize);
    let connections = env_count("NIXO_BENCH_CONNECTIONS", 16usize);
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = ServeConfig::ephemeral(dir.path());
        // The bench's own load is not a rate-limit test.
        config
            .edge_variables
            .insert("rate_limit_sandbox".into(), "1000000/1".into());
        config
    };
    // A busy wallet is a merchant's: its velocity review threshold is raised
    // (in the rule's manifest) so every transfer settles, as it would for them.
    let first = start_with(config(), None).await;
    let key = first.key.clone();
    first.stop().await;
    let manifest = dir.path().join("plugins/fraud-check.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[config]\nvelocity_1h_review_count = \"1000000000\"\n");
    std::fs::write(&manifest, text).unwrap();
    let server = start_with(config(), Some(key)).await;
    // Warm up (compile caches, connections), then measure on an empty ledger.
    transfers_per_s(&server, "warm", 200, connections).await;
    let empty = transfers_per_s(&server, "empty", count, connections).await;
    let seeding = Instant::now();
    // Inside the last day's windows, before the last hour.
    let now_ms = chrono::Utc::now().timestamp_millis();
    seed_transfers_between(&server, history, now_ms - 23 * 3_600_000, now_ms - 3_600_000).await;
    println!(
        "seeded {history} transfers from wallet 101 over the last day in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let busy = transfers_per_s(&server, "history", count, connections).await;
    println!(
        "SQLite, {connections} connections, {count} transfers a run: empty ledger {empty:>6.0}/s; \
         with {history} transfers of history on the wallet {busy:>6.0}/s; ratio {:.2} (goal >= 0.90)",
        busy / empty
    );
    server.stop().await;
}
