//! The bank test's checks, once the load has stopped and every acknowledged
//! operation has ended:
//! - every operation was answered, and every acknowledged one ended;
//! - money is conserved exactly per currency: the account's total equals
//!   what it started with, plus what came in, minus what went out, worked
//!   out by the client from its own operations and the documented fee and
//!   exchange rules; no hold is left and no available balance is negative;
//! - every acknowledged operation's movement is there exactly once (no
//!   retry applied twice) and no movement exists that nobody acknowledged;
//! - every event exists once, and every webhook delivered is a committed
//!   event, signed; every committed event was delivered;
//! - no job is left running past its lease; `nixo ledger verify` passes.

use super::workload::{self, Clients, End, Kind, Outcome};
use super::{Report, cluster};
use crate::db::Db;
use crate::money::Currency;
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the checks wait for webhooks to be delivered.
pub const DELIVERY_WAIT_MS: u64 = 120_000;
/// Page size of the lists the checks read.
const PAGE_LEN: usize = 100;
/// Most violations of one kind listed one by one.
const LISTED_MAX: usize = 10;

/// A webhook as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: String,
    pub body: Bytes,
}

/// The webhook receiver of the run.
pub struct Receiver {
    pub url: String,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// The events committed before the endpoint was registered.
    pub before: BTreeSet<String>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(deliveries.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver {
            url,
            deliveries,
            before: BTreeSet::new(),
        })
    }
}

async fn receive(State(deliveries): State<Arc<Mutex<Vec<Delivery>>>>, headers: HeaderMap, body: Bytes) -> &'static str {
    let signature = headers
        .get(nixo_api::webhooks::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    deliveries
        .lock()
        .expect("deliveries")
        .push(Delivery { signature, body });
    "ok"
}

/// Registers the receiver for every event type; returns its secret.
/// Notes the events committed by then (they are not sent to it).
pub async fn register_endpoint(clients: &Clients, receiver: &mut Receiver) -> anyhow::Result<String> {
    let body = json!({ "url": receiver.url, "enabled_events": ["*"] });
    let (answer, _) = clients
        .send(
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            Some(&body),
            Some("chaos-endpoint"),
            0,
        )
        .await;
    receiver.before = list_all(clients, "/v1/events")
        .await?
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    match answer {
        Some((200 | 201, body)) => body["secret"]
            .as_str()
            .map(str::to_string)
            .context("the endpoint's secret"),
        other => anyhow::bail!("registering the webhook endpoint: {other:?}"),
    }
}

/// Per currency: (available, pending, reserved) in minor units.
pub type Totals = BTreeMap<String, (i64, i64, i64)>;

fn minor(currency: &str, amount: &Value) -> anyhow::Result<i64> {
    let c = Currency::from_code(currency).with_context(|| format!("currency {currency}"))?;
    c.text_to_minor(&amount.to_string())
        .with_context(|| format!("amount {amount} in {currency}"))
}

/// The balances of the account (or of one wallet), per currency.
pub async fn totals_of(clients: &Clients, query: &str) -> anyhow::Result<Totals> {
    let (answer, _) = clients
        .send(reqwest::Method::GET, &format!("/v1/balances{query}"), None, None, 0)
        .await;
    let Some((200, body)) = answer else {
        anyhow::bail!("GET /v1/balances{query}: {answer:?}");
    };
    let mut totals = Totals::new();
    for (i, kind) in ["available", "pending", "reserved"].into_iter().enumerate() {
        for entry in body[kind].as_array().context("a balance list")? {
            let currency = entry["currency"].as_str().context("currency")?.to_string();
            let amount = minor(&currency, &entry["amount"])?;
            let slot = totals.entry(currency).or_default();
            match i {
                0 => slot.0 += amount,
                1 => slot.1 += amount,
                _ => slot.2 += amount,
            }
        }
    }
    Ok(totals)
}

pub async fn totals(clients: &Clients) -> anyhow::Result<Totals> {
    totals_of(clients, "").await
}

