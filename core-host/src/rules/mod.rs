//! The rule host: runs fraud rules as sandboxed WebAssembly components
//! against the `nixo:rules` WIT contract (`wit/rules.wit`).
//!
//! One engine for all rules; one pre-instantiated component per plugin; a
//! store and instance of its own for every decision (fresh, or made and
//! warmed ahead: [`prewarm`]), under the pooling allocator, with a fuel
//! budget, an epoch deadline and a memory cap. A plugin that
//! fails (trap, exhausted fuel, deadline, bad output) is an ordinary error:
//! the plugin's failure policy decides, and the host goes on.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/nixo-rules@0.1.0",
        world: "fraud-rule",
    });
}

mod payout_bindings {
    wasmtime::component::bindgen!({
        path: "../wit/nixo-rules@0.1.0",
        world: "payout-rule",
    });
}

pub mod decision_log;
pub mod manifest;
pub mod prewarm;

pub use prewarm::PREWARMED_INSTANCES_MAX;

pub use payout_bindings::exports::nixo::rules::payout_check::{PayoutRequest, Rail, Refusal, Routing};
/// Money as the payout world spells it.
pub use payout_bindings::nixo::rules::types::Money as PayoutMoney;
use payout_bindings::{PayoutRule, PayoutRulePre};

use crate::wasm_cache;
use anyhow::Context;
pub use bindings::nixo::rules::types::{
    AccountFacts, Decision, Money, Transaction, TransactionKind, VelocityFacts, Verdict,
};
use bindings::{FraudRule, FraudRulePre};
use decision_log::DecisionRecord;
use manifest::{FailurePolicy, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Limits applied to every rule call (the host's maximums; a plugin's
/// manifest may only lower them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleLimits {
    /// Wasm instructions (roughly) one decision may execute.
    pub fuel_per_call_max: u64,
    /// Wall-clock backstop for one decision.
    pub deadline_ms: u64,
    /// Linear memory one instance may grow to.
    pub memory_max_bytes: usize,
    /// Table elements one instance may hold.
    pub table_elements_max: usize,
    /// Reasons one decision may return, and bytes per reason.
    pub reasons_max: usize,
    pub reason_len_max: usize,
    /// Bytes of stdout/stderr kept in the decision log from a plugin that
    /// writes them (it may write up to [`STDIO_BUFFER_MAX_BYTES`]; beyond
    /// that its write fails and the call counts as failed).
    pub stdio_capture_max_bytes: usize,
    /// Bytes of input (the strings of a transaction) one call may receive.
    pub input_len_max_bytes: usize,
    /// Size of the plugin's artefact.
    pub artefact_len_max_bytes: u64,
    /// Core module instances one instance of the plugin may create (a Rust
    /// rule needs 1 to 3; a language runtime with its WASI adapter, more).
    pub core_instances_max: u32,
    /// Instances kept ready for the next decisions, each instantiated and
    /// warmed by one synthetic decision off the request path (a language
    /// runtime's first call in an instance costs more than the rule): 0
    /// means a fresh instance per decision, made on the request path.
    pub prewarmed_instances: u32,
}

impl Default for RuleLimits {
    /// What every plugin gets unless its manifest asks for more.
    fn default() -> Self {
        Self {
            fuel_per_call_max: 10_000_000,
            deadline_ms: 100,
            memory_max_bytes: 16 << 20,
            table_elements_max: 10_000,
            reasons_max: 16,
            reason_len_max: 128,
            stdio_capture_max_bytes: 4_096,
            input_len_max_bytes: 64 << 10,
            artefact_len_max_bytes: 8 << 20,
            core_instances_max: 8,
            prewarmed_instances: 0,
        }
    }
}

impl RuleLimits {
    /// The most a plugin's manifest may ask for: enough for a rule written
    /// in JavaScript (SpiderMonkey) or Python (CPython) inside the
    /// component, never more. Limits not named in a manifest are not raised.
    pub fn ceilings() -> Self {
        Self {
            fuel_per_call_max: 200_000_000,
            deadline_ms: 1_000,
            memory_max_bytes: 128 << 20,
            table_elements_max: 50_000,
            artefact_len_max_bytes: 32 << 20,
            core_instances_max: 64,
            prewarmed_instances: PREWARMED_INSTANCES_MAX,
            ..Self::default()
        }
    }

    /// Field by field, the larger of the two (an operator who raises a
    /// default with a flag raises the ceiling with it).
    pub fn at_least(self, other: &RuleLimits) -> Self {
        Self {
            fuel_per_call_max: self.fuel_per_call_max.max(other.fuel_per_call_max),
            deadline_ms: self.deadline_ms.max(other.deadline_ms),
            memory_max_bytes: self.memory_max_bytes.max(other.memory_max_bytes),
            table_elements_max: self.table_elements_max.max(other.table_elements_max),
            reasons_max: self.reasons_max.max(other.reasons_max),
            reason_len_max: self.reason_len_max.max(other.reason_len_max),
            stdio_capture_max_bytes: self.stdio_capture_max_bytes.max(other.stdio_capture_max_bytes),
            input_len_max_bytes: self.input_len_max_bytes.max(other.input_len_max_bytes),
            artefact_len_max_bytes: self.artefact_len_max_bytes.max(other.artefact_len_max_bytes),
            core_instances_max: self.core_instances_max.max(other.core_instances_max),
            prewarmed_instances: self.prewarmed_instances.max(other.prewarmed_instances),
        }
    }
}

/// Bytes a WASI plugin may write to stdout and to stderr in one call.
pub const STDIO_BUFFER_MAX_BYTES: usize = 1 << 20;
/// Epoch tick: the resolution of the wall-clock deadline.
pub const EPOCH_TICK_MS: u64 = 5;
/// Wall clock for a plugin's first instance and `name()` call at load.
pub const PLUGIN_LOAD_DEADLINE_MS: u64 = 5_000;
/// Bytes of memory and table per pooled slot reset in place between
/// decisions (with PAGEMAP_SCAN only the dirty pages are touched).
pub const POOL_KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// Instances the pool holds at once (concurrent decisions).
pub const POOL_INSTANCES_MAX: u32 = 128;
/// Core module instances the pool holds at once, over all decisions in
/// flight (a Rust rule takes 1 to 3 per decision, a Python rule 14).
pub const POOL_CORE_INSTANCES_MAX: u32 = 1_024;

/// Imports a plugin may have: the capability-free part of WASI 0.2 that
/// a standard library pulls in. Everything else (files, sockets, HTTP, …)
/// refuses the plugin at load.
pub const IMPORT_ALLOWLIST: [&str; 10] = [
    "nixo:rules/types@",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/environment@",
    "wasi:cli/exit@",
    "wasi:cli/stdin@",
    "wasi:cli/stdout@",
    "wasi:cli/stderr@",
    "wasi:cli/terminal-",
];

/// Per-decision store state (opaque outside the rule host).
pub struct RuleState {
    limits: StoreLimits,
    /// The capture buffers behind the plugin's stdout and stderr.
    stdio: Option<(MemoryOutputPipe, MemoryOutputPipe)>,
    /// Present only for plugins that import WASI: no preopens, no network,
    /// empty environment, stdout/stderr into bounded memory.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
}

impl WasiView for RuleState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self
                .wasi
                .as_mut()
                .expect("WASI is linked only for plugins that were given a WASI context"),
            table: &mut self.table,
        }
    }
}

