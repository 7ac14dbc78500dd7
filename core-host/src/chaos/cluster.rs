//! The processes a chaos run drives: one `nixo sandbox` (the bank and
//! Daraja, which outlive every crash of ours, as real ones do) and one or
//! more `nixo serve` replicas on one database, each killed with SIGKILL and
//! restarted on its own address and data directory.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started process has to say it is ready.
pub const START_TIMEOUT_MS: u64 = 60_000;
/// The job lease of the replicas: work a killed replica held is taken over
/// this long after its last heartbeat (shorter leases thrash under a
/// 32-client load on SQLite: heartbeats wait behind the one writer).
pub const JOB_LEASE_MS: i64 = 5_000;

/// The sandbox rails' timings in a run: short, so a run ends in minutes.
const SANDBOX_TIMINGS: [(&str, &str); 4] = [
    ("NIXO_SANDBOX_BANK_SETTLE_MS", "200"),
    ("NIXO_SANDBOX_MPESA_RESULT_MS", "100"),
    ("NIXO_SANDBOX_MPESA_SLOW_MS", "1500"),
    ("NIXO_SANDBOX_BANK_SLOW_MS", "1500"),
];
/// How long the replicas wait for the rails before asking them.
pub const SERVE_TIMINGS: [(&str, &str); 3] = [
    ("NIXO_MPESA_RESULT_WAIT_MS", "3000"),
    ("NIXO_MPESA_STK_WAIT_MS", "3000"),
    ("NIXO_WITHDRAWAL_WAIT_MS", "2000"),
];

/// A child process, killed (SIGKILL) and reaped when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `stdout` until `done` says a line ends the start-up, collecting
/// every line; then drains the rest on a thread (a full pipe would block
/// the child).
fn read_start(stdout: ChildStdout, done: impl Fn(&str) -> bool, what: &str) -> anyhow::Result<Vec<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // The reader stopped listening: keep draining.
                continue;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let end = done(&line);
                lines.push(line);
                if end {
                    // Later lines are dropped by the thread (send fails once rx is gone).
                    return Ok(lines);
                }
            }
            Err(_) => bail!("{what} did not start within {START_TIMEOUT_MS} ms; it printed: {lines:?}"),
        }
    }
}

/// The log of a child process, appended to across its restarts.
fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The sandbox rails, serving.
pub struct Rails {
    _child: Owned,
    /// The live-rails variables that point a server at them.
    pub variables: Vec<(String, String)>,
}

impl Rails {
    pub fn start(nixo: &Path, data_dir: &Path) -> anyhow::Result<Rails> {
        std::fs::create_dir_all(data_dir)?;
        let mut child = Command::new(nixo)
            .arg("sandbox")
            .arg("--data-dir")
            .arg(data_dir)
            .env("NIXO_LOG", "warn")
            .envs(SANDBOX_TIMINGS)
            .stdout(Stdio::piped())
            .stderr(log_file(data_dir, "sandbox.log")?)
            .spawn()
            .with_context(|| format!("starting {} sandbox", nixo.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let child = Owned(child);
        let lines = read_start(stdout, |l| l.starts_with("nixo: sandbox rails ready"), "nixo sandbox")?;
        let variables = lines
            .iter()
            .filter_map(|l| l.split_once('='))
            .filter(|(name, _)| name.starts_with("NIXO_"))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Ok(Rails {
            _child: child,
            variables,
        })
    }
}

/// One `nixo serve` of the run.
pub struct Replica {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub env: Vec<(String, String)>,
    nixo: PathBuf,
    child: Option<Owned>,
}

impl Replica {
    pub fn new(nixo: &Path, name: String, data_dir: PathBuf, env: Vec<(String, String)>) -> anyhow::Result<Replica> {
        std::fs::create_dir_all(&data_dir)?;
        Ok(Replica {
            name,
            data_dir,
            listen: free_port()?,
            env,
            nixo: nixo.to_path_buf(),
            child: None,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts it and waits until it serves; returns the sandbox key when
    /// this start created the installation.
    pub fn start(&mut self) -> anyhow::Result<Option<String>> {
        anyhow::ensure!(self.child.is_none(), "{} is running already", self.name);
        let mut child = Command::new(&self.nixo)
            .args(["serve", "--rate-limit-sandbox", "1000000/1", "--job-lease-ms"])
            .arg(JOB_LEASE_MS.to_string())
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("NIXO_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(log_file(&self.data_dir, "serve.log")?)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        let stdout = child.stdout.take().context("stdout")?;
        let child = Owned(child);
        let lines = read_start(
            stdout,
            |l| l.contains("sandbox API key") || l.contains("existing installation"),
            &self.name,
        )?;
        self.child = Some(child);
        Ok(lines.iter().find_map(|l| l.split("hash): ").nth(1).map(str::to_string)))
    }

    /// SIGKILL: no shutdown, no flush, whatever it was doing.
    pub fn kill(&mut self) {
        self.child = None;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Copies a directory tree (the plugins a replica starts with).
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
