//! Gateway overhead: the same requests through the gateway component
//! embedded in `nixo serve` (key lookup in the key/value store, rate limit,
//! version, validation, signing), through the same component on a real
//! `spin up` (key/value store on Redis; when the Spin CLI is found: `$SPIN`
//! or `spin` on the PATH), and straight to the core (signed here as the
//! gateway would), in one run.
//!
//! Latency: one keep-alive connection each, requests alternating between the
//! paths, p50/p99. Throughput: 1 and 16 concurrent connections. For Spin it
//! also counts what one request costs outside the component: Redis commands
//! (INFO commandstats) and new TCP connections to the core.
//!
//! `cargo bench -p nixo-tests --bench edge_overhead` (NIXO_BENCH_REQUESTS to
//! change the count, default 2000).

use nixo_api::access::RateLimit;
use nixo_api::signing::{self, SignedParts};
use nixo_core::auth::{self, KeyAccess};
use nixo_core::ledger::Environment;
use nixo_core::server;
use nixo_tests::bench::{Goal, figure};
use nixo_tests::spin::{self, SpinGateway};
use nixo_tests::{redis_url, start};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Goal: what the embedded gateway adds to a request, p50.
const EDGE_OVERHEAD_P50_GOAL_US: f64 = 150.0;
/// Requests per route in the back-to-back runs, at most.
const BACK_TO_BACK_REQUESTS_MAX: usize = 1_000;
/// The back-to-back runs' first request number (the signed request ids
/// of the direct route stay apart from the other runs').
const BACK_TO_BACK_FIRST: usize = 10_000_000;
/// The first request number of the run against a server in its own process.
const EXTERNAL_FIRST: usize = 20_000_000;
/// How long `nixo serve` may take to answer its first `/healthz`.
const EXTERNAL_START_TIMEOUT_S: u64 = 120;

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

/// Which way a request goes to the core.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    Embedded,
    Spin,
    Direct,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Embedded => "via embedded gateway",
            Route::Spin => "via gateway on Spin",
            Route::Direct => "direct to core",
        }
    }
}

/// How to build one request of each route.
struct Target {
    client: reqwest::Client,
    gateway: String,
    spin: Option<String>,
    core: String,
    secret: String,
    key: String,
    principal: String,
}

