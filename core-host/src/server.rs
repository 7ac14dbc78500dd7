//! `nixo serve`: wires the data directory, ledger, rules, core API and edge
//! together, and bootstraps a fresh installation.

use crate::api::{self, AppState};
use crate::auth::{self, KeyAccess, KeyHasher};
use crate::clock::Clock;
use crate::db::Db;
use crate::edge::{self, EdgeConfig, Gateway, KvStores};
use crate::jobs::runner::{self, Registry, RunnerConfig};
use crate::ledger::{self, AccountKind, Environment, Ledger, Leg, Movement, TxStatus};
use crate::money::Currency;
use crate::rules::{RuleHost, RuleLimits};
use crate::services::Services;
use crate::{accounts, artefacts};
use anyhow::Context;
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Sandbox wallets created on first start, as the API documents use them.
pub const SANDBOX_WALLETS: [i64; 2] = [101, 102];
/// Sandbox funds credited to each of those wallets, in KES minor units.
pub const SANDBOX_FUNDS_MINOR: i64 = 10_000_000; // 100,000.00 KES
/// The sandbox USD wallet (the Nixo document's balance example: USD 12,500.50).
pub const SANDBOX_USD_WALLET: i64 = 103;
pub const SANDBOX_USD_FUNDS_MINOR: i64 = 1_250_050;
/// Environment variable that overrides the gateway signing secret (to share
/// it with a gateway deployed on Spin).
pub const ENV_GATEWAY_SECRET: &str = "NIXO_GATEWAY_SIGNING_SECRET";

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// Public address of the gateway.
    pub listen: SocketAddr,
    /// Optional address exposing the core directly (for a gateway on Spin).
    pub core_listen: Option<SocketAddr>,
    pub rule_limits: RuleLimits,
    /// `sqlite://…` or `postgres://…`; `<data_dir>/nixo.db` when `None`.
    pub database_url: Option<String>,
    /// Compiled-component cache; `<data_dir>/cache` when `None`.
    pub cache_dir: Option<PathBuf>,
    /// The gateway's key/value store: `redis://…` (shared by replicas), or in
    /// memory when `None`.
    pub kv_url: Option<String>,
    /// Gateway variables besides the core URL and secret, as Spin would pass
    /// them: `environments`, `rate_limit_sandbox`, `rate_limit_live`.
    pub edge_variables: BTreeMap<String, String>,
    /// How background jobs run (worker id, concurrency, lease).
    pub jobs: RunnerConfig,
    /// The clock every service reads (tests move it).
    pub clock: Clock,
    /// The payout rails: sandboxes in-process, or real endpoints.
    pub rails: crate::rail_wiring::RailsConfig,
    /// How webhooks are delivered.
    pub webhooks: crate::webhooks::delivery::WebhookConfig,
    /// Where KYC checks go.
    pub kyc: crate::rail_wiring::KycConfig,
    /// Transaction limits by KYC level.
    pub limits: crate::limits::Limits,
}

impl ServeConfig {
    /// Defaults for a local, throw-away server: an ephemeral loopback port,
    /// SQLite in `data_dir`, the default rule limits, no exposed core.
    pub fn ephemeral(data_dir: &Path) -> ServeConfig {
        ServeConfig {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            core_listen: None,
            rule_limits: RuleLimits::default(),
            database_url: None,
            cache_dir: None,
            kv_url: None,
            edge_variables: BTreeMap::new(),
            jobs: RunnerConfig::default(),
            clock: Clock::system(),
            rails: crate::rail_wiring::RailsConfig::default(),
            webhooks: crate::webhooks::delivery::WebhookConfig::default(),
            kyc: crate::rail_wiring::KycConfig::default(),
            limits: crate::limits::Limits::default(),
        }
    }
}

/// Secrets kept in `<data>/secrets.json` (mode 0600), created on first start.
#[derive(serde::Serialize, serde::Deserialize)]
struct Secrets {
    api_key_pepper: String,
    gateway_signing_secret: String,
}

fn load_or_create_secrets(path: &Path) -> anyhow::Result<Secrets> {
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let mut rng = rand::rng();
    let secrets = Secrets {
        api_key_pepper: hex::encode(rng.random::<[u8; 32]>()),
        gateway_signing_secret: hex::encode(rng.random::<[u8; 32]>()),
    };
    let partial = path.with_extension("partial");
    std::fs::write(
        &partial,
        serde_json::to_vec_pretty(&serde_json::json!({
            "api_key_pepper": secrets.api_key_pepper,
            "gateway_signing_secret": secrets.gateway_signing_secret,
        }))?,
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&partial, path)?;
    Ok(secrets)
}

