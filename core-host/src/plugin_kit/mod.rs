//! The kit for risk teams: `nixo plugin new | build | check | test | install`.
//!
//! `check` loads an artefact exactly as the server would and reports its
//! world, imports, size and compile time, or why it is refused. `test` runs
//! a case file (TOML) against it and reports each case with fuel and time.
//! Both take a rule project (its built manifest and limits), a manifest, or
//! a bare artefact (the host's default limits). Compiled code is cached in
//! the user's cache directory, so the second run starts at once.

pub mod project;
pub mod templates;

use crate::rules::manifest::{Manifest, PluginKind};
use crate::rules::{
    AccountFacts, Money, PayoutMoney, PayoutRequest, Plugin, Rail, RuleHost, RuleLimits, Transaction, TransactionKind,
    VelocityFacts, Verdict,
};
use anyhow::{Context, bail};
pub use project::{Lang, build, install};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
pub use templates::new_template;

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

/// What `check` and `test` run against.
pub struct Target {
    /// The artefact's bytes.
    pub bytes: Vec<u8>,
    /// The manifest, when the target has one (a project or a manifest).
    pub manifest: Option<Manifest>,
    /// The artefact's path.
    pub path: PathBuf,
    /// A project's case file.
    pub cases: Option<PathBuf>,
}

impl Target {
    /// A rule project directory (its built manifest), a manifest (`.toml`)
    /// or an artefact (`.wasm`).
    pub fn open(path: &Path) -> anyhow::Result<Target> {
        let (limits, ceilings) = (RuleLimits::default(), RuleLimits::ceilings());
        let (manifest_path, cases) = if path.is_dir() {
            let project = project::Project::open(path)?;
            let manifest = project.built_manifest(None);
            anyhow::ensure!(
                manifest.is_file(),
                "{} is not built yet: run `nixo plugin build` there first",
                path.display()
            );
            (Some(manifest), Some(path.join("cases.toml")))
        } else if path.extension().is_some_and(|e| e == "toml") {
            (Some(path.to_path_buf()), None)
        } else {
            (None, None)
        };
        match manifest_path {
            Some(manifest_path) => {
                let (manifest, bytes) = Manifest::load(&manifest_path, &limits, &ceilings)
                    .with_context(|| format!("loading {}", manifest_path.display()))?;
                Ok(Target {
                    path: manifest.artefact_path(&manifest_path),
                    bytes,
                    manifest: Some(manifest),
                    cases,
                })
            }
            None => Ok(Target {
                bytes: std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                manifest: None,
                path: path.to_path_buf(),
                cases,
            }),
        }
    }
}

/// Loads a target: with its manifest, else as a fraud rule, else as a
/// payout rule.
fn load_target(host: &RuleHost, target: &Target) -> anyhow::Result<Plugin> {
    match &target.manifest {
        Some(manifest) => host.load_plugin(manifest.clone(), &target.bytes),
        None => load(host, &target.path, &target.bytes),
    }
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

/// Where compiled plugins are kept between runs of the kit:
/// `$NIXO_CACHE_DIR`, else `$XDG_CACHE_HOME/nixo/compiled`, else
/// `~/.cache/nixo/compiled`.
pub fn kit_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("NIXO_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("nixo/compiled")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/nixo/compiled")))
}

/// A rule host with the server's default limits, compiling into the kit's
/// cache (a scratch directory when there is none).
pub(crate) fn kit_host() -> anyhow::Result<(RuleHost, Option<tempfile::TempDir>)> {
    if let Some(dir) = kit_cache_dir()
        && std::fs::create_dir_all(&dir).is_ok()
    {
        return Ok((RuleHost::new(RuleLimits::default(), dir)?, None));
    }
    let scratch = tempfile::tempdir()?;
    Ok((
        RuleHost::new(RuleLimits::default(), scratch.path().to_path_buf())?,
        Some(scratch),
    ))
}

pub fn check(path: &Path) -> anyhow::Result<CheckReport> {
    let target = Target::open(path)?;
    let bytes = &target.bytes;
    let (host, _scratch) = kit_host()?;
    let started = Instant::now();
    let outcome = load_target(&host, &target)
        .map(|p| (p.world().to_string(), p.display_name().to_string()))
        .map_err(|e| format!("{e:#}"));
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    // From the compile cache the load just filled: listing the imports
    // does not compile the component again.
    let imports = host.imports(bytes).unwrap_or_default();
    Ok(CheckReport {
        size_bytes: bytes.len(),
        imports,
        compile_ms,
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
    pub sum_last_hour: Option<String>,
    pub count_last_day: Option<u32>,
    pub sum_last_day: Option<String>,
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
            sum_last_hour: case.sum_last_hour.clone().unwrap_or_else(|| "0".into()),
            count_last_day: case.count_last_day.or(case.count_last_hour).unwrap_or(0),
            sum_last_day: case.sum_last_day.clone().unwrap_or_else(|| "0".into()),
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

/// Runs every case of `cases` (TOML; a project's own `cases.toml` when
/// not given) against the target at `path`.
pub fn test(path: &Path, cases: Option<&Path>) -> anyhow::Result<Vec<CaseResult>> {
    let target = Target::open(path)?;
    let Some(cases) = cases.map(Path::to_path_buf).or_else(|| target.cases.clone()) else {
        bail!("name the case file with --cases (only a rule project has one of its own)");
    };
    let text = std::fs::read_to_string(&cases).with_context(|| format!("reading {}", cases.display()))?;
    let file: CaseFile = toml::from_str(&text).with_context(|| format!("parsing {}", cases.display()))?;
    let (host, _scratch) = kit_host()?;
    let plugin = load_target(&host, &target)?;
    file.case.iter().map(|case| run_case(&host, &plugin, case)).collect()
}

/// The WIT contract, as shipped with this build.
pub const RULES_WIT: &str = include_str!("../../../wit/nixo-rules@0.1.0/rules.wit");

/// Wraps a core module built by `wit-bindgen` (wasm32-unknown-unknown) into
/// a component, as the host loads it.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("the file is not a core module with wit-bindgen metadata")?
        .validate(true)
        .encode()
}