/// Every item of a list route, following `starting_after`.
async fn list_all(clients: &Clients, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = match &after {
            None => format!("{path}?limit={PAGE_LEN}"),
            Some(id) => format!("{path}?limit={PAGE_LEN}&starting_after={id}"),
        };
        let (answer, _) = clients.send(reqwest::Method::GET, &page, None, None, 0).await;
        let Some((200, body)) = answer else {
            anyhow::bail!("GET {page}: {answer:?}");
        };
        let data = body["data"].as_array().context("a list")?;
        items.extend(data.iter().cloned());
        match (body["has_more"].as_bool(), data.last()) {
            (Some(true), Some(last)) => {
                after = Some(match &last["id"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            _ => return Ok(items),
        }
    }
}

fn note(violations: &mut Vec<String>, what: &str, found: Vec<String>) {
    if found.is_empty() {
        return;
    }
    let listed: Vec<_> = found.iter().take(LISTED_MAX).cloned().collect();
    violations.push(format!("{what} ({}): {}", found.len(), listed.join("; ")));
}

/// Runs every check, adding what fails to the report.
pub async fn all(
    clients: &Clients,
    db: &Db,
    receiver: &Receiver,
    endpoint_secret: &str,
    initial: &Totals,
    outcomes: &[Outcome],
    report: &mut Report,
) -> anyhow::Result<()> {
    let v = &mut report.violations;
    note(
        v,
        "operations never answered",
        outcomes
            .iter()
            .filter(|o| o.answer.is_none())
            .map(|o| format!("{} {} after {} attempts", o.op.kind.name(), o.op.key, o.attempts))
            .collect(),
    );
    note(
        v,
        "acknowledged operations that never ended",
        outcomes
            .iter()
            .filter(|o| o.end == End::Unfinished && o.answer.as_ref().is_some_and(|(s, _)| (200..300).contains(s)))
            .map(|o| format!("{} {} ({:?})", o.op.kind.name(), o.op.key, o.created))
            .collect(),
    );
    report.reviews_declined = decline_open_reviews(clients).await?;

    // Money: the client's own expectation against the API's balances.
    let mut expected: BTreeMap<String, i64> = initial
        .iter()
        .map(|(currency, (a, p, r))| (currency.clone(), a + p + r))
        .collect();
    for outcome in outcomes.iter().filter(|o| o.end == End::Settled) {
        if let Some((currency, amount)) = outcome.op.debit {
            *expected.entry(currency.code.to_string()).or_default() -= amount;
        }
        if let Some((currency, amount)) = outcome.op.credit {
            *expected.entry(currency.code.to_string()).or_default() += amount;
        }
    }
    let fin = totals(clients).await?;
    let mut money = Vec::new();
    for (currency, want) in &expected {
        let (a, p, r) = fin.get(currency).copied().unwrap_or_default();
        if a + p + r != *want {
            money.push(format!(
                "{currency}: the account holds {} but its operations add up to {} (difference {})",
                a + p + r,
                want,
                a + p + r - want
            ));
        }
        if p != 0 || r != 0 {
            money.push(format!(
                "{currency}: holds left after every operation ended: pending {p}, reserved {r}"
            ));
        }
    }
    for wallet in workload::KES_WALLETS.into_iter().chain([workload::USD_WALLET]) {
        for (currency, (a, _, _)) in totals_of(clients, &format!("?wallet_id={wallet}")).await? {
            if a < 0 {
                money.push(format!("wallet {wallet}: available {a} {currency} is negative"));
            }
        }
    }
    note(v, "money not conserved", money);

    // Exactly once: each acknowledged movement is in the transactions,
    // once, and nothing else is.
    let transactions = list_all(clients, "/v1/transactions").await?;
    report.transactions = transactions.len();
    let mut by_op: HashMap<String, Vec<String>> = HashMap::new();
    let mut ids = BTreeSet::new();
    let mut doubles = Vec::new();
    for tx in &transactions {
        let id = match &tx["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !ids.insert(id.clone()) {
            doubles.push(format!("transaction {id} listed twice"));
        }
        if let Some(op) = tx["metadata"]["chaos_op"].as_str() {
            by_op.entry(op.to_string()).or_default().push(id);
        }
    }
    let mut missing = Vec::new();
    let acknowledged: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.answer.as_ref().is_some_and(|(s, _)| (200..300).contains(s)))
        .map(|o| o.op.n.to_string())
        .collect();
    for outcome in outcomes {
        let n = outcome.op.n.to_string();
        let found = by_op.get(&n).map_or(0, Vec::len);
        if found > 1 {
            doubles.push(format!(
                "{} {} applied {found} times: {:?}",
                outcome.op.kind.name(),
                outcome.op.key,
                by_op[&n]
            ));
        }
        if let (Some(id), Kind::Transfer | Kind::CrossCurrency | Kind::Deposit | Kind::Withdrawal | Kind::Async) =
            (&outcome.created, outcome.op.kind)
            && !ids.contains(id)
        {
            missing.push(format!(
                "{} {}: transaction {id} was acknowledged but is not there",
                outcome.op.kind.name(),
                outcome.op.key
            ));
        }
    }
    for (op, txs) in &by_op {
        if !acknowledged.contains(op) {
            doubles.push(format!(
                "operation {op} was never acknowledged, yet moved money: {txs:?}"
            ));
        }
    }
    note(v, "operations applied twice or unasked", doubles);
    note(v, "acknowledged operations missing", missing);

    // Events and webhooks.
    let events = list_all(clients, "/v1/events").await?;
    report.events = events.len();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let committed: HashMap<String, &Value> = events
        .iter()
        .filter_map(|e| Some((e["id"].as_str()?.to_string(), e)))
        .collect();
    for event in &events {
        // A change of an object is recorded once; `balance.updated` is a
        // snapshot (no object id) and may repeat.
        let object = &event["data"]["object"];
        let Some(id) = object["id"].as_str().or(object["job_id"].as_str()) else {
            continue;
        };
        let key = (event["type"].as_str().unwrap_or_default().to_string(), id.to_string());
        *seen.entry(key).or_default() += 1;
    }
    note(
        v,
        "events recorded more than once",
        seen.iter()
            .filter(|(_, n)| **n > 1)
            .map(|((t, id), n)| format!("{t} of {id} × {n}"))
            .collect(),
    );
    // Events from before the endpoint existed are not sent to it.
    let expected: BTreeSet<String> = committed
        .keys()
        .filter(|id| !receiver.before.contains(*id))
        .cloned()
        .collect();
    let (delivered, bad) = wait_for_deliveries(receiver, endpoint_secret, &committed, &expected).await;
    report.deliveries = receiver.deliveries.lock().expect("deliveries").len();
    note(v, "webhooks that match no committed event", bad);
    note(
        v,
        "committed events never delivered",
        expected.iter().filter(|id| !delivered.contains(*id)).cloned().collect(),
    );

    // Inside: jobs and the ledger.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let stuck: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, kind FROM jobs WHERE state = 'running' AND lease_until_ms < $1 ORDER BY id LIMIT 100",
    )
    .bind(now_ms - 2 * cluster::JOB_LEASE_MS)
    .fetch_all(&db.pool)
    .await?;
    note(
        v,
        "jobs still running long after their lease ran out",
        stuck.iter().map(|(id, kind)| format!("job {id} ({kind})")).collect(),
    );
    let ledger = crate::ledger::verify::verify(db, now_ms, 60_000).await?;
    if !ledger.is_sound() {
        v.push(format!("nixo ledger verify fails:\n{ledger}"));
    }
    Ok(())
}