impl Target {
    fn request(&self, route: Route, method: &str, path: &str, body: &str, n: usize) -> reqwest::RequestBuilder {
        if route != Route::Direct {
            let base = match route {
                Route::Spin => self.spin.as_deref().expect("Spin is running"),
                _ => &self.gateway,
            };
            return self
                .client
                .request(method.parse().unwrap(), format!("{base}{path}"))
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

async fn one(target: &Target, route: Route, method: &str, path: &str, body: &str, n: usize) {
    // The whole response, body included, is part of the latency.
    let resp = target.request(route, method, path, body, n).send().await.unwrap();
    let status = resp.status();
    resp.bytes().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status}");
}

/// Requests per second with `connections` concurrent clients.
async fn throughput(target: &Arc<Target>, route: Route, connections: usize, requests: usize) -> f64 {
    let started = Instant::now();
    let per_task = requests / connections;
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let target = target.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    one(&target, route, "GET", "/v1/balances", "", c * per_task + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (per_task * connections) as f64 / started.elapsed().as_secs_f64()
}

/// One keep-alive connection per route, requests alternating between the
/// routes: p50/p99 of each, and each route's overhead over the direct one
/// as a figure (`suffix` names the setting in the figures' labels;
/// requests are numbered from `first`).
async fn alternating(target: &Target, routes: &[Route], requests: usize, first: usize, suffix: &str) {
    let transfer = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;
    for (label, method, path, body) in [
        ("GET /v1/balances", "GET", "/v1/balances", ""),
        ("POST /v1/payments/transfer", "POST", "/v1/payments/transfer", transfer),
    ] {
        let mut samples: Vec<Vec<Duration>> = routes.iter().map(|_| Vec::with_capacity(requests)).collect();
        for i in 0..requests * routes.len() {
            let r = i % routes.len();
            let started = Instant::now();
            one(target, routes[r], method, path, body, first + i).await;
            samples[r].push(started.elapsed());
        }
        let mut p50_p99 = Vec::new();
        for (route, samples) in routes.iter().zip(samples) {
            p50_p99.push(report(&format!("{label} {}{suffix}", route.label()), samples));
        }
        let direct = p50_p99.last().copied().unwrap();
        for (route, (p50, p99)) in routes.iter().zip(&p50_p99).filter(|(r, _)| **r != Route::Direct) {
            let overhead = micros(*p50) - micros(direct.0);
            println!(
                "{label:<40} {}{suffix} overhead p50 = {overhead:.1} µs, p99 = {:.1} µs",
                route.label(),
                micros(*p99) - micros(direct.1)
            );
            let goal = if *route == Route::Embedded && method == "GET" {
                Goal::AtMost(EDGE_OVERHEAD_P50_GOAL_US)
            } else {
                Goal::None
            };
            figure(
                &format!("edge overhead p50, {label}, {}{suffix}", route.label()),
                overhead,
                "µs",
                goal,
            );
        }
        println!();
    }
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
    let secret = secrets["gateway_signing_secret"].as_str().unwrap().to_string();
    let spin_gateway = match (spin::find(), redis_url().await) {
        (Some(_), Some(redis)) => {
            Some(SpinGateway::start(server.core_addr(), &secret, &Default::default(), &redis).await)
        }
        _ => {
            println!("(no Spin CLI or no Redis: the Spin rows are left out)");
            None
        }
    };
    let target = Arc::new(Target {
        client: server.client.clone(),
        gateway: server.base.clone(),
        spin: spin_gateway.as_ref().map(SpinGateway::base),
        core: format!("http://{}", server.core_addr()),
        secret,
        principal: format!("{} {account} sandbox", key.id),
        key: key.key,
    });
    let transfer = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;
    let routes: Vec<Route> = [Route::Embedded, Route::Spin, Route::Direct]
        .into_iter()
        .filter(|r| *r != Route::Spin || spin_gateway.is_some())
        .collect();

    println!("latency, one keep-alive connection per route, alternating:");
    alternating(&target, &routes, requests, 0, "").await;

    // Back to back on one connection, each route alone: a response whose
    // head and body left in two segments waits for the client's delayed
    // ACK when Nagle's algorithm is on (Spin leaves it on), ≈ 40 ms.
    println!("latency, one keep-alive connection, requests back to back:");
    for (label, method, path, body) in [
        ("GET /v1/balances", "GET", "/v1/balances", ""),
        ("POST /v1/payments/transfer", "POST", "/v1/payments/transfer", transfer),
    ] {
        for route in &routes {
            let n = requests.min(BACK_TO_BACK_REQUESTS_MAX);
            let mut samples = Vec::with_capacity(n);
            for i in 0..n {
                let started = Instant::now();
                one(&target, *route, method, path, body, BACK_TO_BACK_FIRST + i).await;
                samples.push(started.elapsed());
            }
            // A stall in one request of a hundred or fewer shows in the
            // mean and the slowest, not in the p99.
            let mean = micros(samples.iter().sum::<Duration>()) / n as f64;
            let slowest = micros(samples.iter().max().copied().unwrap_or_default());
            report(&format!("{label} {}, back to back", route.label()), samples);
            println!("{:<40} mean={mean:>7.1} µs  slowest={slowest:>9.1} µs", "");
            if *route == Route::Spin {
                figure(
                    &format!("mean back to back, {label}, {}", route.label()),
                    mean,
                    "µs",
                    Goal::None,
                );
            }
        }
    }
    println!();

    println!("throughput, GET /v1/balances:");
    for connections in [1, 16] {
        let mut line = format!("{connections:>2} connection(s):");
        for route in &routes {
            let rate = throughput(&target, *route, connections, requests).await;
            line.push_str(&format!("  {} {rate:>7.0} req/s", route.label()));
        }
        println!("{line}");
    }

    if spin_gateway.is_some() {
        println!("\nwhat one request through Spin costs outside the component (GET /v1/balances):");
        let n = requests.min(1000);
        let core_port = server.core_addr().port();
        let (redis_before, conns_before) = (redis_stats(), core_connections(core_port));
        let started = Instant::now();
        for i in 0..n {
            one(&target, Route::Spin, "GET", "/v1/balances", "", i).await;
        }
        let elapsed = started.elapsed();
        let (redis_after, conns_after) = (redis_stats(), core_connections(core_port));
        let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", (b.saturating_sub(a)) as f64 / n as f64),
            _ => "n/a".to_string(),
        };
        println!(
            "  {n} requests in sequence, mean {:.0} µs each",
            micros(elapsed) / n as f64
        );
        println!(
            "  Redis commands per request: {}",
            per(redis_before.map(|s| s.0), redis_after.map(|s| s.0))
        );
        println!(
            "  Redis connections opened per request: {}",
            per(redis_before.map(|s| s.1), redis_after.map(|s| s.1))
        );
        println!(
            "  connections to the core opened and closed per request: {}",
            per(conns_before, conns_after)
        );
    }
    drop(spin_gateway);
    server.stop().await;

    // In this process the direct route's connections are served by the
    // runtime its client runs on, often without leaving the thread, while
    // the gateway's go to the server's connection threads: the same run
    // against `nixo serve` in a process of its own (the same data
    // directory, key and secret) is what a client of the API sees.
    println!("latency, `nixo serve` in a process of its own, one keep-alive connection per route, alternating:");
    let external = ExternalServer::start(dir.path()).await;
    let target = Target {
        client: reqwest::Client::new(),
        gateway: format!("http://{}", external.listen),
        spin: None,
        core: format!("http://{}", external.core_listen),
        secret: target.secret.clone(),
        key: target.key.clone(),
        principal: target.principal.clone(),
    };
    alternating(
        &target,
        &[Route::Embedded, Route::Direct],
        requests,
        EXTERNAL_FIRST,
        ", server in its own process",
    )
    .await;
    drop(external);
}

/// `nixo serve` of this build as a child process, killed on drop.
struct ExternalServer {
    child: std::process::Child,
    listen: String,
    core_listen: String,
}

impl ExternalServer {
    async fn start(data_dir: &std::path::Path) -> ExternalServer {
        let listen = format!("127.0.0.1:{}", spin::free_port());
        let core_listen = format!("127.0.0.1:{}", spin::free_port());
        let child = std::process::Command::new(nixo_tests::nixo_cli())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &listen, "--core-listen", &core_listen])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nixo serve starts (build it: cargo build --release -p nixo-core --bin nixo)");
        let server = ExternalServer {
            child,
            listen,
            core_listen,
        };
        let health = format!("http://{}/healthz", server.listen);
        let deadline = Instant::now() + Duration::from_secs(EXTERNAL_START_TIMEOUT_S);
        while !reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "nixo serve did not answer {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commands Redis has served and connections it has accepted so far
/// (`INFO stats`), if redis-cli answers (its own call counts one of each).
fn redis_stats() -> Option<(u64, u64)> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "INFO", "stats"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let stat = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((stat("total_commands_processed:")?, stat("total_connections_received:")?))
}

/// Connections to the core closed so far, from the kernel's view: each
/// closed TCP connection leaves one socket in TIME-WAIT for a minute on the
/// side that closed first (a connection reused for every request leaves none).
fn core_connections(port: u16) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args([
            "-Htan",
            "state",
            "time-wait",
            &format!("( sport = :{port} or dport = :{port} )"),
        ])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).lines().count() as u64)
}
