//! The kit for risk teams: `nixo plugin check` and `nixo plugin test`.
//!
//! `check` loads an artefact exactly as the server would and reports its
//! world, imports, size and compile time, or why it is refused. `test` runs
//! a case file (TOML) against it and reports each case with fuel and time.

use crate::rules::manifest::{Manifest, PluginKind};
use crate::rules::{
    AccountFacts, Money, PayoutMoney, PayoutRequest, Plugin, Rail, RuleHost, RuleLimits, Transaction, TransactionKind,
    VelocityFacts, Verdict,
};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `nixo plugin check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub size_bytes: usize,
    pub imports: Vec<String>,
    pub compile_ms: f64,
    /// `Ok((world, display name))` or the refusal.
    pub outcome: Result<(String, String), String>,
}

fn manifest_for(path: &Path, bytes: &[u8], kind: PluginKind) -> Manifest {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(64)
        .collect();
    let sha = crate::wasm_cache::sha256_hex(bytes);
    let text = match kind {
        PluginKind::Fraud => Manifest::render(&name, "local", "x.wasm", &sha, "fail_closed"),
        PluginKind::Payout => Manifest::render_payout(&name, "local", "x.wasm", &sha, "bank"),
    };
    Manifest::parse(&text).expect("a rendered manifest parses")
}

/// Loads the artefact as a fraud rule, else as a payout rule.
fn load(host: &RuleHost, path: &Path, bytes: &[u8]) -> anyhow::Result<Plugin> {
    match host.load_plugin(manifest_for(path, bytes, PluginKind::Fraud), bytes) {
        Ok(plugin) => Ok(plugin),
        Err(err) if format!("{err:#}").contains("does not export the nixo:rules/fraud-rule world") => host
            .load_plugin(manifest_for(path, bytes, PluginKind::Payout), bytes)
            .map_err(|e| e.context("it exports neither nixo:rules/fraud-rule nor nixo:rules/payout-rule")),
        Err(err) => Err(err),
    }
}

fn scratch_host() -> anyhow::Result<(RuleHost, tempfile::TempDir)> {
    let cache = tempfile::tempdir()?;
    Ok((RuleHost::new(RuleLimits::default(), cache.path().to_path_buf())?, cache))
}

pub fn check(path: &Path) -> anyhow::Result<CheckReport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (host, _cache) = scratch_host()?;
    let imports = host.imports(&bytes).unwrap_or_default();
    let started = Instant::now();
    let outcome = load(&host, path, &bytes)
        .map(|p| (p.world().to_string(), p.display_name().to_string()))
        .map_err(|e| format!("{e:#}"));
    Ok(CheckReport {
        size_bytes: bytes.len(),
        imports,
        compile_ms: started.elapsed().as_secs_f64() * 1e3,
        outcome,
    })
}

/// One case of a case file; fraud cases name `kind`, payout cases `rail`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    // Fraud input.
    pub kind: Option<String>,
    pub source: Option<String>,
    pub kyc_level: Option<u8>,
    pub age_days: Option<u32>,
    pub sandbox: Option<bool>,
    pub count_last_hour: Option<u32>,
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// The manifest `[config]` to run this case with (default: none).
    pub config: Option<std::collections::BTreeMap<String, String>>,
    // Payout input.
    pub rail: Option<String>,
    pub sent_today: Option<String>,
    // Both.
    pub amount: String,
    pub currency: String,
    pub destination: String,
    pub destination_country: Option<String>,
    // Expectations.
    pub expect_verdict: Option<String>,
    pub expect_score_bp: Option<u16>,
    pub expect_reasons: Option<Vec<String>>,
    pub expect_destination: Option<String>,
    pub expect_refusal: Option<String>,
    pub expect_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub failure: Option<String>,
    pub fuel_used: u64,
    pub micros: u128,
}

fn transaction(case: &Case) -> anyhow::Result<Transaction> {
    let kind = match case.kind.as_deref() {
        Some("transfer") => TransactionKind::Transfer,
        Some("deposit") => TransactionKind::Deposit,
        Some("withdrawal") => TransactionKind::Withdrawal,
        Some("payout") => TransactionKind::Payout,
        other => bail!(
            "case {:?}: kind must be transfer, deposit, withdrawal or payout, not {other:?}",
            case.name
        ),
    };
    Ok(Transaction {
        kind,
        amount: Money {
            amount: case.amount.clone(),
            currency: case.currency.clone(),
        },
        source: case.source.clone().unwrap_or_else(|| "101".into()),
        destination: case.destination.clone(),
        destination_country: case.destination_country.clone(),
        account: AccountFacts {
            kyc_level: case.kyc_level.unwrap_or(1),
            age_days: case.age_days.unwrap_or(30),
            sandbox: case.sandbox.unwrap_or(false),
        },
        velocity: VelocityFacts {
            count_last_hour: case.count_last_hour.unwrap_or(0),
            sum_last_hour: "0".into(),
            count_last_day: case.count_last_hour.unwrap_or(0),
            sum_last_day: "0".into(),
        },
        metadata: case.metadata.clone().unwrap_or_default().into_iter().collect(),
    })
}

fn payout_request(case: &Case) -> anyhow::Result<PayoutRequest> {
    let rail = match case.rail.as_deref() {
        Some("mpesa") => Rail::Mpesa,
        Some("bank") => Rail::Bank,
        other => bail!("case {:?}: rail must be mpesa or bank, not {other:?}", case.name),
    };
    Ok(PayoutRequest {
        rail,
        destination: case.destination.clone(),
        amount: PayoutMoney {
            amount: case.amount.clone(),
            currency: case.currency.clone(),
        },
        destination_country: case.destination_country.clone(),
        sent_today: case.sent_today.clone().unwrap_or_else(|| "0".into()),
    })
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Review => "review",
        Verdict::Deny => "deny",
    }
}

fn run_case(host: &RuleHost, plugin: &Plugin, case: &Case) -> anyhow::Result<CaseResult> {
    let started = Instant::now();
    let mut failures = Vec::new();
    let config: Vec<(String, String)> = case.config.clone().unwrap_or_default().into_iter().collect();
    let fuel_used = match plugin {
        Plugin::Fraud(rule) => {
            let (decision, fuel) = host.call_fraud_once(rule, &transaction(case)?, Some(&config))?;
            if let Some(want) = &case.expect_verdict
                && want != verdict_name(decision.verdict)
            {
                failures.push(format!("verdict {} (want {want})", verdict_name(decision.verdict)));
            }
            if let Some(want) = case.expect_score_bp
                && want != decision.score_bp
            {
                failures.push(format!("score_bp {} (want {want})", decision.score_bp));
            }
            if let Some(want) = &case.expect_reasons
                && *want != decision.reasons
            {
                failures.push(format!("reasons {:?} (want {want:?})", decision.reasons));
            }
            fuel
        }
        Plugin::Payout(rule) => {
            let outcome = host.call_payout(rule, &payout_request(case)?, Some(&config))?;
            match (&outcome.result, &case.expect_destination, &case.expect_refusal) {
                (Ok(routing), Some(want), _) if routing.destination != *want => {
                    failures.push(format!("destination {} (want {want})", routing.destination));
                }
                (Ok(routing), None, Some(want)) => {
                    failures.push(format!("accepted as {} (want refusal {want})", routing.destination));
                }
                (Err(refusal), Some(_), _) => {
                    failures.push(format!(
                        "refused {}: {} (want acceptance)",
                        refusal.code, refusal.message
                    ));
                }
                (Err(refusal), None, Some(want)) => {
                    if refusal.code != *want {
                        failures.push(format!("refusal {} (want {want})", refusal.code));
                    }
                    if let Some(field) = &case.expect_field
                        && refusal.field != *field
                    {
                        failures.push(format!("field {} (want {field})", refusal.field));
                    }
                }
                _ => {}
            }
            outcome.fuel_used
        }
    };
    Ok(CaseResult {
        name: case.name.clone(),
        failure: (!failures.is_empty()).then(|| failures.join("; ")),
        fuel_used,
        micros: started.elapsed().as_micros(),
    })
}

/// Runs every case of `cases` (TOML) against the artefact at `path`.
pub fn test(path: &Path, cases: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let file: CaseFile = toml::from_str(&text).with_context(|| format!("parsing {}", cases.display()))?;
    let (host, _cache) = scratch_host()?;
    let plugin = load(&host, path, &bytes)?;
    file.case.iter().map(|case| run_case(&host, &plugin, case)).collect()
}

/// The WIT contract, as shipped with this build.
pub const RULES_WIT: &str = include_str!("../../wit/rules.wit");

/// Wraps a core module built by `wit-bindgen` (wasm32-unknown-unknown) into
/// a component, as the host loads it.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("the file is not a core module with wit-bindgen metadata")?
        .validate(true)
        .encode()
}

/// Writes a new rule crate `dir/name` that builds on its own.
pub fn new_template(name: &str, kind: PluginKind, dir: &Path) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!("a plugin name is 1 to 64 characters of a-z, 0-9 and '-', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    std::fs::create_dir_all(root.join("src"))?;
    std::fs::create_dir_all(root.join("wit"))?;
    let stem = name.replace('-', "_");
    let (world, lib, cases) = match kind {
        PluginKind::Fraud => ("fraud-rule", FRAUD_TEMPLATE, FRAUD_CASES),
        PluginKind::Payout => ("payout-rule", PAYOUT_TEMPLATE, PAYOUT_CASES),
    };
    let cargo = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
         [target.'cfg(target_family = \"wasm\")'.dependencies]\n\
         wit-bindgen = {{ version = \"0.51\", default-features = false, features = [\"macros\"] }}\n\n\
         # A crate of its own, not a member of any enclosing workspace.\n[workspace]\n\n\
         [profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\n"
    );
    std::fs::write(root.join("Cargo.toml"), cargo)?;
    std::fs::write(root.join("wit/rules.wit"), RULES_WIT)?;
    std::fs::write(root.join("src/lib.rs"), lib.replace("{world}", world))?;
    std::fs::write(root.join("cases.toml"), cases)?;
    let readme = format!(
        "# {name}\n\nA Nixo {world} plugin.\n\n```sh\ncargo test                                   # the rules, natively\n\
         cargo build --release --target wasm32-unknown-unknown\n\
         nixo plugin componentize target/wasm32-unknown-unknown/release/{stem}.wasm -o {name}.wasm\n\
         nixo plugin check {name}.wasm\nnixo plugin test {name}.wasm --cases cases.toml\n```\n\n\
         To load it, copy `{name}.wasm` into the server's plugins directory with a manifest `{name}.toml`\n\
         (name, version, kind, sha256 of the artefact; see the Nixo README).\n"
    );
    std::fs::write(root.join("README.md"), readme)?;
    Ok(root)
}

const FRAUD_TEMPLATE: &str = r#"//! A Nixo fraud rule. The logic is plain Rust in `decide` (test it with
//! `cargo test`); the export below is compiled only for wasm targets.

/// Decides on a transfer of `amount` (an exact decimal string) in `currency`:
/// returns (verdict, score in basis points, reasons).
pub fn decide(amount: &str, currency: &str) -> (&'static str, u16, Vec<String>) {
    let whole: u64 = amount.split('.').next().and_then(|w| w.parse().ok()).unwrap_or(u64::MAX);
    match (currency, whole) {
        ("KES", w) if w >= 100_000 => ("review", 6_000, vec!["large_kes_amount".into()]),
        _ => ("allow", 100, Vec::new()),
    }
}

#[cfg(target_family = "wasm")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "{world}" });

    use exports::nixo::rules::fraud_check::Guest;
    use nixo::rules::types::{Decision, Transaction, Verdict};

    struct Rule;

    impl Guest for Rule {
        fn name() -> String {
            "MyRule".to_string()
        }

        fn check(tx: Transaction, _config: Vec<(String, String)>) -> Decision {
            let (verdict, score_bp, reasons) = super::decide(&tx.amount.amount, &tx.amount.currency);
            let verdict = match verdict {
                "deny" => Verdict::Deny,
                "review" => Verdict::Review,
                _ => Verdict::Allow,
            };
            Decision { verdict, score_bp, reasons }
        }
    }

    export!(Rule);
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_kes_amounts_are_reviewed() {
        assert_eq!(super::decide("150000.00", "KES").0, "review");
        assert_eq!(super::decide("50.00", "KES").0, "allow");
    }
}
"#;

const PAYOUT_TEMPLATE: &str = r#"//! A Nixo payout rule. The logic is plain Rust in `normalise` (test it with
//! `cargo test`); the export below is compiled only for wasm targets.

/// Accepts destinations of 6 to 34 letters and digits (spaces ignored),
/// upper-cased; refuses anything else with (field, code, message).
pub fn normalise(destination: &str) -> Result<String, (&'static str, &'static str, String)> {
    let compact: String = destination.chars().filter(|c| !c.is_whitespace()).collect();
    if (6..=34).contains(&compact.len()) && compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(compact.to_ascii_uppercase())
    } else {
        Err(("destination", "invalid_destination", "6 to 34 letters and digits".to_string()))
    }
}

#[cfg(target_family = "wasm")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "{world}" });

    use exports::nixo::rules::payout_check::{Guest, PayoutRequest, Refusal, Routing};

    struct Rule;

    impl Guest for Rule {
        fn name() -> String {
            "MyPayoutRule".to_string()
        }

        fn check(request: PayoutRequest, _config: Vec<(String, String)>) -> Result<Routing, Refusal> {
            super::normalise(&request.destination)
                .map(|destination| Routing { destination, facts: Vec::new() })
                .map_err(|(field, code, message)| Refusal { field: field.into(), code: code.into(), message })
        }
    }

    export!(Rule);
}

#[cfg(test)]
mod tests {
    #[test]
    fn destinations_are_normalised_or_refused() {
        assert_eq!(super::normalise("ab12 cd34").unwrap(), "AB12CD34");
        assert!(super::normalise("x").is_err());
    }
}
"#;

const FRAUD_CASES: &str = r#"[[case]]
name = "a small transfer is allowed"
kind = "transfer"
amount = "50.00"
currency = "KES"
destination = "102"
expect_verdict = "allow"

[[case]]
name = "a large KES transfer is reviewed"
kind = "transfer"
amount = "150000.00"
currency = "KES"
destination = "102"
expect_verdict = "review"
expect_reasons = ["large_kes_amount"]
"#;

const PAYOUT_CASES: &str = r#"[[case]]
name = "a spaced destination is normalised"
rail = "bank"
destination = "ab12 cd34"
amount = "10.00"
currency = "EUR"
expect_destination = "AB12CD34"

[[case]]
name = "a short destination is refused"
rail = "bank"
destination = "x"
amount = "10.00"
currency = "EUR"
expect_refusal = "invalid_destination"
expect_field = "destination"
"#;