/// One loaded fraud rule.
pub type FraudPlugin = LoadedRule<FraudRulePre<RuleState>, FraudRule>;

/// A loaded rule of one world, ready to instantiate.
pub struct LoadedRule<P, I> {
    pub manifest: Manifest,
    /// Display name reported by the plugin ("FraudCheck").
    pub display_name: String,
    pub sha256: String,
    limits: RuleLimits,
    uses_wasi: bool,
    pre: P,
    /// Instances made ahead for the next decisions (plugins whose manifest
    /// asks for `prewarmed_instances`).
    pub warm: prewarm::WarmPool<I>,
}

impl<P, I> LoadedRule<P, I> {
    /// For a plugin that keeps pre-warmed instances, a ready one if there
    /// is one (counted in `nixo_rule_prewarm_decisions_total`); `None` for
    /// a plugin that keeps none.
    fn take_warm(&self) -> Option<Option<prewarm::Warm<I>>> {
        if self.limits.prewarmed_instances == 0 || self.warm.is_off() {
            return None;
        }
        let warm = self.warm.take();
        let instance = if warm.is_some() { "prewarmed" } else { "fresh" };
        metrics::counter!("nixo_rule_prewarm_decisions_total", "plugin" => self.manifest.name.clone(),
            "instance" => instance)
        .increment(1);
        Some(warm)
    }
}

/// One loaded payout rule.
pub type PayoutPlugin = LoadedRule<PayoutRulePre<RuleState>, PayoutRule>;

/// A loaded plugin of either kind.
#[derive(Clone)]
pub enum Plugin {
    Fraud(Arc<FraudPlugin>),
    Payout(Arc<PayoutPlugin>),
}

impl Plugin {
    pub fn manifest(&self) -> &Manifest {
        match self {
            Plugin::Fraud(p) => &p.manifest,
            Plugin::Payout(p) => &p.manifest,
        }
    }

    pub fn sha256(&self) -> &str {
        match self {
            Plugin::Fraud(p) => &p.sha256,
            Plugin::Payout(p) => &p.sha256,
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            Plugin::Fraud(p) => &p.display_name,
            Plugin::Payout(p) => &p.display_name,
        }
    }

    /// `fraud-rule` or `payout-rule`.
    pub fn world(&self) -> &'static str {
        match self {
            Plugin::Fraud(_) => "nixo:rules/fraud-rule",
            Plugin::Payout(_) => "nixo:rules/payout-rule",
        }
    }
}

/// What a payout rule said, and what it cost.
#[derive(Debug, Clone)]
pub struct PayoutOutcome {
    pub result: Result<Routing, Refusal>,
    pub fuel_used: u64,
}

/// Combined outcome of every fraud rule for one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts {
    pub verdict: Verdict,
    /// Maximum over the rules, in basis points.
    pub score_bp: u16,
    /// One "Name: VERDICT" per rule, in load order.
    pub rules_applied: Vec<String>,
    pub reasons: Vec<String>,
    /// One record per rule called, for the decision log.
    pub decisions: Vec<DecisionRecord>,
    /// For a review: what happens when it expires — `approve` only when
    /// every rule that asked for the review says so, else `void`.
    pub review_expiry: manifest::ReviewExpiry,
}

/// A decision id: `dec_`, the time in milliseconds as 7 base-62
/// characters, and 13 random ones (≈ 77 bits). Ids made later sort later,
/// so the log's key index grows at its end instead of taking each insert
/// on a random page of a million-row index.
fn decision_id() -> String {
    use rand::Rng;
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let mut time = [b'0'; 7];
    for digit in time.iter_mut().rev() {
        *digit = BASE62[(ms % 62) as usize];
        ms /= 62;
    }
    let mut rng = rand::rng();
    let random: String = (0..13)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    format!("dec_{}{random}", std::str::from_utf8(&time).expect("base-62 digits"))
}

