//! Pre-warmed rule instances: a plugin that asks for them is decided in
//! instances made ahead and warmed by one synthetic decision, each used for
//! one real decision only — no decision sees what another left behind, the
//! fuel budget and captured output are the decision's own, and a warm-up
//! that fails leaves the plugin on fresh instances. Payout rules likewise.

mod common;

use nixo_core::rules::manifest::Manifest;
use nixo_core::rules::prewarm::WarmPool;
use nixo_core::rules::{
    FraudPlugin, PREWARMED_INSTANCES_MAX, PayoutMoney, PayoutRequest, Plugin, Rail, RuleHost, RuleLimits, Transaction,
    Verdict,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOSTILE: &[u8] = include_bytes!(env!("NIXO_TEST_HOSTILE_RULE_WASM"));
const CHATTY: &[u8] = include_bytes!(env!("NIXO_TEST_CHATTY_RULE_WASM"));
const FRAUD_CHECK: &[u8] = nixo_core::artefacts::FRAUD_CHECK_WASM;
const MPESA: &[u8] = nixo_core::artefacts::MPESA_WASM;
/// The source account of the host's warm-up transaction.
const WARM_UP_SOURCE: &str = "100000";

fn tx(source: &str, behaviour: Option<&str>) -> Transaction {
    common::rule_transfer(source, behaviour)
}

/// Installs `bytes` as fraud rule `name` with `extra` appended to its manifest.
fn install(dir: &Path, name: &str, bytes: &[u8], extra: &str) {
    std::fs::write(dir.join(format!("{name}.wasm")), bytes).unwrap();
    let sha = nixo_core::wasm_cache::sha256_hex(bytes);
    let manifest = Manifest::render(name, "1.0.0", &format!("{name}.wasm"), &sha, "fail_closed");
    std::fs::write(dir.join(format!("{name}.toml")), manifest + extra).unwrap();
}

fn host() -> (RuleHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let host = RuleHost::new(RuleLimits::default(), dir.path().join("cache")).unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    (host, dir)
}

fn fraud_plugin(host: &RuleHost) -> Arc<FraudPlugin> {
    match host.loaded().into_iter().next() {
        Some(Plugin::Fraud(plugin)) => plugin,
        other => panic!("no fraud rule loaded: {:?}", other.map(|p| p.manifest().name.clone())),
    }
}

/// Waits until a plugin's pool keeps `n` warm instances.
fn wait_for_ready<I>(pool: &WarmPool<I>, n: usize) {
    let started = Instant::now();
    while pool.ready_len() < n {
        assert!(!pool.is_off(), "pre-warming was turned off");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} of {n} instances ready",
            pool.ready_len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_prewarmed_instance_serves_one_real_decision_and_never_sees_another() {
    let (host, dir) = host();
    let plugins = dir.path().join("plugins");
    // Asks for more than the host allows: it gets the ceiling.
    install(&plugins, "hostile", HOSTILE, "\n[limits]\nprewarmed_instances = 99\n");
    host.load_dir(&plugins).unwrap();
    let plugin = fraud_plugin(&host);
    wait_for_ready(&plugin.warm, PREWARMED_INSTANCES_MAX as usize);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        plugin.warm.ready_len(),
        PREWARMED_INSTANCES_MAX as usize,
        "the pool stops at the host's ceiling"
    );

    // Paced decisions: each finds a warm instance that has served only the
    // warm-up.
    for i in 0..30 {
        wait_for_ready(&plugin.warm, 1);
        let verdicts = host.check_fraud(&tx(&format!("acct-{i}"), Some("remember")));
        assert_eq!(verdicts.verdict, Verdict::Allow);
        assert_eq!(
            verdicts.reasons,
            ["calls:2".to_string(), format!("previous:{WARM_UP_SOURCE}")],
            "decision {i}"
        );
    }
    assert_eq!(plugin.warm.hits_and_misses(), (30, 0));

    // A burst drains the pool: the rest are decided in fresh instances, and
    // still no decision sees another's transaction.
    for i in 0..40 {
        let verdicts = host.check_fraud(&tx(&format!("burst-{i}"), Some("remember")));
        let fresh = ["calls:1".to_string(), "previous:".to_string()];
        let warm = ["calls:2".to_string(), format!("previous:{WARM_UP_SOURCE}")];
        assert!(
            verdicts.reasons == fresh || verdicts.reasons == warm,
            "burst decision {i} saw {:?}",
            verdicts.reasons
        );
    }
    let (hits, misses) = plugin.warm.hits_and_misses();
    assert_eq!(hits + misses, 70);
    assert!(
        plugin.warm.mean_make_time().is_some(),
        "the refiller timed what it made"
    );
}

#[test]
fn a_warm_instance_gets_the_whole_fuel_budget_and_its_own_output() {
    // Fuel: a budget half again what one decision needs. A warm instance
    // has spent fuel on its warm-up; the decision still gets all of it.
    let (probe, dir) = host();
    let plugins = dir.path().join("plugins");
    install(&plugins, "fraud-check", FRAUD_CHECK, "");
    probe.load_dir(&plugins).unwrap();
    let (_, fuel) = probe
        .call_fraud_once(&fraud_plugin(&probe), &tx("101", None), None)
        .unwrap();
    drop(probe);

    let (host, dir) = host();
    let plugins = dir.path().join("plugins");
    let budget = fuel + fuel / 2;
    install(
        &plugins,
        "fraud-check",
        FRAUD_CHECK,
        &format!("\n[limits]\nprewarmed_instances = 1\nfuel_per_call_max = {budget}\n"),
    );
    host.load_dir(&plugins).unwrap();
    let plugin = fraud_plugin(&host);
    for _ in 0..3 {
        wait_for_ready(&plugin.warm, 1);
        let verdicts = host.check_fraud(&tx("101", None));
        assert_eq!(verdicts.rules_applied, ["FraudCheck: ALLOW"], "{verdicts:?}");
        assert!(verdicts.decisions[0].fuel_used > 0, "{verdicts:?}");
    }
    assert_eq!(plugin.warm.hits_and_misses(), (3, 0));

    // Output: the decision log keeps what the decision wrote, not the
    // warm-up's ("checking 10.00 KES").
    install(&plugins, "fraud-check", CHATTY, "\n[limits]\nprewarmed_instances = 1\n");
    host.load_dir(&plugins).unwrap();
    let plugin = fraud_plugin(&host);
    wait_for_ready(&plugin.warm, 1);
    let verdicts = host.check_fraud(&tx("101", None));
    assert_eq!(plugin.warm.hits_and_misses(), (1, 0));
    let stdio = verdicts.decisions[0].stdio.as_deref().expect("captured output");
    assert!(stdio.starts_with("checking 50.00 KES\n"), "{stdio:.80}");
    assert!(!stdio.contains("10.00"), "{stdio:.80}");
}

#[test]
fn a_failing_warm_up_leaves_the_rule_on_fresh_instances() {
    let (host, dir) = host();
    let plugins = dir.path().join("plugins");
    install(
        &plugins,
        "hostile",
        HOSTILE,
        &format!("\n[limits]\nprewarmed_instances = 2\n[config]\ntrap_on_source = \"{WARM_UP_SOURCE}\"\n"),
    );
    host.load_dir(&plugins).unwrap();
    let plugin = fraud_plugin(&host);
    let started = Instant::now();
    while !plugin.warm.is_off() {
        assert!(started.elapsed() < Duration::from_secs(20), "the warm-up never failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..5 {
        let verdicts = host.check_fraud(&tx(&format!("acct-{i}"), Some("remember")));
        assert_eq!(verdicts.verdict, Verdict::Allow);
        assert_eq!(verdicts.reasons, ["calls:1", "previous:"], "a fresh instance each");
    }
    assert_eq!(plugin.warm.ready_len(), 0);
}

#[test]
fn a_payout_rule_is_pre_warmed_too_and_answers_as_a_fresh_instance_does() {
    let (host, dir) = host();
    let plugins = dir.path().join("plugins");
    std::fs::write(plugins.join("mpesa.wasm"), MPESA).unwrap();
    let sha = nixo_core::wasm_cache::sha256_hex(MPESA);
    let manifest = Manifest::render_payout("mpesa", "1.0.0", "mpesa.wasm", &sha, "mpesa");
    std::fs::write(
        plugins.join("mpesa.toml"),
        manifest + "\n[limits]\nprewarmed_instances = 2\n",
    )
    .unwrap();
    let report = host.load_dir(&plugins).unwrap();
    assert_eq!(report.active, ["mpesa@1.0.0"], "{report:?}");
    let plugin = match host.loaded().into_iter().next() {
        Some(Plugin::Payout(plugin)) => plugin,
        _ => panic!("no payout rule loaded"),
    };
    let payout = |destination: &str, amount: &str| PayoutRequest {
        rail: Rail::Mpesa,
        destination: destination.into(),
        amount: PayoutMoney {
            amount: amount.into(),
            currency: "KES".into(),
        },
        destination_country: None,
        sent_today: "0".into(),
    };
    for (destination, amount) in [("0712 345 678", "1500"), ("+254712345678", "5"), ("0812345678", "100")] {
        let request = payout(destination, amount);
        wait_for_ready(&plugin.warm, 1);
        let warm = host.check_payout(&request);
        let config = plugin.manifest.config_pairs();
        let fresh = host.call_payout(&plugin, &request, Some(&config)).unwrap().result;
        assert_eq!(format!("{warm:?}"), format!("{fresh:?}"), "{destination} {amount}");
    }
    assert_eq!(plugin.warm.hits_and_misses(), (3, 0));
}
