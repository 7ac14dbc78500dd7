//! Webhook delivery from the events outbox.
//!
//! `webhooks.fanout` (a periodic job) takes events not yet dispatched and,
//! in one transaction, queues a delivery row per (event, subscribed
//! endpoint), makes sure each of those endpoints has its pump job, and
//! marks the events dispatched: every committed event, and only those, is
//! delivered, at least once. An endpoint's pump (one live job per endpoint,
//! across replicas) delivers its due rows with at most
//! [`IN_FLIGHT_PER_ENDPOINT`] requests in flight: a slow or dead endpoint
//! holds one worker and its own rows, never the pool or the others' rows;
//! one that fails [`BREAKER_FAILURES`] times in a row has its other due rows
//! deferred to the next retry round in one statement.
//! A delivery signs the event (`Nixo-Signature`, every live secret of the
//! endpoint), posts it with a timeout and without following redirects,
//! records the attempt, and on failure sets the row's next attempt
//! (exponential backoff with jitter, capped, for about three days). An
//! endpoint that has failed without a success for
//! [`WebhookConfig::disable_after_ms`] is disabled, with a reason and a
//! `webhook_endpoint.disabled` event. Per-endpoint ordering is not
//! promised; receivers dedupe on the event id.

use super::Endpoint;
use crate::events::{self, EventRow};
use crate::jobs::NewJob;
use crate::ledger::{Effect, Environment, Statement};
use crate::services::Services;
use nixo_api::schema::RouteId;
use nixo_api::versions;
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FANOUT_JOB: &str = "webhooks.fanout";
pub const FANOUT_INTERVAL_MS: i64 = 250;
/// Events dispatched per fanout run at most.
pub const FANOUT_BATCH_MAX: i64 = 500;
/// The job that delivers one endpoint's due rows.
pub const PUMP_JOB: &str = "webhook.pump";
/// Due rows a pump reads at once.
pub const PUMP_BATCH_MAX: i64 = 64;
/// How long one pump run keeps starting deliveries before it gives its
/// worker back (the next fanout starts it again if rows are still due).
pub const PUMP_RUN_MS: u64 = 30_000;
/// Deliveries in flight to one endpoint at most.
pub const IN_FLIGHT_PER_ENDPOINT: usize = 8;
/// Failed attempts in a row, with no success, after which a pump stops
/// trying the endpoint's other due rows and defers them all at once (one
/// statement, no attempt each): a dead endpoint costs a few attempts per
/// retry round, not one per queued event.
pub const BREAKER_FAILURES: usize = 8;
/// Response bytes read at most (the rest is dropped).
pub const RESPONSE_READ_MAX_BYTES: usize = 4 * 1024;
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

/// The delivery side: configuration, the HTTP client, sealed secrets.
pub struct Delivery {
    pub config: WebhookConfig,
    pub sealer: super::Sealer,
    client: reqwest::Client,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("config", &self.config).finish()
    }
}

impl Delivery {
    fn client_builder(config: &WebhookConfig) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Nixo-Webhooks/1.0")
            .tcp_nodelay(true)
    }

    pub fn new(config: WebhookConfig, sealer: super::Sealer) -> Delivery {
        let client = Self::client_builder(&config)
            .build()
            .expect("the webhook client builds");
        Delivery { config, sealer, client }
    }

    /// The client for one endpoint: a live one connects to the address
    /// that was checked (pinned, so a second DNS answer cannot redirect it).
    fn client_for(&self, pinned: Option<&(String, SocketAddr)>) -> Result<reqwest::Client, String> {
        match pinned {
            Some((host, addr)) => Self::client_builder(&self.config)
                .resolve(host, *addr)
                .build()
                .map_err(|err| format!("client: {err}")),
            None => Ok(self.client.clone()),
        }
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

/// An endpoint's pump job (one live per endpoint: enqueuing it again while
/// it waits or runs is a no-op).
fn pump_job(endpoint_id: &str, now_ms: i64) -> NewJob {
    NewJob::new(PUMP_JOB, json!({ "endpoint_id": endpoint_id }), now_ms)
        .unique(format!("{PUMP_JOB}:{endpoint_id}"))
        .max_attempts(5)
}

/// The row of a new delivery series of an event to an endpoint (its pump
/// job is [`pump_effect`]).
pub fn queue_effect(event_id: &str, endpoint_id: &str, now_ms: i64) -> Effect {
    Effect::Sql(Statement::new(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, attempt, state, run_at_ms, created_at_ms,
                 updated_at_ms) VALUES ($1, $2, 1, 'pending', $3, $3, $3)",
        vec![
            endpoint_id.to_string().into(),
            event_id.to_string().into(),
            now_ms.into(),
        ],
    ))
}

