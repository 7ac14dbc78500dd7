//! `nixo webhooks …`: check a delivery's signature as a receiver would, and
//! forward this account's events to a local URL while building a receiver.

use clap::Subcommand;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Check a `Nixo-Signature` against a secret and the raw body (exit 1 when it does not hold).
    Verify {
        /// The endpoint's signing secret (`whsec_…`).
        #[arg(long, env = "NIXO_WEBHOOK_SECRET")]
        secret: String,
        /// The `Nixo-Signature` header value (`t=…,v1=…`).
        #[arg(long)]
        signature: String,
        /// The raw body; standard input when left out.
        #[arg(long)]
        payload_file: Option<PathBuf>,
        /// Largest accepted age of the signature, in seconds.
        #[arg(long, default_value_t = nixo_api::webhooks::SIGNATURE_TOLERANCE_SECS)]
        tolerance_secs: i64,
    },
    /// Forward this account's new events to a local URL, signed with a
    /// secret printed at start, printing each delivery (no public URL needed).
    Listen {
        /// Where to post each event.
        #[arg(long)]
        forward_to: String,
        /// The Nixo API.
        #[arg(long, env = "NIXO_API_URL", default_value = "http://127.0.0.1:8080")]
        api_url: String,
        /// An API key with `events:read`.
        #[arg(long, env = "NIXO_KEY")]
        key: String,
        /// Only these event types (comma separated); all when left out.
        #[arg(long)]
        events: Option<String>,
        /// How often to ask for new events, in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Stop after forwarding this many events.
        #[arg(long)]
        max_events: Option<u64>,
    },
}

pub async fn run(command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhooksCommand::Verify {
            secret,
            signature,
            payload_file,
            tolerance_secs,
        } => {
            let body = match payload_file {
                Some(path) => std::fs::read(path)?,
                None => {
                    use std::io::Read;
                    let mut body = Vec::new();
                    std::io::stdin().read_to_end(&mut body)?;
                    body
                }
            };
            let now = chrono::Utc::now().timestamp();
            match nixo_api::webhooks::verify(&secret, &signature, &body, now, tolerance_secs) {
                Ok(()) => {
                    println!("valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("invalid: {why}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        WebhooksCommand::Listen {
            forward_to,
            api_url,
            key,
            events,
            interval_ms,
            max_events,
        } => listen(forward_to, api_url, key, events, interval_ms, max_events).await,
    }
}

async fn get(client: &reqwest::Client, api_url: &str, key: &str, path: &str) -> anyhow::Result<Value> {
    let response = client
        .get(format!("{}{path}", api_url.trim_end_matches('/')))
        .bearer_auth(key)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "the API answered {status}: {body}");
    Ok(body)
}

async fn listen(
    forward_to: String,
    api_url: String,
    key: String,
    events: Option<String>,
    interval_ms: u64,
    max_events: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let wanted: Option<Vec<String>> = events.map(|e| e.split(',').map(|t| t.trim().to_string()).collect());
    let client = reqwest::Client::new();
    let secret = nixo_core::webhooks::new_secret();
    println!("nixo: forwarding new events to {forward_to}");
    println!("nixo: deliveries are signed with {secret}");
    // Only what happens from now on.
    let newest = get(&client, &api_url, &key, "/v1/events?limit=1").await?;
    let mut cursor = newest["data"][0]["id"].as_str().map(str::to_string);
    let mut forwarded = 0u64;
    loop {
        let path = match &cursor {
            Some(id) => format!("/v1/events?limit=100&ending_before={id}"),
            None => "/v1/events?limit=100".to_string(),
        };
        let page = get(&client, &api_url, &key, &path).await?;
        let mut batch: Vec<Value> = page["data"].as_array().cloned().unwrap_or_default();
        batch.reverse(); // oldest first
        for event in &batch {
            cursor = event["id"].as_str().map(str::to_string);
            let kind = event["type"].as_str().unwrap_or_default();
            if wanted
                .as_ref()
                .is_some_and(|w| !w.iter().any(|t| t == kind || t == "*"))
            {
                continue;
            }
            let body = serde_json::to_vec(event)?;
            let signature = nixo_api::webhooks::sign(&[&secret], chrono::Utc::now().timestamp(), &body);
            let started = Instant::now();
            let sent = client
                .post(&forward_to)
                .header("content-type", "application/json")
                .header(nixo_api::webhooks::SIGNATURE_HEADER, signature)
                .header("Nixo-Event-Id", event["id"].as_str().unwrap_or_default())
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let outcome = match sent {
                Ok(r) => r.status().to_string(),
                Err(e) => format!("failed: {e}"),
            };
            println!(
                "{} {kind} → {outcome} ({} ms)",
                event["id"].as_str().unwrap_or_default(),
                started.elapsed().as_millis()
            );
            forwarded += 1;
            if max_events.is_some_and(|max| forwarded >= max) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if page["has_more"] != Value::Bool(true) {
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
    }
}