/// What a (re)load of the plugins directory did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// `name@version` of every active plugin.
    pub active: Vec<String>,
    /// Manifest file and why it was refused (the previous version, if any,
    /// stays active).
    pub refused: Vec<(String, String)>,
}

pub struct RuleHost {
    engine: Engine,
    bare_linker: Linker<RuleState>,
    wasi_linker: Linker<RuleState>,
    /// What a plugin gets unless its manifest asks otherwise.
    limits: RuleLimits,
    /// The most a manifest may ask for.
    ceilings: RuleLimits,
    cache_dir: PathBuf,
    plugins: Arc<RwLock<Arc<Vec<Plugin>>>>,
    ticker_stop: Arc<AtomicBool>,
    refiller: Arc<prewarm::Refiller>,
}

impl Drop for RuleHost {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        self.refiller.stop.store(true, Ordering::Relaxed);
        self.refiller.notify();
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

/// The first import outside the allowlist, if any.
pub fn forbidden_import(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .find(|name| !IMPORT_ALLOWLIST.iter().any(|allowed| name.starts_with(allowed)))
        .map(str::to_string)
}

impl RuleHost {
    /// A host whose plugins get `limits` unless their manifests ask for
    /// more, up to [`RuleLimits::ceilings`] (raised to `limits` where those
    /// are higher).
    pub fn new(limits: RuleLimits, cache_dir: PathBuf) -> anyhow::Result<RuleHost> {
        let ceilings = RuleLimits::ceilings().at_least(&limits);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES_MAX)
            .total_core_instances(POOL_CORE_INSTANCES_MAX)
            .total_memories(POOL_INSTANCES_MAX * 2)
            .total_tables(POOL_INSTANCES_MAX * 2)
            .max_memories_per_component(2)
            .max_tables_per_component(2)
            .max_core_instances_per_component(ceilings.core_instances_max)
            .max_memory_size(ceilings.memory_max_bytes)
            .table_elements(ceilings.table_elements_max)
            // Between decisions, reset only the pages a decision dirtied
            // (PAGEMAP_SCAN, Linux 6.7+; elsewhere this is off) in place,
            // instead of madvise + page faults on the next use.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(POOL_KEEP_RESIDENT_BYTES)
            .table_keep_resident(POOL_KEEP_RESIDENT_BYTES);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_reservation(crate::wasm_cache::MEMORY_RESERVATION_BYTES)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        crate::wasm_cache::apply_profiler(&mut config)?;
        let engine = Engine::new(&config)?;
        let bare_linker = Linker::new(&engine);
        let mut wasi_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi_linker)?;

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

        let plugins = Arc::new(RwLock::new(Arc::new(Vec::new())));
        let refiller = Arc::new(prewarm::Refiller {
            plugins: plugins.clone(),
            wanted: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            used: Mutex::new(Vec::new()),
        });
        let (refill_engine, shared) = (engine.clone(), refiller.clone());
        std::thread::Builder::new()
            .name("nixo-rule-prewarm".into())
            .spawn(move || {
                shared.run(
                    |plugin| make_warm_fraud(&refill_engine, plugin),
                    |plugin| make_warm_payout(&refill_engine, plugin),
                )
            })
            .context("starting the rule pre-warming thread")?;

