//! The `nixo` command.

mod webhooks_cli;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use nixo_api::access::RateLimit;
use nixo_core::db::{self, Db};
use nixo_core::jobs::runner::{self, RunnerConfig};
use nixo_core::ledger::{fx, verify};
use nixo_core::money::Currency;
use nixo_core::rules::RuleLimits;
use nixo_core::server::{self, ServeConfig};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "nixo",
    version,
    about = "Nixo payments API: cross-border payouts and mobile money"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives.
#[derive(Args, Clone)]
struct Storage {
    /// Data directory (database, secrets, plugins, compile cache).
    #[arg(long, env = "NIXO_DATA_DIR", default_value = "nixo-data")]
    data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`); default: SQLite at
    /// `<data-dir>/nixo.db`.
    #[arg(long, env = "NIXO_DATABASE_URL")]
    database_url: Option<String>,
}

impl Storage {
    fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| db::sqlite_url(&self.data_dir.join("nixo.db")))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the API: the gateway component on the public port, the core, the
    /// ledger and the rule plugins, in one process.
    Serve {
        #[command(flatten)]
        storage: Storage,
        /// Public address of the API (through the gateway).
        #[arg(long, env = "NIXO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also expose the core on this address, for a gateway deployed on
        /// Spin. The core still refuses requests the gateway did not sign.
        #[arg(long, env = "NIXO_CORE_LISTEN")]
        core_listen: Option<SocketAddr>,
        /// Fuel (≈ Wasm instructions) one rule decision may use at most.
        #[arg(long, env = "NIXO_RULE_FUEL_PER_CALL", default_value_t = RuleLimits::default().fuel_per_call_max)]
        rule_fuel_per_call: u64,
        /// Wall-clock limit of one rule decision, in milliseconds.
        #[arg(long, env = "NIXO_RULE_DEADLINE_MS", default_value_t = RuleLimits::default().deadline_ms)]
        rule_deadline_ms: u64,
        /// Linear memory one rule instance may use, in MiB.
        #[arg(long, env = "NIXO_RULE_MEMORY_MIB", default_value_t = RuleLimits::default().memory_max_bytes >> 20)]
        rule_memory_mib: usize,
        /// Background jobs this process runs at once.
        #[arg(long, env = "NIXO_JOB_CONCURRENCY", default_value_t = runner::CONCURRENCY_DEFAULT)]
        job_concurrency: usize,
        /// Transaction limits by KYC level (JSON; the built-in table when unset).
        #[arg(long, env = "NIXO_LIMITS_FILE")]
        limits_file: Option<PathBuf>,
        /// How long a claimed job stays with this process without a
        /// heartbeat before another replica may take it over, in milliseconds.
        #[arg(long, env = "NIXO_JOB_LEASE_MS", default_value_t = runner::LEASE_MS_DEFAULT)]
        job_lease_ms: i64,
        #[command(flatten)]
        edge: EdgeArgs,
    },
    /// Ledger administration.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Exchange rates.
    Fx {
        #[command(subcommand)]
        command: FxCommand,
    },
    /// API keys: create, list (prefixes only), roll with a grace period, revoke.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI 3.1 document of the API (regenerate the committed
    /// copy with `nixo openapi > docs/openapi.json`).
    Openapi,
    /// Background jobs: list them, retry dead ones.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Transactions: export an account's as CSV (what
    /// `GET /v1/transactions/export` serves), from the database.
    Transactions {
        #[command(subcommand)]
        command: TransactionsCommand,
    },
    /// Webhooks: verify a signature; forward events to a local receiver.
    Webhooks {
        #[command(subcommand)]
        command: webhooks_cli::WebhooksCommand,
    },
    /// Tools for rule-plugin authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Fault-injection tests of a whole installation.
    Chaos {
        #[command(subcommand)]
        command: ChaosCommand,
    },
    /// The sandbox bank and Daraja as a process of their own (for replicas
    /// that must share one bank and one Daraja); prints the live-rails
    /// variables that point `nixo serve` at them, then serves.
    Sandbox {
        /// Where the sandboxes keep their books.
        #[arg(long, default_value = "nixo-sandbox")]
        data_dir: PathBuf,
        /// Address of the sandbox bank (ISO 20022 host-to-host).
        #[arg(long, default_value = "127.0.0.1:0")]
        bank_listen: SocketAddr,
        /// Address of the sandbox Daraja (M-Pesa).
        #[arg(long, default_value = "127.0.0.1:0")]
        daraja_listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum ChaosCommand {
    /// The bank test: starts `nixo serve` replicas behind one sandbox bank
    /// and Daraja, drives concurrent clients with random money operations
    /// (every POST idempotent and retried), kills replicas with SIGKILL at
    /// random points, then checks that money is conserved, every
    /// acknowledged operation happened exactly once, every event and
    /// webhook is accounted for and the ledger verifies. Exits 2 on any
    /// violation.
    Bank {
        /// An empty PostgreSQL database for the replicas; SQLite when unset.
        #[arg(long)]
        database_url: Option<String>,
        /// Replicas on the database (more than one needs PostgreSQL).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Operations in all.
        #[arg(long, default_value_t = 100_000)]
        operations: usize,
        /// SIGKILLs during the run.
        #[arg(long, default_value_t = 5)]
        kills: usize,
        /// Seed of the random choices (operations, kill points).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the replicas' data directories and logs go (kept); a new
        /// temporary directory when unset.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Apply one transfer twice on purpose (a second key), to see the
        /// checks catch it.
        #[arg(long, hide = true)]
        sabotage: bool,
    },
}

/// How the embedded gateway is configured (what Spin takes from its
/// manifest, variables and runtime config).
#[derive(Args, Clone)]
struct EdgeArgs {
    /// The gateway's key/value store (key cache, rate-limit counters):
    /// `redis://host:port/db`, shared by replicas; in memory when unset.
    #[arg(long, env = "NIXO_KV_URL")]
    kv_url: Option<String>,
    /// Key environments this endpoint serves: `sandbox`, `live` or both.
    #[arg(long, env = "NIXO_EDGE_ENVIRONMENTS", default_value = "sandbox,live")]
    environments: String,
    /// Default rate limit of sandbox keys: `N/W`, N requests per W seconds.
    #[arg(long, env = "NIXO_RATE_LIMIT_SANDBOX", value_parser = parse_rate_limit)]
    rate_limit_sandbox: Option<RateLimit>,
    /// Default rate limit of live keys: `N/W`.
    #[arg(long, env = "NIXO_RATE_LIMIT_LIVE", value_parser = parse_rate_limit)]
    rate_limit_live: Option<RateLimit>,
    /// Failed authentications allowed per client address: `N/W` (default 20/60).
    #[arg(long, env = "NIXO_AUTH_FAILURES_PER_ADDRESS", value_parser = parse_rate_limit)]
    auth_failures_per_address: Option<RateLimit>,
    /// Requests per client address on the routes that take no key: `N/W`
    /// (default 100/1).
    #[arg(long, env = "NIXO_RATE_LIMIT_PUBLIC", value_parser = parse_rate_limit)]
    rate_limit_public: Option<RateLimit>,
    /// Proxies in front of this server (comma-separated IPs) whose
    /// `X-Forwarded-For` names the client.
    #[arg(long, env = "NIXO_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,
}