/// Makes sure the endpoint's pump runs.
pub fn pump_effect(endpoint_id: &str, now_ms: i64) -> Effect {
    Effect::Job(pump_job(endpoint_id, now_ms))
}

/// An event not yet dispatched: what the fanout routes it by. Its payload
/// is read only when a delivery is sent ([`load_event`]).
struct Undispatched {
    id: String,
    event_type: String,
    account_id: String,
    environment: String,
    created_at_ms: i64,
}

async fn undispatched(services: &Services) -> Result<Vec<Undispatched>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, type, account_id, environment, created_at_ms FROM events
         WHERE dispatched_at_ms IS NULL ORDER BY created_at_ms, id LIMIT $1",
    )
    .bind(FANOUT_BATCH_MAX)
    .fetch_all(&services.ledger.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Undispatched {
                id: r.try_get(0)?,
                event_type: r.try_get(1)?,
                account_id: r.try_get(2)?,
                environment: r.try_get(3)?,
                created_at_ms: r.try_get(4)?,
            })
        })
        .collect()
}

/// Marks a fanout batch dispatched: one statement for the whole batch (an
/// event another run marked first keeps its time). It always names
/// [`FANOUT_BATCH_MAX`] ids, a shorter batch repeating its last, so that it
/// is one statement text, prepared once.
fn dispatched_effect(batch: &[Undispatched], now_ms: i64) -> Effect {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let ids = (0..FANOUT_BATCH_MAX)
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        format!("UPDATE events SET dispatched_at_ms = $1 WHERE dispatched_at_ms IS NULL AND id IN ({ids})")
    });
    let last = batch.last().map(|event| event.id.as_str()).unwrap_or_default();
    let mut binds = Vec::with_capacity(FANOUT_BATCH_MAX as usize + 1);
    binds.push(now_ms.into());
    binds.extend(
        batch
            .iter()
            .map(|event| event.id.as_str())
            .chain(std::iter::repeat(last))
            .take(FANOUT_BATCH_MAX as usize)
            .map(|id| id.to_string().into()),
    );
    Effect::Sql(Statement::new(SQL.as_str(), binds))
}

/// Enabled endpoints with rows due and perhaps no pump (a pump that was
/// finishing when rows arrived, or retries that came due).
async fn due_endpoints(services: &Services, now_ms: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.id FROM webhook_endpoints e
         WHERE e.status = 'enabled' AND e.deleted_at_ms IS NULL
           AND EXISTS (SELECT 1 FROM webhook_deliveries d
                       WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.run_at_ms <= $1)",
    )
    .bind(now_ms)
    .fetch_all(&services.ledger.db.pool)
    .await?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

/// The `webhooks.fanout` job.
pub async fn fanout(services: &Services) -> anyhow::Result<()> {
    let mut first = true;
    loop {
        let batch = undispatched(services).await?;
        let now_ms = services.clock.now_ms();
        let mut pumps: BTreeSet<String> = BTreeSet::new();
        if first {
            pumps.extend(due_endpoints(services, now_ms).await?);
            first = false;
        }
        if batch.is_empty() && pumps.is_empty() {
            return Ok(());
        }
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
                effects.push(queue_effect(&event.id, &endpoint.id, now_ms));
                pumps.insert(endpoint.id.clone());
            }
        }
        if !batch.is_empty() {
            effects.push(dispatched_effect(&batch, now_ms));
        }
        effects.extend(pumps.iter().map(|id| pump_effect(id, now_ms)));
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
    client: reqwest::Client,
    timeout_ms: u64,
    url: &str,
    signature: &str,
    event_id: &str,
    body: Vec<u8>,
) -> Attempt {
    let started = Instant::now();
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(nixo_api::webhooks::SIGNATURE_HEADER, signature)
        .header("Nixo-Event-Id", event_id)
        .body(body)
        .send()
        .await;
    let mut attempt = match sent {
        Ok(mut response) => {
            let status = i64::from(response.status().as_u16());
            // Read a little of the answer, and no more.
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
                format!("no answer within {timeout_ms} ms")
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

/// A due delivery row.
struct Due {
    id: i64,
    event_id: String,
    attempt: i64,
}

async fn due_rows(services: &Services, endpoint_id: &str, now_ms: i64) -> Result<Vec<Due>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, event_id, attempt FROM webhook_deliveries
         WHERE endpoint_id = $1 AND state = 'pending' AND run_at_ms <= $2
         ORDER BY run_at_ms, id LIMIT $3",
    )
    .bind(endpoint_id)
    .bind(now_ms)
    .bind(PUMP_BATCH_MAX)
    .fetch_all(&services.ledger.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                attempt: r.try_get(2)?,
            })
        })
        .collect()
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