        Ok(RuleHost {
            engine,
            bare_linker,
            wasi_linker,
            limits,
            ceilings,
            cache_dir,
            plugins,
            ticker_stop,
            refiller,
        })
    }

    fn new_store(&self, limits: &RuleLimits, uses_wasi: bool) -> anyhow::Result<Store<RuleState>> {
        new_store(&self.engine, limits, uses_wasi)
    }

    /// Compiles (or loads from cache) a plugin, checks its imports against
    /// the allowlist, links it, checks it exports the world its manifest
    /// names, and asks it its name.
    pub fn load_plugin(&self, manifest: Manifest, bytes: &[u8]) -> anyhow::Result<Plugin> {
        let label = format!("{}@{}", manifest.name, manifest.version);
        let limits = manifest.limits(&self.limits, &self.ceilings);
        anyhow::ensure!(
            bytes.len() as u64 <= limits.artefact_len_max_bytes,
            "plugin {label} is {} bytes; its limit is {} (raise `artefact_len_max_bytes` in its manifest's \
             [limits], at most {})",
            bytes.len(),
            limits.artefact_len_max_bytes,
            self.ceilings.artefact_len_max_bytes
        );
        let core_instances =
            core_instances(bytes).with_context(|| format!("plugin {label} is not a valid component"))?;
        anyhow::ensure!(
            core_instances <= limits.core_instances_max,
            "plugin {label} creates {core_instances} core module instances; its limit is {} \
             (raise `core_instances_max` in its manifest's [limits], at most {})",
            limits.core_instances_max,
            self.ceilings.core_instances_max
        );
        let component: Component = wasm_cache::load_component(&self.engine, bytes, &self.cache_dir)
            .with_context(|| format!("plugin {label} is not a valid component"))?;
        if let Some(import) = forbidden_import(&self.engine, &component) {
            anyhow::bail!("plugin {label} imports `{import}`, which rules may not use (no files, sockets or HTTP)");
        }
        let uses_wasi = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        let linker = if uses_wasi {
            &self.wasi_linker
        } else {
            &self.bare_linker
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {label} cannot be linked"))?;
        // The first instance of a plugin maps its memory image and faults
        // its heap in (tens of ms for a language runtime): a load, not a
        // decision, so it runs under the load deadline.
        let mut store = self.new_store(&limits, uses_wasi)?;
        store.set_epoch_deadline(PLUGIN_LOAD_DEADLINE_MS.div_ceil(EPOCH_TICK_MS));
        let sha256 = wasm_cache::sha256_hex(bytes);
        let world_error = |world: &str| format!("plugin {label} does not export the nixo:rules/{world} world");
        let name_error = || format!("plugin {label} failed to report its name");
        let (plugin, display_name) = match manifest.kind {
            manifest::PluginKind::Fraud => {
                let pre = FraudRulePre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| world_error("fraud-rule"))?;
                let instance = pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
                let name = instance
                    .nixo_rules_fraud_check()
                    .call_name(&mut store)
                    .map_err(anyhow::Error::from);
                let name = name.with_context(name_error)?;
                let rule = LoadedRule {
                    display_name: name.clone(),
                    sha256,
                    manifest,
                    limits,
                    uses_wasi,
                    pre,
                    warm: Default::default(),
                };
                (Plugin::Fraud(Arc::new(rule)), name)
            }
            manifest::PluginKind::Payout => {
                let pre = PayoutRulePre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| world_error("payout-rule"))?;
                let instance = pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
                let name = instance
                    .nixo_rules_payout_check()
                    .call_name(&mut store)
                    .map_err(anyhow::Error::from);
                let name = name.with_context(name_error)?;
                let rule = LoadedRule {
                    display_name: name.clone(),
                    sha256,
                    manifest,
                    limits,
                    uses_wasi,
                    pre,
                    warm: Default::default(),
                };
                (Plugin::Payout(Arc::new(rule)), name)
            }
        };
        anyhow::ensure!(
            !display_name.is_empty()
                && display_name.len() <= 64
                && display_name.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "plugin {label} reports an unusable name"
        );
        Ok(plugin)
    }

    /// Loads every plugin described by a `*.toml` manifest in `dir` (in
    /// file-name order) and makes them the active set, atomically. A plugin
    /// that fails to load is refused; its previous version, if any, stays.
    /// In-flight decisions finish on the set they started with.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<LoadReport> {
        let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading plugin directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        manifests.sort();
        let previous = self.plugins.read().expect("rule set lock").clone();
        let previous: BTreeMap<&str, &Plugin> = previous.iter().map(|p| (p.manifest().name.as_str(), p)).collect();
        let mut report = LoadReport::default();
        let mut active = Vec::with_capacity(manifests.len());
        for path in &manifests {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let loaded = Manifest::load(path, &self.limits, &self.ceilings).and_then(|(manifest, bytes)| {
                match previous.get(manifest.name.as_str()) {
                    // Unchanged: keep the instance-ready plugin as it is.
                    Some(old) if old.sha256().eq_ignore_ascii_case(&manifest.sha256) && *old.manifest() == manifest => {
                        Ok((*old).clone())
                    }
                    _ => self.load_plugin(manifest, &bytes),
                }
            });
            match loaded {
                Ok(plugin) => active.push(plugin),
                Err(err) => {
                    let why = format!("{err:#}");
                    tracing::warn!(manifest = %file, error = %why, "plugin refused");
                    let stem = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if let Some(old) = previous.values().find(|p| p.manifest().name == stem) {
                        active.push((*old).clone());
                    }
                    let sha256 = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|text| Manifest::parse(&text).ok())
                        .map(|m| m.sha256)
                        .unwrap_or_default();
                    metrics::gauge!("nixo_rule_plugin_refused", "name" => stem, "sha256" => sha256).set(1.0);
                    report.refused.push((file, why));
                }
            }
        }
        report.active = active
            .iter()
            .map(|p| format!("{}@{}", p.manifest().name, p.manifest().version))
            .collect();
        // `nixo_rule_plugin_active{name, version, sha256}`: 1 while serving.
        let gauge = |p: &Plugin| {
            let m = p.manifest();
            metrics::gauge!("nixo_rule_plugin_active", "name" => m.name.clone(), "version" => m.version.clone(),
                "sha256" => p.sha256().to_string())
        };
        for old in previous.values() {
            if !active
                .iter()
                .any(|p| p.sha256() == old.sha256() && p.manifest() == old.manifest())
            {
                gauge(old).set(0.0);
            }
        }
        for plugin in &active {
            gauge(plugin).set(1.0);
            metrics::gauge!("nixo_rule_plugin_refused", "name" => plugin.manifest().name.clone(),
                "sha256" => plugin.sha256().to_string())
            .set(0.0);
        }
        *self.plugins.write().expect("rule set lock") = Arc::new(active);
        self.refiller.notify();
        Ok(report)
    }

    /// Runs a payout rule once with its manifest's `[config]`, or `config`.
    pub fn call_payout(
        &self,
        plugin: &PayoutPlugin,
        request: &PayoutRequest,
        config: Option<&[(String, String)]>,
    ) -> anyhow::Result<PayoutOutcome> {
        let own = plugin.manifest.config_pairs();
        // The server's calls (no config given) use a warm instance when the
        // plugin keeps them; `nixo plugin test` always a fresh one.
        let warm = if config.is_none() { plugin.take_warm() } else { None };
        let config = config.unwrap_or(&own);
        let pooled = warm.is_some();
        let (mut store, instance) = match warm.flatten() {
            Some(warm) => (warm.store, warm.instance),
            None => {
                let mut store = self.new_store(&plugin.limits, plugin.uses_wasi)?;
                let instance = plugin.pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
                (store, instance)
            }
        };
        store.set_epoch_deadline(deadline_ticks(&plugin.limits));
        let result = instance
            .nixo_rules_payout_check()
            .call_check(&mut store, request, config)
            .map_err(anyhow::Error::from);
        let fuel_used = plugin.limits.fuel_per_call_max - store.get_fuel().unwrap_or(0);
        if pooled {
            self.refiller.dispose(store);
        }
        Ok(PayoutOutcome {
            result: result?,
            fuel_used,
        })
    }

    /// Validates a payout destination with the rule for its rail. Payout
    /// rules fail closed: no rule for the rail, or a failing rule, refuses.
    pub fn check_payout(&self, request: &PayoutRequest) -> Result<Routing, Refusal> {
        let wanted = match request.rail {
            Rail::Mpesa => manifest::PayoutRail::Mpesa,
            Rail::Bank => manifest::PayoutRail::Bank,
        };
        let plugins = self.plugins.read().expect("rule set lock").clone();
        let plugin = plugins.iter().find_map(|p| match p {
            Plugin::Payout(p) if p.manifest.rail == Some(wanted) => Some(p.clone()),
            _ => None,
        });
        let refusal = |code: &str, message: String| Refusal {
            field: "destination".into(),
            code: code.into(),
            message,
        };
        let Some(plugin) = plugin else {
            return Err(refusal(
                "rail_unavailable",
                format!("no payout rule is loaded for the {wanted:?} rail"),
            ));
        };
        let started = Instant::now();
        match self.call_payout(&plugin, request, None) {
            Ok(outcome) => {
                tracing::info!(
                    plugin = %plugin.manifest.name, version = %plugin.manifest.version, sha256 = %plugin.sha256,
                    ok = outcome.result.is_ok(), fuel_used = outcome.fuel_used,
                    latency_us = started.elapsed().as_micros() as u64, "payout rule decided"
                );
                outcome.result
            }
            Err(err) => {
                tracing::warn!(
                    plugin = %plugin.manifest.name, error = %failure_kind(&err), detail = %format!("{err:#}"),
                    policy = "fail_closed", "payout rule failed"
                );
                Err(refusal(
                    "rule_failed",
                    format!("the {} rule failed: {}", plugin.display_name, failure_kind(&err)),
                ))
            }
        }
    }

    /// The server's decision: in a pre-warmed instance when the plugin
    /// keeps them and one is ready, else in a fresh one.
    fn call_fraud(&self, plugin: &FraudPlugin, tx: &Transaction) -> Called<Decision> {
        let config = plugin.manifest.config_pairs();
        match plugin.take_warm() {
            Some(Some(warm)) => {
                let mut store = warm.store;
                let called = self.decide_in(&mut store, Some(warm.instance), warm.stdio_skip, plugin, tx, &config);
                self.refiller.dispose(store);
                called
            }
            Some(None) => {
                let called = self.call_fraud_with(plugin, tx, &config);
                self.refiller.notify();
                called
            }
            None => self.call_fraud_with(plugin, tx, &config),
        }
    }

    /// A decision in a fresh store and instance.
    fn call_fraud_with(&self, plugin: &FraudPlugin, tx: &Transaction, config: &[(String, String)]) -> Called<Decision> {
        match self.new_store(&plugin.limits, plugin.uses_wasi) {
            Ok(mut store) => self.decide_in(&mut store, None, (0, 0), plugin, tx, config),
            Err(err) => Called {
                result: Err(err),
                fuel_used: 0,
                stdio: None,
            },
        }
    }

    /// One decision in `store`: in `instance` (a warm one), else in a new
    /// instance. `stdio_skip`: bytes of stdout and stderr written before
    /// this decision.
    fn decide_in(
        &self,
        store: &mut Store<RuleState>,
        instance: Option<FraudRule>,
        stdio_skip: (usize, usize),
        plugin: &FraudPlugin,
        tx: &Transaction,
        config: &[(String, String)],
    ) -> Called<Decision> {
        let result = self.call_fraud_in(store, instance, plugin, tx, config);
        let fuel_used = plugin.limits.fuel_per_call_max - store.get_fuel().unwrap_or(0);
        let stdio = store
            .data()
            .stdio
            .as_ref()
            .map(|(out, err)| captured(out, err, stdio_skip, self.limits.stdio_capture_max_bytes))
            .filter(|s| !s.is_empty());
        Called {
            result,
            fuel_used,
            stdio,
        }
    }

    fn call_fraud_in(
        &self,
        store: &mut Store<RuleState>,
        instance: Option<FraudRule>,
        plugin: &FraudPlugin,
        tx: &Transaction,
        config: &[(String, String)],
    ) -> anyhow::Result<Decision> {
        let input_len = transaction_len_bytes(tx);
        anyhow::ensure!(
            input_len <= self.limits.input_len_max_bytes,
            "input of {input_len} bytes is over the limit of {}",
            self.limits.input_len_max_bytes
        );
        let instance = match instance {
            Some(warm) => warm,
            None => plugin.pre.instantiate(&mut *store).map_err(anyhow::Error::from)?,
        };
        store.set_epoch_deadline(deadline_ticks(&plugin.limits));
        let decision = instance
            .nixo_rules_fraud_check()
            .call_check(&mut *store, tx, config)
            .map_err(anyhow::Error::from)?;
        anyhow::ensure!(
            decision.score_bp <= 10_000,
            "score {} is above 10000",
            decision.score_bp
        );
        anyhow::ensure!(
            decision.reasons.len() <= self.limits.reasons_max
                && decision.reasons.iter().all(|r| r.len() <= self.limits.reason_len_max),
            "decision carries {} reasons; at most {} of at most {} bytes are allowed",
            decision.reasons.len(),
            self.limits.reasons_max,
            self.limits.reason_len_max
        );
        Ok(decision)
    }

    /// Runs every fraud rule that applies to the transaction's kind. Any
    /// deny denies, any review holds, the score is the maximum. A failing
    /// rule is handled by its failure policy: fail closed denies, fail open
    /// skips it.
    pub fn check_fraud(&self, tx: &Transaction) -> Verdicts {
        let all = self.plugins.read().expect("rule set lock").clone();
        let plugins: Vec<&Arc<FraudPlugin>> = all
            .iter()
            .filter_map(|p| match p {
                Plugin::Fraud(f) => Some(f),
                Plugin::Payout(_) => None,
            })
            .collect();
        let mut out = Verdicts {
            verdict: Verdict::Allow,
            score_bp: 0,
            rules_applied: Vec::with_capacity(plugins.len()),
            reasons: Vec::new(),
            decisions: Vec::with_capacity(plugins.len()),
            review_expiry: manifest::ReviewExpiry::Void,
        };
        let mut reviewers = 0usize;
        for plugin in plugins.into_iter().filter(|p| p.manifest.applies_to(tx.kind)) {
            let started = Instant::now();
            let mut record = DecisionRecord {
                decision_id: decision_id(),
                plugin_name: plugin.manifest.name.clone(),
                plugin_version: plugin.manifest.version.clone(),
                plugin_sha256: plugin.sha256.clone(),
                output: None,
                failure: None,
                policy: None,
                fuel_used: 0,
                latency_us: 0,
                stdio: None,
            };
            let called = self.call_fraud(plugin, tx);
            record.latency_us = started.elapsed().as_micros() as u64;
            record.fuel_used = called.fuel_used;
            record.stdio = called.stdio;
            let fuel_used = called.fuel_used;
            let decision = match called.result {
                Ok(decision) => {
                    record.output = Some(serde_json::json!({
                        "verdict": verdict_label(decision.verdict).to_ascii_lowercase(),
                        "score_bp": decision.score_bp,
                        "reasons": decision.reasons,
                    }));
                    // Every decision is kept in the decision log; the
                    // line is for debugging a rule.
                    tracing::debug!(
                        decision_id = %record.decision_id,
                        plugin = %plugin.manifest.name, version = %plugin.manifest.version, sha256 = %plugin.sha256,
                        verdict = verdict_label(decision.verdict), score_bp = decision.score_bp, fuel_used,
                        latency_us = started.elapsed().as_micros() as u64, "fraud rule decided"
                    );
                    decision
                }
                Err(err) => {
                    let policy = plugin.manifest.failure_policy;
                    tracing::warn!(
                        decision_id = %record.decision_id,
                        plugin = %plugin.manifest.name, version = %plugin.manifest.version, sha256 = %plugin.sha256,
                        error = %failure_kind(&err), detail = %format!("{err:#}"), ?policy,
                        latency_us = started.elapsed().as_micros() as u64, "fraud rule failed"
                    );
                    record.failure = Some(failure_kind(&err));
                    record.policy = Some(match policy {
                        FailurePolicy::FailOpen => "fail_open",
                        FailurePolicy::FailClosed => "fail_closed",
                    });
                    out.decisions.push(record.clone());
                    match policy {
                        FailurePolicy::FailOpen => {
                            out.rules_applied.push(format!("{}: SKIPPED", plugin.display_name));
                            continue;
                        }
                        FailurePolicy::FailClosed => Decision {
                            verdict: Verdict::Deny,
                            score_bp: 10_000,
                            reasons: vec![format!("rule_failed:{}", failure_kind(&err))],
                        },
                    }
                }
            };
            if record.failure.is_none() {
                out.decisions.push(record);
            }
            if decision.verdict == Verdict::Review {
                let policy = plugin.manifest.review_expiry;
                out.review_expiry = if reviewers == 0 || out.review_expiry == policy {
                    policy
                } else {
                    manifest::ReviewExpiry::Void
                };
                reviewers += 1;
            }
            if verdict_rank(decision.verdict) > verdict_rank(out.verdict) {
                out.verdict = decision.verdict;
            }
            out.score_bp = out.score_bp.max(decision.score_bp);
            out.rules_applied
                .push(format!("{}: {}", plugin.display_name, verdict_label(decision.verdict)));
            out.reasons.extend(decision.reasons);
        }
        out
    }

    /// Copies this host's compiled form of `bytes` into `cache_dir` (a
    /// server's compile cache), so a server with the same engine settings
    /// loads it without compiling.
    pub fn export_compiled(&self, bytes: &[u8], cache_dir: &Path) -> anyhow::Result<bool> {
        wasm_cache::copy_entry(&self.engine, bytes, &self.cache_dir, cache_dir)
    }

    /// The active plugins.
    pub fn loaded(&self) -> Vec<Plugin> {
        self.plugins.read().expect("rule set lock").to_vec()
    }

    /// `name@version` of the active plugins.
    pub fn active_names(&self) -> Vec<String> {
        self.plugins
            .read()
            .expect("rule set lock")
            .iter()
            .map(|p| format!("{}@{}", p.manifest().name, p.manifest().version))
            .collect()
    }

    /// The imports of an artefact, as names (compiled through this host's
    /// cache: a second look costs a load, not a compile).
    pub fn imports(&self, bytes: &[u8]) -> anyhow::Result<Vec<String>> {
        let component = wasm_cache::load_component(&self.engine, bytes, &self.cache_dir)?;
        Ok(component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect())
    }

    /// One decision of a fraud rule, timed in two phases: a fresh store and
    /// instance, then the call (for benchmarks).
    pub fn time_fraud_phases(&self, plugin: &FraudPlugin, tx: &Transaction) -> anyhow::Result<(Duration, Duration)> {
        let started = Instant::now();
        let mut store = self.new_store(&plugin.limits, plugin.uses_wasi)?;
        let instance = plugin.pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
        let instantiated = started.elapsed();
        let config = plugin.manifest.config_pairs();
        instance
            .nixo_rules_fraud_check()
            .call_check(&mut store, tx, &config)
            .map_err(anyhow::Error::from)?;
        let called = started.elapsed() - instantiated;
        drop(store);
        Ok((instantiated, called))
    }

    /// One decision as the server makes it, in a pre-warmed instance
    /// (for benchmarks: the caller waits until one is ready): its time and
    /// fuel. Errs if no instance was ready.
    pub fn time_fraud_prewarmed(&self, plugin: &FraudPlugin, tx: &Transaction) -> anyhow::Result<(Duration, u64)> {
        let (hits, _) = plugin.warm.hits_and_misses();
        let started = Instant::now();
        let called = self.call_fraud(plugin, tx);
        let elapsed = started.elapsed();
        called.result?;
        anyhow::ensure!(
            plugin.warm.hits_and_misses().0 == hits + 1,
            "the decision found no warm instance"
        );
        Ok((elapsed, called.fuel_used))
    }

    /// A decision in an instance warmed on this thread just before (for
    /// benchmarks: the pre-warmed path without a second thread).
    pub fn time_fraud_warmed_here(&self, plugin: &FraudPlugin, tx: &Transaction) -> anyhow::Result<(Duration, u64)> {
        let warm = make_warm_fraud(&self.engine, plugin)?;
        let mut store = warm.store;
        let config = plugin.manifest.config_pairs();
        let started = Instant::now();
        let called = self.decide_in(&mut store, Some(warm.instance), warm.stdio_skip, plugin, tx, &config);
        let elapsed = started.elapsed();
        called.result?;
        Ok((elapsed, called.fuel_used))
    }

    /// `calls` decisions of a fraud rule in one instance: the time and fuel
    /// of each (for benchmarks: what a fresh instance per decision costs).
    pub fn time_fraud_in_one_instance(
        &self,
        plugin: &FraudPlugin,
        tx: &Transaction,
        calls: usize,
    ) -> anyhow::Result<Vec<(Duration, u64)>> {
        let mut store = self.new_store(&plugin.limits, plugin.uses_wasi)?;
        store.set_epoch_deadline(u64::MAX / 2);
        let config = plugin.manifest.config_pairs();
        let instance = plugin.pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
        (0..calls)
            .map(|_| {
                let fuel = store.get_fuel().unwrap_or(0);
                let started = Instant::now();
                instance
                    .nixo_rules_fraud_check()
                    .call_check(&mut store, tx, &config)
                    .map_err(anyhow::Error::from)?;
                Ok((started.elapsed(), fuel - store.get_fuel().unwrap_or(0)))
            })
            .collect()
    }

    /// Runs one fraud rule once in a fresh instance (for `nixo plugin
    /// test`): the decision and the fuel it used.
    pub fn call_fraud_once(
        &self,
        plugin: &FraudPlugin,
        tx: &Transaction,
        config: Option<&[(String, String)]>,
    ) -> anyhow::Result<(Decision, u64)> {
        // Always a fresh instance: the fuel reported is a decision's whole cost.
        let own = plugin.manifest.config_pairs();
        let called = self.call_fraud_with(plugin, tx, config.unwrap_or(&own));
        called.result.map(|d| (d, called.fuel_used))
    }
}

