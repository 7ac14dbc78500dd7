//! Helpers for the end-to-end tests in `tests/tests/`: a real `nixo serve`
//! started in-process on an ephemeral port with a temporary data directory,
//! driven over real HTTP through the gateway component.

use nixo_core::server::{self, Running, ServeConfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The request body of the Nexbit document's transfer example, verbatim.
pub const SEED_TRANSFER: &str = r#"{
  "from_wallet": 101,
  "to_wallet": 102,
  "amount": "50.00",
  "currency": "KES",
  "metadata": {
    "note": "For lunch"
  }
}"#;

/// Runs `async fn $name(&TestServer)` as two tests, `$name::sqlite` and
/// `$name::postgres`, each on a fresh server made by `$start(dir, database_url)`
/// (default: [`start_on`] without an exposed core).
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        $crate::on_both_databases!($name, $crate::start_on_database);
    };
    ($name:ident, $start:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let server = $start(dir.path(), None).await;
                super::$name(&server).await;
                server.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(pg) = $crate::PgDatabase::create(stringify!($name)).await else {
                    return;
                };
                let dir = tempfile::tempdir().unwrap();
                let server = $start(dir.path(), Some(pg.url.clone())).await;
                super::$name(&server).await;
                server.stop().await;
            }
        }
    };
}

/// Compiled components are shared between tests (keyed by content hash).
fn shared_cache_dir() -> PathBuf {
    std::env::temp_dir().join("nixo-test-compile-cache")
}

/// The `nixo` command-line tool of this build (`cargo test --workspace`
/// builds it next to the test binaries).
pub fn nixo_cli() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let nixo = profile_dir.join(format!("nixo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        nixo.exists(),
        "{} is missing: build it with `cargo build -p nixo-core --bin nixo`",
        nixo.display()
    );
    nixo
}

pub mod bench;
pub mod spin;

