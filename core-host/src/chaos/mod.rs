//! `nixo chaos bank`: the bank test. Real `nixo serve` processes (one on
//! SQLite; one or more replicas on one PostgreSQL database) behind one
//! sandbox bank and Daraja; N clients send random transfers (same and
//! cross currency), payouts, deposits, withdrawals and async payments over
//! HTTP through the gateway, every POST with an `Idempotency-Key` and
//! retried with it; meanwhile replicas are killed with SIGKILL at random
//! points and restarted. Then every acknowledged operation is followed to
//! its end and the books are checked from the outside (the API) and the
//! inside (`nixo ledger verify`, the jobs table): see [`check`].

pub mod check;
pub mod cluster;
pub mod workload;

use crate::db::{self, Db};
use crate::money::Currency;
use anyhow::Context;
use cluster::{Rails, Replica};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{Clients, Counter, Kind, Outcome};

/// What a run does.
#[derive(Debug, Clone)]
pub struct BankConfig {
    /// The `nixo` executable the replicas and the sandbox run.
    pub nixo: PathBuf,
    /// Where the replicas keep their data directories and logs.
    pub work_dir: PathBuf,
    /// A PostgreSQL database (empty) for the replicas; SQLite when `None`.
    pub database_url: Option<String>,
    pub replicas: usize,
    pub clients: usize,
    pub operations: usize,
    pub kills: usize,
    pub seed: u64,
    /// Sends one cross-currency transfer a second time under another key
    /// and counts it once, the way a buggy client would: the checks must
    /// catch it (a test of the checks themselves).
    pub sabotage: bool,
}

/// Most replicas a run starts.
pub const REPLICAS_MAX: usize = 8;
/// Most concurrent clients.
pub const CLIENTS_MAX: usize = 256;
/// How long a killed replica stays down at most before its restart.
pub const DOWN_MAX_MS: u64 = 800;

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub database: String,
    pub replicas: usize,
    pub clients: usize,
    pub operations: usize,
    /// Per kind: (answered 2xx, settled, nothing moved).
    pub by_kind: BTreeMap<&'static str, (usize, usize, usize)>,
    pub refused: usize,
    /// 5xx answers (retried), by status, code and route.
    pub server_errors: BTreeMap<String, usize>,
    /// The refusals by status and error code.
    pub refusals: BTreeMap<String, usize>,
    pub retries: usize,
    pub kills: usize,
    pub transactions: usize,
    pub events: usize,
    pub deliveries: usize,
    pub reviews_declined: usize,
    pub load_s: f64,
    pub total_s: f64,
    pub violations: Vec<String>,
}

impl Report {
    pub fn is_sound(&self) -> bool {
        self.violations.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos bank on {}: {} replica(s), {} clients, {} operations in {:.1} s ({:.1} s with the checks)",
            self.database, self.replicas, self.clients, self.operations, self.load_s, self.total_s
        )?;
        writeln!(
            f,
            "  kills {} · retries {} · refused with a 4xx {} · reviews declined {}",
            self.kills, self.retries, self.refused, self.reviews_declined
        )?;
        if !self.server_errors.is_empty() {
            let errors: Vec<String> = self.server_errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            writeln!(f, "  5xx answers (retried): {}", errors.join(", "))?;
        }
        if !self.refusals.is_empty() {
            let refusals: Vec<String> = self.refusals.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            writeln!(f, "  refusals: {}", refusals.join(", "))?;
        }
        for (kind, (acknowledged, settled, nothing)) in &self.by_kind {
            writeln!(
                f,
                "  {kind:<24} acknowledged {acknowledged:>6} · settled {settled:>6} · nothing moved {nothing:>6}"
            )?;
        }
        writeln!(
            f,
            "  transactions {} · events {} · webhook deliveries {}",
            self.transactions, self.events, self.deliveries
        )?;
        if self.violations.is_empty() {
            writeln!(
                f,
                "  violations 0: money conserved, every acknowledged operation once, books sound"
            )
        } else {
            writeln!(f, "  violations {}:", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "  - {v}")?;
            }
            Ok(())
        }
    }
}

