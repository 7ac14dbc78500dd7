//! Webhook delivery from the events outbox.
//!
//! `webhooks.fanout` (a periodic job) takes events not yet dispatched and,
//! in one transaction, enqueues a `webhook.deliver` job per (event,
//! subscribed endpoint) and marks the events dispatched: every committed
//! event, and only those, is delivered, at least once. A delivery signs the
//! event (`Nixo-Signature`, every live secret of the endpoint), posts it
//! with a timeout and without following redirects, records the attempt,
//! and on failure schedules the next attempt itself (exponential backoff
//! with jitter, capped, for about three days). An endpoint that has failed
//! without a success for [`WebhookConfig::disable_after_ms`] is disabled,
//! with a reason and a `webhook_endpoint.disabled` event. Per-endpoint
//! ordering is not promised; receivers dedupe on the event id.

use super::Endpoint;
use crate::events::{self, EventRow};
use crate::jobs::NewJob;
use crate::jobs::runner::ClaimedJob;
use crate::ledger::{Effect, Environment};
use crate::services::Services;
use nixo_api::schema::RouteId;
use nixo_api::versions;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

pub const FANOUT_JOB: &str = "webhooks.fanout";
pub const FANOUT_INTERVAL_MS: i64 = 250;
/// Events dispatched per fanout run at most.
pub const FANOUT_BATCH_MAX: i64 = 500;
pub const DELIVER_JOB: &str = "webhook.deliver";
/// Response bytes read at most (the rest is dropped).
pub const RESPONSE_READ_MAX_BYTES: usize = 4 * 1024;
/// Deliveries in flight to one endpoint at most.
pub const IN_FLIGHT_PER_ENDPOINT: usize = 8;
/// How long a delivery waits for its endpoint's turn before it is put back
/// (only for an endpoint that answers fast; a slow one's deliveries step
/// aside at once).
pub const TURN_WAIT_MS: u64 = 20;
/// An endpoint whose last answer took longer than this is slow.
pub const SLOW_ENDPOINT_MS: u64 = 200;
/// How long a delivery that found its endpoint busy is put back the first
/// time; doubling each time it finds the endpoint still busy, up to
/// [`BUSY_RETRY_MAX_MS`] (a slow endpoint's backlog settles down instead of
/// churning the job table).
pub const BUSY_RETRY_MS: i64 = 100;
pub const BUSY_RETRY_MAX_MS: i64 = 30_000;
/// Error text kept per attempt at most.
pub const ERROR_LEN_MAX: usize = 300;

/// How deliveries behave.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How long a receiver has to answer.
    pub timeout_ms: u64,
    /// First retry delay; doubles per attempt, ±20 % jitter.
    pub retry_base_ms: i64,
    /// Longest retry delay.
    pub retry_max_ms: i64,
    /// Attempts per event and endpoint (about three days with the defaults).
    pub attempts_max: i64,
    /// Failing without a success this long disables the endpoint.
    pub disable_after_ms: i64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout_ms: 10_000,
            retry_base_ms: 10_000,
            retry_max_ms: 3_600_000,
            attempts_max: 80,
            disable_after_ms: 3 * 86_400_000,
        }
    }
}

/// One endpoint's share of the deliveries of this process.
struct Slot {
    in_flight: Arc<Semaphore>,
    last_latency_ms: std::sync::atomic::AtomicU64,
}

/// The delivery side: configuration, the HTTP client, per-endpoint slots.
pub struct Delivery {
    pub config: WebhookConfig,
    pub sealer: super::Sealer,
    client: reqwest::Client,
    /// Per endpoint: its deliveries in flight, and how long its last answer took.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("config", &self.config).finish()
    }
}

