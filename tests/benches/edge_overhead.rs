//! Gateway overhead: the same requests through the in-process gateway
//! component (key lookup in the key/value store, rate limit, version,
//! validation, signing) and straight to the core (signed here as the gateway
//! would), in one run.
//!
//! Latency: one keep-alive connection each, requests alternating between the
//! two paths, p50/p99. Throughput: 1 and 16 concurrent connections.
//!
//! `cargo bench -p nixo-tests --bench edge_overhead` (NIXO_BENCH_REQUESTS to
//! change the count, default 2000).

use nixo_api::access::RateLimit;
use nixo_api::signing::{self, SignedParts};
use nixo_core::auth::{self, KeyAccess};
use nixo_core::ledger::Environment;
use nixo_core::server;
use nixo_tests::start;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sorts and prints; returns (p50, p99).
fn report(label: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{label:<40} n={:<5} p50={:>7.1} µs  p99={:>7.1} µs",
        samples.len(),
        micros(p50),
        micros(p99)
    );
    (p50, p99)
}

/// How to build one request of either path.
struct Target {
    client: reqwest::Client,
    gateway: String,
    core: String,
    secret: String,
    key: String,
    principal: String,
}

impl Target {
    fn request(
        &self,
        through_gateway: bool,
        method: &str,
        path: &str,
        body: &str,
        n: usize,
    ) -> reqwest::RequestBuilder {
        if through_gateway {
            return self
                .client
                .request(method.parse().unwrap(), format!("{}{path}", self.gateway))
                .header("authorization", format!("Bearer {}", self.key))
                .body(body.to_string());
        }
        let request_id = format!("req_bench{n}");
        let signature = signing::sign(
            self.secret.as_bytes(),
            &SignedParts {
                method,
                path_and_query: path,
                body: body.as_bytes(),
                principal: &self.principal,
                request_id: &request_id,
            },
            chrono::Utc::now().timestamp(),
        );
        self.client
            .request(method.parse().unwrap(), format!("{}{path}", self.core))
            .header(signing::REQUEST_ID_HEADER, request_id)
            .header(signing::SIGNATURE_HEADER, signature)
            .header(signing::PRINCIPAL_HEADER, self.principal.clone())
            .body(body.to_string())
    }
}

async fn one(target: &Target, through_gateway: bool, method: &str, path: &str, body: &str, n: usize) {
    // The whole response, body included, is part of the latency.
    let resp = target
        .request(through_gateway, method, path, body, n)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    resp.bytes().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status}");
}

/// Requests per second with `connections` concurrent clients.
async fn throughput(target: &Arc<Target>, through_gateway: bool, connections: usize, requests: usize) -> f64 {
    let started = Instant::now();
    let per_task = requests / connections;
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let target = target.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    one(&target, through_gateway, "GET", "/v1/balances", "", c * per_task + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (per_task * connections) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests: usize = std::env::var("NIXO_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, true).await;
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("secrets.json")).unwrap()).unwrap();
    // A key whose own limit is far above what the bench sends.
    let hasher = server::key_hasher(dir.path()).unwrap();
    let account = auth::default_account(server.db(), Environment::Sandbox)
        .await
        .unwrap()
        .unwrap();
    let unlimited = KeyAccess::new(
        vec![],
        Some(RateLimit {
            limit: 1_000_000_000,
            window_s: 1,
        }),
    )
    .unwrap();
    let key = auth::create_key(server.db(), &hasher, &account, Environment::Sandbox, &unlimited)
        .await
        .unwrap();
    let target = Arc::new(Target {
        client: server.client.clone(),
        gateway: server.base.clone(),
        core: format!("http://{}", server.core_addr()),
        secret: secrets["gateway_signing_secret"].as_str().unwrap().to_string(),
        principal: format!("{} {account} sandbox", key.id),
        key: key.key,
    });
    let transfer = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;

    println!("latency, one keep-alive connection per path, alternating:");
    for (label, method, path, body) in [
        ("GET /v1/balances", "GET", "/v1/balances", ""),
        ("POST /v1/payments/transfer", "POST", "/v1/payments/transfer", transfer),
    ] {
        let mut via_gateway = Vec::with_capacity(requests);
        let mut direct = Vec::with_capacity(requests);
        for i in 0..requests * 2 {
            let through_gateway = i % 2 == 0;
            let started = Instant::now();
            one(&target, through_gateway, method, path, body, i).await;
            if through_gateway {
                via_gateway.push(started.elapsed())
            } else {
                direct.push(started.elapsed())
            }
        }
        let (g50, g99) = report(&format!("{label} via gateway"), via_gateway);
        let (d50, d99) = report(&format!("{label} direct to core"), direct);
        println!(
            "{label:<40} gateway overhead p50 = {:.1} µs, p99 = {:.1} µs\n",
            micros(g50) - micros(d50),
            micros(g99) - micros(d99)
        );
    }

    println!("throughput, GET /v1/balances:");
    for connections in [1, 16] {
        let gateway = throughput(&target, true, connections, requests).await;
        let direct = throughput(&target, false, connections, requests).await;
        println!(
            "{connections:>2} connection(s): via gateway {gateway:>7.0} req/s, direct to core {direct:>7.0} req/s"
        );
    }
    server.stop().await;
}