/// The API-key hasher of a data directory (its pepper is created with the
/// directory's secrets on first use).
pub fn key_hasher(data_dir: &Path) -> anyhow::Result<KeyHasher> {
    std::fs::create_dir_all(data_dir)?;
    let secrets = load_or_create_secrets(&data_dir.join("secrets.json"))?;
    let pepper: [u8; 32] = hex::decode(&secrets.api_key_pepper)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("secrets.json: api_key_pepper must be 64 hex digits")?;
    Ok(KeyHasher::new(pepper))
}

/// What a first start created.
pub struct Bootstrap {
    pub account_id: String,
    pub sandbox_key: String,
}

/// Creates the sandbox account, its funded KES wallets 101 and 102, its
/// funded USD wallet 103 and a key.
async fn bootstrap(ledger: &Ledger, hasher: &KeyHasher) -> anyhow::Result<Bootstrap> {
    let kes = Currency::from_code("KES").expect("KES is ISO 4217");
    let env = Environment::Sandbox;
    // A platform, verified at onboarding: level 3 (enhanced).
    let account_id = accounts::create(&ledger.db, env, "Sandbox account", 3).await?;
    let usd = Currency::from_code("USD").expect("USD is ISO 4217");
    let wallets = SANDBOX_WALLETS
        .map(|w| (w, kes, SANDBOX_FUNDS_MINOR))
        .into_iter()
        .chain([(SANDBOX_USD_WALLET, usd, SANDBOX_USD_FUNDS_MINOR)]);
    for (wallet, currency, funds) in wallets {
        let funding = ledger.system_account(env, AccountKind::Funding, currency).await?;
        ledger
            .create_account(
                Some(wallet),
                Some(&account_id),
                env,
                AccountKind::Wallet,
                currency,
                ledger::FLAG_NO_OVERDRAFT,
            )
            .await?;
        ledger
            .record(Movement {
                idempotency_id: Some(format!("bootstrap:fund:{wallet}")),
                environment: env,
                account_id: account_id.clone(),
                kind: "funding",
                status: TxStatus::Settled,
                amount_minor: funds,
                currency,
                fx: None,
                from_wallet: None,
                to_wallet: Some(wallet),
                risk_score_bp: None,
                rules_applied: Vec::new(),
                metadata_json: r#"{"note":"sandbox funds"}"#.to_string(),
                error_code: None,
                legs: vec![Leg {
                    debit: funding,
                    credit: wallet,
                    amount_minor: funds,
                    currency,
                    pending_timeout_at_ms: None,
                }],
                effects: Vec::new(),
                now_ms: chrono::Utc::now().timestamp_millis(),
            })
            .await?;
    }
    let key = auth::create_key(&ledger.db, hasher, &account_id, env, &KeyAccess::default()).await?;
    Ok(Bootstrap {
        account_id,
        sandbox_key: key.key,
    })
}

/// Writes the bundled plugins, with their manifests, into a new plugins
/// directory. An existing directory is the operator's: left as it is.
fn install_bundled_plugins(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    use crate::rules::manifest::Manifest;
    let version = env!("CARGO_PKG_VERSION");
    let bundled: [(&str, &[u8], Option<&str>); 3] = [
        ("fraud-check", artefacts::FRAUD_CHECK_WASM, None),
        ("iban", artefacts::IBAN_WASM, Some("bank")),
        ("mpesa", artefacts::MPESA_WASM, Some("mpesa")),
    ];
    for (name, bytes, rail) in bundled {
        let artefact = format!("{name}.wasm");
        let sha256 = crate::wasm_cache::sha256_hex(bytes);
        std::fs::write(dir.join(&artefact), bytes)?;
        let manifest = match rail {
            None => Manifest::render(name, version, &artefact, &sha256, "fail_closed"),
            Some(rail) => Manifest::render_payout(name, version, &artefact, &sha256, rail),
        };
        std::fs::write(dir.join(format!("{name}.toml")), manifest)?;
    }
    Ok(())
}

/// A running server.
pub struct Running {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// Where the core listens, if exposed.
    pub core_addr: Option<SocketAddr>,
    /// Set on first start only: the sandbox key, shown once.
    pub bootstrap: Option<Bootstrap>,
    pub fraud_rules: Vec<String>,
    pub clock: Clock,
    ledger: Ledger,
    decisions: crate::rules::decision_log::DecisionLog,
    idempotency: crate::idempotency::Store,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    /// Held while serving a SQLite database (released with the process).
    _db_lock: Option<std::fs::File>,
}