impl EdgeArgs {
    fn variables(&self) -> BTreeMap<String, String> {
        let mut variables = BTreeMap::new();
        variables.insert("environments".to_string(), self.environments.clone());
        if let Some(limit) = self.rate_limit_sandbox {
            variables.insert("rate_limit_sandbox".to_string(), limit.to_string());
        }
        let limits = [
            ("rate_limit_live", self.rate_limit_live),
            ("auth_failures_per_address", self.auth_failures_per_address),
            ("rate_limit_public", self.rate_limit_public),
        ];
        for (name, limit) in limits {
            if let Some(limit) = limit {
                variables.insert(name.to_string(), limit.to_string());
            }
        }
        variables.insert("trusted_proxies".to_string(), self.trusted_proxies.clone());
        variables
    }
}

fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    RateLimit::parse(text).ok_or_else(|| format!("'{text}' is not N/W (N requests per W seconds, W ≤ 86400)"))
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        #[command(flatten)]
        storage: Storage,
        /// The account (default: the first account of the environment).
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value = "sandbox", value_parser = ["sandbox", "live"])]
        environment: String,
        /// A scope the key holds (`transfers:write`, `balances:read`,
        /// `decisions:read`); repeatable. Default: every scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The key's own rate limit, `N/W` (N requests per W seconds).
        /// Default: the edge's limit for the key's environment.
        #[arg(long, value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
    },
    /// Pin an account to an API version (new accounts are pinned to the
    /// current version at their first request).
    PinVersion {
        #[command(flatten)]
        storage: Storage,
        account: String,
        version: String,
    },
    /// List keys: id, display prefix, account, state.
    List {
        #[command(flatten)]
        storage: Storage,
    },
    /// Replace a key: prints the new key; the old one works for the grace period.
    Roll {
        #[command(flatten)]
        storage: Storage,
        key_id: String,
        #[arg(long, default_value_t = 86_400)]
        grace_seconds: i64,
    },
    /// Revoke a key; it stops working at once.
    Revoke {
        #[command(flatten)]
        storage: Storage,
        key_id: String,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, newest first: id, kind, state, attempts, next run, last error.
    List {
        #[command(flatten)]
        storage: Storage,
        /// Only jobs in this state.
        #[arg(long, value_parser = ["available", "running", "succeeded", "dead"])]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Run a dead job again now, with a fresh set of attempts.
    Retry {
        #[command(flatten)]
        storage: Storage,
        id: i64,
    },
}

#[derive(Subcommand)]
enum TransactionsCommand {
    /// Write an account's transactions as CSV to standard output.
    Export {
        #[command(flatten)]
        storage: Storage,
        /// The account (acct_…).
        #[arg(long)]
        account: String,
        #[arg(long, default_value = "sandbox", value_parser = ["sandbox", "live"])]
        environment: String,
        /// The list's filters as a query string, e.g.
        /// `type=payout&currency=USD&created[gte]=1796100000`.
        #[arg(long, default_value = "")]
        filter: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a rule project (Rust, JavaScript or Python) with a case file.
    New {
        name: String,
        #[arg(long, default_value = "fraud", value_parser = ["fraud", "payout"])]
        kind: String,
        #[arg(long, default_value = "rust", value_parser = ["rust", "js", "python"])]
        lang: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a rule project with its language's tool into `dist/` (the
    /// artefact and its manifest, sha256 pinned).
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the artefact and manifest here instead of `<dir>/dist`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load a plugin as the server would: world, imports, size, compile
    /// time, or why it is refused (exit 1). Takes a rule project, a
    /// manifest or an artefact.
    Check {
        #[arg(default_value = ".")]
        file: PathBuf,
    },
    /// Run a case file (TOML) against a plugin; exit 1 if any case fails.
    /// A rule project runs its own `cases.toml`.
    Test {
        #[arg(default_value = ".")]
        file: PathBuf,
        #[arg(long)]
        cases: Option<PathBuf>,
    },
    /// Install a built plugin (a project or a built manifest) into a
    /// server's plugins directory; the server loads it without a restart.
    Install {
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The server's data directory.
        #[arg(long, env = "NIXO_DATA_DIR", default_value = "nixo-data")]
        data_dir: PathBuf,
        /// Wait until the server at this URL reports the new version active.
        #[arg(long)]
        server: Option<String>,
    },
    /// Wrap a core module built with wit-bindgen into a loadable component.
    Componentize {
        module: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check every ledger invariant; exits non-zero with a report if any fails.
    Verify {
        #[command(flatten)]
        storage: Storage,
        /// Holds may be this late past their expiry before counting as a fault.
        #[arg(long, default_value_t = 60_000)]
        grace_ms: i64,
    },
}

#[derive(Subcommand)]
enum FxCommand {
    /// Set the rate from BASE to QUOTE (QUOTE units per BASE unit); it
    /// applies to transfers from now on. Every rate set is kept.
    Set {
        #[command(flatten)]
        storage: Storage,
        base: String,
        quote: String,
        /// Exact decimal, e.g. 0.0077.
        rate: String,
        /// Fee in basis points of the source amount.
        #[arg(long, default_value_t = 0)]
        fee_bp: u16,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIXO_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // NIXO_LOG_FORMAT=json: one JSON object per line, for log pipelines.
    if std::env::var("NIXO_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nixo: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("nixo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            storage,
            listen,
            core_listen,
            rule_fuel_per_call,
            rule_deadline_ms,
            rule_memory_mib,
            job_concurrency,
            limits_file,
            job_lease_ms,
            edge,
        } => {
            anyhow::ensure!(
                (1..=1024).contains(&job_concurrency) && job_lease_ms >= 1_000,
                "jobs: concurrency 1 to 1024, lease at least 1000 ms"
            );
            anyhow::ensure!(
                rule_fuel_per_call > 0 && rule_deadline_ms > 0 && (1..=4096).contains(&rule_memory_mib),
                "rule limits must be positive (memory 1 to 4096 MiB)"
            );
            serve(ServeConfig {
                data_dir: storage.data_dir,
                listen,
                core_listen,
                rule_limits: RuleLimits {
                    fuel_per_call_max: rule_fuel_per_call,
                    deadline_ms: rule_deadline_ms,
                    memory_max_bytes: rule_memory_mib << 20,
                    ..RuleLimits::default()
                },
                database_url: storage.database_url,
                cache_dir: None,
                kv_url: edge.kv_url.clone(),
                edge_variables: edge.variables(),
                jobs: RunnerConfig {
                    concurrency: job_concurrency,
                    lease_ms: job_lease_ms,
                    ..RunnerConfig::default()
                },
                clock: nixo_core::clock::Clock::system(),
                rails: nixo_core::rail_wiring::RailsConfig::from_env()?,
                webhooks: Default::default(),
                kyc: nixo_core::rail_wiring::KycConfig::from_env()?,
                limits: match &limits_file {
                    Some(path) => nixo_core::limits::Limits::load(path)?,
                    None => nixo_core::limits::Limits::default(),
                },
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command } => keys(command).await,
        Command::Jobs { command } => jobs(command).await,
        Command::Transactions { command } => transactions(command).await,
        Command::Webhooks { command } => webhooks_cli::run(command).await,
        Command::Openapi => {
            print!(
                "{}",
                nixo_core::api::openapi::render(&nixo_core::api::openapi_document())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command } => tokio::task::spawn_blocking(move || plugin(command)).await?,
        Command::Chaos {
            command:
                ChaosCommand::Bank {
                    database_url,
                    replicas,
                    clients,
                    operations,
                    kills,
                    seed,
                    work_dir,
                    sabotage,
                },
        } => {
            let temporary = tempfile::Builder::new().prefix("nixo-chaos-").tempdir()?;
            let work_dir = work_dir.unwrap_or_else(|| temporary.path().to_path_buf());
            let report = nixo_core::chaos::bank(nixo_core::chaos::BankConfig {
                nixo: std::env::current_exe()?,
                work_dir: work_dir.clone(),
                database_url,
                replicas,
                clients,
                operations,
                kills,
                seed,
                sabotage,
            })
            .await?;
            print!("{report}");
            if report.is_sound() {
                Ok(ExitCode::SUCCESS)
            } else {
                // Keep the evidence: the replicas' data and logs.
                let _ = temporary.keep();
                println!("replicas' data directories and logs kept in {}", work_dir.display());
                Ok(ExitCode::from(2))
            }
        }
        Command::Sandbox {
            data_dir,
            bank_listen,
            daraja_listen,
        } => {
            std::fs::create_dir_all(&data_dir)?;
            let timings = nixo_core::rail_wiring::SandboxTimings::from_env()?;
            let (_stop, shutdown) = tokio::sync::watch::channel(false);
            let sandboxes =
                nixo_core::rail_wiring::start_sandboxes(&timings, &data_dir, bank_listen, daraja_listen, shutdown)
                    .await?;
            for (name, value) in sandboxes.live_variables(&timings) {
                println!("{name}={value}");
            }
            println!("nixo: sandbox rails ready (set the variables above and NIXO_PUBLIC_URL for `nixo serve`)");
            std::io::Write::flush(&mut std::io::stdout())?;
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::Verify { storage, grace_ms },
        } => {
            let db = Db::open(&storage.url()).await?;
            let report = verify::verify(&db, chrono::Utc::now().timestamp_millis(), grace_ms).await?;
            db.close().await;
            print!("{report}");
            Ok(if report.is_sound() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Fx {
            command:
                FxCommand::Set {
                    storage,
                    base,
                    quote,
                    rate,
                    fee_bp,
                },
        } => {
            let base = Currency::from_code(&base).with_context(|| format!("unknown currency {base}"))?;
            let quote = Currency::from_code(&quote).with_context(|| format!("unknown currency {quote}"))?;
            let rate = Decimal::from_str_exact(&rate).with_context(|| format!("'{rate}' is not a decimal"))?;
            let db = Db::open(&storage.url()).await?;
            fx::set_rate(&db, base, quote, rate, fee_bp).await?;
            db.close().await;
            println!(
                "nixo: 1 {} = {} {} (fee {} bp), from now on",
                base.code, rate, quote.code, fee_bp
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    use nixo_core::auth;
    use nixo_core::ledger::Environment;
    let storage = match &command {
        KeysCommand::Create { storage, .. }
        | KeysCommand::List { storage }
        | KeysCommand::Roll { storage, .. }
        | KeysCommand::Revoke { storage, .. }
        | KeysCommand::PinVersion { storage, .. } => storage.clone(),
    };
    let db = Db::open(&storage.url()).await?;
    let hasher = server::key_hasher(&storage.data_dir)?;
    let code = match command {
        KeysCommand::Create {
            account,
            environment,
            scopes,
            rate_limit,
            ..
        } => {
            let access = auth::KeyAccess::new(scopes, rate_limit)?;
            let environment = Environment::parse(&environment).context("environment")?;
            let account = match account {
                Some(account) => account,
                None => auth::default_account(&db, environment)
                    .await?
                    .context("no account in that environment; start `nixo serve` once first")?,
            };
            let key = auth::create_key(&db, &hasher, &account, environment, &access).await?;
            println!("{}", key.key);
            eprintln!(
                "nixo: created {} ({}) for {account}; shown once",
                key.id, key.display_prefix
            );
            ExitCode::SUCCESS
        }
        KeysCommand::List { .. } => {
            let now = chrono::Utc::now().timestamp_millis();
            for k in auth::list_keys(&db).await? {
                let state = match (k.revoked_at_ms, k.expires_at_ms) {
                    (Some(_), _) => "revoked".to_string(),
                    (None, Some(at)) if at <= now => "expired".to_string(),
                    (None, Some(at)) => format!("expires in {} s", (at - now) / 1000),
                    (None, None) => "active".to_string(),
                };
                let limit = k.rate_limit.as_deref().unwrap_or("default");
                println!(
                    "{}  {:<22} {:<8} {}  scopes={} rate_limit={limit}  {state}",
                    k.id, k.display_prefix, k.environment, k.account_id, k.scopes
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Roll {
            key_id, grace_seconds, ..
        } => {
            let key = auth::roll_key(&db, &hasher, &key_id, grace_seconds.saturating_mul(1000)).await?;
            println!("{}", key.key);
            eprintln!(
                "nixo: {key_id} now expires in {grace_seconds} s; new key {} ({})",
                key.id, key.display_prefix
            );
            ExitCode::SUCCESS
        }
        KeysCommand::PinVersion { account, version, .. } => {
            auth::pin_version(&db, &account, &version).await?;
            eprintln!("nixo: {account} now uses API version {version} by default");
            ExitCode::SUCCESS
        }
        KeysCommand::Revoke { key_id, .. } => {
            if auth::revoke_key(&db, &key_id).await? {
                eprintln!("nixo: revoked {key_id}");
                ExitCode::SUCCESS
            } else {
                eprintln!("nixo: no active key {key_id}");
                ExitCode::FAILURE
            }
        }
    };
    db.close().await;
    Ok(code)
}

async fn transactions(command: TransactionsCommand) -> anyhow::Result<ExitCode> {
    use nixo_core::services::{Actor, transactions};
    use std::io::Write;
    let TransactionsCommand::Export {
        storage,
        account,
        environment,
        filter,
    } = command;
    let query = if filter.is_empty() {
        "format=csv".to_string()
    } else {
        format!("format=csv&{filter}")
    };
    let filter = nixo_api::transactions::export_query(Some(&query))
        .map_err(|e| anyhow::anyhow!("--filter: {} ({})", e.message, e.field))?;
    let actor = Actor {
        account_id: account,
        environment: nixo_core::ledger::Environment::parse(&environment).expect("checked by clap"),
    };
    let db = Db::open(&storage.url()).await?;
    let plan = transactions::plan_export(&db, &actor, &filter)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (sink, mut chunks) = tokio::sync::mpsc::channel(4);
    let writer_db = db.clone();
    let task = tokio::spawn(async move { transactions::export(&writer_db, plan, sink).await });
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = chunks.recv().await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    let rows = task.await?;
    eprintln!("nixo: {rows} transactions exported");
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn jobs(command: JobsCommand) -> anyhow::Result<ExitCode> {
    use nixo_core::jobs::{self, JobState};
    let fmt_ms = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    match command {
        JobsCommand::List { storage, state, limit } => {
            let db = Db::open(&storage.url()).await?;
            let state = state.as_deref().and_then(JobState::parse);
            for job in jobs::list(&db, state, limit).await? {
                println!(
                    "{:<8} {:<22} {:<9} attempt {}/{}  run_at {}  {}",
                    job.id,
                    job.kind,
                    job.state,
                    job.attempt,
                    job.max_attempts,
                    fmt_ms(job.run_at_ms),
                    job.last_error.as_deref().unwrap_or("")
                );
            }
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry { storage, id } => {
            let db = Db::open(&storage.url()).await?;
            let done = jobs::retry(&db, id, chrono::Utc::now().timestamp_millis()).await?;
            db.close().await;
            if done {
                eprintln!("nixo: job {id} will run again now");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("nixo: no dead job {id}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check { file } => {
            let report = nixo_core::plugin_kit::check(&file)?;
            println!("file:     {}", file.display());
            println!("size:     {} bytes", report.size_bytes);
            println!("compile:  {:.1} ms", report.compile_ms);
            println!(
                "imports:  {}",
                if report.imports.is_empty() {
                    "none".into()
                } else {
                    report.imports.join(", ")
                }
            );
            match report.outcome {
                Ok((world, name)) => {
                    println!("world:    {world}");
                    println!("name:     {name}");
                    println!("result:   loadable");
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("result:   refused: {why}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PluginCommand::New { name, kind, lang, dir } => {
            let kind = if kind == "payout" {
                nixo_core::rules::manifest::PluginKind::Payout
            } else {
                nixo_core::rules::manifest::PluginKind::Fraud
            };
            let lang = nixo_core::plugin_kit::Lang::parse(&lang)?;
            let root = nixo_core::plugin_kit::new_template(&name, kind, lang, &dir)?;
            println!("nixo: created {} (see its README.md)", root.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { dir, out } => {
            let built = nixo_core::plugin_kit::build(&dir, out.as_deref())?;
            println!(
                "nixo: built {} ({} bytes, sha256 {}) in {} ms",
                built.artefact.display(),
                built.size_bytes,
                built.sha256,
                built.build_ms
            );
            println!("nixo: wrote {}", built.manifest.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Install { path, data_dir, server } => {
            let installed = nixo_core::plugin_kit::install(&path, &data_dir, server.as_deref())?;
            println!(
                "nixo: installed {}@{} (sha256 {}) as {}",
                installed.name,
                installed.version,
                installed.sha256,
                installed.manifest.display()
            );
            match installed.confirmed_by {
                Some(server) => println!("nixo: {server} reports it active"),
                None => println!("nixo: a running server loads it within a second (no restart)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Componentize { module, output } => {
            let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let component = nixo_core::plugin_kit::componentize(&bytes)?;
            std::fs::write(&output, &component)?;
            println!("nixo: wrote {} ({} bytes)", output.display(), component.len());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test { file, cases } => {
            let results = nixo_core::plugin_kit::test(&file, cases.as_deref())?;
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            for r in &results {
                match &r.failure {
                    None => println!("PASS  {}  (fuel {}, {} µs)", r.name, r.fuel_used, r.micros),
                    Some(why) => println!("FAIL  {}: {why}  (fuel {}, {} µs)", r.name, r.fuel_used, r.micros),
                }
            }
            println!("{} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let running = server::start(config).await?;
    println!("nixo: API listening on http://{}", running.addr);
    if let Some(core) = running.core_addr {
        println!("nixo: core listening on http://{core} (gateway-signed requests only)");
    }
    println!("nixo: data directory {}", data_dir.display());
    println!("nixo: rule plugins loaded: {}", running.fraud_rules.join(", "));
    match &running.bootstrap {
        Some(first) => {
            println!(
                "nixo: created sandbox account {} with KES wallets 101 and 102 and USD wallet 103",
                first.account_id
            );
            println!(
                "nixo: sandbox API key (shown once, stored only as a hash): {}",
                first.sandbox_key
            );
        }
        None => println!("nixo: existing installation; use the sandbox key printed on first start"),
    }
    shutdown_signal().await;
    println!("nixo: shutting down");
    running.stop().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