/// Runs the bank test.
pub async fn bank(config: BankConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (1..=REPLICAS_MAX).contains(&config.replicas) && (1..=CLIENTS_MAX).contains(&config.clients),
        "1 to {REPLICAS_MAX} replicas and 1 to {CLIENTS_MAX} clients"
    );
    anyhow::ensure!(
        config.replicas == 1 || config.database_url.is_some(),
        "replicas share a PostgreSQL database: give --database-url for more than one"
    );
    let started = Instant::now();
    std::fs::create_dir_all(&config.work_dir)?;
    let rails = Rails::start(&config.nixo, &config.work_dir.join("rails"))?;

    // The replicas: addresses first (the first one is the public URL the
    // rails call back), then one start of the first to create the
    // installation and its sandbox key.
    let mut replicas = (0..config.replicas)
        .map(|i| {
            Replica::new(
                &config.nixo,
                format!("replica-{i}"),
                config.work_dir.join(format!("replica-{i}")),
                Vec::new(),
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut env = rails.variables.clone();
    env.push(("NIXO_PUBLIC_URL".into(), replicas[0].base_url()));
    if let Some(url) = &config.database_url {
        env.push(("NIXO_DATABASE_URL".into(), url.clone()));
    }
    for (name, value) in cluster::SERVE_TIMINGS {
        env.push((name.into(), value.into()));
    }
    for replica in &mut replicas {
        replica.env = env.clone();
    }
    let first = replicas[0]
        .start()?
        .context("the database already has an installation: a chaos run needs an empty one")?;
    replicas[0].kill();
    // A merchant's settings: its wallets are busy, so the velocity review
    // threshold is raised (reviews still happen and are declined at the end).
    let manifest = replicas[0].data_dir.join("plugins/fraud-check.toml");
    let mut text = std::fs::read_to_string(&manifest).with_context(|| manifest.display().to_string())?;
    text.push_str("\n[config]\nvelocity_1h_review_count = \"1000000000\"\n");
    std::fs::write(&manifest, text)?;
    for i in 1..replicas.len() {
        let (from, to) = (replicas[0].data_dir.clone(), replicas[i].data_dir.clone());
        std::fs::copy(from.join("secrets.json"), to.join("secrets.json"))?;
        cluster::copy_tree(&from.join("plugins"), &to.join("plugins"))?;
    }
    let database_url = config
        .database_url
        .clone()
        .unwrap_or_else(|| db::sqlite_url(&replicas[0].data_dir.join("nixo.db")));
    let db = Db::open(&database_url).await?;
    set_rates(&db).await?;
    for replica in &mut replicas {
        replica.start()?;
    }

    let clients = Arc::new(Clients {
        http: reqwest::Client::builder().build()?,
        bases: replicas.iter().map(Replica::base_url).collect(),
        key: first,
        retries: Default::default(),
        answered: Default::default(),
        server_errors: Default::default(),
    });
    let mut receiver = check::Receiver::start().await?;
    let endpoint_secret = check::register_endpoint(&clients, &mut receiver).await?;
    let initial = check::totals(&clients).await?;

    // The load, and the killer beside it.
    let replicas = Arc::new(Mutex::new(replicas));
    let run = format!("{}-{}", config.seed, chrono::Utc::now().timestamp_millis());
    let counter = Counter::new(config.operations);
    let load_started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..config.clients {
        let (clients, counter, run) = (clients.clone(), counter.clone(), run.clone());
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(c as u64 + 1));
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while let Some(n) = counter.take() {
                let op = workload::make(n, &run, &mut rng);
                outcomes.push(clients.run(op).await);
            }
            outcomes
        }));
    }
    let killer = tokio::spawn(kill_at_random(
        replicas.clone(),
        clients.clone(),
        config.operations,
        config.kills,
        config.seed,
    ));
    let mut outcomes: Vec<Outcome> = Vec::new();
    for task in tasks {
        outcomes.extend(task.await?);
    }
    let kills = killer.await??;
    if config.sabotage
        && let Some(first) = outcomes
            .iter()
            .find(|o| o.op.kind == Kind::CrossCurrency && o.created.is_some())
    {
        let mut again = first.op.clone();
        again.key.push_str("-again");
        clients.run(again).await;
    }
    let load_s = load_started.elapsed().as_secs_f64();

    // Everything acknowledged is followed to its end (on the replicas that
    // are all up again), then the checks.
    let deadline = Instant::now() + Duration::from_millis(workload::FINISH_DEADLINE_MS);
    let finishing = outcomes.into_iter().map(|mut outcome| {
        let clients = clients.clone();
        async move {
            clients.finish(&mut outcome, deadline).await;
            outcome
        }
    });
    let outcomes = finish_all(finishing, config.clients).await;
    let mut report = Report {
        database: if config.database_url.is_some() {
            "PostgreSQL".into()
        } else {
            "SQLite".into()
        },
        replicas: config.replicas,
        clients: config.clients,
        operations: config.operations,
        retries: clients.retries.load(Ordering::Relaxed),
        kills,
        load_s,
        ..Report::default()
    };
    for kind in Kind::ALL {
        report.by_kind.insert(kind.name(), (0, 0, 0));
    }
    for outcome in &outcomes {
        let entry = report.by_kind.get_mut(outcome.op.kind.name()).expect("every kind");
        match &outcome.answer {
            Some((status, _)) if (200..300).contains(status) => {
                entry.0 += 1;
                match outcome.end {
                    workload::End::Settled => entry.1 += 1,
                    workload::End::NothingMoved => entry.2 += 1,
                    workload::End::Unfinished => {}
                }
            }
            Some((status, body)) => {
                report.refused += 1;
                let code = body["error"]["code"].as_str().unwrap_or("-");
                let field = body["error"]["field"]
                    .as_str()
                    .map_or(String::new(), |f| format!(" ({f})"));
                *report
                    .refusals
                    .entry(format!("{status} {code}{field} on {}", outcome.op.kind.name()))
                    .or_default() += 1;
            }
            None => {}
        }
    }
    check::all(
        &clients,
        &db,
        &receiver,
        &endpoint_secret,
        &initial,
        &outcomes,
        &mut report,
    )
    .await?;
    report.server_errors = clients.server_errors.lock().expect("counts").clone();
    let internal: Vec<String> = report
        .server_errors
        .iter()
        .filter(|(what, _)| !what.starts_with("503 service_unavailable"))
        .map(|(what, n)| format!("{what} ×{n}"))
        .collect();
    if !internal.is_empty() {
        // A database under load or a replica restarting may say 503; any
        // other 5xx is a bug.
        report
            .violations
            .push(format!("server errors answered: {}", internal.join("; ")));
    }
    db.close().await;
    report.total_s = started.elapsed().as_secs_f64();
    drop(rails);
    Ok(report)
}

