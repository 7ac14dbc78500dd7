//! Transfer throughput against history: the seed transfer (wallet 101 ->
//! 102, a fresh Idempotency-Key each) through the embedded gateway, the fraud
//! rules and a durable SQLite commit, at 16 connections, on an empty ledger
//! and again after 1,000,000 earlier transfers from the same wallet spread
//! over the last day (inside the velocity windows the fraud facts read).
//! The ratio is the figure: history must not slow a busy wallet down. Two
//! servers in this process, one with an empty ledger and one with the
//! history, are measured in alternation (NIXO_BENCH_ROUNDS pairs): the
//! figure is the median of the pairs' ratios, so the machine's drift
//! between runs cancels out instead of landing on one side. The load comes
//! from this process over loopback TCP, one keep-alive HTTP/1.1 connection
//! each (`bench::LoadConnection`, about what `wrk` costs per request).
//!
//! `cargo bench -p nixo-tests --bench transfer_history`
//! (NIXO_BENCH_HISTORY, default 1000000; NIXO_BENCH_TRANSFERS per run,
//! default 5000; NIXO_BENCH_CONNECTIONS, default 16; NIXO_BENCH_ROUNDS,
//! default 3).

use nixo_core::server::ServeConfig;
use nixo_tests::bench::{Goal, LoadConnection, RssSampler, figure, histogram_means, histogram_over};
use nixo_tests::{TestServer, env_count, seed_transfers_between, start_with};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Goal: end-to-end transfers/s at 16 connections.
const TRANSFERS_PER_S_GOAL: f64 = 5_000.0;
/// Goal: the rate with the history against the rate on an empty ledger.
const HISTORY_RATIO_GOAL: f64 = 0.90;
/// Goal: p99 under an open-loop load of half `TRANSFERS_PER_S_GOAL`.
const OPEN_LOOP_P99_GOAL_MS: f64 = 10.0;
/// Goal: the process's resident memory under the 16-connection load.
const RSS_GOAL_MB: f64 = 150.0;
/// Connections the open loop opens before it starts (more when all are busy).
const OPEN_LOOP_WARM_CONNECTIONS: usize = 64;
/// A stage longer than this in an open-loop run counts towards its tail
/// (one of the stage histogram's bucket bounds).
const TAIL_STAGE_BOUND_S: f64 = 0.002_5;
/// How long each open-loop run sends for.
const OPEN_LOOP_DURATION_MS: u64 = 2_000;

const BODY: &str = r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#;

async fn send_transfer(conn: &mut LoadConnection, authorization: &str, idempotency_key: &str) -> u16 {
    conn.send(
        "POST",
        "/v1/payments/transfer",
        &[
            ("authorization", authorization),
            ("content-type", "application/json"),
            ("idempotency-key", idempotency_key),
        ],
        BODY,
    )
    .await
}

/// Idle connections of the open loop: a request takes one, or opens one
/// when every connection is busy, and puts it back after its answer.
struct ConnectionPool {
    base: String,
    idle: tokio::sync::Mutex<Vec<LoadConnection>>,
}

impl ConnectionPool {
    async fn new(base: &str, warm: usize) -> Arc<ConnectionPool> {
        let mut idle = Vec::with_capacity(warm);
        for _ in 0..warm {
            idle.push(LoadConnection::open(base).await);
        }
        Arc::new(ConnectionPool {
            base: base.to_string(),
            idle: tokio::sync::Mutex::new(idle),
        })
    }

    async fn take(&self) -> LoadConnection {
        let idle = self.idle.lock().await.pop();
        match idle {
            Some(conn) => conn,
            None => LoadConnection::open(&self.base).await,
        }
    }

    async fn give_back(&self, conn: LoadConnection) {
        self.idle.lock().await.push(conn);
    }
}