impl Running {
    /// The ledger (and through it the database) this server runs on.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Waits until every rule decision made so far is in the decision log.
    pub async fn flush_decisions(&self) {
        self.decisions.flush().await;
    }

    /// The idempotency records this server keeps.
    pub fn idempotency(&self) -> &crate::idempotency::Store {
        &self.idempotency
    }

    /// Stops accepting, finishes in-flight requests, closes the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await??;
        }
        self.decisions.flush().await;
        // Answers not written by then are lost like a crash would lose them:
        // their retries run again into the ledger's own check.
        let flushed = tokio::time::timeout(
            std::time::Duration::from_millis(SHUTDOWN_FLUSH_MAX_MS),
            self.idempotency.flush(),
        );
        if flushed.await.is_err() {
            tracing::warn!("idempotent answers not all written at shutdown");
        }
        self.ledger.close().await;
        Ok(())
    }
}

pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let secrets = load_or_create_secrets(&config.data_dir.join("secrets.json"))?;
    let pepper: [u8; 32] = hex::decode(&secrets.api_key_pepper)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("secrets.json: api_key_pepper must be 64 hex digits")?;
    let gateway_secret = std::env::var(ENV_GATEWAY_SECRET).unwrap_or(secrets.gateway_signing_secret);
    anyhow::ensure!(
        gateway_secret.len() >= nixo_api::signing::SECRET_LEN_MIN_BYTES,
        "the gateway signing secret must be at least {} bytes",
        nixo_api::signing::SECRET_LEN_MIN_BYTES
    );
    let hasher = KeyHasher::new(pepper);

    let database_url = match &config.database_url {
        Some(url) => url.clone(),
        None => crate::db::sqlite_url(&config.data_dir.join("nixo.db")),
    };
    // A SQLite database is served by one process: the idempotency front
    // (and the single ledger writer) rely on it.
    let db_lock = match crate::db::sqlite_path(&database_url) {
        Some(path) => Some(lock_database(&path)?),
        None => None,
    };
    let db = Db::open(&database_url).await?;
    let ledger = Ledger::new(db.clone()).await?;
    let idempotency = crate::idempotency::Store::open(&ledger, config.clock.now_ms()).await?;
    let bootstrap = if accounts::any(&db).await? {
        None
    } else {
        Some(bootstrap(&ledger, &hasher).await?)
    };

    let cache_dir = config
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("cache"));
    let plugins_dir = config.data_dir.join("plugins");
    install_bundled_plugins(&plugins_dir)?;
    // The recorder first: loading plugins reports them in `/metrics`.
    crate::metrics::handle();
    let rules = Arc::new(RuleHost::new(config.rule_limits, cache_dir.clone())?);
    let loaded = rules.load_dir(&plugins_dir)?;
    for (file, why) in &loaded.refused {
        tracing::warn!(manifest = %file, error = %why, "plugin refused at start");
    }
    let fraud_rules = loaded.active;

    let rules_host = rules.clone();
    let decisions = crate::rules::decision_log::DecisionLog::spawn(ledger.clone());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (rails, rail_tasks) = crate::rail_wiring::start(
        &config.rails,
        &config.data_dir,
        &gateway_secret,
        addr,
        shutdown_rx.clone(),
    )
    .await?;
    let (kyc, kyc_tasks) = crate::rail_wiring::start_kyc(&config.kyc, &config.data_dir, shutdown_rx.clone()).await?;
    let waker = runner::Waker::default();
    let services = Services {
        ledger: ledger.clone(),
        rules,
        decisions: decisions.clone(),
        clock: config.clock.clone(),
        rails,
        jobs: waker.clone(),
        webhooks: Arc::new(crate::webhooks::delivery::Delivery::new(
            config.webhooks.clone(),
            crate::webhooks::Sealer::from_pepper(&pepper),
        )),
        limits: Arc::new(config.limits.clone()),
        kyc,
        personal: crate::webhooks::Sealer::for_purpose(&pepper, crate::services::accounts::ID_NUMBER_SEALING),
    };
    let state = AppState::new(api::Shared {
        services: services.clone(),
        idempotency: idempotency.clone(),
        hasher,
        gateway_secret: Arc::new(gateway_secret.clone().into_bytes()),
    });
    let core = api::router(state);
    let kv = KvStores::single("default", config.kv_url.as_deref()).await?;
    let gateway = Gateway::new(
        artefacts::GATEWAY_WASM,
        &cache_dir,
        core.clone(),
        EdgeConfig {
            signing_secret: gateway_secret,
            variables: config.edge_variables.clone(),
            kv,
        },
    )?;

    let mut tasks = vec![
        tokio::spawn(edge::serve(gateway, listener, shutdown_rx.clone())),
        tokio::spawn(expire_holds(ledger.clone(), shutdown_rx.clone())),
        tokio::spawn(crate::rules::watch_dir(rules_host, plugins_dir, shutdown_rx.clone())),
        runner::spawn(
            ledger.clone(),
            job_registry(&services, &idempotency),
            config.clock.clone(),
            RunnerConfig {
                // The serve lock makes this process the database's only worker.
                sole_worker: db_lock.is_some(),
                ..config.jobs.clone()
            },
            waker,
            shutdown_rx.clone(),
        ),
    ];
    tasks.extend(rail_tasks);
    tasks.extend(kyc_tasks);
    let mut core_addr = None;
    if let Some(core_listen) = config.core_listen {
        let listener = TcpListener::bind(core_listen)
            .await
            .with_context(|| format!("binding {core_listen}"))?;
        core_addr = Some(listener.local_addr()?);
        let placement = edge::threads::Placement::Accepting;
        tasks.push(tokio::spawn(edge::threads::serve(
            listener,
            shutdown_rx.clone(),
            placement,
            move |_peer| {
                let core = core.clone();
                hyper::service::service_fn(move |request| tower::ServiceExt::oneshot(core.clone(), request))
            },
        )));
    }
    Ok(Running {
        addr,
        core_addr,
        bootstrap,
        fraud_rules,
        clock: config.clock,
        ledger,
        decisions,
        idempotency,
        shutdown,
        tasks,
        _db_lock: db_lock,
    })
}