/// A store for one instance of a plugin: its memory and table caps, fuel,
/// deadline, and (for WASI plugins) bounded stdout/stderr capture.
fn new_store(engine: &Engine, limits: &RuleLimits, uses_wasi: bool) -> anyhow::Result<Store<RuleState>> {
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_max_bytes)
        .table_elements(limits.table_elements_max)
        .trap_on_grow_failure(true)
        .build();
    let stdio = uses_wasi.then(|| {
        let capture = || MemoryOutputPipe::new(STDIO_BUFFER_MAX_BYTES);
        (capture(), capture())
    });
    let wasi = stdio
        .as_ref()
        .map(|(out, err)| WasiCtx::builder().stdout(out.clone()).stderr(err.clone()).build());
    let state = RuleState {
        limits: store_limits,
        stdio,
        wasi,
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.set_fuel(limits.fuel_per_call_max)?;
    store.set_epoch_deadline(deadline_ticks(limits));
    Ok(store)
}

/// A warm instance of a fraud rule: instantiated, then one warm-up
/// decision, then the fuel refilled (the deadline is set per decision).
fn make_warm_fraud(engine: &Engine, plugin: &FraudPlugin) -> anyhow::Result<prewarm::Warm<FraudRule>> {
    let mut store = new_store(engine, &plugin.limits, plugin.uses_wasi)?;
    store.set_epoch_deadline(PLUGIN_LOAD_DEADLINE_MS.div_ceil(EPOCH_TICK_MS));
    let instance = plugin.pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
    store.set_epoch_deadline(deadline_ticks(&plugin.limits));
    let tx = prewarm::warm_up_transaction(plugin.manifest.first_kind());
    instance
        .nixo_rules_fraud_check()
        .call_check(&mut store, &tx, &plugin.manifest.config_pairs())
        .map_err(anyhow::Error::from)?;
    store.set_fuel(plugin.limits.fuel_per_call_max)?;
    let stdio_skip = store
        .data()
        .stdio
        .as_ref()
        .map_or((0, 0), |(out, err)| (out.contents().len(), err.contents().len()));
    Ok(prewarm::Warm {
        store,
        instance,
        stdio_skip,
    })
}

