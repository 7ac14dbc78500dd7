//! A real `nixo serve` process for crash tests: started on an ephemeral
//! port, its key and address read from its output, killed with SIGKILL;
//! and a throw-away PostgreSQL database. Each test crate uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const NIXO: &str = env!("CARGO_BIN_EXE_nixo");
pub struct Server {
    pub child: Child,
    pub base: String,
    pub key: Option<String>,
}

/// Starts `nixo serve` on `data_dir` with extra environment variables.
pub fn spawn_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(NIXO)
        // A crash test, not a rate-limit test: lift the sandbox default.
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit-sandbox",
            "1000000/1",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("NIXO_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nixo starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut key) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("nixo: API listening on ") {
            base = Some(addr.to_string());
        }
        if let Some(k) = line.split("hash): ").nth(1) {
            key = Some(k.to_string());
        }
        if line.contains("sandbox API key") || line.contains("existing installation") {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: base.expect("listening line"),
        key,
    }
}

pub fn verify(data_dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(NIXO)
        .args(["ledger", "verify", "--data-dir"])
        .arg(data_dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A fresh PostgreSQL database on the local server, or `None` (said
/// loudly) when there is none; in CI it must be there.
const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Drops a database made by [`postgres_database`].
pub async fn drop_postgres_database(url: &str) {
    use sqlx::Connection;
    let name = url.rsplit('/').next().unwrap_or_default();
    if let Ok(mut admin) = sqlx::PgConnection::connect(ADMIN).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

pub async fn postgres_database(label: &str) -> Option<String> {
    use sqlx::Connection;
    let mut admin = match sqlx::PgConnection::connect(ADMIN).await {
        Ok(conn) => conn,
        Err(err) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is required in CI but not reachable at {ADMIN}: {err}")
        }
        Err(err) => {
            eprintln!("\n*** SKIPPED: PostgreSQL is not reachable at {ADMIN}: {err}\n");
            return None;
        }
    };
    let name = format!("nixo_{label}_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await
        .ok()?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

/// A 50.00 KES transfer from `source` to wallet 102 as a fraud rule sees
/// it, with the hostile test rule's `behaviour` in its metadata when given.
pub fn rule_transfer(source: &str, behaviour: Option<&str>) -> nixo_core::rules::Transaction {
    use nixo_core::rules::{AccountFacts, Money, Transaction, TransactionKind, VelocityFacts};
    Transaction {
        kind: TransactionKind::Transfer,
        amount: Money {
            amount: "50.00".into(),
            currency: "KES".into(),
        },
        source: source.into(),
        destination: "102".into(),
        destination_country: None,
        account: AccountFacts {
            kyc_level: 1,
            age_days: 30,
            sandbox: true,
        },
        velocity: VelocityFacts {
            count_last_hour: 0,
            sum_last_hour: "0.00".into(),
            count_last_day: 0,
            sum_last_day: "0.00".into(),
        },
        metadata: behaviour
            .map(|b| ("behaviour".to_string(), b.to_string()))
            .into_iter()
            .collect(),
    }
}