/// Takes the serve lock of a SQLite database (`<file>.serve.lock`), or
/// says which process kind holds it.
fn lock_database(path: &Path) -> anyhow::Result<std::fs::File> {
    let lock_path = {
        let mut name = path.as_os_str().to_owned();
        name.push(".serve.lock");
        PathBuf::from(name)
    };
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another nixo serve is serving {}; a SQLite database is served by one process (use PostgreSQL for replicas)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("locking {}", lock_path.display())),
    }
}

/// How long a stop waits for idempotent answers to be written.
pub const SHUTDOWN_FLUSH_MAX_MS: u64 = 10_000;

/// How long finished jobs stay visible before they are deleted.
pub const JOB_RETENTION_MS: i64 = 7 * 86_400_000;
/// The job that deletes them, and how often it runs.
pub const JOB_PURGE_JOB: &str = "jobs.purge";
pub const JOB_PURGE_INTERVAL_MS: i64 = 3_600_000;

/// The job that deletes velocity buckets no window reads, and how often.
pub const VELOCITY_PURGE_JOB: &str = "ledger.velocity_purge";
pub const VELOCITY_PURGE_INTERVAL_MS: i64 = 3_600_000;

/// The kinds of background job this server runs.
pub fn job_registry(services: &Services, idempotency: &crate::idempotency::Store) -> Registry {
    let mut registry = Registry::default();
    let (store, clock) = (idempotency.clone(), services.clock.clone());
    registry
        .register(crate::idempotency::PURGE_JOB, move |_job| {
            let (store, clock) = (store.clone(), clock.clone());
            async move {
                let purged = store.purge(clock.now_ms()).await?;
                if purged > 0 {
                    tracing::info!(purged, "purged idempotency records past retention");
                }
                Ok(())
            }
        })
        .every(crate::idempotency::PURGE_JOB, crate::idempotency::PURGE_INTERVAL_MS);
    let (ledger, clock) = (services.ledger.clone(), services.clock.clone());
    registry
        .register(JOB_PURGE_JOB, move |_job| {
            let (ledger, clock) = (ledger.clone(), clock.clone());
            async move {
                crate::jobs::purge_finished(&ledger, clock.now_ms() - JOB_RETENTION_MS).await?;
                Ok(())
            }
        })
        .every(JOB_PURGE_JOB, JOB_PURGE_INTERVAL_MS);
    let (ledger, clock) = (services.ledger.clone(), services.clock.clone());
    registry
        .register(VELOCITY_PURGE_JOB, move |_job| {
            let (ledger, clock) = (ledger.clone(), clock.clone());
            async move {
                ledger.purge_velocity(clock.now_ms()).await?;
                Ok(())
            }
        })
        .every(VELOCITY_PURGE_JOB, VELOCITY_PURGE_INTERVAL_MS);
    register_payout_jobs(&mut registry, services);
    register_webhook_jobs(&mut registry, services);
    let s = services.clone();
    registry.register(
        crate::services::kyc::CHECK_JOB,
        move |job: crate::jobs::runner::ClaimedJob| {
            let s = s.clone();
            async move { crate::services::kyc::run_check(&s, &job).await }
        },
    );
    registry
}