/// Runs the futures with at most `width` at once.
async fn finish_all<F>(futures: impl Iterator<Item = F>, width: usize) -> Vec<Outcome>
where
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(width.max(1) * 4));
    let mut handles = Vec::new();
    for future in futures {
        let permit = semaphore.clone().acquire_owned().await.expect("open");
        handles.push(tokio::spawn(async move {
            let outcome = future.await;
            drop(permit);
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for handle in handles {
        if let Ok(outcome) = handle.await {
            outcomes.push(outcome);
        }
    }
    outcomes
}

/// Sets the exchange rates the cross-currency transfers use.
async fn set_rates(db: &Db) -> anyhow::Result<()> {
    let (kes, usd) = (
        Currency::from_code("KES").expect("ISO 4217"),
        Currency::from_code("USD").expect("ISO 4217"),
    );
    let rate = |text: &str| rust_decimal::Decimal::from_str_exact(text).expect("a decimal");
    crate::ledger::fx::set_rate(db, kes, usd, rate(workload::KES_USD_RATE), workload::KES_USD_FEE_BP).await?;
    crate::ledger::fx::set_rate(db, usd, kes, rate(workload::USD_KES_RATE), workload::USD_KES_FEE_BP).await?;
    Ok(())
}

/// Kills a random replica with SIGKILL each time the answered operations
/// pass one of `kills` random points of the run, and restarts it.
async fn kill_at_random(
    replicas: Arc<Mutex<Vec<Replica>>>,
    clients: Arc<Clients>,
    operations: usize,
    kills: usize,
    seed: u64,
) -> anyhow::Result<usize> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6b69_6c6c);
    let mut points: Vec<usize> = (0..kills)
        .map(|_| rng.random_range(operations / 10..=operations * 9 / 10))
        .collect();
    points.sort_unstable();
    let mut done = 0;
    for point in points {
        while clients.answered.load(Ordering::Relaxed) < point {
            if clients.answered.load(Ordering::Relaxed) >= operations {
                return Ok(done);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (victim, down_ms) = {
            let n = replicas.lock().expect("replicas").len();
            (rng.random_range(0..n), rng.random_range(50..DOWN_MAX_MS))
        };
        replicas.lock().expect("replicas")[victim].kill();
        done += 1;
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        let replicas = replicas.clone();
        tokio::task::spawn_blocking(move || replicas.lock().expect("replicas")[victim].start().map(drop)).await??;
    }
    Ok(done)
}