/// A warm instance of a payout rule: as [`make_warm_fraud`], with a
/// synthetic payout on the rule's rail (a refusal is an answer, not a
/// failure).
fn make_warm_payout(engine: &Engine, plugin: &PayoutPlugin) -> anyhow::Result<prewarm::Warm<PayoutRule>> {
    let mut store = new_store(engine, &plugin.limits, plugin.uses_wasi)?;
    store.set_epoch_deadline(PLUGIN_LOAD_DEADLINE_MS.div_ceil(EPOCH_TICK_MS));
    let instance = plugin.pre.instantiate(&mut store).map_err(anyhow::Error::from)?;
    store.set_epoch_deadline(deadline_ticks(&plugin.limits));
    let rail = match plugin.manifest.rail {
        Some(manifest::PayoutRail::Bank) => Rail::Bank,
        _ => Rail::Mpesa,
    };
    let _ = instance
        .nixo_rules_payout_check()
        .call_check(
            &mut store,
            &prewarm::warm_up_payout(rail),
            &plugin.manifest.config_pairs(),
        )
        .map_err(anyhow::Error::from)?;
    store.set_fuel(plugin.limits.fuel_per_call_max)?;
    Ok(prewarm::Warm {
        store,
        instance,
        stdio_skip: (0, 0),
    })
}

