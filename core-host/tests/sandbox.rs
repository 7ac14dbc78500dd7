//! The rule sandbox against hostile plugins: each misbehaviour is contained,
//! answered by the plugin's failure policy, and the next decision is served
//! normally. Plugins with forbidden imports, the wrong world or a tampered
//! artefact are refused at load, and a refused new version leaves the old
//! one serving.

mod common;

use nixo_core::rules::manifest::Manifest;
use nixo_core::rules::{RuleHost, RuleLimits, Transaction, Verdict};
use std::path::Path;

const HOSTILE: &[u8] = include_bytes!(env!("NIXO_TEST_HOSTILE_RULE_WASM"));
const READS_FILES: &[u8] = include_bytes!(env!("NIXO_TEST_FS_RULE_WASM"));
const FRAUD_CHECK: &[u8] = nixo_core::artefacts::FRAUD_CHECK_WASM;
/// The smallest valid component: it exports nothing.
const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

fn tx(behaviour: Option<&str>) -> Transaction {
    common::rule_transfer("101", behaviour)
}

fn install(dir: &Path, name: &str, bytes: &[u8], policy: &str) {
    std::fs::write(dir.join(format!("{name}.wasm")), bytes).unwrap();
    let sha = nixo_core::wasm_cache::sha256_hex(bytes);
    let manifest = Manifest::render(name, "1.0.0", &format!("{name}.wasm"), &sha, policy);
    std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
}

fn host(limits: RuleLimits) -> (RuleHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let host = RuleHost::new(limits, dir.path().join("cache")).unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    (host, dir)
}

#[test]
fn every_misbehaviour_is_contained_and_fails_closed() {
    let (host, dir) = host(RuleLimits::default());
    let plugins = dir.path().join("plugins");
    install(&plugins, "hostile", HOSTILE, "fail_closed");
    let report = host.load_dir(&plugins).unwrap();
    assert_eq!(report.active, ["hostile@1.0.0"], "{report:?}");

    for (behaviour, kind) in [
        ("loop", "out_of_fuel"),
        ("memory", "memory_limit"),
        ("recursion", "stack_overflow"),
        ("trap", "trap"),
        ("huge-output", "output_too_large"),
    ] {
        let verdicts = host.check_fraud(&tx(Some(behaviour)));
        assert_eq!(verdicts.verdict, Verdict::Deny, "{behaviour}");
        assert_eq!(verdicts.rules_applied, ["Hostile: DENY"], "{behaviour}");
        assert_eq!(verdicts.reasons, [format!("rule_failed:{kind}")], "{behaviour}");
        // The decision log records the failure and the policy applied.
        let logged = &verdicts.decisions[0];
        assert_eq!(
            (logged.failure, logged.policy),
            (Some(kind), Some("fail_closed")),
            "{behaviour}"
        );
        assert_eq!(logged.plugin_name, "hostile");
        assert!(logged.output.is_none());
        // The host is fine: the next decision is served normally.
        let next = host.check_fraud(&tx(None));
        assert_eq!(next.verdict, Verdict::Allow, "after {behaviour}");
        assert_eq!(next.rules_applied, ["Hostile: ALLOW"]);
    }
}

#[test]
fn a_fail_open_rule_that_fails_is_skipped() {
    let (host, dir) = host(RuleLimits::default());
    let plugins = dir.path().join("plugins");
    install(&plugins, "a-fraud-check", FRAUD_CHECK, "fail_closed");
    install(&plugins, "b-hostile", HOSTILE, "fail_open");
    host.load_dir(&plugins).unwrap();
    let verdicts = host.check_fraud(&tx(Some("trap")));
    assert_eq!(verdicts.verdict, Verdict::Allow);
    assert_eq!(verdicts.rules_applied, ["FraudCheck: ALLOW", "Hostile: SKIPPED"]);
    assert_eq!(
        verdicts.score_bp, 500,
        "the score is the maximum of the rules that decided"
    );
}