/// What a pump needs to send to one endpoint, read once per batch.
struct Target {
    url: String,
    /// Every live signing secret.
    secrets: Vec<String>,
    /// The endpoint's version, else the account's pinned one.
    api_version: Option<String>,
    /// A client that connects to the checked address, or why the endpoint
    /// may not be called.
    client: Result<reqwest::Client, String>,
    timeout_ms: u64,
}

async fn target(services: &Services, endpoint: &Endpoint, now_ms: i64) -> anyhow::Result<Target> {
    let delivery = &services.webhooks;
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
    let api_version = match &endpoint.api_version {
        Some(v) => Some(v.clone()),
        None => crate::auth::pinned_version(&services.ledger.db, &endpoint.account_id).await?,
    };
    // Checked again at delivery time: DNS may have changed since creation.
    let client = check_target(endpoint.environment, &endpoint.url)
        .await
        .and_then(|pinned| delivery.client_for(pinned.as_ref()));
    Ok(Target {
        url: endpoint.url.clone(),
        secrets,
        api_version,
        client,
        timeout_ms: delivery.config.timeout_ms,
    })
}

/// One attempt of one row.
async fn attempt_one(services: Services, target: Arc<Target>, due: Due) -> (Due, Attempt) {
    let event = match load_event(&services, &due.event_id).await {
        Ok(Some(event)) => event,
        Ok(None) => {
            let gone = Attempt {
                http_status: None,
                latency_ms: 0,
                error: Some("the event is past retention".into()),
            };
            return (due, gone);
        }
        Err(err) => {
            let failed = Attempt {
                http_status: None,
                latency_ms: 0,
                error: Some(format!("the event could not be read: {err}")),
            };
            return (due, failed);
        }
    };
    let attempt = match &target.client {
        Err(why) => Attempt {
            http_status: None,
            latency_ms: 0,
            error: Some(why.clone()),
        },
        Ok(client) => {
            let body = payload(&event, target.api_version.as_deref());
            let refs: Vec<&str> = target.secrets.iter().map(String::as_str).collect();
            let signature = nixo_api::webhooks::sign(&refs, services.clock.now_ms() / 1000, &body);
            post(
                client.clone(),
                target.timeout_ms,
                &target.url,
                &signature,
                &event.id,
                body,
            )
            .await
        }
    };
    (due, attempt)
}

/// The `webhook.pump` job: delivers one endpoint's due rows, a batch at a
/// time, [`IN_FLIGHT_PER_ENDPOINT`] at most in flight, for up to
/// [`PUMP_RUN_MS`].
pub async fn pump(services: &Services, endpoint_id: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let run_for = Duration::from_millis(PUMP_RUN_MS);
    while started.elapsed() < run_for {
        let Some(mut endpoint) = super::load(&services.ledger.db, endpoint_id).await? else {
            return Ok(());
        };
        if endpoint.deleted || !endpoint.enabled {
            return Ok(());
        }
        let now_ms = services.clock.now_ms();
        let due = due_rows(services, endpoint_id, now_ms).await?;
        if due.is_empty() {
            return Ok(());
        }
        let target = Arc::new(target(services, &endpoint, now_ms).await?);
        let mut waiting = due.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut done: Vec<(Due, Attempt)> = Vec::new();
        let mut failing = 0usize;
        loop {
            let tripped = failing >= BREAKER_FAILURES;
            while !tripped && running.len() < IN_FLIGHT_PER_ENDPOINT && started.elapsed() < run_for {
                let Some(row) = waiting.next() else { break };
                running.spawn(attempt_one(services.clone(), target.clone(), row));
            }
            match running.join_next().await {
                Some(finished) => {
                    let finished = finished?;
                    failing = if finished.1.ok() { 0 } else { failing + 1 };
                    done.push(finished);
                }
                None => break,
            }
        }
        settle(services, &mut endpoint, done).await?;
        if !endpoint.enabled {
            return Ok(());
        }
        if failing >= BREAKER_FAILURES {
            defer_due(services, endpoint_id).await?;
            return Ok(());
        }
    }
    Ok(())
}

