//! Gateway overhead: the same requests through the in-process gateway
//! component and straight to the core (signed here as the gateway would),
//! one keep-alive connection each, sequential, in one run.
//!
//! `cargo bench -p nixo-tests --bench edge_overhead` (NIXO_BENCH_REQUESTS to
//! change the count, default 2000).

use nixo_gateway::signing::{self, SignedParts};
use nixo_tests::start;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    let total: Duration = samples.iter().sum();
    println!(
        "{label:<34} n={:<5} p50={:>7.1} µs  p99={:>7.1} µs  {:>6.0} req/s",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len() as f64 / total.as_secs_f64()
    );
    p50
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
    let secret = secrets["gateway_signing_secret"].as_str().unwrap().to_string();
    let core = format!("http://{}", server.core_addr());
    let authorization = format!("Bearer {}", server.key);
    let transfer = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;

    for (label, method, path, body) in [
        ("GET /v1/balances", "GET", "/v1/balances", ""),
        ("POST /v1/payments/transfer", "POST", "/v1/payments/transfer", transfer),
    ] {
        let mut via_gateway = Vec::with_capacity(requests);
        let mut direct = Vec::with_capacity(requests);
        for i in 0..requests * 2 {
            let through_gateway = i % 2 == 0;
            let started = Instant::now();
            let request = if through_gateway {
                server
                    .client
                    .request(method.parse().unwrap(), format!("{}{path}", server.base))
            } else {
                let request_id = format!("req_bench{i}");
                let signature = signing::sign(
                    secret.as_bytes(),
                    &SignedParts {
                        method,
                        path_and_query: path,
                        body: body.as_bytes(),
                        authorization: &authorization,
                        request_id: &request_id,
                    },
                    chrono::Utc::now().timestamp(),
                );
                server
                    .client
                    .request(method.parse().unwrap(), format!("{core}{path}"))
                    .header(signing::REQUEST_ID_HEADER, request_id)
                    .header(signing::SIGNATURE_HEADER, signature)
            };
            // The whole response, body included, is part of the latency.
            let resp = request
                .header("authorization", &authorization)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            resp.bytes().await.unwrap();
            assert!(status.is_success(), "{label}: {status}");
            if through_gateway {
                via_gateway.push(started.elapsed())
            } else {
                direct.push(started.elapsed())
            }
        }
        let gateway_p50 = report(&format!("{label} via gateway"), via_gateway);
        let direct_p50 = report(&format!("{label} direct to core"), direct);
        println!(
            "{label:<34} gateway overhead p50 = {:.1} µs\n",
            (gateway_p50.as_secs_f64() - direct_p50.as_secs_f64()) * 1e6
        );
    }
    server.stop().await;
}