#[test]
fn the_wall_clock_deadline_stops_a_rule_that_fuel_would_not() {
    let limits = RuleLimits {
        fuel_per_call_max: u64::MAX / 2,
        deadline_ms: 20,
        ..RuleLimits::default()
    };
    let (host, dir) = host(limits);
    let plugins = dir.path().join("plugins");
    install(&plugins, "hostile", HOSTILE, "fail_closed");
    host.load_dir(&plugins).unwrap();
    let started = std::time::Instant::now();
    let verdicts = host.check_fraud(&tx(Some("loop")));
    assert_eq!(verdicts.reasons, ["rule_failed:deadline_exceeded"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn forbidden_imports_wrong_worlds_and_tampered_artefacts_are_refused() {
    let (host, dir) = host(RuleLimits::default());
    let plugins = dir.path().join("plugins");

    install(&plugins, "snoop", READS_FILES, "fail_closed");
    let report = host.load_dir(&plugins).unwrap();
    assert!(report.active.is_empty());
    assert!(report.refused[0].1.contains("imports `wasi:filesystem/"), "{report:?}");
    std::fs::remove_file(plugins.join("snoop.toml")).unwrap();

    install(&plugins, "empty", EMPTY_COMPONENT, "fail_closed");
    let report = host.load_dir(&plugins).unwrap();
    assert!(
        report.refused[0]
            .1
            .contains("does not export the nixo:rules/fraud-rule world"),
        "{report:?}"
    );
    std::fs::remove_file(plugins.join("empty.toml")).unwrap();

    install(&plugins, "gateway", nixo_core::artefacts::GATEWAY_WASM, "fail_closed");
    let report = host.load_dir(&plugins).unwrap();
    assert!(report.refused[0].1.contains("imports `wasi:http/"), "{report:?}");
    std::fs::remove_file(plugins.join("gateway.toml")).unwrap();

    install(&plugins, "fraud-check", FRAUD_CHECK, "fail_closed");
    assert_eq!(host.load_dir(&plugins).unwrap().active, ["fraud-check@1.0.0"]);
    // Tamper with the artefact: the manifest's hash no longer matches.
    let mut tampered = FRAUD_CHECK.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(plugins.join("fraud-check.wasm"), &tampered).unwrap();
    let report = host.load_dir(&plugins).unwrap();
    assert!(report.refused[0].1.contains("sha256 mismatch"), "{report:?}");
    assert_eq!(report.active, ["fraud-check@1.0.0"], "the loaded version stays");
    assert_eq!(host.check_fraud(&tx(None)).rules_applied, ["FraudCheck: ALLOW"]);
}

#[test]
fn a_new_version_replaces_the_old_and_a_broken_one_does_not() {
    let (host, dir) = host(RuleLimits::default());
    let plugins = dir.path().join("plugins");
    install(&plugins, "rule", FRAUD_CHECK, "fail_closed");
    host.load_dir(&plugins).unwrap();
    assert_eq!(host.check_fraud(&tx(None)).rules_applied, ["FraudCheck: ALLOW"]);

    install(&plugins, "rule", HOSTILE, "fail_closed");
    host.load_dir(&plugins).unwrap();
    assert_eq!(host.check_fraud(&tx(None)).rules_applied, ["Hostile: ALLOW"]);

    install(&plugins, "rule", EMPTY_COMPONENT, "fail_closed");
    let report = host.load_dir(&plugins).unwrap();
    assert_eq!(report.refused.len(), 1);
    assert_eq!(
        host.check_fraud(&tx(None)).rules_applied,
        ["Hostile: ALLOW"],
        "the working version stays"
    );

    std::fs::remove_file(plugins.join("rule.toml")).unwrap();
    host.load_dir(&plugins).unwrap();
    assert!(
        host.check_fraud(&tx(None)).rules_applied.is_empty(),
        "removing the manifest unloads the rule"
    );
}

const CHATTY: &[u8] = include_bytes!(env!("NIXO_TEST_CHATTY_RULE_WASM"));

#[test]
fn a_wasi_plugin_gets_no_capabilities_and_its_output_is_captured_bounded() {
    let limits = RuleLimits::default();
    let (host, dir) = host(limits);
    let plugins = dir.path().join("plugins");
    install(&plugins, "chatty", CHATTY, "fail_closed");
    let report = host.load_dir(&plugins).unwrap();
    assert_eq!(
        report.active,
        ["chatty@1.0.0"],
        "the WASI std set is allowed: {report:?}"
    );
    let verdicts = host.check_fraud(&tx(None));
    assert_eq!(verdicts.rules_applied, ["Chatty: ALLOW"]);
    let stdio = verdicts.decisions[0].stdio.as_deref().expect("captured output");
    assert!(stdio.starts_with("checking 50.00 KES\n"), "{stdio:.80}");
    assert!(stdio.contains("environment has 0 variables"), "an empty environment");
    assert!(
        stdio.len() <= 2 * limits.stdio_capture_max_bytes,
        "bounded: {} bytes",
        stdio.len()
    );
}

#[test]
fn an_oversized_input_is_refused_before_the_call() {
    let (host, dir) = host(RuleLimits::default());
    let plugins = dir.path().join("plugins");
    install(&plugins, "fraud-check", FRAUD_CHECK, "fail_closed");
    host.load_dir(&plugins).unwrap();
    let mut big = tx(None);
    big.metadata
        .push(("note".into(), "x".repeat(RuleLimits::default().input_len_max_bytes)));
    let verdicts = host.check_fraud(&big);
    assert_eq!(verdicts.reasons, ["rule_failed:input_too_large"]);
    assert_eq!(verdicts.verdict, Verdict::Deny);
}

#[test]
fn a_manifest_config_tunes_a_rule_without_rebuilding_it() {
    let (host, dir) = host(RuleLimits::default());
    let plugins = dir.path().join("plugins");
    install(&plugins, "fraud-check", FRAUD_CHECK, "fail_closed");
    host.load_dir(&plugins).unwrap();
    assert_eq!(host.check_fraud(&tx(None)).verdict, Verdict::Allow);
    let mut manifest = std::fs::read_to_string(plugins.join("fraud-check.toml")).unwrap();
    manifest.push_str("\n[config]\n\"review_threshold.KES\" = \"10\"\n");
    std::fs::write(plugins.join("fraud-check.toml"), manifest).unwrap();
    host.load_dir(&plugins).unwrap();
    let verdicts = host.check_fraud(&tx(None));
    assert_eq!(verdicts.verdict, Verdict::Review);
    assert_eq!(verdicts.reasons, ["amount_above_review_threshold"]);
}