/// Open loop: `rate` transfers a second for `OPEN_LOOP_DURATION_MS`, each
/// sent at its scheduled time whatever the earlier ones are doing. Latency
/// counts from the scheduled time, so a stall counts for every request
/// queued behind it. Answers (p50, p99, the answers other than 200 by status).
async fn open_loop(server: &TestServer, run: &str, rate: f64) -> (Duration, Duration, String) {
    let count = (rate * OPEN_LOOP_DURATION_MS as f64 / 1e3).round() as usize;
    let pool = ConnectionPool::new(&server.base, OPEN_LOOP_WARM_CONNECTIONS).await;
    let authorization: Arc<str> = format!("Bearer {}", server.key).into();
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let scheduled = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(scheduled).await;
        let (pool, authorization, key) = (pool.clone(), authorization.clone(), format!("{run}-{i}"));
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.take().await;
            let status = send_transfer(&mut conn, &authorization, &key).await;
            let took = scheduled.elapsed();
            pool.give_back(conn).await;
            (took, status)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    for task in tasks {
        let (took, status) = task.await.unwrap();
        latencies.push(took);
        if status != 200 {
            *refused.entry(status).or_default() += 1;
        }
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let refused = match refused.is_empty() {
        true => "all 200".to_string(),
        false => refused
            .iter()
            .map(|(status, n)| format!("{n} × {status}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    (at(0.5), at(0.99), refused)
}

/// Where a transfer's time went in the run between two scrapes of the
/// process's metrics: the mean of each stage (they nest: see
/// `nixo_core::metrics::Stage`), of each rule's decision, and of the core's
/// whole answer.
fn stage_figures(before: &str, after: &str) {
    for (series, label) in [
        ("nixo_stage_duration_seconds", "stage"),
        ("nixo_rule_decision_duration_seconds", "rule decision"),
        ("nixo_http_request_duration_seconds", "core answer"),
    ] {
        for (labels, mean_s, n) in histogram_means(before, after, series) {
            if series.starts_with("nixo_http") && !labels.contains("/v1/payments/transfer") {
                continue;
            }
            // `{stage="edge.request"}` → `edge.request`, `{plugin="x",outcome="allow"}` → `x allow`.
            let labels: Vec<&str> = labels
                .trim_matches(['{', '}'])
                .split(',')
                .filter_map(|pair| Some(pair.split_once('=')?.1.trim_matches('"')))
                .filter(|value| !value.is_empty())
                .collect();
            figure(
                &format!("mean per transfer, {label} {} (n={n})", labels.join(" ")),
                mean_s * 1e6,
                "µs",
                Goal::None,
            );
        }
    }
}

/// Where the open loop's slow transfers spent their time: per stage, how
/// many of the run's transfers spent longer than `TAIL_STAGE_BOUND_S` in it.
fn tail_stages(before: &str, after: &str) {
    for (labels, over, n) in histogram_over(before, after, "nixo_stage_duration_seconds", TAIL_STAGE_BOUND_S) {
        if over > 0.0 {
            println!("  {labels}: {over:.0} of {n:.0} over {} ms", TAIL_STAGE_BOUND_S * 1e3);
        }
    }
}

/// Transfers per second over `count` transfers, `connections` at a time
/// (each its own keep-alive connection, opened before the clock starts).
async fn transfers_per_s(server: &TestServer, run: &str, count: usize, connections: usize) -> f64 {
    let authorization: Arc<str> = format!("Bearer {}", server.key).into();
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(LoadConnection::open(&server.base).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (next, authorization, run) = (next.clone(), authorization.clone(), run.to_string());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break statuses;
                    }
                    statuses.push(send_transfer(&mut conn, &authorization, &format!("{run}-{i}")).await);
                }
            })
        })
        .collect();
    let mut statuses = Vec::with_capacity(count);
    for task in tasks {
        statuses.extend(task.await.expect("a load connection's task"));
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let settled = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(settled, count, "every transfer settled (200): {statuses:?}");
    rate
}

