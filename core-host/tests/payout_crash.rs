//! Payouts survive SIGKILL at any step: `nixo serve` is killed right after
//! payouts were acknowledged (before, during or after their submission to
//! the sandbox bank and Daraja, and while results are coming back), three
//! times, and restarted on the same data directory. In the end every
//! acknowledged payout exists once and succeeded, each was paid once by its
//! rail, the money adds up and `nixo ledger verify` passes; and a webhook
//! endpoint registered before the first kill receives every payout's
//! `payout.succeeded` (deliveries are jobs: they resume after a restart).

mod common;

use axum::extract::State;
use common::{spawn_with, verify};
use nixo_core::providers::bank::pain002;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const PAYOUTS_PER_ROUND: usize = 6;
/// The sandbox rails answer fast; Nixo asks Daraja soon when no result comes
/// (results posted to a killed process are lost, as they would be).
const ENV: [(&str, &str); 3] = [
    ("NIXO_SANDBOX_BANK_SETTLE_MS", "300"),
    ("NIXO_SANDBOX_MPESA_RESULT_MS", "100"),
    ("NIXO_MPESA_RESULT_WAIT_MS", "1500"),
];

fn body(n: usize) -> String {
    if n.is_multiple_of(2) {
        json!({"amount": "10.00", "currency": "USD",
               "recipient": {"full_name": "Jane Doe", "account_iban": "MA64011519000001205000534921"}})
    } else {
        json!({"amount": "1000", "currency": "KES",
               "recipient": {"full_name": "Jane Doe", "phone_number": "254712345678"}})
    }
    .to_string()
}

