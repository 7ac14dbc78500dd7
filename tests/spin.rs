//! The gateway component on a real Fermyon Spin (`spin up`) in front of an
//! exposed core, as a team deploying on Spin runs it: the repository's own
//! `spin.toml`, built by `spin build`, its key/value store on Redis.
//!
//! `NIXO_TEST_GATEWAY=spin` puts every test server of the end-to-end suites
//! behind Spin instead of the gateway embedded in `nixo serve`. The Spin CLI
//! is `$SPIN`, else `spin` on the PATH.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Names the Spin CLI to use.
pub const SPIN_ENV: &str = "SPIN";
/// `spin` here routes the test servers through Spin.
pub const GATEWAY_MODE_ENV: &str = "NIXO_TEST_GATEWAY";
/// How long `spin up` may take to listen (a first start compiles the component).
pub const SPIN_READY_MAX_MS: u64 = 120_000;
/// Ports taken by someone else between our probe and Spin's bind: tries.
const SPIN_START_TRIES: usize = 3;

/// Whether the test servers of this run are reached through Spin.
pub fn through_spin() -> bool {
    std::env::var(GATEWAY_MODE_ENV).is_ok_and(|v| v == "spin")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The Spin CLI: `$SPIN` when set, else `spin` on the PATH.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SPIN_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("spin"))
        .find(|candidate| candidate.is_file())
}

/// The Spin CLI, or `None` after saying loudly that the Spin tests are
/// skipped. In CI (`CI=true`) a missing Spin fails the test instead.
pub fn required() -> Option<PathBuf> {
    match find() {
        Some(spin) => Some(spin),
        None if in_ci() || through_spin() => {
            panic!("Spin is required here but neither ${SPIN_ENV} nor `spin` on the PATH names it")
        }
        None => {
            eprintln!(
                "\n*** SKIPPED: no Spin CLI (set ${SPIN_ENV} or put `spin` on the PATH); the Spin tests did not run\n"
            );
            None
        }
    }
}

/// The repository root (where `spin.toml` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

/// The component file `spin.toml` names (relative to the manifest).
pub fn manifest_component() -> PathBuf {
    let manifest = std::fs::read_to_string(repo_root().join("spin.toml")).expect("spin.toml");
    let source = manifest
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("source = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("spin.toml names the gateway's source");
    repo_root().join(source)
}

/// Runs `spin build` on the repository once per test process (the README's
/// step; a no-op when the project's build already wrote the component) and
/// returns the component `spin up` will load.
pub fn build_once(spin: &Path) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new(spin)
            .arg("build")
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {} build: {e}", spin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "spin build failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let component = manifest_component();
        if component.is_file() {
            Ok(component)
        } else {
            Err(format!("spin build succeeded but {} is missing", component.display()))
        }
    });
    built.clone().unwrap_or_else(|why| panic!("{why}"))
}

/// A free loopback port (free when probed).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `spin up` of the repository's `spin.toml`, killed on drop. Its state
/// and logs live in a temporary directory, kept (and named) when the test
/// fails.
pub struct SpinGateway {
    child: Child,
    pub addr: SocketAddr,
    dir: Option<tempfile::TempDir>,
}

impl SpinGateway {
    /// Starts Spin in front of the core at `core`, signing with `secret`,
    /// with the gateway `variables` (`rate_limit_sandbox`, …) and the
    /// `default` key/value store on the Redis at `redis_url`.
    pub async fn start(
        core: SocketAddr,
        secret: &str,
        variables: &BTreeMap<String, String>,
        redis_url: &str,
    ) -> SpinGateway {
        let spin = required().expect("Spin");
        build_once(&spin);
        let dir = tempfile::Builder::new().prefix("nixo-spin-").tempdir().unwrap();
        let runtime_config = dir.path().join("runtime-config.toml");
        std::fs::write(
            &runtime_config,
            format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{redis_url}\"\n"),
        )
        .unwrap();
        let mut last_error = String::new();
        for attempt in 0..SPIN_START_TRIES {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let stdout = std::fs::File::create(dir.path().join(format!("spin-{attempt}.stdout"))).unwrap();
            let stderr_path = dir.path().join(format!("spin-{attempt}.stderr"));
            let stderr = std::fs::File::create(&stderr_path).unwrap();
            let mut command = Command::new(&spin);
            // `spin up` runs the trigger as a child process: a group of their
            // own lets the drop stop both.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            command
                .arg("up")
                .arg("--from")
                .arg(repo_root().join("spin.toml"))
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--runtime-config-file")
                .arg(&runtime_config)
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .arg("--log-dir")
                .arg(dir.path().join("logs"))
                .env("SPIN_VARIABLE_CORE_URL", format!("http://{core}"))
                .env("SPIN_VARIABLE_GATEWAY_SIGNING_SECRET", secret)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            for (name, value) in variables {
                command.env(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()), value);
            }
            let child = command.spawn().expect("spin up starts");
            let mut gateway = SpinGateway { child, addr, dir: None };
            match gateway.wait_ready().await {
                Ok(()) => {
                    gateway.dir = Some(dir);
                    return gateway;
                }
                Err(why) => {
                    gateway.kill();
                    last_error = format!("{why}\n{}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
                }
            }
        }
        let kept = dir.keep();
        panic!(
            "spin up did not start after {SPIN_START_TRIES} tries (logs in {}): {last_error}",
            kept.display()
        )
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(SPIN_READY_MAX_MS) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("spin up exited with {status}"));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "spin up was not listening on {} after {SPIN_READY_MAX_MS} ms",
            self.addr
        ))
    }

    /// `http://host:port` of this gateway.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl SpinGateway {
    /// Kills `spin up` and its trigger process (their process group).
    fn kill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SpinGateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("spin up on {}: its logs are kept in {}", self.addr, kept.display());
        }
    }
}

/// The signing secret of the core serving `data_dir` (what its gateway must
/// sign with): `NIXO_GATEWAY_SIGNING_SECRET`, else the data directory's.
pub fn core_signing_secret(data_dir: &Path) -> String {
    if let Ok(secret) = std::env::var("NIXO_GATEWAY_SIGNING_SECRET") {
        return secret;
    }
    let text = std::fs::read_to_string(data_dir.join("secrets.json")).expect("the core's secrets.json");
    let secrets: serde_json::Value = serde_json::from_str(&text).expect("secrets.json is JSON");
    secrets["gateway_signing_secret"]
        .as_str()
        .expect("gateway_signing_secret")
        .to_string()
}