pub struct TestServer {
    pub running: Option<Running>,
    /// The Spin gateway the requests go through (`NIXO_TEST_GATEWAY=spin`).
    pub spin: Option<spin::SpinGateway>,
    pub base: String,
    pub key: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

pub async fn start(data_dir: &Path, key: Option<String>, core_listen: bool) -> TestServer {
    start_on(data_dir, key, core_listen, None).await
}

/// Like [`start`], on the database at `database_url` (SQLite in `data_dir`
/// when `None`).
pub async fn start_on(
    data_dir: &Path,
    key: Option<String>,
    core_listen: bool,
    database_url: Option<String>,
) -> TestServer {
    start_with(
        ServeConfig {
            database_url,
            core_listen: core_listen.then(|| "127.0.0.1:0".parse().unwrap()),
            ..ServeConfig::ephemeral(data_dir)
        },
        key,
    )
    .await
}

/// A server on `database_url` (SQLite in `dir` when `None`), core not exposed.
pub async fn start_on_database(dir: &Path, database_url: Option<String>) -> TestServer {
    start_on(dir, None, false, database_url).await
}

/// Starts a server with `config` (the shared compile cache is filled in);
/// `key` is the key to use when the data directory is not new.
///
/// With `NIXO_TEST_GATEWAY=spin` the core is exposed and the requests go
/// through the gateway component on a real `spin up` (the test's gateway
/// variables passed as Spin variables, its key/value store on Redis).
pub async fn start_with(config: ServeConfig, key: Option<String>) -> TestServer {
    start_through(config, key, spin::through_spin()).await
}

/// [`start_with`], behind the gateway on Spin when `through_spin`, else
/// behind the gateway embedded in `nixo serve`.
pub async fn start_through(config: ServeConfig, key: Option<String>, through_spin: bool) -> TestServer {
    let data_dir = config.data_dir.clone();
    let edge_variables = config.edge_variables.clone();
    let core_listen = match config.core_listen {
        None if through_spin => Some("127.0.0.1:0".parse().unwrap()),
        listen => listen,
    };
    let running = server::start(ServeConfig {
        cache_dir: config.cache_dir.clone().or_else(|| Some(shared_cache_dir())),
        core_listen,
        ..config
    })
    .await
    .expect("server starts");
    let spin = match through_spin {
        false => None,
        true => {
            let redis = redis_url()
                .await
                .expect("a gateway on Spin keeps its key/value store on Redis");
            let core = running.core_addr.expect("core exposed");
            let secret = spin::core_signing_secret(&data_dir);
            Some(spin::SpinGateway::start(core, &secret, &edge_variables, &redis).await)
        }
    };
    let key = match (&running.bootstrap, key) {
        (Some(first), _) => first.sandbox_key.clone(),
        (None, Some(key)) => key,
        (None, None) => panic!("no key: a restarted server does not mint one"),
    };
    TestServer {
        base: match &spin {
            Some(spin) => spin.base(),
            None => format!("http://{}", running.addr),
        },
        running: Some(running),
        spin,
        key,
        data_dir,
        client: reqwest::Client::new(),
    }
}

/// Sends a request and reads the whole response (its body must be JSON).
pub async fn fetch(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request reaches the server");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text:?}"));
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// A response as a client sees it.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    /// The body exactly as received.
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` and `error.field` of a Nixo error body.
    pub fn error(&self) -> (&str, Option<&str>) {
        let e = &self.body["error"];
        (e["code"].as_str().unwrap_or("<none>"), e["field"].as_str())
    }
}

impl TestServer {
    /// The server's database.
    pub fn db(&self) -> &nixo_core::db::Db {
        &self.running.as_ref().expect("running").ledger().db
    }

    pub fn core_addr(&self) -> SocketAddr {
        self.running.as_ref().and_then(|r| r.core_addr).expect("core exposed")
    }

    pub async fn send(&self, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        fetch(req).await
    }

    /// Sends a request with the server's key and extra headers.
    pub async fn send_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.key));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        fetch(req).await
    }

    /// Where the operations routes (`/healthz`, `/readyz`, `/metrics`) are
    /// served: the public address with the embedded gateway (it hands them to
    /// the core), the core's own address behind Spin (the gateway component
    /// does not route them).
    pub fn ops_base(&self) -> String {
        match &self.spin {
            Some(_) => format!("http://{}", self.core_addr()),
            None => self.base.clone(),
        }
    }

    /// `GET` of an operations route, unauthenticated, at [`Self::ops_base`].
    pub async fn ops_get(&self, path: &str) -> Reply {
        fetch(self.client.get(format!("{}{path}", self.ops_base()))).await
    }

    /// The running server (clock, ledger).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.send("POST", path, Some(&self.key.clone()), Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Some(&self.key.clone()), None).await
    }

    /// `(available, pending, reserved)` of a wallet in KES, as exact text.
    pub async fn wallet_balance(&self, wallet: i64) -> (String, String, String) {
        let reply = self.get(&format!("/v1/balances?wallet_id={wallet}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let pick = |kind: &str| {
            let entries = reply.body[kind].as_array().expect("balance list");
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0]["currency"], "KES");
            entries[0]["amount"].to_string()
        };
        (pick("available"), pick("pending"), pick("reserved"))
    }

    pub async fn stop(mut self) {
        drop(self.spin.take());
        if let Some(running) = self.running.take() {
            running.stop().await.expect("clean stop");
        }
    }
}

/// Where the tests find PostgreSQL (the machine's local server).
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh, empty PostgreSQL database for one test, dropped on drop.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// Creates the database, or returns `None` (after saying so loudly) when
    /// PostgreSQL is unreachable.
    pub async fn create(label: &str) -> Option<PgDatabase> {
        use sqlx::Connection;
        let mut admin = match sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
            Ok(conn) => conn,
            // In CI the database must be there: a skip there would hide a gap.
            Err(err) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL is required in CI but not reachable at {POSTGRES_ADMIN_URL}: {err}")
            }
            Err(err) => {
                eprintln!("\n*** SKIPPED: PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {err}\n");
                return None;
            }
        };
        let name = format!("nixo_{label}_{}_{}", std::process::id(), next_id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        Some(PgDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        })
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort, on a thread of its own (we may be inside a runtime).
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Ledger fixtures shared by the ledger tests and benchmarks.
pub mod ledger_kit {
    use nixo_core::accounts;
    use nixo_core::ledger::{AccountKind, Environment, FLAG_NO_OVERDRAFT, Ledger, Leg, Movement, TxStatus};
    use nixo_core::money::Currency;

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    /// An account with `n` funded no-overdraft wallets in `currency`.
    pub struct Fixture {
        pub account_id: String,
        pub wallets: Vec<i64>,
    }

    pub async fn fixture(ledger: &Ledger, currency: Currency, n: usize, funds_minor: i64) -> Fixture {
        let env = Environment::Sandbox;
        let account_id = accounts::create(&ledger.db, env, "test", 1).await.unwrap();
        let funding = ledger
            .system_account(env, AccountKind::Funding, currency)
            .await
            .unwrap();
        let mut wallets = Vec::new();
        for _ in 0..n {
            let w = ledger
                .create_account(
                    None,
                    Some(&account_id),
                    env,
                    AccountKind::Wallet,
                    currency,
                    FLAG_NO_OVERDRAFT,
                )
                .await
                .unwrap();
            if funds_minor > 0 {
                ledger
                    .record(movement(
                        &account_id,
                        "funding",
                        funding,
                        w,
                        funds_minor,
                        currency,
                        None,
                    ))
                    .await
                    .unwrap();
            }
            wallets.push(w);
        }
        Fixture { account_id, wallets }
    }

    pub fn movement(
        account_id: &str,
        kind: &'static str,
        debit: i64,
        credit: i64,
        amount_minor: i64,
        currency: Currency,
        hold_until_ms: Option<i64>,
    ) -> Movement {
        Movement {
            idempotency_id: None,
            environment: Environment::Sandbox,
            account_id: account_id.to_string(),
            kind,
            status: if hold_until_ms.is_some() {
                TxStatus::PendingReview
            } else {
                TxStatus::Settled
            },
            amount_minor,
            currency,
            fx: None,
            from_wallet: None,
            to_wallet: None,
            risk_score_bp: None,
            rules_applied: Vec::new(),
            metadata_json: "{}".into(),
            error_code: None,
            legs: vec![Leg {
                debit,
                credit,
                amount_minor,
                currency,
                pending_timeout_at_ms: hold_until_ms,
            }],
            effects: Vec::new(),
            now_ms: now_ms(),
        }
    }
}

/// Where the tests find Redis (the machine's local server).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// `REDIS_URL` when Redis answers, else `None` after saying so loudly (in CI
/// it must be there: the test fails instead).
pub async fn redis_url() -> Option<String> {
    let reachable = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect("127.0.0.1:6379"),
    )
    .await;
    match reachable {
        Ok(Ok(_)) => Some(REDIS_URL.to_string()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("Redis is required in CI but not reachable at 127.0.0.1:6379")
        }
        _ => {
            eprintln!("\n*** SKIPPED: Redis is not reachable at 127.0.0.1:6379\n");
            None
        }
    }
}

/// A benchmark size from the environment variable `name`, or `default`.
pub fn env_count<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A query of the integers 1..=$1 as column `i`, in `backend`'s dialect.
pub fn numbers_sql(backend: nixo_core::db::Backend) -> &'static str {
    match backend {
        nixo_core::db::Backend::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) SELECT i FROM n"
        }
        nixo_core::db::Backend::Postgres => "SELECT i FROM generate_series(1, $1) AS n(i)",
    }
}

/// Writes `n` settled KES transfers (101 → 102, amounts 0.01, 0.02, …) of
/// the sandbox account straight to the database, `per_ms` to a millisecond
/// (ties the keyset must break by id): a long history without the API.
pub async fn seed_transfers(server: &TestServer, n: i64, per_ms: i64) {
    let first_ms = 1_700_000_000_000_i64;
    seed_transfers_between(server, n, first_ms, first_ms + n / per_ms.max(1)).await;
}

/// Writes `n` settled KES transfers from wallet 101 to 102 straight to the
/// database, created evenly from `from_ms` to `to_ms` (the velocity
/// triggers run for each, as for any write).
pub async fn seed_transfers_between(server: &TestServer, n: i64, from_ms: i64, to_ms: i64) {
    let db = server.db();
    let account: String = sqlx::query_scalar("SELECT owner_account_id FROM ledger_accounts WHERE id = 101")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let numbers = numbers_sql(db.backend);
    let before: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM transactions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let sql = format!(
        "INSERT INTO transactions (environment, account_id, kind, status, amount_minor, currency, from_wallet,
             to_wallet, created_at_ms)
         SELECT 'sandbox', $2, 'transfer', 'SETTLED', (i % 100000) + 1, 'KES', 101, 102, $3 + i * $4 / $1
         FROM ({numbers}) AS s"
    );
    sqlx::query(&sql)
        .bind(n)
        .bind(account.as_str())
        .bind(from_ms)
        .bind(to_ms - from_ms)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO account_transactions (account_id, environment, transaction_id, kind, currency, amount_minor,
             created_at_ms, status)
         SELECT account_id, environment, id, kind, currency, amount_minor, created_at_ms, status FROM transactions
         WHERE id > $1",
    )
    .bind(before)
    .execute(&db.pool)
    .await
    .unwrap();
}
