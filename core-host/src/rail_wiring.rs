//! Which rails a server pays out on, and which KYC provider it verifies
//! accounts with: the sandboxes (started in-process on loopback, the
//! default), or real endpoints named by configuration. The clients are the
//! same code either way.

use crate::providers::bank::Debtor;
use crate::providers::bank::host_to_host::HostToHost;
use crate::providers::bank::sandbox::{self as bank_sandbox, SandboxBankConfig};
use crate::providers::kyc::KycProvider;
use crate::providers::kyc::client::IdvClient;
use crate::providers::kyc::sandbox::{self as kyc_sandbox, SandboxKycConfig};
use crate::providers::mpesa::client::{Daraja, DarajaConfig};
use crate::providers::mpesa::sandbox::{self as daraja_sandbox, SandboxDarajaConfig};
use crate::services::deposits::STK_RESULT_WAIT_MS;
use crate::services::payouts::rails::{MPESA_RESULT_WAIT_MS, PayoutRails};
use crate::services::withdrawals::WITHDRAWAL_WAIT_MS;
use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Timings of the sandbox rails.
#[derive(Debug, Clone)]
pub struct SandboxTimings {
    pub bank_settle_delay_ms: u64,
    pub bank_slow_delay_ms: u64,
    pub mpesa_result_delay_ms: u64,
    pub mpesa_slow_delay_ms: u64,
    /// How long Nixo waits for a Daraja result before asking.
    pub mpesa_result_wait_ms: i64,
    /// Before a deposit without a callback is asked for (STK push query).
    pub stk_result_wait_ms: i64,
    /// How long a withdrawal waits for its rail before answering PROCESSING.
    pub withdrawal_wait_ms: i64,
}

impl Default for SandboxTimings {
    fn default() -> Self {
        SandboxTimings {
            bank_settle_delay_ms: 500,
            bank_slow_delay_ms: 120_000,
            mpesa_result_delay_ms: 300,
            mpesa_slow_delay_ms: 20_000,
            mpesa_result_wait_ms: MPESA_RESULT_WAIT_MS,
            stk_result_wait_ms: STK_RESULT_WAIT_MS,
            withdrawal_wait_ms: WITHDRAWAL_WAIT_MS,
        }
    }
}

/// Milliseconds from the variable `name`, or `default`.
fn env_ms(name: &str, default: i64) -> anyhow::Result<i64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .map(i64::from)
            .with_context(|| format!("{name} must be milliseconds (at most {})", u32::MAX)),
        Err(_) => Ok(default),
    }
}

impl SandboxTimings {
    /// The defaults, with `NIXO_SANDBOX_BANK_SETTLE_MS`,
    /// `NIXO_SANDBOX_BANK_SLOW_MS`, `NIXO_SANDBOX_MPESA_RESULT_MS`,
    /// `NIXO_SANDBOX_MPESA_SLOW_MS` and `NIXO_MPESA_RESULT_WAIT_MS` overriding.
    pub fn from_env() -> anyhow::Result<SandboxTimings> {
        let mut t = SandboxTimings::default();
        let read = |name: &str, slot: &mut u64| -> anyhow::Result<()> {
            if let Ok(v) = std::env::var(name) {
                *slot = v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} must be milliseconds"))?;
            }
            Ok(())
        };
        read("NIXO_SANDBOX_BANK_SETTLE_MS", &mut t.bank_settle_delay_ms)?;
        read("NIXO_SANDBOX_BANK_SLOW_MS", &mut t.bank_slow_delay_ms)?;
        read("NIXO_SANDBOX_MPESA_RESULT_MS", &mut t.mpesa_result_delay_ms)?;
        read("NIXO_SANDBOX_MPESA_SLOW_MS", &mut t.mpesa_slow_delay_ms)?;
        let mut wait = t.mpesa_result_wait_ms as u64;
        read("NIXO_MPESA_RESULT_WAIT_MS", &mut wait)?;
        t.mpesa_result_wait_ms = i64::try_from(wait).context("NIXO_MPESA_RESULT_WAIT_MS is too large")?;
        t.stk_result_wait_ms = env_ms("NIXO_MPESA_STK_WAIT_MS", t.stk_result_wait_ms)?;
        t.withdrawal_wait_ms = env_ms("NIXO_WITHDRAWAL_WAIT_MS", t.withdrawal_wait_ms)?;
        Ok(t)
    }
}

