//! The rule host: runs fraud rules as sandboxed WebAssembly components
//! against the `nixo:rules` WIT contract (`wit/rules.wit`).
//!
//! One engine for all rules; one pre-instantiated component per plugin; a
//! fresh store and instance for every decision, under the pooling allocator,
//! with a fuel budget, an epoch deadline and a memory cap. A plugin that
//! fails (trap, exhausted fuel, deadline, bad output) is an ordinary error:
//! the plugin's failure policy decides, and the host goes on.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "fraud-rule",
    });
}

use crate::wasm_cache;
use anyhow::Context;
use bindings::FraudRulePre;
pub use bindings::nixo::rules::types::{
    AccountFacts, Decision, Money, Transaction, TransactionKind, VelocityFacts, Verdict,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};

/// Limits applied to every rule call.
#[derive(Debug, Clone, Copy)]
pub struct RuleLimits {
    /// Wasm instructions (roughly) one decision may execute.
    pub fuel_per_call_max: u64,
    /// Wall-clock backstop for one decision.
    pub deadline_ms: u64,
    /// Linear memory one instance may grow to.
    pub memory_max_bytes: usize,
    /// Table elements one instance may hold.
    pub table_elements_max: usize,
    /// Reasons one decision may return, and characters per reason.
    pub reasons_max: usize,
    pub reason_len_max: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        Self {
            fuel_per_call_max: 10_000_000,
            deadline_ms: 100,
            memory_max_bytes: 16 << 20,
            table_elements_max: 10_000,
            reasons_max: 16,
            reason_len_max: 128,
        }
    }
}

/// Epoch tick: the resolution of the wall-clock deadline.
pub const EPOCH_TICK_MS: u64 = 5;
/// Instances the pool holds at once (concurrent decisions).
pub const POOL_INSTANCES_MAX: u32 = 128;

struct RuleState {
    limits: StoreLimits,
}

/// One loaded fraud rule.
pub struct FraudPlugin {
    /// Display name reported by the plugin ("FraudCheck").
    pub name: String,
    /// File it was loaded from.
    pub source: String,
    pub sha256: String,
    pre: FraudRulePre<RuleState>,
}

/// Combined outcome of every fraud rule for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    pub verdict: Verdict,
    /// Maximum over the rules, in basis points.
    pub score_bp: u16,
    /// One "Name: VERDICT" per rule, in load order.
    pub rules_applied: Vec<String>,
    pub reasons: Vec<String>,
}

pub struct RuleHost {
    engine: Engine,
    linker: Linker<RuleState>,
    limits: RuleLimits,
    cache_dir: PathBuf,
    fraud: RwLock<Arc<Vec<Arc<FraudPlugin>>>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RuleHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "ALLOW",
        Verdict::Review => "REVIEW",
        Verdict::Deny => "DENY",
    }
}

fn verdict_rank(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Review => 1,
        Verdict::Deny => 2,
    }
}

