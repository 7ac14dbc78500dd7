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
use std::path::Path;
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
    let fuel_used = match plugin {
        Plugin::Fraud(rule) => {
            let (decision, fuel) = host.call_fraud_once(rule, &transaction(case)?)?;
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
            let outcome = host.call_payout(rule, &payout_request(case)?)?;
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