/// Real rail endpoints and credentials.
#[derive(Debug, Clone)]
pub struct LiveRails {
    pub bank_url: String,
    pub bank_token: String,
    pub debtor: Debtor,
    pub daraja: DarajaConfig,
    /// The public base URL of the gateway (Daraja posts results there).
    pub public_url: String,
    /// How long Nixo waits for a Daraja B2C result before asking.
    pub mpesa_result_wait_ms: i64,
    pub stk_result_wait_ms: i64,
    pub withdrawal_wait_ms: i64,
}

#[derive(Debug, Clone)]
pub enum RailsConfig {
    Sandbox(SandboxTimings),
    Live(Box<LiveRails>),
}

impl Default for RailsConfig {
    fn default() -> Self {
        RailsConfig::Sandbox(SandboxTimings::default())
    }
}

/// Environment variables of the live rails.
pub const ENV_BANK_URL: &str = "NIXO_BANK_URL";
const LIVE_VARIABLES: [&str; 14] = [
    ENV_BANK_URL,
    "NIXO_BANK_TOKEN",
    "NIXO_BANK_DEBTOR_NAME",
    "NIXO_BANK_DEBTOR_IBAN",
    "NIXO_BANK_DEBTOR_BIC",
    "NIXO_DARAJA_URL",
    "NIXO_DARAJA_CONSUMER_KEY",
    "NIXO_DARAJA_CONSUMER_SECRET",
    "NIXO_DARAJA_SHORTCODE",
    "NIXO_DARAJA_INITIATOR",
    "NIXO_DARAJA_SECURITY_CREDENTIAL",
    "NIXO_DARAJA_STK_SHORTCODE",
    "NIXO_DARAJA_PASSKEY",
    "NIXO_PUBLIC_URL",
];

impl RailsConfig {
    /// Live rails when `NIXO_BANK_URL` is set (then every live variable
    /// must be), the sandboxes otherwise.
    pub fn from_env() -> anyhow::Result<RailsConfig> {
        if std::env::var(ENV_BANK_URL).is_err() {
            return SandboxTimings::from_env().map(RailsConfig::Sandbox);
        }
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} must be set for live rails"));
        for name in LIVE_VARIABLES {
            var(name)?;
        }
        Ok(RailsConfig::Live(Box::new(LiveRails {
            bank_url: var("NIXO_BANK_URL")?,
            bank_token: var("NIXO_BANK_TOKEN")?,
            debtor: Debtor {
                name: var("NIXO_BANK_DEBTOR_NAME")?,
                iban: var("NIXO_BANK_DEBTOR_IBAN")?,
                bic: var("NIXO_BANK_DEBTOR_BIC")?,
            },
            daraja: DarajaConfig {
                base_url: var("NIXO_DARAJA_URL")?,
                consumer_key: var("NIXO_DARAJA_CONSUMER_KEY")?,
                consumer_secret: var("NIXO_DARAJA_CONSUMER_SECRET")?,
                shortcode: var("NIXO_DARAJA_SHORTCODE")?,
                initiator_name: var("NIXO_DARAJA_INITIATOR")?,
                security_credential: var("NIXO_DARAJA_SECURITY_CREDENTIAL")?,
                command_id: std::env::var("NIXO_DARAJA_COMMAND_ID").unwrap_or_else(|_| "BusinessPayment".into()),
                stk_shortcode: var("NIXO_DARAJA_STK_SHORTCODE")?,
                passkey: var("NIXO_DARAJA_PASSKEY")?,
            },
            public_url: var("NIXO_PUBLIC_URL")?,
            mpesa_result_wait_ms: env_ms("NIXO_MPESA_RESULT_WAIT_MS", MPESA_RESULT_WAIT_MS)?,
            stk_result_wait_ms: env_ms("NIXO_MPESA_STK_WAIT_MS", STK_RESULT_WAIT_MS)?,
            withdrawal_wait_ms: env_ms("NIXO_WITHDRAWAL_WAIT_MS", WITHDRAWAL_WAIT_MS)?,
        })))
    }
}

/// The secret path token of the M-Pesa callback URLs, derived from the
/// gateway secret (stable across restarts and replicas, never stored).
pub fn callback_token(gateway_secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(gateway_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"nixo m-pesa callback path token");
    hex::encode(&mac.finalize().into_bytes()[..16])
}

async fn serve_on(
    listen: SocketAddr,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<anyhow::Result<()>>)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await?;
        Ok(())
    });
    Ok((addr, task))
}

fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The rails, and the sandbox servers started for them.
pub async fn start(
    config: &RailsConfig,
    data_dir: &std::path::Path,
    gateway_secret: &str,
    public_addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<PayoutRails>, Vec<JoinHandle<anyhow::Result<()>>>)> {
    let token = callback_token(gateway_secret);
    match config {
        RailsConfig::Live(live) => {
            let rails = PayoutRails {
                bank: Arc::new(HostToHost::new(&live.bank_url, &live.bank_token)),
                mpesa: Arc::new(Daraja::new(live.daraja.clone())),
                debtor: live.debtor.clone(),
                initiating_party: live.debtor.name.clone(),
                callback_base_url: live.public_url.clone(),
                callback_token: token,
                mpesa_result_wait_ms: live.mpesa_result_wait_ms,
                stk_result_wait_ms: live.stk_result_wait_ms,
                withdrawal_wait_ms: live.withdrawal_wait_ms,
            };
            Ok((Arc::new(rails), Vec::new()))
        }
        RailsConfig::Sandbox(timings) => {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let sandboxes = start_sandboxes(timings, data_dir, loopback, loopback, shutdown).await?;
            let live = sandboxes.live(timings, &format!("http://{public_addr}"));
            let rails = PayoutRails {
                bank: Arc::new(HostToHost::new(&live.bank_url, &live.bank_token)),
                mpesa: Arc::new(Daraja::new(live.daraja.clone())),
                debtor: live.debtor.clone(),
                initiating_party: "Nixo Finance".into(),
                callback_base_url: live.public_url.clone(),
                callback_token: token,
                mpesa_result_wait_ms: timings.mpesa_result_wait_ms,
                stk_result_wait_ms: timings.stk_result_wait_ms,
                withdrawal_wait_ms: timings.withdrawal_wait_ms,
            };
            Ok((Arc::new(rails), sandboxes.tasks))
        }
    }
}