/// A server whose wallet 101 is a merchant's: its velocity review
/// threshold is raised (in the rule's manifest) so every transfer settles,
/// as it would for them.
async fn merchant_server(dir: &std::path::Path) -> TestServer {
    let config = || {
        let mut config = ServeConfig::ephemeral(dir);
        // The bench's own load is not a rate-limit test.
        config
            .edge_variables
            .insert("rate_limit_sandbox".into(), "1000000/1".into());
        config
    };
    let first = start_with(config(), None).await;
    let key = first.key.clone();
    first.stop().await;
    let manifest = dir.join("plugins/fraud-check.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[config]\nvelocity_1h_review_count = \"1000000000\"\n");
    std::fs::write(&manifest, text).unwrap();
    start_with(config(), Some(key)).await
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let history = env_count("NIXO_BENCH_HISTORY", 1_000_000i64);
    let count = env_count("NIXO_BENCH_TRANSFERS", 5_000usize);
    let connections = env_count("NIXO_BENCH_CONNECTIONS", 16usize);
    let rounds = env_count("NIXO_BENCH_ROUNDS", 3usize).max(1);
    let empty_dir = tempfile::tempdir().unwrap();
    let history_dir = tempfile::tempdir().unwrap();
    let empty_server = merchant_server(empty_dir.path()).await;
    // Warm up (compile caches, connections), then measure on an empty ledger
    // with this server alone in the process (memory and stage timings).
    transfers_per_s(&empty_server, "warm", 200, connections).await;
    let rss = RssSampler::start();
    let before = nixo_core::metrics::handle().render();
    let first_empty = transfers_per_s(&empty_server, "empty", count, connections).await;
    let after = nixo_core::metrics::handle().render();
    let rss_empty_kib = rss.stop();
    stage_figures(&before, &after);

    let server = merchant_server(history_dir.path()).await;
    let seeding = Instant::now();
    // Inside the last day's windows, before the last hour.
    let now_ms = chrono::Utc::now().timestamp_millis();
    seed_transfers_between(&server, history, now_ms - 23 * 3_600_000, now_ms - 3_600_000).await;
    println!(
        "seeded {history} transfers from wallet 101 over the last day in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    transfers_per_s(&server, "warm", 200, connections).await;
    let rss = RssSampler::start();
    let (mut empties, mut ratios) = (vec![first_empty], Vec::new());
    let mut busy = 0.0;
    for round in 0..rounds {
        let rate = transfers_per_s(&server, &format!("history-{round}"), count, connections).await;
        let empty = transfers_per_s(&empty_server, &format!("empty-{round}"), count, connections).await;
        println!(
            "round {round}: empty ledger {empty:>6.0}/s, with history {rate:>6.0}/s, ratio {:.2}",
            rate / empty
        );
        empties.push(empty);
        ratios.push(rate / empty);
        busy = rate;
    }
    // Both servers are in the process now (with the history server's
    // million rows in its page cache): shown, not the goal's figure.
    let rss_both_kib = rss.stop();
    empty_server.stop().await;
    let (empty, ratio) = (median(&mut empties), median(&mut ratios));
    println!(
        "SQLite, {connections} connections, {count} transfers a run: empty ledger {empty:>6.0}/s (median); \
         with {history} transfers of history on the wallet / empty: median ratio {ratio:.2} over {rounds} \
         alternating pairs (goal >= 0.90)"
    );
    figure(
        &format!("transfers/s end to end, {connections} connections, empty ledger"),
        empty,
        "/s",
        Goal::AtLeast(TRANSFERS_PER_S_GOAL),
    );
    figure(
        &format!("transfers/s with {history} transfers of history / empty (median of {rounds} pairs)"),
        ratio,
        "x",
        Goal::AtLeast(HISTORY_RATIO_GOAL),
    );
    // One server, in this process beside the load generator: an upper bound
    // of what `nixo serve` takes under the load.
    figure(
        &format!("peak RSS under the {connections}-connection load (server + load generator)"),
        rss_empty_kib as f64 / 1024.0,
        "MiB",
        Goal::AtMost(RSS_GOAL_MB),
    );
    figure(
        "peak RSS with both servers in the process (empty and 1,000,000-row history)",
        rss_both_kib as f64 / 1024.0,
        "MiB",
        Goal::None,
    );
    for (rate, goal) in [
        (TRANSFERS_PER_S_GOAL / 2.0, Goal::AtMost(OPEN_LOOP_P99_GOAL_MS)),
        ((busy.min(empty) / 2.0).floor(), Goal::None),
    ] {
        let before = nixo_core::metrics::handle().render();
        let (p50, p99, refused) = open_loop(&server, &format!("open-{rate}"), rate).await;
        let after = nixo_core::metrics::handle().render();
        println!(
            "open loop at {rate:.0}/s for {OPEN_LOOP_DURATION_MS} ms: p50 {:.2} ms, p99 {:.2} ms, {refused}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        tail_stages(&before, &after);
        figure(
            &format!("transfer p99, open loop at {rate:.0}/s ({refused})"),
            p99.as_secs_f64() * 1e3,
            "ms",
            goal,
        );
    }
    server.stop().await;
}
