//! The `nixo` command.

use clap::{Parser, Subcommand};
use nixo_core::rules::RuleLimits;
use nixo_core::server::{self, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

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

#[derive(Subcommand)]
enum Command {
    /// Run the API: the gateway component on the public port, the core, the
    /// ledger and the rule plugins, in one process.
    Serve {
        /// Data directory (database, secrets, plugins, compile cache).
        #[arg(long, env = "NIXO_DATA_DIR", default_value = "nixo-data")]
        data_dir: PathBuf,
        /// Public address of the API (through the gateway).
        #[arg(long, env = "NIXO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also expose the core on this address, for a gateway deployed on
        /// Spin. The core still refuses requests the gateway did not sign.
        #[arg(long, env = "NIXO_CORE_LISTEN")]
        core_listen: Option<SocketAddr>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NIXO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            core_listen,
        } => runtime.block_on(serve(ServeConfig {
            data_dir,
            listen,
            core_listen,
            rule_limits: RuleLimits::default(),
            cache_dir: None,
        })),
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
    println!(
        "nixo: fraud rules loaded: {}",
        running.fraud_rules.join(", ")
    );
    match &running.bootstrap {
        Some(first) => {
            println!(
                "nixo: created sandbox account {} with KES wallets 101 and 102",
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