/// The sandbox bank and Daraja, serving, with the credentials they expect.
pub struct Sandboxes {
    pub bank_addr: SocketAddr,
    pub bank_token: String,
    pub daraja_addr: SocketAddr,
    pub daraja: SandboxDarajaConfig,
    pub security_credential: String,
    pub tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Sandboxes {
    /// The live-rails configuration that points at these sandboxes.
    pub fn live(&self, timings: &SandboxTimings, public_url: &str) -> LiveRails {
        LiveRails {
            bank_url: format!("http://{}", self.bank_addr),
            bank_token: self.bank_token.clone(),
            debtor: Debtor {
                name: "Nixo Finance Ltd".into(),
                iban: "GB82WEST12345698765432".into(),
                bic: "WESTGB2L".into(),
            },
            daraja: DarajaConfig {
                base_url: format!("http://{}", self.daraja_addr),
                consumer_key: self.daraja.consumer_key.clone(),
                consumer_secret: self.daraja.consumer_secret.clone(),
                shortcode: self.daraja.shortcode.clone(),
                initiator_name: "nixo-sandbox".into(),
                security_credential: self.security_credential.clone(),
                command_id: "BusinessPayment".into(),
                stk_shortcode: self.daraja.stk_shortcode.clone(),
                passkey: self.daraja.passkey.clone(),
            },
            public_url: public_url.to_string(),
            mpesa_result_wait_ms: timings.mpesa_result_wait_ms,
            stk_result_wait_ms: timings.stk_result_wait_ms,
            withdrawal_wait_ms: timings.withdrawal_wait_ms,
        }
    }

    /// The environment variables that make `nixo serve` use these
    /// sandboxes as its live rails (`NIXO_PUBLIC_URL` is the server's own).
    pub fn live_variables(&self, timings: &SandboxTimings) -> Vec<(String, String)> {
        let live = self.live(timings, "");
        [
            (ENV_BANK_URL, live.bank_url),
            ("NIXO_BANK_TOKEN", live.bank_token),
            ("NIXO_BANK_DEBTOR_NAME", live.debtor.name),
            ("NIXO_BANK_DEBTOR_IBAN", live.debtor.iban),
            ("NIXO_BANK_DEBTOR_BIC", live.debtor.bic),
            ("NIXO_DARAJA_URL", live.daraja.base_url),
            ("NIXO_DARAJA_CONSUMER_KEY", live.daraja.consumer_key),
            ("NIXO_DARAJA_CONSUMER_SECRET", live.daraja.consumer_secret),
            ("NIXO_DARAJA_SHORTCODE", live.daraja.shortcode),
            ("NIXO_DARAJA_INITIATOR", live.daraja.initiator_name),
            ("NIXO_DARAJA_SECURITY_CREDENTIAL", live.daraja.security_credential),
            ("NIXO_DARAJA_STK_SHORTCODE", live.daraja.stk_shortcode),
            ("NIXO_DARAJA_PASSKEY", live.daraja.passkey),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

/// Starts the sandbox bank and Daraja on the given addresses, their books
/// kept in `data_dir` (so they survive a restart, as a real bank's do).
/// `nixo serve` starts them on loopback for itself; `nixo sandbox` starts
/// them as a process of their own, for replicas that must share one bank
/// and one Daraja.
pub async fn start_sandboxes(
    timings: &SandboxTimings,
    data_dir: &std::path::Path,
    bank_listen: SocketAddr,
    daraja_listen: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Sandboxes> {
    let bank_token = random_secret();
    let (bank_addr, bank_task) = serve_on(
        bank_listen,
        bank_sandbox::router(SandboxBankConfig {
            token: bank_token.clone(),
            settle_delay_ms: timings.bank_settle_delay_ms,
            slow_delay_ms: timings.bank_slow_delay_ms,
            state_file: Some(data_dir.join("sandbox-bank.json")),
        }),
        shutdown.clone(),
    )
    .await?;
    let daraja = SandboxDarajaConfig {
        consumer_key: random_secret(),
        consumer_secret: random_secret(),
        shortcode: "600996".into(),
        result_delay_ms: timings.mpesa_result_delay_ms,
        slow_delay_ms: timings.mpesa_slow_delay_ms,
        state_file: Some(data_dir.join("sandbox-daraja.json")),
        stk_shortcode: "174379".into(),
        passkey: random_secret(),
    };
    let (daraja_addr, daraja_task) = serve_on(daraja_listen, daraja_sandbox::router(daraja.clone()), shutdown).await?;
    tracing::info!(bank = %bank_addr, daraja = %daraja_addr, "sandbox rails started");
    Ok(Sandboxes {
        bank_addr,
        bank_token,
        daraja_addr,
        daraja,
        security_credential: random_secret(),
        tasks: vec![bank_task, daraja_task],
    })
}

/// Where KYC checks go: the in-process sandbox provider (default), or a
/// real one (`NIXO_KYC_URL` and `NIXO_KYC_TOKEN`).
#[derive(Debug, Clone)]
pub enum KycConfig {
    Sandbox {
        /// How long a sandbox check stays in progress.
        complete_delay_ms: u64,
    },
    Live {
        url: String,
        token: String,
    },
}

/// How long a sandbox check stays in progress by default.
pub const SANDBOX_KYC_DELAY_MS: u64 = 300;

impl Default for KycConfig {
    fn default() -> Self {
        KycConfig::Sandbox {
            complete_delay_ms: SANDBOX_KYC_DELAY_MS,
        }
    }
}

impl KycConfig {
    /// A live provider when `NIXO_KYC_URL` is set (then `NIXO_KYC_TOKEN`
    /// must be), the sandbox otherwise (`NIXO_SANDBOX_KYC_MS` its delay).
    pub fn from_env() -> anyhow::Result<KycConfig> {
        if let Ok(url) = std::env::var("NIXO_KYC_URL") {
            let token = std::env::var("NIXO_KYC_TOKEN").context("NIXO_KYC_TOKEN must be set with NIXO_KYC_URL")?;
            return Ok(KycConfig::Live { url, token });
        }
        let complete_delay_ms = match std::env::var("NIXO_SANDBOX_KYC_MS") {
            Ok(v) => v.trim().parse().context("NIXO_SANDBOX_KYC_MS must be milliseconds")?,
            Err(_) => SANDBOX_KYC_DELAY_MS,
        };
        Ok(KycConfig::Sandbox { complete_delay_ms })
    }
}

/// The KYC provider client, and the sandbox server started for it.
pub async fn start_kyc(
    config: &KycConfig,
    data_dir: &std::path::Path,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<dyn KycProvider>, Vec<JoinHandle<anyhow::Result<()>>>)> {
    match config {
        KycConfig::Live { url, token } => Ok((Arc::new(IdvClient::new(url, token)), Vec::new())),
        KycConfig::Sandbox { complete_delay_ms } => {
            let token = random_secret();
            let (addr, task) = serve_on(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                kyc_sandbox::router(SandboxKycConfig {
                    token: token.clone(),
                    complete_delay_ms: *complete_delay_ms,
                    state_file: Some(data_dir.join("sandbox-kyc.json")),
                }),
                shutdown,
            )
            .await?;
            tracing::info!(kyc = %addr, "sandbox KYC provider started");
            Ok((Arc::new(IdvClient::new(&format!("http://{addr}"), &token)), vec![task]))
        }
    }
}