impl Delivery {
    fn client_builder(config: &WebhookConfig) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Nixo-Webhooks/1.0")
            .tcp_nodelay(true)
    }

    /// A client configured like the shared one (to pin an address).
    fn builder(&self) -> reqwest::ClientBuilder {
        Self::client_builder(&self.config)
    }

    pub fn new(config: WebhookConfig, sealer: super::Sealer) -> Delivery {
        let client = Self::client_builder(&config)
            .build()
            .expect("the webhook client builds");
        Delivery {
            config,
            sealer,
            client,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, endpoint_id: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("slots")
            .entry(endpoint_id.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    in_flight: Arc::new(Semaphore::new(IN_FLIGHT_PER_ENDPOINT)),
                    last_latency_ms: std::sync::atomic::AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// The delay before attempt `next` (2, 3, …), with jitter.
    pub fn retry_delay_ms(&self, next: i64) -> i64 {
        let exponent = u32::try_from((next - 2).clamp(0, 40)).unwrap_or(40);
        let raw = self
            .config
            .retry_base_ms
            .saturating_mul(2_i64.saturating_pow(exponent))
            .min(self.config.retry_max_ms);
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        ((raw as f64) * jitter) as i64
    }
}

/// The job that delivers one event to one endpoint.
pub fn deliver_job(event_id: &str, endpoint_id: &str, attempt: i64, run_at_ms: i64, now_ms: i64) -> NewJob {
    waiting_job(event_id, endpoint_id, attempt, 0, run_at_ms, now_ms)
}

fn waiting_job(event_id: &str, endpoint_id: &str, attempt: i64, waits: i64, run_at_ms: i64, now_ms: i64) -> NewJob {
    NewJob::new(
        DELIVER_JOB,
        json!({ "event_id": event_id, "endpoint_id": endpoint_id, "attempt": attempt, "waits": waits }),
        now_ms,
    )
    .run_at(run_at_ms)
    .max_attempts(3)
}

async fn undispatched(services: &Services) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, type, account_id, environment, api_version, data, created_at_ms FROM events
         WHERE dispatched_at_ms IS NULL ORDER BY created_at_ms, id LIMIT $1",
    )
    .bind(FANOUT_BATCH_MAX)
    .fetch_all(&services.ledger.db.pool)
    .await?;
    rows.iter().map(events::from_row).collect()
}

/// The `webhooks.fanout` job.
pub async fn fanout(services: &Services) -> anyhow::Result<()> {
    loop {
        let batch = undispatched(services).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let now_ms = services.clock.now_ms();
        let mut effects = Vec::new();
        let mut cache: HashMap<(String, String, String), Vec<Endpoint>> = HashMap::new();
        for event in &batch {
            let key = (
                event.account_id.clone(),
                event.environment.clone(),
                event.event_type.clone(),
            );
            if !cache.contains_key(&key) {
                let found = super::subscribed(
                    &services.ledger.db,
                    &event.account_id,
                    &event.environment,
                    &event.event_type,
                    i64::MAX,
                )
                .await?;
                cache.insert(key.clone(), found);
            }
            for endpoint in cache[&key].iter().filter(|e| e.created_at_ms <= event.created_at_ms) {
                let job = deliver_job(&event.id, &endpoint.id, 1, now_ms, now_ms)
                    .unique(format!("{DELIVER_JOB}:{}:{}:1", event.id, endpoint.id));
                effects.push(Effect::Job(job));
            }
            effects.push(Effect::Sql {
                sql: "UPDATE events SET dispatched_at_ms = $1 WHERE id = $2 AND dispatched_at_ms IS NULL",
                binds: vec![now_ms.into(), event.id.clone().into()],
                must_change: None,
            });
        }
        services.ledger.apply_effects(effects, now_ms).await?;
        services.jobs.wake();
        if (batch.len() as i64) < FANOUT_BATCH_MAX {
            return Ok(());
        }
    }
}

