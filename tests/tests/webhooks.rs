//! Webhooks end to end: endpoints over HTTP through the gateway, events
//! delivered from the outbox to a real receiver in this test, signatures
//! checked by an implementation written here from the documented scheme
//! (not the sender's code), retries, rotation, resend, live-mode address
//! rules, and an endpoint disabled after continuous failure.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use nixo_core::rail_wiring::{RailsConfig, SandboxTimings};
use nixo_core::server::ServeConfig;
use nixo_core::webhooks::delivery::WebhookConfig;
use nixo_tests::{TestServer, start_with};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the receiver got: (Nixo-Signature, raw body).
#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<(String, Vec<u8>)>>,
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    /// Answer 500 to everything.
    always_fail: std::sync::atomic::AtomicBool,
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let signature = headers
        .get("nixo-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    inbox.received.lock().unwrap().push((signature, body.to_vec()));
    if inbox.always_fail.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let failing = inbox
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn receiver() -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let app = Router::new().route("/hook", post(receive)).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), inbox)
}

/// The receiver's check, from the documented scheme: `t=…,v1=…[,v1=…]`,
/// HMAC-SHA256(secret, "{t}.{body}") in hex, 300 s tolerance.
fn signed_by(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        if let Some(v) = part.strip_prefix("t=") {
            t = v.parse::<i64>().ok();
        } else if let Some(v) = part.strip_prefix("v1=") {
            v1.push(v.to_string());
        }
    }
    let Some(t) = t else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    v1.iter().filter_map(|v| hex::decode(v).ok()).any(|given| {
        given.len() == expected.len() && given.iter().zip(expected.iter()).fold(0, |a, (x, y)| a | (x ^ y)) == 0
    })
}

fn config(dir: &std::path::Path) -> ServeConfig {
    ServeConfig {
        rails: RailsConfig::Sandbox(SandboxTimings {
            bank_settle_delay_ms: 100,
            ..SandboxTimings::default()
        }),
        webhooks: WebhookConfig {
            timeout_ms: 2_000,
            retry_base_ms: 100,
            retry_max_ms: 300,
            attempts_max: 6,
            disable_after_ms: 3 * 86_400_000,
        },
        ..ServeConfig::ephemeral(dir)
    }
}

async fn endpoint(server: &TestServer, url: &str, events: Value) -> (String, String) {
    let reply = server
        .post(
            "/v1/webhook_endpoints",
            &json!({ "url": url, "enabled_events": events }).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["object"], "webhook_endpoint");
    let secret = reply.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    (reply.body["id"].as_str().unwrap().to_string(), secret)
}

