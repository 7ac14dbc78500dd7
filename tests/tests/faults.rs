//! Dependencies that fail under load: a PostgreSQL crash and restart, a
//! Redis (the gateway's key/value store) crash and restart, and a full
//! disk under SQLite. While the dependency is down the API answers with a
//! structured 503 (never a 500, never a hang), it recovers by itself when
//! the dependency is back, and nothing acknowledged is lost or applied
//! twice: clients retry with the same `Idempotency-Key` until answered.
//!
//! Each test runs its own PostgreSQL cluster or Redis server on a free
//! port (so it can crash them), and the disk test mounts a small tmpfs
//! (root only; skipped loudly elsewhere, required in CI).

use nixo_core::server::ServeConfig;
use nixo_tests::{TestServer, start_with};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long any answer may take while a dependency is down: a request can
/// meet the pool's wait for a connection (3 s) a few times in a row (its
/// key's lookup, its idempotency record, its ledger write).
const ANSWER_WITHIN_MS: u64 = 15_000;
/// How long the API has to recover once the dependency is back.
const RECOVER_WITHIN_MS: u64 = 30_000;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip_or_fail(why: &str) {
    assert!(!in_ci(), "required in CI: {why}");
    eprintln!("\n*** SKIPPED: {why}\n");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn config(dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::ephemeral(dir);
    config
        .edge_variables
        .insert("rate_limit_sandbox".into(), "1000000/1".into());
    config
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Answers by status (and error code for errors).
    statuses: BTreeMap<String, usize>,
    /// The transfers acknowledged, by tx_id.
    acknowledged: Vec<String>,
    slowest_ms: u128,
}

/// Live counts of the load, for the fault side to wait on.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    unavailable: AtomicUsize,
    acknowledged: AtomicUsize,
}