/// The result of one plugin call and what it cost.
struct Called<T> {
    result: anyhow::Result<T>,
    fuel_used: u64,
    /// What a WASI plugin wrote (bounded), if anything.
    stdio: Option<String>,
}

/// The first `max_bytes` of stdout, then of stderr, after the first
/// `skip` bytes of each (a warm-up's).
fn captured(out: &MemoryOutputPipe, err: &MemoryOutputPipe, skip: (usize, usize), max_bytes: usize) -> String {
    let (out, err) = (out.contents(), err.contents());
    let (out, err) = (&out[skip.0.min(out.len())..], &err[skip.1.min(err.len())..]);
    let take = |b: &[u8], n: usize| String::from_utf8_lossy(&b[..b.len().min(n)]).into_owned();
    let mut text = take(out, max_bytes);
    if !err.is_empty() {
        text.push_str(&take(err, max_bytes));
    }
    text
}

/// Bytes of the strings a transaction carries to a rule.
fn transaction_len_bytes(tx: &Transaction) -> usize {
    let velocity = tx.velocity.sum_last_hour.len() + tx.velocity.sum_last_day.len();
    let metadata: usize = tx.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    tx.amount.amount.len()
        + tx.amount.currency.len()
        + tx.source.len()
        + tx.destination.len()
        + tx.destination_country.as_ref().map_or(0, String::len)
        + velocity
        + metadata
}