/// Webhook jobs: fan events out to endpoints, deliver, purge old events.
fn register_webhook_jobs(registry: &mut Registry, services: &Services) {
    use crate::services::webhooks::{EVENT_PURGE_INTERVAL_MS, EVENT_PURGE_JOB, purge_events};
    use crate::webhooks::delivery::{self, FANOUT_INTERVAL_MS, FANOUT_JOB, PUMP_JOB};
    let s = services.clone();
    registry
        .register(FANOUT_JOB, move |_job| {
            let s = s.clone();
            async move { delivery::fanout(&s).await }
        })
        .every(FANOUT_JOB, FANOUT_INTERVAL_MS);
    let s = services.clone();
    registry.register(PUMP_JOB, move |job: crate::jobs::runner::ClaimedJob| {
        let s = s.clone();
        async move {
            let endpoint_id = job.payload["endpoint_id"].as_str().unwrap_or_default().to_string();
            delivery::pump(&s, &endpoint_id).await
        }
    });
    let s = services.clone();
    registry
        .register(EVENT_PURGE_JOB, move |_job| {
            let s = s.clone();
            async move {
                purge_events(&s).await?;
                Ok(())
            }
        })
        .every(EVENT_PURGE_JOB, EVENT_PURGE_INTERVAL_MS);
}

/// The payout jobs: submission, the M-Pesa status check, the bank feed.
fn register_payout_jobs(registry: &mut Registry, services: &Services) {
    use crate::services::payouts::{SUBMIT_JOB, rails};
    let s = services.clone();
    registry.register(SUBMIT_JOB, move |job| {
        let s = s.clone();
        async move { rails::submit(&s, &s.rails, &job).await }
    });
    let s = services.clone();
    registry.register(rails::MPESA_CHECK_JOB, move |job| {
        let s = s.clone();
        async move { rails::mpesa_check(&s, &s.rails, &job).await }
    });
    let s = services.clone();
    registry
        .register(rails::BANK_REPORTS_JOB, move |_job| {
            let s = s.clone();
            async move { rails::bank_reports(&s, &s.rails).await }
        })
        .every(rails::BANK_REPORTS_JOB, rails::BANK_REPORTS_INTERVAL_MS);
    register_payment_jobs(registry, services);
}

/// The money-in, async payment and review jobs: the deposit check, the
/// async run, the expiry of reviews nobody decided.
fn register_payment_jobs(registry: &mut Registry, services: &Services) {
    use crate::services::{async_payments, deposits};
    let s = services.clone();
    registry.register(deposits::CHECK_JOB, move |job| {
        let s = s.clone();
        async move { deposits::check(&s, &job).await }
    });
    let s = services.clone();
    registry.register(async_payments::RUN_JOB, move |job| {
        let s = s.clone();
        async move { async_payments::run(&s, &job).await }
    });
    let s = services.clone();
    registry
        .register(crate::services::reviews::EXPIRE_JOB, move |_job| {
            let s = s.clone();
            async move { crate::services::reviews::expire_due(&s).await }
        })
        .every(
            crate::services::reviews::EXPIRE_JOB,
            crate::services::reviews::EXPIRE_INTERVAL_MS,
        );
}

/// How often holds past their expiry are voided, and how many per round.
pub const HOLD_SWEEP_INTERVAL_MS: u64 = 1_000;
pub const HOLD_SWEEP_BATCH_MAX: i64 = 500;

/// Voids holds whose time is up, until shutdown.
async fn expire_holds(ledger: Ledger, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(HOLD_SWEEP_INTERVAL_MS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return Ok(()),
        }
        match ledger
            .expire_due(chrono::Utc::now().timestamp_millis(), HOLD_SWEEP_BATCH_MAX)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "voided holds past their expiry"),
            Err(err) => tracing::warn!(error = %err, "hold expiry sweep failed; retrying"),
        }
    }
}
