//! Webhook delivery throughput: events written to the outbox are fanned out
//! and delivered by a real `nixo serve` (SQLite) to a local receiver; the
//! clock runs from the first event to the last delivery. Then the same with
//! a dead endpoint (connection refused) and a slow one (answers after 2 s)
//! subscribed to the same events: the healthy endpoint's rate should not
//! move.
//!
//! `cargo bench -p nixo-tests --bench webhook_throughput`
//! (NIXO_BENCH_EVENTS to change the count, default 4000).

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use nixo_core::ledger::{Effect, Environment};
use nixo_core::server::ServeConfig;
use nixo_tests::{TestServer, env_count, start_with};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

async fn receiver(delay_ms: u64) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/hook",
            post(move |State(count): State<Arc<AtomicU64>>| async move {
                if delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                count.fetch_add(1, Ordering::Relaxed);
                "ok"
            }),
        )
        .with_state(count.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

async fn subscribe(server: &TestServer, url: &str) {
    let body = json!({ "url": url, "enabled_events": ["balance.updated"] }).to_string();
    let reply = server.post("/v1/webhook_endpoints", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Writes `n` events for the sandbox account, in batches.
async fn emit(server: &TestServer, n: u64) {
    let account = server.running().bootstrap.as_ref().unwrap().account_id.clone();
    let ledger = server.running().ledger();
    for chunk in 0..n.div_ceil(500) {
        let size = 500.min(n - chunk * 500);
        let effects = (0..size)
            .map(|_| Effect::Event {
                event_type: "balance.updated",
                account_id: account.clone(),
                environment: Environment::Sandbox,
                object: json!({ "object": "balance", "livemode": false, "available": [], "pending": [], "reserved": [] }),
            })
            .collect();
        ledger
            .apply_effects(effects, chrono::Utc::now().timestamp_millis())
            .await
            .unwrap();
    }
}

async fn run(label: &str, events: u64, noisy_neighbours: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(ServeConfig::ephemeral(dir.path()), None).await;
    let (url, delivered) = receiver(0).await;
    subscribe(&server, &url).await;
    if noisy_neighbours {
        subscribe(&server, "http://127.0.0.1:9/dead").await;
        let (slow, _) = receiver(2_000).await;
        subscribe(&server, &slow).await;
    }
    let started = Instant::now();
    emit(&server, events).await;
    while delivered.load(Ordering::Relaxed) < events {
        assert!(started.elapsed() < Duration::from_secs(300), "{label}: stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    println!(
        "{label}: {events} deliveries in {:.2} s = {rate:.0}/s",
        started.elapsed().as_secs_f64()
    );
    server.stop().await;
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = env_count("NIXO_BENCH_EVENTS", 4_000_u64);
    let alone = run("one healthy endpoint", events, false).await;
    let with_others = run("healthy endpoint beside a dead and a slow one", events, true).await;
    println!(
        "healthy rate beside the others: {:.0} % of alone",
        100.0 * with_others / alone
    );
}