impl Progress {
    /// Waits until `counter` passes `at_least` (within `RECOVER_WITHIN_MS`).
    async fn wait(&self, counter: &AtomicUsize, at_least: usize, what: &str) {
        let started = Instant::now();
        while counter.load(Ordering::Relaxed) < at_least {
            assert!(
                started.elapsed() < Duration::from_millis(RECOVER_WITHIN_MS),
                "{what}: waited in vain"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Clients sending 1.00 KES transfers from wallet 101 to 102, each retried
/// with its key until a 2xx, until told to stop.
async fn load(server: &TestServer, clients: usize, progress: Arc<Progress>) -> Seen {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(ANSWER_WITHIN_MS))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, key, progress) = (http.clone(), server.base.clone(), server.key.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut n = 0;
            while !progress.stop.load(Ordering::Relaxed) {
                n += 1;
                let idempotency_key = format!("fault-{c}-{n}");
                loop {
                    let started = Instant::now();
                    let sent = http
                        .post(format!("{base}/v1/payments/transfer"))
                        .bearer_auth(&key)
                        .header("idempotency-key", &idempotency_key)
                        .json(&serde_json::json!({"from_wallet": 101, "to_wallet": 102, "amount": "1.00", "currency": "KES"}))
                        .send()
                        .await;
                    seen.slowest_ms = seen.slowest_ms.max(started.elapsed().as_millis());
                    let Ok(response) = sent else {
                        *seen.statuses.entry("no answer".into()).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let label = match body["error"]["code"].as_str() {
                        Some(code) => format!("{status} {code}"),
                        None => status.to_string(),
                    };
                    *seen.statuses.entry(label).or_default() += 1;
                    if (200..300).contains(&status) {
                        seen.acknowledged.push(body["data"]["tx_id"].as_str().unwrap().to_string());
                        progress.acknowledged.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if status == 503 {
                        progress.unavailable.fetch_add(1, Ordering::Relaxed);
                    }
                    if status < 500 && status != 409 {
                        // A refusal (the checks report it): not retried.
                        break;
                    }
                    // Retried with the same key after a pause (a 503, 409 in use…).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for task in tasks {
        let seen = task.await.unwrap();
        for (label, n) in seen.statuses {
            *all.statuses.entry(label).or_default() += n;
        }
        all.acknowledged.extend(seen.acknowledged);
        all.slowest_ms = all.slowest_ms.max(seen.slowest_ms);
    }
    all
}

/// Runs the load beside `faults` (which tells the load to stop when done).
async fn under_load<T, Fut>(server: &TestServer, faults: impl FnOnce(Arc<Progress>) -> Fut) -> (Seen, T)
where
    Fut: std::future::Future<Output = T>,
{
    let progress = Arc::new(Progress::default());
    tokio::join!(load(server, 4, progress.clone()), faults(progress.clone()))
}

/// While a dependency is down: a structured 503 within `within`.
async fn assert_unavailable(server: &TestServer, within: Duration) {
    let asked = Instant::now();
    let reply = server.get("/v1/balances?wallet_id=101").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error().0, "service_unavailable", "{}", reply.body);
    let waited = asked.elapsed();
    assert!(waited < within, "answered after {waited:?}");
}

/// The checks every fault test ends with: only 2xx and structured 503s
/// were seen, each acknowledged transfer is there once, the wallets moved
/// by exactly what was acknowledged, and the ledger verifies.
async fn assert_nothing_lost(server: &TestServer, seen: &Seen, what: &str) {
    println!("{what}: answers {:?}; slowest {} ms", seen.statuses, seen.slowest_ms);
    for label in seen.statuses.keys() {
        assert!(
            label.starts_with('2') || label == "503 service_unavailable" || label == "409 idempotency_key_in_use",
            "{what}: an answer other than success, a structured 503 or 409 in use: {label} ({:?})",
            seen.statuses
        );
    }
    assert!(
        seen.statuses.keys().any(|l| l.starts_with("503")),
        "{what}: the fault was felt ({:?})",
        seen.statuses
    );
    assert!(
        seen.slowest_ms < u128::from(ANSWER_WITHIN_MS),
        "{what}: an answer took {} ms",
        seen.slowest_ms
    );
    let mut ids = seen.acknowledged.clone();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        seen.acknowledged.len(),
        "{what}: one tx_id acknowledged twice"
    );
    let n = i64::try_from(ids.len()).unwrap();
    assert!(n > 10, "{what}: the load ran ({n} acknowledged)");
    let (available, _, _) = server.wallet_balance(101).await;
    assert_eq!(
        available,
        format!("{}.00", 100_000 - n),
        "{what}: wallet 101 moved by exactly the {n} acknowledged transfers"
    );
    // Past 20 an hour the rules hold transfers for review: pending at 102.
    let (available, pending, _) = server.wallet_balance(102).await;
    let received = |text: &str| text.trim_end_matches(".00").parse::<i64>().unwrap();
    assert_eq!(
        received(&available) + received(&pending),
        100_000 + n,
        "{what}: wallet 102 ({available} available, {pending} pending)"
    );
    let now_ms = chrono::Utc::now().timestamp_millis();
    let report = nixo_core::ledger::verify::verify(server.db(), now_ms, 60_000)
        .await
        .unwrap();
    assert!(report.is_sound(), "{what}: {report}");
}

/// Polls until a request succeeds again.
async fn until_recovered(server: &TestServer, what: &str) {
    let started = Instant::now();
    loop {
        let reply = server.get("/v1/balances?wallet_id=101").await;
        if reply.status == 200 {
            println!(
                "{what}: serving again {} ms after it came back",
                started.elapsed().as_millis()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_millis(RECOVER_WITHIN_MS),
            "{what}: not recovered: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- PostgreSQL ----------------------------------------------------------

/// A PostgreSQL cluster of the test's own, to crash and restart.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn find_bin() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
            .collect();
        found.sort();
        found.pop()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn init() -> Option<Cluster> {
        let bin = Cluster::find_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        );
        Some(cluster)
    }

    fn start(&self) {
        let (data, socket) = (self.data(), self.dir.path().display().to_string());
        let options = format!(
            "-p {} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let log = format!("{data}/server.log");
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-o", &options, "start"]);
    }

    /// A crash: no shutdown checkpoint, connections cut.
    fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_mid_load_is_503s_then_recovery_with_nothing_lost() {
    let Some(cluster) = Cluster::init() else {
        return skip_or_fail("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql");
    };
    cluster.start();
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        ServeConfig {
            database_url: Some(cluster.url()),
            ..config(dir.path())
        },
        None,
    )
    .await;
    let (srv, cluster) = (&server, &cluster);
    let (seen, ()) = under_load(srv, |progress| async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        tokio::task::block_in_place(|| cluster.crash());
        // While it is down: readiness says so, requests are refused within
        // the pool's wait for a connection.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = srv.ops_get("/readyz").await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        let within = Duration::from_millis(nixo_core::db::POOL_ACQUIRE_TIMEOUT_MS + 1_000);
        assert_unavailable(srv, within).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        tokio::task::block_in_place(|| cluster.start());
        until_recovered(srv, "PostgreSQL restart").await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        progress.stop.store(true, Ordering::Relaxed);
    })
    .await;
    assert_nothing_lost(&server, &seen, "PostgreSQL crash").await;
    server.stop().await;
}

// ---- Redis -----------------------------------------------------------------

/// A Redis server of the test's own, to crash and restart.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start(port: u16) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server starts");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            child: Some(child),
            port,
        })
    }

    fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.crash();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_is_503s_at_the_edge_then_recovery_with_nothing_lost() {
    let port = free_port();
    let Some(mut redis) = Redis::start(port) else {
        return skip_or_fail("no redis-server on the PATH");
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        ServeConfig {
            kv_url: Some(format!("redis://127.0.0.1:{port}/0")),
            ..config(dir.path())
        },
        None,
    )
    .await;
    let (srv, redis) = (&server, &mut redis);
    let (seen, _restarted) = under_load(srv, |progress| async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        redis.crash();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_unavailable(srv, Duration::from_millis(4 * nixo_core::edge::kv::KV_TIMEOUT_MS)).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let restarted = Redis::start(redis.port).expect("redis-server restarts");
        until_recovered(srv, "Redis restart").await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        progress.stop.store(true, Ordering::Relaxed);
        restarted
    })
    .await;
    assert_nothing_lost(&server, &seen, "Redis crash").await;
    server.stop().await;
}

// ---- A full disk -----------------------------------------------------------

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the disk but for `left` bytes, with one file.
fn fill(disk: &Path, left: u64) -> PathBuf {
    use std::io::Write;
    let path = disk.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0_u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.flush();
    let len = std::fs::metadata(&path).unwrap().len();
    file.set_len(len.saturating_sub(left)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503s_then_recovery_with_nothing_lost() {
    let Some(disk) = SmallDisk::mount(64) else {
        return skip_or_fail("mounting a small tmpfs needs root");
    };
    let data = disk.path().join("data");
    let server = start_with(config(&data), None).await;
    let (srv, disk) = (&server, &disk);
    let (seen, ()) = under_load(srv, |progress| async move {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let filler = fill(disk.path(), 128 << 10);
        // Writes fail once the little space left is used; reads still work.
        progress
            .wait(&progress.unavailable, 1, "a 503 once the disk is full")
            .await;
        let reply = srv.get("/v1/balances?wallet_id=101").await;
        assert_eq!(reply.status, 200, "reads work on a full disk: {}", reply.body);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let before = progress.acknowledged.load(Ordering::Relaxed);
        std::fs::remove_file(&filler).unwrap();
        progress
            .wait(
                &progress.acknowledged,
                before + 20,
                "transfers acknowledged again once the disk has room",
            )
            .await;
        progress.stop.store(true, Ordering::Relaxed);
    })
    .await;
    assert_nothing_lost(&server, &seen, "full disk").await;
    server.stop().await;
}
