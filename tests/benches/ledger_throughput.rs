//! Durable ledger throughput on SQLite and PostgreSQL, with 1, 32 and 256
//! concurrent clients, next to the raw rate of the same database doing
//! equally durable single-row inserts: one per commit, and batched
//! (`RAW_BATCH_ROWS` to a commit, the best a writer can do; the figure is
//! the ledger's best rate against it). On SQLite the batched inserts run
//! twice: through sqlx, as the application's other queries do, and through
//! the connection the ledger writer itself uses (SQLite's C API on the
//! calling thread, no driver thread between); the faster of the two is the
//! comparator.
//!
//! `cargo bench -p nixo-tests --bench ledger_throughput`
//! (NIXO_BENCH_TRANSFERS to change the count per run, default 3000).

use nixo_core::db::{Bind, Db};
use nixo_core::ledger::Ledger;
use nixo_core::money::Currency;
use nixo_core::sqlite_direct::Direct;
use nixo_tests::PgDatabase;
use nixo_tests::bench::{Goal, figure};
use nixo_tests::ledger_kit::{Fixture, fixture, movement};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WALLETS: usize = 64;
/// Concurrent clients per run: one, a busy server's, and enough to fill the
/// SQLite writer's group commits (its best rate).
const CLIENT_COUNTS: [usize; 3] = [1, 32, 256];
/// Raw inserts per commit in the batched comparator.
const RAW_BATCH_ROWS: usize = 1_000;
/// Batched raw rows inserted per ledger transfer of the run.
const RAW_BATCH_RUNS_PER_TRANSFER: usize = 20;
/// Goal: durable ledger transfers/s against batched raw inserts/s.
const LEDGER_TO_BATCHED_RAW_GOAL: f64 = 0.5;

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn drive<F, Fut>(clients: usize, total: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..total / clients {
                let t = Instant::now();
                op(c, i).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Run {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

fn print(label: &str, clients: usize, run: &Run) {
    println!(
        "{label:<40} clients={clients:<3} {:>8.0}/s  p50={:>7.2} ms  p99={:>7.2} ms",
        run.per_second,
        run.p50.as_secs_f64() * 1e3,
        run.p99.as_secs_f64() * 1e3
    );
}

/// Single-row inserts committed `RAW_BATCH_ROWS` to a transaction on one
/// connection (the same durability as the ledger's commits): rows per second.
async fn raw_batched_per_s(db: &Db, rows: usize) -> f64 {
    sqlx::query("CREATE TABLE bench_raw_batched (id BIGINT PRIMARY KEY, payload BIGINT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let started = Instant::now();
    let mut id = 0i64;
    while (id as usize) < rows {
        let mut tx = db.pool.begin().await.unwrap();
        for _ in 0..RAW_BATCH_ROWS {
            id += 1;
            sqlx::query("INSERT INTO bench_raw_batched (id, payload) VALUES ($1, $2)")
                .bind(id)
                .bind(id * 7)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    id as f64 / started.elapsed().as_secs_f64()
}

/// The same batched inserts through the ledger writer's own kind of
/// connection (same durability settings): rows per second.
fn raw_batched_direct_per_s(path: &Path, rows: usize) -> f64 {
    let mut conn = Direct::open_writer(path).unwrap();
    conn.control("CREATE TABLE bench_raw_direct (id BIGINT PRIMARY KEY, payload BIGINT NOT NULL)")
        .unwrap();
    let started = Instant::now();
    let mut id = 0i64;
    while (id as usize) < rows {
        conn.control("BEGIN IMMEDIATE").unwrap();
        for _ in 0..RAW_BATCH_ROWS {
            id += 1;
            let binds: [Bind; 2] = [id.into(), (id * 7).into()];
            conn.run("INSERT INTO bench_raw_direct (id, payload) VALUES ($1, $2)", &binds)
                .unwrap();
        }
        conn.control("COMMIT").unwrap();
    }
    id as f64 / started.elapsed().as_secs_f64()
}

/// `sqlite_file`: the database file when `url` is SQLite's.
async fn bench(name: &str, short: &str, url: &str, sqlite_file: Option<PathBuf>, total: usize) {
    let db = Db::open(url).await.unwrap();
    sqlx::query("CREATE TABLE bench_raw (id BIGINT PRIMARY KEY, payload BIGINT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let ledger = Ledger::new(db.clone()).await.unwrap();
    let kes = Currency::from_code("KES").unwrap();
    let Fixture { account_id, wallets } = fixture(&ledger, kes, WALLETS, 1_000_000).await;
    let wallets = Arc::new(wallets);

    let mut best: f64 = 0.0;
    for clients in CLIENT_COUNTS {
        let pool = db.pool.clone();
        let base = clients as i64 * 10_000_000;
        let raw = drive(clients, total, move |c, i| {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO bench_raw (id, payload) VALUES ($1, $2)")
                    .bind(base + (c * 1_000_000 + i) as i64)
                    .bind(i as i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        })
        .await;
        print(&format!("{name}: raw insert, one per commit"), clients, &raw);

        let (ledger2, wallets2, account2) = (ledger.clone(), wallets.clone(), account_id.clone());
        let run = drive(clients, total, move |c, i| {
            let (ledger, wallets, account) = (ledger2.clone(), wallets2.clone(), account2.clone());
            async move {
                let from = wallets[(c * 7 + i) % WALLETS];
                let to = wallets[(c * 7 + i + 1) % WALLETS];
                ledger
                    .record(movement(&account, "transfer", from, to, 1, kes, None))
                    .await
                    .unwrap();
            }
        })
        .await;
        print(&format!("{name}: ledger transfer"), clients, &run);
        best = best.max(run.per_second);
        println!(
            "{name:<40} clients={clients:<3} ledger/raw = {:.0} %\n",
            100.0 * run.per_second / raw.per_second
        );
    }
    let raw_rows = total * RAW_BATCH_RUNS_PER_TRANSFER;
    let mut raw_batched = raw_batched_per_s(&db, raw_rows).await;
    println!(
        "{:<40} clients=1   {raw_batched:>8.0}/s  ({RAW_BATCH_ROWS} rows per commit)",
        format!("{name}: raw insert, batched")
    );
    if let Some(file) = sqlite_file {
        let direct = tokio::task::spawn_blocking(move || raw_batched_direct_per_s(&file, raw_rows))
            .await
            .unwrap();
        println!(
            "{:<40} clients=1   {direct:>8.0}/s  ({RAW_BATCH_ROWS} rows per commit, the ledger writer's connection)",
            format!("{name}: raw insert, batched")
        );
        raw_batched = raw_batched.max(direct);
    }
    figure(
        &format!("{short}: durable ledger transfers/s, best of 1, 32 and 256 clients"),
        best,
        "/s",
        Goal::None,
    );
    figure(
        &format!("{short}: ledger transfers/s / batched raw inserts/s"),
        best / raw_batched,
        "x",
        Goal::AtLeast(LEDGER_TO_BATCHED_RAW_GOAL),
    );
    let report = nixo_core::ledger::verify::verify(&db, i64::MAX / 2, 0).await.unwrap();
    assert!(report.is_sound(), "{report}");
    db.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("NIXO_BENCH_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.db");
    bench(
        "sqlite (WAL, synchronous=FULL)",
        "SQLite",
        &nixo_core::db::sqlite_url(&file),
        Some(file.clone()),
        total,
    )
    .await;
    match PgDatabase::create("bench").await {
        Some(pg) => bench("postgresql (synchronous_commit=on)", "PostgreSQL", &pg.url, None, total).await,
        None => println!("postgresql: skipped (not reachable)"),
    }
}