/// The event as the endpoint receives it: rendered in the endpoint's API
/// version with the translation the API itself uses.
pub fn payload(event: &EventRow, api_version: Option<&str>) -> Vec<u8> {
    let version = api_version.and_then(versions::supported).unwrap_or(versions::CURRENT);
    let mut rendered = events::render(event);
    if event.event_type == events::BALANCE_UPDATED {
        let object = serde_json::to_vec(&rendered["data"]["object"]).expect("JSON");
        let translated = versions::downgrade_response(version, RouteId::Balances, &object);
        if let Ok(object) = serde_json::from_slice::<Value>(&translated) {
            rendered["data"]["object"] = object;
        }
    }
    rendered["api_version"] = json!(version);
    serde_json::to_vec(&rendered).expect("JSON")
}

/// Whether an address is one a live endpoint may not reach.
pub fn private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]) // shared (CGNAT)
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| private_address(IpAddr::V4(v4)))
        }
    }
}

/// Whether a live endpoint may be called, checked at creation and again at
/// delivery time (DNS may have changed since): `Err` says why not; `Ok`
/// gives the checked address to connect to (pinned, so the request cannot
/// be sent to another address a second lookup returns). Sandbox endpoints
/// may use http and local addresses, for development.
pub async fn check_target(environment: Environment, url: &str) -> Result<Option<(String, SocketAddr)>, String> {
    if environment == Environment::Sandbox {
        return Ok(None);
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("the URL does not parse: {e}"))?;
    if parsed.scheme() != "https" {
        return Err("live endpoints must use https".into());
    }
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|err| format!("the host does not resolve: {err}"))?
            .collect(),
    };
    if let Some(bad) = addresses.iter().find(|a| private_address(a.ip())) {
        return Err(format!(
            "live endpoints may not resolve to a private, loopback or link-local address ({})",
            bad.ip()
        ));
    }
    let first = *addresses.first().ok_or("the host has no address")?;
    Ok(Some((host, first)))
}

/// Why a live endpoint may not be called (see [`check_target`]).
pub async fn refusal(environment: Environment, url: &str) -> Option<String> {
    check_target(environment, url).await.err()
}

/// What one attempt came to.
struct Attempt {
    http_status: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
}

impl Attempt {
    fn ok(&self) -> bool {
        self.http_status.is_some_and(|s| (200..300).contains(&s))
    }
}

async fn post(
    delivery: &Delivery,
    pinned: Option<(String, SocketAddr)>,
    url: &str,
    signature: &str,
    event_id: &str,
    body: Vec<u8>,
) -> Attempt {
    let started = Instant::now();
    // A live endpoint connects to the address that was checked.
    let client = match pinned {
        Some((host, addr)) => match delivery.builder().resolve(&host, addr).build() {
            Ok(client) => client,
            Err(err) => {
                return Attempt {
                    http_status: None,
                    latency_ms: 0,
                    error: Some(format!("client: {err}")),
                };
            }
        },
        None => delivery.client.clone(),
    };
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(nixo_api::webhooks::SIGNATURE_HEADER, signature)
        .header("Nixo-Event-Id", event_id)
        .body(body)
        .send()
        .await;
    let mut attempt = match sent {
        Ok(response) => {
            let status = i64::from(response.status().as_u16());
            // Read a little of the answer, and no more.
            let mut response = response;
            let mut read = 0usize;
            while read < RESPONSE_READ_MAX_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            Attempt {
                http_status: Some(status),
                latency_ms: 0,
                error: (!(200..300).contains(&status)).then(|| format!("the receiver answered HTTP {status}")),
            }
        }
        Err(err) => Attempt {
            http_status: None,
            latency_ms: 0,
            error: Some(if err.is_timeout() {
                format!("no answer within {} ms", delivery.config.timeout_ms)
            } else if err.is_connect() {
                "could not connect".to_string()
            } else {
                format!("request failed: {err}")
            }),
        },
    };
    attempt.latency_ms = started.elapsed().as_millis() as i64;
    attempt
}