/// The epoch deadline for `limits`, in ticks. Set when a store is made
/// (bounding instantiation) and again before the call (a first
/// instantiation maps the plugin's memory image, which is not the rule's
/// time).
fn deadline_ticks(limits: &RuleLimits) -> u64 {
    limits.deadline_ms.div_ceil(EPOCH_TICK_MS).max(1)
}

/// Core module instances one instance of a component creates, counted as
/// wasmtime does: every core `instantiate`, in nested components too.
pub fn core_instances(bytes: &[u8]) -> anyhow::Result<u32> {
    let mut count = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::InstanceSection(section) = payload.context("reading the component")? {
            for instance in section {
                if matches!(
                    instance.context("reading the component")?,
                    wasmparser::Instance::Instantiate { .. }
                ) {
                    count += 1;
                }
            }
        }
    }
    Ok(count)
}

/// A short, stable name for why a plugin call failed (walks the error chain:
/// a memory-limit failure is not a `wasmtime::Trap`).
pub fn failure_kind(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if let Some(trap) = cause.downcast_ref::<wasmtime::Trap>() {
            return match trap {
                wasmtime::Trap::OutOfFuel => "out_of_fuel",
                wasmtime::Trap::Interrupt => "deadline_exceeded",
                wasmtime::Trap::StackOverflow => "stack_overflow",
                wasmtime::Trap::UnreachableCodeReached => "trap",
                _ => "trap",
            };
        }
        let text = cause.to_string();
        if text.contains("memory") && (text.contains("grow") || text.contains("limit")) {
            return "memory_limit";
        }
        if text.contains("reasons") {
            return "output_too_large";
        }
        if text.contains("input of") {
            return "input_too_large";
        }
    }
    "error"
}

/// The directory's manifests and artefacts, by name, size and modification time.
pub fn dir_fingerprint(dir: &Path) -> Vec<(String, u64, Option<std::time::SystemTime>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().ok(),
            ))
        })
        .collect();
    entries.sort();
    entries
}

/// How often the plugins directory is checked for changes.
pub const RELOAD_POLL_MS: u64 = 500;

/// Reloads the plugins whenever the directory changes, until `shutdown`.
pub async fn watch_dir(
    host: Arc<RuleHost>,
    dir: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut seen = dir_fingerprint(&dir);
    let mut tick = tokio::time::interval(Duration::from_millis(RELOAD_POLL_MS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return Ok(()),
        }
        let now = dir_fingerprint(&dir);
        if now == seen {
            continue;
        }
        seen = now;
        let (host, dir) = (host.clone(), dir.clone());
        match tokio::task::spawn_blocking(move || host.load_dir(&dir)).await? {
            Ok(report) => tracing::info!(active = ?report.active, refused = ?report.refused, "plugins reloaded"),
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "plugin reload failed; the previous set stays"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decision_ids_made_later_sort_later() {
        let first = super::decision_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = super::decision_id();
        assert!(first.starts_with("dec_") && first.len() == 24, "{first}");
        assert!(second[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "{second}");
        assert!(first < second, "{first} then {second}");
        assert_ne!(super::decision_id()[11..], super::decision_id()[11..]);
    }
}
