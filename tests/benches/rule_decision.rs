//! Per-decision latency of the fraud-check rule: a fresh pooled instance per
//! decision through the rule host (fuel, epoch deadline, memory cap on),
//! next to the same rule compiled natively, in one run.
//!
//! `cargo bench -p nixo-tests --bench rule_decision` (NIXO_BENCH_DECISIONS,
//! default 20000).

use nixo_core::rules::manifest::Manifest;
use nixo_core::rules::{AccountFacts, Money, RuleHost, RuleLimits, Transaction, TransactionKind, VelocityFacts};
use nixo_tests::bench::{Goal, figure};
use std::time::{Duration, Instant};

/// Goal: one decision with a fresh pooled instance, p50.
const DECISION_P50_GOAL_US: f64 = 8.0;

/// Sorts and prints; answers p50 in µs.
fn report(label: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "{label:<52} n={:<6} p50={:>7.2} µs  p99={:>7.2} µs",
        samples.len(),
        at(0.5),
        at(0.99)
    );
    at(0.5)
}

fn main() {
    let n: usize = std::env::var("NIXO_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let bytes = nixo_core::artefacts::FRAUD_CHECK_WASM;
    std::fs::write(plugins.join("fraud-check.wasm"), bytes).unwrap();
    let sha = nixo_core::wasm_cache::sha256_hex(bytes);
    std::fs::write(
        plugins.join("fraud-check.toml"),
        Manifest::render("fraud-check", "1", "fraud-check.wasm", &sha, "fail_closed"),
    )
    .unwrap();
    let host = RuleHost::new(RuleLimits::default(), dir.path().join("cache")).unwrap();
    let started = Instant::now();
    host.load_dir(&plugins).unwrap();
    println!(
        "load (compile + link + name call): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let tx = Transaction {
        kind: TransactionKind::Transfer,
        amount: Money {
            amount: "50.00".into(),
            currency: "KES".into(),
        },
        source: "101".into(),
        destination: "102".into(),
        destination_country: None,
        account: AccountFacts {
            kyc_level: 1,
            age_days: 30,
            sandbox: true,
        },
        velocity: VelocityFacts {
            count_last_hour: 3,
            sum_last_hour: "150.00".into(),
            count_last_day: 9,
            sum_last_day: "450.00".into(),
        },
        metadata: vec![("note".into(), "For lunch".into())],
    };
    for _ in 0..1_000 {
        std::hint::black_box(host.check_fraud(&tx));
    }
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(host.check_fraud(&tx));
            t.elapsed()
        })
        .collect();
    let p50 = report("wasm: fresh pooled instance per decision (host path)", samples);
    figure(
        "rule decision p50, fresh pooled instance (fraud-check)",
        p50,
        "µs",
        Goal::AtMost(DECISION_P50_GOAL_US),
    );

    let input = nixo_fraud_check::rules::Input {
        is_transfer: true,
        amount: "50.00",
        currency: "KES",
        source: "101",
        destination: "102",
        destination_country: None,
        account_age_days: 30,
        sandbox: true,
        count_1h: 3,
    };
    let config = nixo_fraud_check::rules::Config::default();
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(nixo_fraud_check::rules::check(std::hint::black_box(&input), &config));
            t.elapsed()
        })
        .collect();
    let native = report("native: the same rule compiled into the host", samples);
    figure("rule decision p50, the same rule native", native, "µs", Goal::None);
}