async fn load_event(services: &Services, id: &str) -> Result<Option<EventRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, type, account_id, environment, api_version, data, created_at_ms FROM events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&services.ledger.db.pool)
    .await?;
    row.as_ref().map(events::from_row).transpose()
}

/// The `webhook.deliver` job.
pub async fn deliver(services: &Services, delivery: &Delivery, job: &ClaimedJob) -> anyhow::Result<()> {
    let event_id = job.payload["event_id"].as_str().unwrap_or_default().to_string();
    let endpoint_id = job.payload["endpoint_id"].as_str().unwrap_or_default().to_string();
    let attempt_no = job.payload["attempt"].as_i64().unwrap_or(1);
    let db = &services.ledger.db;
    let Some(endpoint) = super::load(db, &endpoint_id).await? else {
        return Ok(());
    };
    if endpoint.deleted || !endpoint.enabled {
        return Ok(());
    }
    let Some(event) = load_event(services, &event_id).await? else {
        return Ok(());
    };
    // A busy endpoint's deliveries wait a little for a turn, then step
    // aside (backing off), so a slow endpoint cannot hold the worker pool.
    let slot = delivery.slot(&endpoint.id);
    let slow = slot.last_latency_ms.load(std::sync::atomic::Ordering::Relaxed) > SLOW_ENDPOINT_MS;
    let wait = std::time::Duration::from_millis(if slow { 0 } else { TURN_WAIT_MS });
    let turn = match slot.in_flight.clone().try_acquire_owned() {
        Ok(permit) => Ok(Ok(permit)),
        Err(_) => tokio::time::timeout(wait, slot.in_flight.clone().acquire_owned()).await,
    };
    let Ok(Ok(_turn)) = turn else {
        let now_ms = services.clock.now_ms();
        let waits = job.payload["waits"].as_i64().unwrap_or(0).clamp(0, 20);
        let delay = BUSY_RETRY_MS.saturating_mul(1 << waits).min(BUSY_RETRY_MAX_MS);
        let again = waiting_job(&event_id, &endpoint_id, attempt_no, waits + 1, now_ms + delay, now_ms);
        crate::jobs::enqueue_now(db, &again, now_ms).await?;
        return Ok(());
    };

    let now_ms = services.clock.now_ms();
    let mut secrets = Vec::new();
    if let Some(current) = delivery.sealer.open(&endpoint.id, &endpoint.secret_sealed) {
        secrets.push(current);
    }
    if let (Some(sealed), Some(until)) = (&endpoint.previous_secret_sealed, endpoint.previous_secret_expires_at_ms)
        && until > now_ms
        && let Some(previous) = delivery.sealer.open(&endpoint.id, sealed)
    {
        secrets.push(previous);
    }
    anyhow::ensure!(!secrets.is_empty(), "endpoint {} has no secret that opens", endpoint.id);
    let attempt = match check_target(endpoint.environment, &endpoint.url).await {
        Err(why) => Attempt {
            http_status: None,
            latency_ms: 0,
            error: Some(why),
        },
        Ok(pinned) => {
            // The endpoint's version, else the account's pinned one.
            let version = match &endpoint.api_version {
                Some(v) => Some(v.clone()),
                None => crate::auth::pinned_version(db, &endpoint.account_id).await?,
            };
            let body = payload(&event, version.as_deref());
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let signature = nixo_api::webhooks::sign(&refs, now_ms / 1000, &body);
            post(delivery, pinned, &endpoint.url, &signature, &event.id, body).await
        }
    };
    slot.last_latency_ms.store(
        u64::try_from(attempt.latency_ms).unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    let after_ms = services.clock.now_ms();
    let mut endpoint = endpoint;
    let was_failing = endpoint.failing_since_ms.is_some();
    let next_retry_at_ms = if attempt.ok() {
        if was_failing {
            endpoint.failing_since_ms = None;
            endpoint.updated_at_ms = after_ms;
            super::save(db, &endpoint).await?;
        }
        None
    } else {
        let failing_since = *endpoint.failing_since_ms.get_or_insert(after_ms);
        if after_ms - failing_since >= delivery.config.disable_after_ms {
            disable(services, &mut endpoint, after_ms).await?;
            None
        } else {
            if !was_failing {
                endpoint.updated_at_ms = after_ms;
                super::save(db, &endpoint).await?;
            }
            (attempt_no < delivery.config.attempts_max).then(|| after_ms + delivery.retry_delay_ms(attempt_no + 1))
        }
    };
    // The attempt and the next one's job, through the ledger's writer (on
    // SQLite, committed with other writes in one fsync).
    let mut effects = vec![Effect::Sql {
        sql: "INSERT INTO webhook_attempts (id, endpoint_id, event_id, attempt, http_status, latency_ms, error,
                 next_retry_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        binds: vec![
            super::new_attempt_id().into(),
            endpoint.id.clone().into(),
            event.id.clone().into(),
            attempt_no.into(),
            attempt.http_status.into(),
            attempt.latency_ms.into(),
            attempt
                .error
                .as_deref()
                .map(|e| e.chars().take(ERROR_LEN_MAX).collect::<String>())
                .into(),
            next_retry_at_ms.into(),
            after_ms.into(),
        ],
        must_change: None,
    }];
    if let Some(at) = next_retry_at_ms {
        let retry = deliver_job(&event.id, &endpoint.id, attempt_no + 1, at, after_ms).unique(format!(
            "{DELIVER_JOB}:{}:{}:{}",
            event.id,
            endpoint.id,
            attempt_no + 1
        ));
        effects.push(Effect::Job(retry));
    }
    if next_retry_at_ms.is_none() && attempt.ok() {
        // A success needs nothing after it: its record is written in the
        // background (the job's own completion is what makes it final).
        let ledger = services.ledger.clone();
        tokio::spawn(async move {
            if let Err(err) = ledger.apply_effects(effects, after_ms).await {
                tracing::warn!(error = %err, "a webhook attempt record was not written");
            }
        });
    } else {
        services.ledger.apply_effects(effects, after_ms).await?;
    }
    metrics::counter!("nixo_webhook_attempts_total", "outcome" => if attempt.ok() { "delivered" } else { "failed" })
        .increment(1);
    Ok(())
}

/// Turns an endpoint off after a long failure, with a reason and an event.
async fn disable(services: &Services, endpoint: &mut Endpoint, now_ms: i64) -> anyhow::Result<()> {
    let days = services
        .webhooks
        .config
        .disable_after_ms
        .checked_div(86_400_000)
        .unwrap_or(0);
    endpoint.enabled = false;
    endpoint.disabled_reason = Some(format!(
        "Deliveries failed without a success for {days} days or more; fix the receiver and enable the endpoint again"
    ));
    endpoint.updated_at_ms = now_ms;
    super::save(&services.ledger.db, endpoint).await?;
    let event = Effect::Event {
        event_type: "webhook_endpoint.disabled",
        account_id: endpoint.account_id.clone(),
        environment: endpoint.environment,
        object: serde_json::to_value(endpoint.render(None)).expect("JSON"),
    };
    services.ledger.apply_effects(vec![event], now_ms).await?;
    tracing::warn!(endpoint = %endpoint.id, "webhook endpoint disabled after continuous failure");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "10.0.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "172.16.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "100.64.0.1",
        ] {
            assert!(private_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!private_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn retries_back_off_to_the_cap() {
        let d = Delivery::new(WebhookConfig::default(), crate::webhooks::Sealer::from_pepper(&[0; 32]));
        let second = d.retry_delay_ms(2);
        assert!((8_000..=12_000).contains(&second), "{second}");
        let late = d.retry_delay_ms(60);
        assert!((2_880_000..=4_320_000).contains(&late), "{late}");
    }
}