async fn pay_out(server: &TestServer) -> String {
    let body = json!({ "amount": "10.00", "currency": "USD",
        "recipient": { "full_name": "Jane", "account_iban": "MA64011519000001205000534921" } });
    let reply = server.post("/v1/payouts", &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_string()
}

/// Waits until `done` holds for what the receiver got.
async fn wait_until(inbox: &Inbox, what: &str, done: impl Fn(&[(String, Vec<u8>)]) -> bool) -> Vec<(String, Vec<u8>)> {
    let started = Instant::now();
    loop {
        let got = inbox.received.lock().unwrap().clone();
        if done(&got) {
            return got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "waiting for {what}; got {} deliveries",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `balance.updated` events since the endpoint `$1` was made.
const BALANCE_EVENTS_SINCE_ENDPOINT_SQL: &str = "SELECT COUNT(*) FROM events e JOIN webhook_endpoints w ON w.id = $1
     WHERE e.type = 'balance.updated' AND e.created_at_ms >= w.created_at_ms";

/// A count about the endpoint `endpoint_id` (bound as `$1`).
async fn count_for(db: &sqlx::AnyPool, sql: &str, endpoint_id: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .bind(endpoint_id)
        .fetch_one(db)
        .await
        .unwrap()
}

fn types(got: &[(String, Vec<u8>)]) -> Vec<String> {
    got.iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_documented_events_arrive_signed_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let (url, inbox) = receiver().await;
    let (_, secret) = endpoint(&server, &url, json!(["*"])).await;
    let payout = pay_out(&server).await;
    // An M-Pesa payout Daraja's sandbox fails (ResultCode 1), and a customer
    // account the KYC sandbox verifies.
    let failing = json!({ "amount": "100", "currency": "KES",
        "recipient": { "full_name": "Wanjiru", "phone_number": "254700000002" } });
    let reply = server.post("/v1/payouts", &failing.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let customer = json!({ "type": "individual",
        "individual": { "first_name": "Ama", "last_name": "Mensah", "date_of_birth": "1990-04-12",
            "address": { "line1": "12 Moi Avenue", "city": "Nairobi", "country": "KE" }, "id_number": "A1234567" },
        "documents": [{ "type": "national_id", "reference": "file_8Hc2" }] });
    let reply = server.post("/v1/accounts", &customer.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let six = [
        "payout.created",
        "payout.processing",
        "payout.succeeded",
        "payout.failed",
        "balance.updated",
        "account.verified",
    ];
    let got = wait_until(&inbox, "the six events", |got| {
        let kinds = types(got);
        six.iter().all(|k| kinds.contains(&k.to_string()))
    })
    .await;
    for (signature, body) in &got {
        assert!(signed_by(&secret, signature, body), "signed: {signature}");
        assert!(!signed_by("whsec_other", signature, body));
        let event: Value = serde_json::from_slice(body).unwrap();
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["object"], "event");
        assert_eq!(event["api_version"], "2025-01-01");
    }
    let succeeded = got
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
        .find(|e| e["type"] == "payout.succeeded")
        .unwrap();
    assert_eq!(succeeded["data"]["object"]["id"], payout.as_str());
    assert_eq!(succeeded["data"]["object"]["status"], "succeeded");

    // The event log over the API.
    let listed = server.get("/v1/events?type=payout.succeeded").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["data"][0]["id"], succeeded["id"]);
    let one = server
        .get(&format!("/v1/events/{}", succeeded["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.body["data"]["object"]["id"], payout.as_str());
    assert_eq!(server.get("/v1/events/evt_nothing").await.status, 404);
    assert_eq!(server.get("/v1/events?type=nothing").await.error().1, Some("type"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_until_it_succeeds_then_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let (url, inbox) = receiver().await;
    inbox.fail_first.store(2, Ordering::SeqCst);
    let (id, secret) = endpoint(&server, &url, json!(["payout.created"])).await;
    pay_out(&server).await;
    let got = wait_until(&inbox, "three tries", |got| got.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let got_later = inbox.received.lock().unwrap().clone();
    assert_eq!(got_later.len(), 3, "nothing after the success");
    assert!(got.iter().all(|(s, b)| signed_by(&secret, s, b)));
    let ids: Vec<Value> = got
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "the same event each time");

    let attempts = server.get(&format!("/v1/webhook_endpoints/{id}/attempts")).await;
    assert_eq!(attempts.status, 200, "{}", attempts.body);
    let data = attempts.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    // Newest first: the success, then the two failures with their next retry.
    assert_eq!(data[0]["http_status"], 200);
    assert!(data[0]["next_retry_at"].is_null());
    for failed in &data[1..] {
        assert_eq!(failed["http_status"], 500);
        assert!(failed["next_retry_at"].is_i64(), "{failed}");
        assert!(failed["error"].as_str().unwrap().contains("500"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_during_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let (url, inbox) = receiver().await;
    let (id, old) = endpoint(&server, &url, json!(["payout.created"])).await;
    let rotated = server
        .post(
            &format!("/v1/webhook_endpoints/{id}/rotate_secret"),
            r#"{"expires_in":3600}"#,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    pay_out(&server).await;
    let got = wait_until(&inbox, "one delivery", |got| !got.is_empty()).await;
    let (signature, body) = &got[0];
    assert_eq!(signature.matches("v1=").count(), 2, "{signature}");
    assert!(signed_by(&old, signature, body) && signed_by(&new, signature, body));

    // The secret is never shown again.
    let read = server.get(&format!("/v1/webhook_endpoints/{id}")).await;
    assert!(read.body.get("secret").is_none());
    assert!(!read.text.contains(&new));

    // No grace: only the newest secret signs.
    let now = server
        .post(
            &format!("/v1/webhook_endpoints/{id}/rotate_secret"),
            r#"{"expires_in":0}"#,
        )
        .await;
    let newest = now.body["secret"].as_str().unwrap().to_string();
    pay_out(&server).await;
    let got = wait_until(&inbox, "a second delivery", |got| got.len() >= 2).await;
    let (signature, body) = &got[1];
    assert_eq!(signature.matches("v1=").count(), 1);
    assert!(signed_by(&newest, signature, body) && !signed_by(&new, signature, body));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_managed_and_resend_delivers_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let (url, inbox) = receiver().await;
    let (id, _) = endpoint(&server, &url, json!(["payout.created"])).await;
    let list = server.get("/v1/webhook_endpoints").await;
    assert_eq!(list.body["data"][0]["id"], id.as_str());
    assert!(list.body["data"][0].get("secret").is_none());

    // Off: nothing is delivered.
    let off = server
        .post(&format!("/v1/webhook_endpoints/{id}"), r#"{"disabled":true}"#)
        .await;
    assert_eq!(off.body["status"], "disabled", "{}", off.body);
    pay_out(&server).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(inbox.received.lock().unwrap().is_empty());
    // Resend to a disabled endpoint is refused; back on, resend delivers.
    let created = server.get("/v1/events?type=payout.created").await;
    let event = created.body["data"][0]["id"].as_str().unwrap().to_string();
    let refused = server
        .post(
            &format!("/v1/events/{event}/resend"),
            &json!({ "endpoint": id }).to_string(),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let on = server
        .send_with(
            "PUT",
            &format!("/v1/webhook_endpoints/{id}"),
            &[],
            Some(r#"{"disabled":false}"#),
        )
        .await;
    assert_eq!(on.body["status"], "enabled");
    let resent = server
        .post(
            &format!("/v1/events/{event}/resend"),
            &json!({ "endpoint": id }).to_string(),
        )
        .await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    let got = wait_until(&inbox, "the resent event", |got| !got.is_empty()).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].1).unwrap()["id"],
        event.as_str()
    );

    // Bad bodies name the field; delete makes it gone.
    let bad = server
        .post("/v1/webhook_endpoints", r#"{"url":"ftp://x","enabled_events":["*"]}"#)
        .await;
    assert_eq!(bad.error(), ("invalid_request", Some("url")));
    let bad = server
        .post(
            "/v1/webhook_endpoints",
            &json!({"url": url, "enabled_events": ["payout.lost"]}).to_string(),
        )
        .await;
    assert_eq!(bad.error().1, Some("enabled_events"));
    let deleted = server
        .send_with("DELETE", &format!("/v1/webhook_endpoints/{id}"), &[], None)
        .await;
    assert_eq!(deleted.body["deleted"], true);
    assert_eq!(server.get(&format!("/v1/webhook_endpoints/{id}")).await.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_days_is_disabled_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let (url, inbox) = receiver().await;
    inbox.always_fail.store(true, Ordering::SeqCst);
    let (id, _) = endpoint(&server, &url, json!(["payout.created"])).await;
    let (witness_url, witness) = receiver().await;
    endpoint(&server, &witness_url, json!(["webhook_endpoint.disabled"])).await;
    pay_out(&server).await;
    wait_until(&inbox, "a first failure", |got| !got.is_empty()).await;
    // Three days pass (the injected clock) while it keeps failing.
    server.running().clock.advance(3 * 86_400_000 + 1_000);
    let started = Instant::now();
    let disabled = loop {
        let read = server.get(&format!("/v1/webhook_endpoints/{id}")).await;
        if read.body["status"] == "disabled" {
            break read;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still {}", read.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(disabled.body["disabled_reason"].as_str().unwrap().contains("days"));
    let told = wait_until(&witness, "webhook_endpoint.disabled", |got| !got.is_empty()).await;
    let event: Value = serde_json::from_slice(&told[0].1).unwrap();
    assert_eq!(event["type"], "webhook_endpoint.disabled");
    assert_eq!(event["data"]["object"]["id"], id.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_endpoints_must_be_https_and_public() {
    use nixo_core::auth::{self, KeyAccess};
    use nixo_core::ledger::Environment;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let account = nixo_core::accounts::create(server.db(), Environment::Live, "Live account", 2)
        .await
        .unwrap();
    let hasher = nixo_core::server::key_hasher(dir.path()).unwrap();
    let key = auth::create_key(server.db(), &hasher, &account, Environment::Live, &KeyAccess::default())
        .await
        .unwrap()
        .key;
    let create = |url: &str| json!({ "url": url, "enabled_events": ["*"] }).to_string();
    for (url, why) in [
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "private"),
        ("https://10.1.2.3/hook", "private"),
        ("https://[::1]/hook", "http(s) URL"),
        ("https://169.254.169.254/latest", "private"),
    ] {
        let reply = server
            .send("POST", "/v1/webhook_endpoints", Some(&key), Some(&create(url)))
            .await;
        assert_eq!(reply.status, 400, "{url}: {}", reply.body);
        assert_eq!(reply.error().1, Some("url"));
        assert!(
            reply.body["error"]["message"].as_str().unwrap().contains(why),
            "{url}: {}",
            reply.body
        );
    }
    // Sandbox may use http on this machine, for development.
    let sandbox = server
        .post("/v1/webhook_endpoints", &create("http://127.0.0.1:9/hook"))
        .await;
    assert_eq!(sandbox.status, 200, "{}", sandbox.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_rendered_in_the_endpoints_api_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(config(dir.path()), None).await;
    let (url, inbox) = receiver().await;
    let reply = server
        .post(
            "/v1/webhook_endpoints",
            &json!({ "url": url, "enabled_events": ["balance.updated"], "api_version": "2024-06-01" }).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    pay_out(&server).await;
    let got = wait_until(&inbox, "a balance.updated", |got| !got.is_empty()).await;
    let event: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(event["api_version"], "2024-06-01");
    let usd = event["data"]["object"]["available"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["currency"] == "USD")
        .unwrap()
        .clone();
    // 12,500.50 − 10.00 − 0.05 fee, in the old version's integer minor units.
    assert_eq!(usd["amount"].to_string(), "1249045");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_trips_the_breaker_instead_of_trying_every_event() {
    use nixo_core::webhooks::delivery::{BREAKER_FAILURES, IN_FLIGHT_PER_ENDPOINT};
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // Retries a minute away: within this test nothing is retried; and its
    // burst of transfers is not what the rate limit is for.
    config
        .edge_variables
        .insert("rate_limit_sandbox".into(), "100000/1".into());
    config.webhooks.retry_base_ms = 60_000;
    config.webhooks.retry_max_ms = 60_000;
    let server = start_with(config, None).await;
    let (url, inbox) = receiver().await;
    inbox.always_fail.store(true, Ordering::SeqCst);
    let (id, _) = endpoint(&server, &url, json!(["balance.updated"])).await;
    for _ in 0..60 {
        let body = json!({ "from_wallet": 101, "to_wallet": 102, "amount": "1.00", "currency": "KES" });
        let status = server.post("/v1/payments/transfer", &body.to_string()).await.status;
        assert!(status == 200 || status == 202, "{status}");
    }
    let db = &server.db().pool;
    let count = |sql: &'static str| count_for(db, sql, &id);
    let events = count(BALANCE_EVENTS_SINCE_ENDPOINT_SQL).await;
    assert!(events >= 60, "{events}");
    // Wait until every event has its delivery row and the pump has settled.
    let started = Instant::now();
    loop {
        let rows = count("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1").await;
        let waiting = count(
            "SELECT COUNT(*) FROM webhook_deliveries d WHERE endpoint_id = $1 AND state = 'pending'
             AND NOT EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.endpoint_id = d.endpoint_id AND a.event_id = d.event_id)
             AND run_at_ms <= (SELECT MAX(created_at_ms) FROM webhook_attempts WHERE endpoint_id = $1)",
        )
        .await;
        if rows == events && waiting == 0 && started.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rows {rows}, due and untried {waiting}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = count("SELECT COUNT(*) FROM webhook_attempts WHERE endpoint_id = $1").await;
    let untried = count(
        "SELECT COUNT(*) FROM webhook_deliveries d WHERE endpoint_id = $1
         AND NOT EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.endpoint_id = d.endpoint_id AND a.event_id = d.event_id)",
    )
    .await;
    // Each round stops after BREAKER_FAILURES failures (with the others in
    // flight finishing): far fewer attempts than events, the rest deferred.
    assert!(attempts >= BREAKER_FAILURES as i64, "{attempts}");
    assert!(attempts < events, "every event was tried: {attempts}");
    assert_eq!(attempts + untried, events);
    let per_round = (BREAKER_FAILURES + IN_FLIGHT_PER_ENDPOINT) as i64;
    assert!(untried >= events - 3 * per_round, "untried {untried}");
    assert_eq!(inbox.received.lock().unwrap().len() as i64, attempts);
    server.stop().await;
}

/// A server whose webhook retries are a minute away (a failing receiver's
/// pump stays quiet), on SQLite or on PostgreSQL at `database_url`.
async fn start_quiet_retries(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    let mut config = config(dir);
    config.webhooks.retry_base_ms = 60_000;
    config.webhooks.retry_max_ms = 60_000;
    config.database_url = database_url;
    start_with(config, None).await
}

nixo_tests::on_both_databases!(
    a_backlog_of_several_fanout_batches_is_dispatched_whole_each_event_once,
    super::start_quiet_retries
);
async fn a_backlog_of_several_fanout_batches_is_dispatched_whole_each_event_once(server: &TestServer) {
    use nixo_core::webhooks::delivery::FANOUT_BATCH_MAX;
    // The receiver fails: what is checked is the fanout's queue of
    // delivery rows, not the pump.
    let (url, inbox) = receiver().await;
    inbox.always_fail.store(true, Ordering::SeqCst);
    let (id, _) = endpoint(server, &url, json!(["balance.updated"])).await;
    let body = json!({ "from_wallet": 101, "to_wallet": 102, "amount": "1.00", "currency": "KES" });
    assert_eq!(
        server.post("/v1/payments/transfer", &body.to_string()).await.status,
        200
    );
    let db = &server.db().pool;
    let model: String =
        sqlx::query_scalar("SELECT id FROM events WHERE type = 'balance.updated' ORDER BY created_at_ms DESC LIMIT 1")
            .fetch_one(db)
            .await
            .unwrap();
    // More events than two fanout batches, committed at once (as a burst
    // of traffic leaves them): the last batch is a short one.
    let backlog = 2 * FANOUT_BATCH_MAX + 37;
    let mut tx = db.begin().await.unwrap();
    for n in 0..backlog {
        sqlx::query(
            "INSERT INTO events (id, type, account_id, environment, api_version, data, created_at_ms)
             SELECT $1, type, account_id, environment, api_version, data, created_at_ms FROM events WHERE id = $2",
        )
        .bind(format!("evt_backlog{n:08}"))
        .bind(&model)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let count = |sql: &'static str| count_for(db, sql, &id);
    let events = count(BALANCE_EVENTS_SINCE_ENDPOINT_SQL).await;
    assert!(events > backlog, "{events}");
    let started = Instant::now();
    loop {
        let undispatched: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE dispatched_at_ms IS NULL")
            .fetch_one(db)
            .await
            .unwrap();
        let rows = count("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1").await;
        if undispatched == 0 && rows == events {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{undispatched} events undispatched, {rows} delivery rows for {events} events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let distinct = count("SELECT COUNT(DISTINCT event_id) FROM webhook_deliveries WHERE endpoint_id = $1").await;
    assert_eq!(distinct, events, "each event is queued once");
    // Later runs find nothing more to queue.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        count("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1").await,
        events
    );
}