/// Declines every open review (a transfer the rules held); returns how many.
async fn decline_open_reviews(clients: &Clients) -> anyhow::Result<usize> {
    let mut declined = 0;
    loop {
        let open = list_all(clients, "/v1/reviews").await?;
        let open: Vec<_> = open.iter().filter(|r| r["status"] == "open").collect();
        if open.is_empty() {
            return Ok(declined);
        }
        for review in open {
            let id = review["id"].as_str().context("review id")?;
            let (answer, _) = clients
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/reviews/{id}/decline"),
                    Some(&json!({})),
                    Some(&format!("chaos-decline-{id}")),
                    0,
                )
                .await;
            match answer {
                Some((200, _)) => declined += 1,
                other => anyhow::bail!("declining review {id}: {other:?}"),
            }
        }
    }
}

/// Waits until every committed event has been delivered (or the wait is
/// over); returns the delivered event ids and the deliveries that match
/// no committed event or carry a bad signature.
async fn wait_for_deliveries(
    receiver: &Receiver,
    secret: &str,
    committed: &HashMap<String, &Value>,
    expected: &BTreeSet<String>,
) -> (BTreeSet<String>, Vec<String>) {
    let started = Instant::now();
    loop {
        let deliveries = receiver.deliveries.lock().expect("deliveries").clone();
        let mut delivered = BTreeSet::new();
        let mut bad = Vec::new();
        let now = chrono::Utc::now().timestamp();
        for d in &deliveries {
            let body: Value = serde_json::from_slice(&d.body).unwrap_or(Value::Null);
            let id = body["id"].as_str().unwrap_or_default().to_string();
            if nixo_api::webhooks::verify(secret, &d.signature, &d.body, now, i64::MAX / 4).is_err() {
                bad.push(format!("{id}: the signature does not verify"));
            }
            match committed.get(&id) {
                Some(event)
                    if event["type"] == body["type"]
                        && event["data"]["object"]["id"] == body["data"]["object"]["id"] => {}
                Some(_) => bad.push(format!("{id}: delivered with another type or object than committed")),
                None => bad.push(format!("{id}: delivered but not committed")),
            }
            delivered.insert(id);
        }
        let all_there = expected.iter().all(|id| delivered.contains(id));
        if all_there || started.elapsed() > Duration::from_millis(DELIVERY_WAIT_MS) {
            return (delivered, bad);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