async fn post(client: &reqwest::Client, base: &str, key: &str, idem: &str, body: String) -> Option<Value> {
    let resp = client
        .post(format!("{base}/v1/payouts"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn get(client: &reqwest::Client, base: &str, key: &str, path: &str) -> Value {
    let resp = client
        .get(format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_survive_sigkill_at_every_step_on_sqlite() {
    payouts_survive_sigkill_at_every_step(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_survive_sigkill_at_every_step_on_postgres() {
    let Some(url) = common::postgres_database("payout_crash").await else {
        return;
    };
    payouts_survive_sigkill_at_every_step(Some(url.clone())).await;
    common::drop_postgres_database(&url).await;
}

/// A receiver that records the ids of the events posted to it.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let inbox: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State(inbox): State<Arc<Mutex<Vec<Value>>>>, body: axum::body::Bytes| async move {
                    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                        inbox.lock().unwrap().push(event);
                    }
                    "ok"
                },
            ),
        )
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

async fn payouts_survive_sigkill_at_every_step(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (hook, inbox) = receiver().await;
    let mut env: Vec<(&str, &str)> = ENV.to_vec();
    if let Some(url) = &database_url {
        env.push(("NIXO_DATABASE_URL", url.as_str()));
    }
    let database: Vec<(&str, &str)> = env.iter().filter(|(k, _)| *k == "NIXO_DATABASE_URL").copied().collect();
    let mut server = spawn_with(dir.path(), &env);
    let key = server.key.clone().expect("first start prints the key");
    let client = reqwest::Client::new();
    let endpoint = client
        .post(format!("{}/v1/webhook_endpoints", server.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(json!({ "url": hook, "enabled_events": ["payout.succeeded"] }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(endpoint.status(), 200);
    // idempotency key → payout id, for every acknowledged payout.
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    let kill_after_ms = [0_u64, 250, 900];
    for (round, wait) in kill_after_ms.iter().enumerate().take(ROUNDS) {
        let mut sent = Vec::new();
        for n in 0..PAYOUTS_PER_ROUND {
            let idem = format!("crash-{round}-{n}");
            let (client, base, key) = (client.clone(), server.base.clone(), key.clone());
            sent.push(tokio::spawn(async move {
                let reply = post(&client, &base, &key, &idem, body(n)).await;
                (idem, reply)
            }));
        }
        for task in sent {
            let (idem, reply) = task.await.unwrap();
            if let Some(reply) = reply {
                acknowledged.insert(idem, reply["id"].as_str().unwrap().to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(*wait)).await;
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        let (sound, report) = verify(dir.path(), &database);
        assert!(sound, "after kill {round}: {report}");
        server = spawn_with(dir.path(), &env);
        assert!(server.key.is_none(), "a restart does not bootstrap again");
    }
    assert_eq!(
        acknowledged.len(),
        ROUNDS * PAYOUTS_PER_ROUND,
        "every request was answered"
    );

    // A retry of an acknowledged request after the crashes is the same payout.
    let (idem, id) = acknowledged.iter().next().unwrap();
    let again = post(&client, &server.base, &key, idem, body(0))
        .await
        .expect("replayed");
    assert_eq!(again["id"].as_str(), Some(id.as_str()));

    // Every payout there is ends succeeded (acknowledged or not).
    let started = Instant::now();
    let payouts = loop {
        let list = get(&client, &server.base, &key, "/v1/payouts?limit=100").await;
        let data = list["data"].as_array().unwrap().clone();
        if data.iter().all(|p| p["status"] == "succeeded") {
            break data;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all payouts ended: {:?}",
            data.iter()
                .map(|p| (p["id"].clone(), p["status"].clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids: Vec<&str> = payouts.iter().map(|p| p["id"].as_str().unwrap()).collect();
    for id in acknowledged.values() {
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{id} once");
    }
    for p in &payouts {
        let history: Vec<&str> = p["status_history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["pending", "processing", "succeeded"], "{}", p["id"]);
    }

    // Every payout's success reached the webhook receiver (at least once).
    let started = Instant::now();
    loop {
        let delivered: Vec<String> = inbox
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["data"]["object"]["id"].as_str().unwrap_or_default().to_string())
            .collect();
        let missing: Vec<&&str> = ids.iter().filter(|id| !delivered.iter().any(|d| d == **id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not delivered: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each was paid once by its rail.
    let bank = nixo_core::providers::bank::sandbox::books_on_disk(&dir.path().join("sandbox-bank.json"));
    let settlements: Vec<String> = bank["feed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|doc| pain002::parse(doc.as_str().unwrap()).expect("the bank's reports are valid pain.002"))
        .flat_map(|report| report.transactions)
        .filter(|tx| tx.code == "ACSC")
        .map(|tx| tx.end_to_end_id)
        .collect();
    let daraja = nixo_core::providers::mpesa::sandbox::books_on_disk(&dir.path().join("sandbox-daraja.json"));
    for p in &payouts {
        let id = p["id"].as_str().unwrap();
        if p["method"] == "bank" {
            let settled = settlements.iter().filter(|s| *s == id).count();
            assert_eq!(settled, 1, "{id} settled once by the bank");
        } else {
            assert!(daraja["payments"][id].is_object(), "{id} paid by Daraja");
        }
    }
    let daraja_payments = daraja["payments"].as_object().unwrap().len();
    let mpesa_payouts = payouts.iter().filter(|p| p["method"] == "mpesa").count();
    assert_eq!(daraja_payments, mpesa_payouts, "no payment Nixo does not know of");

    // The money adds up: each payout took its amount and fee, nothing held.
    let balances = get(&client, &server.base, &key, "/v1/balances").await;
    let amount = |kind: &str, currency: &str| {
        balances[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["currency"] == currency)
            .map(|e| e["amount"].to_string())
            .unwrap()
    };
    let usd = payouts.iter().filter(|p| p["currency"] == "USD").count() as i64;
    let kes = payouts.iter().filter(|p| p["currency"] == "KES").count() as i64;
    let cents = |v: i64| format!("{}.{:02}", v / 100, v % 100);
    assert_eq!(amount("available", "USD"), cents(1_250_050 - usd * 1_005));
    assert_eq!(amount("available", "KES"), cents(20_000_000 - kes * 101_000));
    assert_eq!(amount("reserved", "USD"), "0.00");
    assert_eq!(amount("reserved", "KES"), "0.00");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (sound, report) = verify(dir.path(), &database);
    assert!(sound, "{report}");
}