/// Moves every due row of an endpoint that keeps failing to the next retry
/// round, in one statement (the breaker).
async fn defer_due(services: &Services, endpoint_id: &str) -> anyhow::Result<()> {
    let now_ms = services.clock.now_ms();
    let until_ms = now_ms + services.webhooks.retry_delay_ms(2);
    let effects = vec![Effect::Sql(Statement::new(
        "UPDATE webhook_deliveries SET run_at_ms = $1, updated_at_ms = $2
              WHERE endpoint_id = $3 AND state = 'pending' AND run_at_ms <= $2",
        vec![until_ms.into(), now_ms.into(), endpoint_id.to_string().into()],
    ))];
    services.ledger.apply_effects(effects, now_ms).await?;
    tracing::info!(
        endpoint = endpoint_id,
        until_ms,
        "webhook endpoint keeps failing; its due deliveries wait"
    );
    Ok(())
}

/// Records a batch's attempts, sets each row's next step, and keeps the
/// endpoint's failure streak (disabling it after a long one).
async fn settle(services: &Services, endpoint: &mut Endpoint, done: Vec<(Due, Attempt)>) -> anyhow::Result<()> {
    let config = &services.webhooks.config;
    let after_ms = services.clock.now_ms();
    let failing_before = endpoint.failing_since_ms;
    let mut effects = Vec::with_capacity(done.len() * 2);
    let mut outcomes = (0u64, 0u64);
    for (due, attempt) in &done {
        let (state, next_attempt, run_at_ms) = if attempt.ok() {
            endpoint.failing_since_ms = None;
            outcomes.0 += 1;
            ("delivered", due.attempt, after_ms)
        } else {
            endpoint.failing_since_ms.get_or_insert(after_ms);
            outcomes.1 += 1;
            if due.attempt < config.attempts_max {
                let next = due.attempt + 1;
                ("pending", next, after_ms + services.webhooks.retry_delay_ms(next))
            } else {
                ("failed", due.attempt, after_ms)
            }
        };
        let next_retry_at_ms = (state == "pending").then_some(run_at_ms);
        effects.push(Effect::Sql(Statement::new(
            "INSERT INTO webhook_attempts (id, endpoint_id, event_id, attempt, http_status, latency_ms, error,
                     next_retry_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                super::new_attempt_id().into(),
                endpoint.id.clone().into(),
                due.event_id.clone().into(),
                due.attempt.into(),
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
        )));
        effects.push(Effect::Sql(Statement::new(
            "UPDATE webhook_deliveries SET state = $1, attempt = $2, run_at_ms = $3, updated_at_ms = $4
                  WHERE id = $5 AND state = 'pending'",
            vec![
                state.into(),
                next_attempt.into(),
                run_at_ms.into(),
                after_ms.into(),
                due.id.into(),
            ],
        )));
    }
    services.ledger.apply_effects(effects, after_ms).await?;
    metrics::counter!("nixo_webhook_attempts_total", "outcome" => "delivered").increment(outcomes.0);
    metrics::counter!("nixo_webhook_attempts_total", "outcome" => "failed").increment(outcomes.1);
    let failing_long = endpoint
        .failing_since_ms
        .is_some_and(|since| after_ms - since >= config.disable_after_ms);
    if failing_long {
        disable(services, endpoint, after_ms).await?;
    } else if endpoint.failing_since_ms != failing_before {
        endpoint.updated_at_ms = after_ms;
        super::save(&services.ledger.db, endpoint).await?;
    }
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
