//! One fraud decision by a rule in each language — the bundled Rust rule,
//! `plugins/velocity-js` (SpiderMonkey) and `plugins/country-py` (CPython),
//! built from source here with `nixo plugin build` — through the rule host:
//! a fresh pooled instance per decision, timed as instantiation and
//! execution apart, with artefact size, fuel and first load; then, for the
//! plugins that keep pre-warmed instances, a decision as the server makes
//! it (in an instance made and warmed ahead) and what making one costs.
//!
//! `cargo bench -p nixo-tests --bench rule_languages` (NIXO_BENCH_DECISIONS,
//! default 2000). JavaScript needs `npm install` in plugins/velocity-js (or
//! NIXO_COMPONENTIZE_JS), Python `componentize-py` on PATH.

use nixo_core::rules::manifest::Manifest;
use nixo_core::rules::{
    AccountFacts, Money, Plugin, RuleHost, RuleLimits, Transaction, TransactionKind, VelocityFacts,
};
use std::path::Path;
use std::time::{Duration, Instant};

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::var("NIXO_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rust = dir.path().join("rust");
    std::fs::create_dir(&rust).unwrap();
    let bytes = nixo_core::artefacts::FRAUD_CHECK_WASM;
    std::fs::write(rust.join("fraud-check.wasm"), bytes).unwrap();
    let sha = nixo_core::wasm_cache::sha256_hex(bytes);
    std::fs::write(
        rust.join("fraud-check.toml"),
        Manifest::render("fraud-check", "1", "fraud-check.wasm", &sha, "fail_closed"),
    )
    .unwrap();
    let mut dirs = vec![("Rust (plugins/fraud-check)", rust)];
    for (label, project) in [
        ("JavaScript (plugins/velocity-js)", "plugins/velocity-js"),
        ("Python (plugins/country-py)", "plugins/country-py"),
    ] {
        let out = dir.path().join(project.rsplit('/').next().unwrap());
        match nixo_core::plugin_kit::build(&root.join(project), Some(&out)) {
            Ok(built) => {
                println!("{label}: built in {} ms", built.build_ms);
                dirs.push((label, out));
            }
            Err(err) => println!("{label}: not built, skipped: {err:#}"),
        }
    }
    let tx = Transaction {
        kind: TransactionKind::Transfer,
        amount: Money {
            amount: "50.00".into(),
            currency: "KES".into(),
        },
        source: "101".into(),
        destination: "102".into(),
        destination_country: Some("KE".into()),
        account: AccountFacts {
            kyc_level: 2,
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
    println!(
        "\n{:<34} {:>9} {:>10} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "rule", "size MB", "compile ms", "cached ms", "fuel", "inst p50", "exec p50", "total p50", "total p99"
    );
    let mut loaded = Vec::new();
    for (label, plugins) in dirs {
        let cache = dir.path().join(format!("cache-{}", label.len()));
        let host = RuleHost::new(RuleLimits::default(), cache.clone()).unwrap();
        let started = Instant::now();
        let report = host.load_dir(&plugins).unwrap();
        assert!(report.refused.is_empty(), "{report:?}");
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let again = RuleHost::new(RuleLimits::default(), cache).unwrap();
        let started = Instant::now();
        again.load_dir(&plugins).unwrap();
        let cached_ms = started.elapsed().as_secs_f64() * 1e3;
        let Some(Plugin::Fraud(plugin)) = host.loaded().into_iter().next() else {
            panic!("{label}: no fraud rule loaded")
        };
        let size = std::fs::metadata(plugin.manifest.artefact_path(&plugins.join("x.toml")))
            .map(|m| m.len())
            .unwrap_or(0);
        let (_, fuel) = host.call_fraud_once(&plugin, &tx, None).unwrap();
        for _ in 0..(n / 10).max(10) {
            host.time_fraud_phases(&plugin, &tx).unwrap();
        }
        let (mut inst, mut exec, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (i, e) = host.time_fraud_phases(&plugin, &tx).unwrap();
            inst.push(i);
            exec.push(e);
            total.push(i + e);
        }
        println!(
            "{label:<34} {:>9.1} {compile_ms:>10.0} {cached_ms:>10.1} {fuel:>11} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            size as f64 / 1e6,
            percentile(&mut inst, 0.5),
            percentile(&mut exec, 0.5),
            percentile(&mut total, 0.5),
            percentile(&mut total, 0.99),
        );
        loaded.push((label, host, plugin));
    }
    println!("(µs unless named; a fresh pooled instance per decision, fuel and deadline on)");
    println!(
        "\n{:<34} {:>8} {:>10} {:>10} {:>10} {:>14} {:>10} {:>9}",
        "pre-warmed (as the server decides)",
        "between",
        "total p50",
        "total p99",
        "here p50",
        "make (bg) µs",
        "hits",
        "fuel"
    );
    for (label, host, plugin) in &loaded {
        let kept = plugin.manifest.limits.prewarmed_instances.unwrap_or(0);
        if kept == 0 {
            println!("{label:<34} {:>8}", "(none kept)");
            continue;
        }
        // Busy: the deciding core keeps running while an instance is made
        // (as under load); idle: it sleeps until one is ready.
        for (between, idle, full) in [("busy", false, false), ("idle", true, false), ("paced", true, true)] {
            let want = if full { kept as usize } else { 1 };
            let (hits_before, misses_before) = plugin.warm.hits_and_misses();
            let mut fuel = 0;
            let mut total: Vec<Duration> = (0..n)
                .map(|_| {
                    let waited = Instant::now();
                    while plugin.warm.ready_len() < want {
                        assert!(waited.elapsed() < Duration::from_secs(10), "{label}: no warm instance");
                        if idle {
                            std::thread::sleep(Duration::from_micros(200));
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    let (took, used) = host.time_fraud_prewarmed(plugin, &tx).unwrap();
                    fuel = used;
                    took
                })
                .collect();
            let (hits, misses) = plugin.warm.hits_and_misses();
            let mut here: Vec<Duration> = (0..n / 4)
                .map(|_| host.time_fraud_warmed_here(plugin, &tx).unwrap().0)
                .collect();
            println!(
                "{label:<34} {between:>8} {:>10.1} {:>10.1} {:>10.1} {:>14.0} {:>10} {fuel:>9}",
                percentile(&mut total, 0.5),
                percentile(&mut total, 0.99),
                percentile(&mut here, 0.5),
                plugin.warm.mean_make_time().unwrap_or_default().as_secs_f64() * 1e6,
                format!("{}/{}", hits - hits_before, hits + misses - hits_before - misses_before),
            );
        }
    }
    println!(
        "(an instance made and warmed by one synthetic decision on the host's pre-warming thread, one real \
         decision each; here = warmed on the deciding thread just before; make = instantiate + warm-up, off \
         the request path)"
    );
    for (label, host, plugin) in &loaded {
        let calls = host.time_fraud_in_one_instance(plugin, &tx, 5).unwrap();
        let shown: Vec<String> = calls
            .iter()
            .map(|(t, fuel)| format!("{:.0} µs/{fuel}", t.as_secs_f64() * 1e6))
            .collect();
        println!("{label:<34} five calls in one instance: {}", shown.join(", "));
    }
}