impl RuleHost {
    pub fn new(limits: RuleLimits, cache_dir: PathBuf) -> anyhow::Result<RuleHost> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES_MAX)
            .total_core_instances(POOL_INSTANCES_MAX * 2)
            .total_memories(POOL_INSTANCES_MAX)
            .total_tables(POOL_INSTANCES_MAX)
            .max_memories_per_component(1)
            .max_tables_per_component(1)
            .max_memory_size(limits.memory_max_bytes)
            .table_elements(limits.table_elements_max);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_reservation(limits.memory_max_bytes as u64)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let linker = Linker::new(&engine);

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("nixo-rule-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                    ticker_engine.increment_epoch();
                }
            })
            .context("starting the rule epoch ticker")?;

        Ok(RuleHost {
            engine,
            linker,
            limits,
            cache_dir,
            fraud: RwLock::new(Arc::new(Vec::new())),
            ticker_stop,
        })
    }

    fn new_store(&self) -> anyhow::Result<Store<RuleState>> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_max_bytes)
            .table_elements(self.limits.table_elements_max)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, RuleState { limits });
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel_per_call_max)?;
        store.set_epoch_deadline(self.limits.deadline_ms.div_ceil(EPOCH_TICK_MS).max(1));
        Ok(store)
    }

    /// Compiles (or loads from cache) a fraud rule and asks it its name.
    pub fn load_fraud_plugin(&self, bytes: &[u8], source: &str) -> anyhow::Result<FraudPlugin> {
        let component: Component = wasm_cache::load_component(&self.engine, bytes, &self.cache_dir)
            .with_context(|| format!("compiling plugin {source}"))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("plugin {source} imports something the rule sandbox does not provide")
            })?;
        let pre = FraudRulePre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("plugin {source} does not export the nixo:rules/fraud-rule world")
            })?;
        let mut store = self.new_store()?;
        let instance = pre.instantiate(&mut store)?;
        let name = instance.nixo_rules_fraud_check().call_name(&mut store)?;
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "plugin {source} reports an unusable name"
        );
        Ok(FraudPlugin {
            name,
            source: source.to_string(),
            sha256: wasm_cache::sha256_hex(bytes),
            pre,
        })
    }

    /// Loads every `*.wasm` in `dir` (sorted by file name) as the active set
    /// of fraud rules, replacing the previous set atomically.
    pub fn load_fraud_dir(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading plugin directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        let mut plugins = Vec::with_capacity(files.len());
        for file in &files {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let label = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            plugins.push(Arc::new(self.load_fraud_plugin(&bytes, &label)?));
        }
        let names = plugins.iter().map(|p| p.name.clone()).collect();
        *self.fraud.write().expect("rule set lock") = Arc::new(plugins);
        Ok(names)
    }

    fn call_fraud(
        &self,
        plugin: &FraudPlugin,
        tx: &Transaction,
    ) -> anyhow::Result<(Decision, u64)> {
        let mut store = self.new_store()?;
        let instance = plugin.pre.instantiate(&mut store)?;
        let decision = instance
            .nixo_rules_fraud_check()
            .call_check(&mut store, tx)?;
        let fuel_used = self.limits.fuel_per_call_max - store.get_fuel()?;
        anyhow::ensure!(
            decision.score_bp <= 10_000,
            "score {} is above 10000",
            decision.score_bp
        );
        anyhow::ensure!(
            decision.reasons.len() <= self.limits.reasons_max
                && decision
                    .reasons
                    .iter()
                    .all(|r| r.len() <= self.limits.reason_len_max),
            "decision carries more or longer reasons than allowed"
        );
        Ok((decision, fuel_used))
    }

    /// Runs every fraud rule. Any deny denies, any review holds, the score is
    /// the maximum. A failing rule counts as a deny (fail closed).
    pub fn check_fraud(&self, tx: &Transaction) -> Verdicts {
        let plugins = self.fraud.read().expect("rule set lock").clone();
        let mut out = Verdicts {
            verdict: Verdict::Allow,
            score_bp: 0,
            rules_applied: Vec::with_capacity(plugins.len()),
            reasons: Vec::new(),
        };
        for plugin in plugins.iter() {
            let started = Instant::now();
            let decision = match self.call_fraud(plugin, tx) {
                Ok((decision, fuel_used)) => {
                    tracing::info!(
                        plugin = %plugin.name, sha256 = %plugin.sha256, verdict = verdict_label(decision.verdict),
                        score_bp = decision.score_bp, fuel_used, latency_us = started.elapsed().as_micros() as u64,
                        "fraud rule decided"
                    );
                    decision
                }
                Err(err) => {
                    tracing::warn!(
                        plugin = %plugin.name, sha256 = %plugin.sha256, error = %format!("{err:#}"),
                        policy = "fail_closed", "fraud rule failed"
                    );
                    Decision {
                        verdict: Verdict::Deny,
                        score_bp: 10_000,
                        reasons: vec!["rule_failed".to_string()],
                    }
                }
            };
            if verdict_rank(decision.verdict) > verdict_rank(out.verdict) {
                out.verdict = decision.verdict;
            }
            out.score_bp = out.score_bp.max(decision.score_bp);
            out.rules_applied.push(format!(
                "{}: {}",
                plugin.name,
                verdict_label(decision.verdict)
            ));
            out.reasons.extend(decision.reasons);
        }
        out
    }

    /// Names of the active fraud rules.
    pub fn fraud_rule_names(&self) -> Vec<String> {
        self.fraud
            .read()
            .expect("rule set lock")
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }
}
