//! A whole `nixo serve` in a process of its own, for the tests that kill it
//! with SIGKILL: the real server (gateway, core, ledger, job worker and the
//! sandbox rails) with a short job lease, so work a killed process held is
//! taken over soon after a restart.
//!
//! `nixo-test-serve DATA_DIR DATABASE_URL|- LISTEN LEASE_MS` — prints
//! `key <sandbox key>` on a first start, then `ready <address>`, and serves
//! until killed.

use nixo_core::jobs::runner::RunnerConfig;
use nixo_core::server::{self, ServeConfig};
use std::io::Write;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5,
        "usage: nixo-test-serve DATA_DIR DATABASE_URL|- LISTEN LEASE_MS"
    );
    let data_dir = std::path::PathBuf::from(&args[1]);
    let database_url = (args[2] != "-").then(|| args[2].clone());
    let lease_ms: i64 = args[4].parse()?;
    let running = server::start(ServeConfig {
        database_url,
        listen: args[3].parse()?,
        cache_dir: Some(std::env::temp_dir().join("nixo-test-compile-cache")),
        jobs: RunnerConfig {
            lease_ms,
            ..RunnerConfig::default()
        },
        // The tests burst requests; the sandbox key's default limit is 50/s.
        edge_variables: [("rate_limit_sandbox".to_string(), "100000/1".to_string())].into(),
        ..ServeConfig::ephemeral(&data_dir)
    })
    .await?;
    let mut out = std::io::stdout().lock();
    if let Some(first) = &running.bootstrap {
        writeln!(out, "key {}", first.sandbox_key)?;
    }
    writeln!(out, "ready {}", running.addr)?;
    out.flush()?;
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}
