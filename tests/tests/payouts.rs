//! Payouts end to end, over HTTP through the gateway, against the sandbox
//! bank (ISO 20022) and the sandbox Daraja (M-Pesa B2C) that `nixo serve`
//! starts: the document's example, success with balances at each step,
//! every failure reason, cancel, lists, idempotency, a review hold, and
//! M-Pesa's duplicate, late and lost results. On SQLite and PostgreSQL.

use nixo_core::events;
use nixo_core::rail_wiring::{RailsConfig, SandboxTimings};
use nixo_core::server::ServeConfig;
use nixo_tests::{Reply, TestServer, on_both_databases, start_with};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The Nixo document's "Your first payout" body, verbatim.
const DOCUMENTED_PAYOUT: &str = r#"{
"amount": 250.00,
"currency": "USD",
"destination_country": "MA",
"recipient": {
"full_name": "Test User",
"account_iban": "MA64000..."
}
}"#;
/// A valid Moroccan IBAN.
const MA_IBAN: &str = "MA64011519000001205000534921";
/// Valid IBANs whose endings are the sandbox bank's magic values.
const IBAN_AC01: &str = "GB09NWBK60161331920001";
const IBAN_AC04: &str = "GB25NWBK60161331920004";
const IBAN_AM04: &str = "GB89NWBK60161331920404";
const IBAN_SLOW: &str = "GB84NWBK60161331920009";

fn fast_rails() -> RailsConfig {
    RailsConfig::Sandbox(SandboxTimings {
        bank_settle_delay_ms: 1_000,
        bank_slow_delay_ms: 600_000,
        mpesa_result_delay_ms: 50,
        mpesa_slow_delay_ms: 2_500,
        mpesa_result_wait_ms: 1_500,
        ..SandboxTimings::default()
    })
}

async fn start(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    start_with(
        ServeConfig {
            database_url,
            rails: fast_rails(),
            ..ServeConfig::ephemeral(dir)
        },
        None,
    )
    .await
}

/// Waits until the payout's rail state is `state` (submitted: the rail has it).
async fn wait_for_rail_state(server: &TestServer, id: &str, state: &str) -> String {
    let started = Instant::now();
    loop {
        let row: (String, Option<String>) =
            sqlx::query_as("SELECT rail_state, rail_reference FROM payouts WHERE id = $1")
                .bind(id)
                .fetch_one(&server.db().pool)
                .await
                .unwrap();
        if row.0 == state {
            return row.1.unwrap_or_default();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "payout {id} stays {}",
            row.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bank_body(amount: &str, currency: &str, iban: &str) -> String {
    json!({ "amount": amount, "currency": currency, "recipient": { "full_name": "Jane Doe", "account_iban": iban } })
        .to_string()
}

fn mpesa_body(amount: &str, phone: &str) -> String {
    json!({ "amount": amount, "currency": "KES", "recipient": { "full_name": "Jane Doe", "phone_number": phone } })
        .to_string()
}

async fn create(server: &TestServer, body: &str) -> Value {
    let reply = server.post("/v1/payouts", body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// Polls the payout until it is `status` (or fails the test after 20 s).
async fn wait_for(server: &TestServer, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = server.get(&format!("/v1/payouts/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body["status"] == status {
            return reply.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "payout {id} is still {} (waiting for {status}): {}",
            reply.body["status"],
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(available, reserved)` of the account in `currency`, as exact text.
async fn balance(server: &TestServer, currency: &str) -> (String, String) {
    let reply = server.get("/v1/balances").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let pick = |kind: &str| {
        reply.body[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["currency"] == currency)
            .map(|e| e["amount"].to_string())
            .unwrap_or_default()
    };
    (pick("available"), pick("reserved"))
}

fn statuses(payout: &Value) -> Vec<String> {
    payout["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect()
}

async fn the_documented_example_then_a_real_iban_pays_out(server: &TestServer) {
    // The document's IBAN is a placeholder: refused, naming the field and why.
    let reply = server
        .send_with(
            "POST",
            "/v1/payouts",
            &[("Nixo-Version", "2025-01-01")],
            Some(DOCUMENTED_PAYOUT),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error(), ("invalid_request", Some("recipient.account_iban")));
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("IBAN"), "{message}");
    assert_eq!(balance(server, "USD").await, ("12500.50".into(), "0.00".into()));

    // The same payout to a valid Moroccan IBAN.
    let body = DOCUMENTED_PAYOUT.replace("MA64000...", MA_IBAN);
    let reply = server.post("/v1/payouts", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let payout = &reply.body;
    let id = payout["id"].as_str().unwrap();
    assert!(id.starts_with("pyt_") && id.len() > 10, "{id}");
    assert_eq!(payout["object"], "payout");
    assert!(
        reply.text.contains(r#""amount":250.00,"#),
        "a JSON number: {}",
        reply.text
    );
    assert_eq!(payout["currency"], "USD");
    assert_eq!(payout["status"], "processing");
    assert!(payout["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(payout["destination_country"], "MA");
    assert_eq!(payout["method"], "bank");
    assert_eq!(payout["recipient"]["full_name"], "Test User");
    assert_eq!(payout["recipient"]["account_iban"], "************************4921");
    assert!(!reply.text.contains(MA_IBAN), "the IBAN is never shown whole");
    assert_eq!(payout["fee"].to_string(), "1.25");
    assert!(payout["failure_code"].is_null() && payout["failure_message"].is_null());
    assert_eq!(statuses(payout), ["pending", "processing"]);
    // Amount and fee are held.
    assert_eq!(balance(server, "USD").await, ("12249.25".into(), "251.25".into()));

    let done = wait_for(server, id, "succeeded").await;
    assert_eq!(statuses(&done), ["pending", "processing", "succeeded"]);
    assert_eq!(balance(server, "USD").await, ("12249.25".into(), "0.00".into()));

    // Every step is an event, in order, with the balance changes.
    let account = server.running().bootstrap.as_ref().unwrap().account_id.clone();
    let types: Vec<String> = events::for_account(server.db(), &account)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t != "balance.updated")
        .collect();
    assert_eq!(types, ["payout.created", "payout.processing", "payout.succeeded"]);
    let balance_events = events::for_account(server.db(), &account)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "balance.updated")
        .count();
    assert!(balance_events >= 4, "funding ×3, hold, post: {balance_events}");
}
on_both_databases!(the_documented_example_then_a_real_iban_pays_out, super::start);

async fn each_failure_reason_releases_the_hold(server: &TestServer) {
    let cases = [
        (bank_body("10.00", "USD", IBAN_AC01), "invalid_account_number"),
        (bank_body("10.00", "USD", IBAN_AC04), "account_closed"),
        (bank_body("10.00", "USD", IBAN_AM04), "insufficient_funds"),
        (mpesa_body("1000", "254700000001"), "rail_credentials_invalid"),
        (mpesa_body("1000", "254700000002"), "rail_insufficient_funds"),
        (mpesa_body("1000", "254700002040"), "recipient_not_registered"),
        (mpesa_body("1000", "254700000017"), "rail_rule_limited"),
    ];
    let mut ids = Vec::new();
    for (body, code) in &cases {
        ids.push((create(server, body).await["id"].as_str().unwrap().to_string(), *code));
    }
    for (id, code) in ids {
        let failed = wait_for(server, &id, "failed").await;
        assert_eq!(failed["failure_code"], code, "{failed}");
        assert!(failed["failure_message"].as_str().unwrap().len() > 5);
        let last = failed["status_history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["reason"], code);
    }
    assert_eq!(balance(server, "USD").await, ("12500.50".into(), "0.00".into()));
    assert_eq!(balance(server, "KES").await, ("200000.00".into(), "0.00".into()));
}
on_both_databases!(each_failure_reason_releases_the_hold, super::start);

async fn cancel_is_allowed_until_the_rail_has_it(server: &TestServer) {
    // USD 10,000 is at the fraud rule's review threshold: held, pending.
    let held = create(server, &bank_body("10000.00", "USD", MA_IBAN)).await;
    assert_eq!(held["status"], "pending");
    assert_eq!(held["status_history"][0]["reason"], "review");
    let id = held["id"].as_str().unwrap();
    assert_eq!(balance(server, "USD").await, ("2450.50".into(), "10050.00".into()));
    let canceled = server
        .send_with("DELETE", &format!("/v1/payouts/{id}/cancel"), &[], None)
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.body);
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(statuses(&canceled.body), ["pending", "canceled"]);
    assert_eq!(balance(server, "USD").await, ("12500.50".into(), "0.00".into()));
    // Canceled is final.
    let again = server
        .send_with("DELETE", &format!("/v1/payouts/{id}/cancel"), &[], None)
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.error().0, "payout_not_cancelable");

    // Submitted to the bank (which keeps it in process): refused.
    let slow = create(server, &bank_body("20.00", "USD", IBAN_SLOW)).await;
    let id = slow["id"].as_str().unwrap();
    wait_for_rail_state(server, id, "submitted").await;
    let refused = server
        .send_with("DELETE", &format!("/v1/payouts/{id}/cancel"), &[], None)
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.error().0, "payout_not_cancelable");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("submitted"));
    assert_eq!(wait_for(server, id, "processing").await["status"], "processing");

    // Succeeded: refused.
    let paid = create(server, &mpesa_body("500", "254712345678")).await;
    let id = paid["id"].as_str().unwrap();
    wait_for(server, id, "succeeded").await;
    let refused = server
        .send_with("DELETE", &format!("/v1/payouts/{id}/cancel"), &[], None)
        .await;
    assert_eq!(refused.status, 409);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("succeeded"));

    // Someone else's id, or no such id: 404.
    let missing = server
        .send_with("DELETE", "/v1/payouts/pyt_nothing/cancel", &[], None)
        .await;
    assert_eq!(missing.status, 404);
}
on_both_databases!(cancel_is_allowed_until_the_rail_has_it, super::start);

async fn lists_filter_and_page(server: &TestServer) {
    let mut ids = Vec::new();
    for amount in ["11.00", "12.00", "13.00"] {
        ids.push(create(server, &bank_body(amount, "USD", MA_IBAN)).await["id"].clone());
    }
    ids.push(create(server, &mpesa_body("100", "254700000001")).await["id"].clone());
    let kes = ids[3].as_str().unwrap().to_string();
    wait_for(server, &kes, "failed").await;

    let all = server.get("/v1/payouts?limit=2").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.body["object"], "list");
    assert_eq!(all.body["has_more"], true);
    let page: Vec<Value> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(page, [ids[3].clone(), ids[2].clone()], "newest first");
    let next = server
        .get(&format!(
            "/v1/payouts?limit=2&starting_after={}",
            ids[2].as_str().unwrap()
        ))
        .await;
    let page: Vec<Value> = next.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(page, [ids[1].clone(), ids[0].clone()]);
    assert_eq!(next.body["has_more"], false);

    let failed = server.get("/v1/payouts?status=failed").await;
    assert_eq!(failed.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(failed.body["data"][0]["id"], ids[3]);
    let usd = server.get("/v1/payouts?currency=USD").await;
    assert_eq!(usd.body["data"].as_array().unwrap().len(), 3);
    let created = ids_created(&all);
    let window = server
        .get(&format!(
            "/v1/payouts?created[gte]={created}&created%5Blte%5D={created}"
        ))
        .await;
    assert!(!window.body["data"].as_array().unwrap().is_empty(), "{}", window.body);
    let future = server.get("/v1/payouts?created[gte]=4102444800").await;
    assert_eq!(future.body["data"], json!([]));

    for (query, field) in [
        ("status=done", "status"),
        ("currency=XYZ", "currency"),
        ("created[gte]=yesterday", "created[gte]"),
        ("limit=0", "limit"),
        ("sort=asc", "sort"),
    ] {
        let bad = server.get(&format!("/v1/payouts?{query}")).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.body);
        assert_eq!(bad.error().1, Some(field), "{query}");
    }
}
on_both_databases!(lists_filter_and_page, super::start);

fn ids_created(list: &Reply) -> i64 {
    list.body["data"][0]["created"].as_i64().unwrap()
}

async fn create_is_idempotent(server: &TestServer) {
    let body = bank_body("100.00", "USD", MA_IBAN);
    let headers = [("Idempotency-Key", "payout-once-1")];
    let first = server.send_with("POST", "/v1/payouts", &headers, Some(&body)).await;
    let second = server.send_with("POST", "/v1/payouts", &headers, Some(&body)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.text, second.text, "the same answer, byte for byte");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    let other = server
        .send_with(
            "POST",
            "/v1/payouts",
            &headers,
            Some(&bank_body("101.00", "USD", MA_IBAN)),
        )
        .await;
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.error().0, "idempotency_key_reused");
    // One payout, held once.
    let list = server.get("/v1/payouts").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(balance(server, "USD").await, ("12400.00".into(), "100.50".into()));
}
on_both_databases!(create_is_idempotent, super::start);

async fn mpesa_duplicate_late_and_lost_results(server: &TestServer) {
    let ok = create(server, &mpesa_body("2500", "0712 345 678")).await;
    assert_eq!(ok["recipient"]["phone_number"], "********5678");
    assert_eq!(ok["destination_country"], "KE");
    let duplicate = create(server, &mpesa_body("1000", "254700000008")).await;
    let late = create(server, &mpesa_body("1000", "254700000007")).await;
    let lost = create(server, &mpesa_body("1000", "254700000009")).await;
    for p in [&ok, &duplicate] {
        wait_for(server, p["id"].as_str().unwrap(), "succeeded").await;
    }
    // The late result has not come yet.
    let still = server
        .get(&format!("/v1/payouts/{}", late["id"].as_str().unwrap()))
        .await;
    assert_eq!(still.body["status"], "processing");
    wait_for(server, late["id"].as_str().unwrap(), "succeeded").await;
    // No result ever comes for this one: Nixo asks Daraja, which tells.
    wait_for(server, lost["id"].as_str().unwrap(), "succeeded").await;
    // Give the second copy of the duplicate result time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dup = server
        .get(&format!("/v1/payouts/{}", duplicate["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        statuses(&dup.body),
        ["pending", "processing", "succeeded"],
        "applied once"
    );
    // 2,500 + 3 × 1,000 paid out, 1 % fee each: 5,500 + 55.
    assert_eq!(balance(server, "KES").await, ("194445.00".into(), "0.00".into()));

    // Cents and non-KES are refused before anything is held.
    let cents = server.post("/v1/payouts", &mpesa_body("100.50", "254712345678")).await;
    assert_eq!(cents.status, 400, "{}", cents.body);
    assert_eq!(cents.error().1, Some("amount"));
    let usd = server
        .post(
            "/v1/payouts",
            &json!({"amount": "10", "currency": "USD", "recipient": {"full_name": "J", "phone_number": "254712345678"}})
                .to_string(),
        )
        .await;
    assert_eq!(usd.status, 400);
    assert_eq!(usd.error().1, Some("currency"));
    let bad_number = server.post("/v1/payouts", &mpesa_body("100", "12345")).await;
    assert_eq!(bad_number.status, 400);
    assert_eq!(bad_number.error().1, Some("recipient.phone_number"));
}
on_both_databases!(mpesa_duplicate_late_and_lost_results, super::start);

/// The callback URL's secret token, as the server derives it.
fn callback_token(server: &TestServer) -> String {
    let secrets: Value = serde_json::from_slice(&std::fs::read(server.data_dir.join("secrets.json")).unwrap()).unwrap();
    nixo_core::rail_wiring::callback_token(secrets["gateway_signing_secret"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_mismatched_callbacks_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Daraja's answer never comes by itself here (a lost result), and Nixo
    // waits long before asking: only the callbacks below can move it.
    let server = start_with(
        ServeConfig {
            rails: RailsConfig::Sandbox(SandboxTimings {
                mpesa_result_wait_ms: 600_000,
                ..SandboxTimings::default()
            }),
            ..ServeConfig::ephemeral(dir.path())
        },
        None,
    )
    .await;
    let payout = create(&server, &mpesa_body("1000", "254700000009")).await;
    let id = payout["id"].as_str().unwrap().to_string();
    // Wait until Daraja accepted it (the conversation id is recorded).
    let conversation = wait_for_rail_state(&server, &id, "submitted").await;
    let result = |amount: i64, conversation: &str| {
        json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": id, "ConversationID": conversation, "TransactionID": "NLJ41HAY6Q",
            "ResultParameters": {"ResultParameter": [
                {"Key": "TransactionAmount", "Value": amount}, {"Key": "TransactionReceipt", "Value": "NLJ41HAY6Q"}]}}})
        .to_string()
    };
    let token = callback_token(&server);
    let post = |path: String, body: String| {
        let client = server.client.clone();
        let url = format!("{}{path}", server.base);
        async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    // A wrong token is not a URL Nixo has.
    assert_eq!(
        post("/callbacks/mpesa/b2c/result/wrong".into(), result(1000, &conversation)).await,
        404
    );
    // The right token with a wrong amount, another conversation, or junk: refused.
    let path = format!("/callbacks/mpesa/b2c/result/{token}");
    assert_eq!(post(path.clone(), result(999, &conversation)).await, 400);
    assert_eq!(post(path.clone(), result(1000, "AG_other")).await, 400);
    assert_eq!(post(path.clone(), "{\"Result\":{}}".into()).await, 400);
    assert_eq!(post(path.clone(), "not json".into()).await, 400);
    let unchanged = server.get(&format!("/v1/payouts/{id}")).await;
    assert_eq!(unchanged.body["status"], "processing");
    // The genuine result, twice (Daraja retries): applied once.
    assert_eq!(post(path.clone(), result(1000, &conversation)).await, 200);
    assert_eq!(post(path, result(1000, &conversation)).await, 200);
    let done = server.get(&format!("/v1/payouts/{id}")).await;
    assert_eq!(statuses(&done.body), ["pending", "processing", "succeeded"]);
    assert_eq!(balance(&server, "KES").await, ("198990.00".into(), "0.00".into()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_the_fraud_rules_deny_fails_with_nothing_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    // KES 1,000,000 is the fraud rule's deny threshold (more than the wallet holds:
    // a denied payout holds nothing, so it is recorded all the same).
    let denied = create(&server, &bank_body("1000000.00", "KES", MA_IBAN)).await;
    assert_eq!(denied["status"], "failed");
    assert_eq!(denied["failure_code"], "risk_declined");
    assert_eq!(statuses(&denied), ["pending", "failed"]);
    assert_eq!(balance(&server, "KES").await, ("200000.00".into(), "0.00".into()));
    // Too much for the wallet: insufficient_funds, nothing recorded.
    let broke = server.post("/v1/payouts", &bank_body("12500.00", "USD", MA_IBAN)).await;
    assert_eq!(broke.status, 402, "{}", broke.body);
    assert_eq!(broke.error(), ("insufficient_funds", Some("amount")));
    let list = server.get("/v1/payouts").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_currency_payout_records_its_rate() {
    use nixo_core::money::Currency;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let (usd, mad) = (Currency::from_code("USD").unwrap(), Currency::from_code("MAD").unwrap());
    let body = json!({"amount": "250.00", "currency": "USD", "destination_currency": "MAD",
        "recipient": {"full_name": "Test User", "account_iban": MA_IBAN}})
    .to_string();
    // No rate yet: refused, naming the field.
    let refused = server.post("/v1/payouts", &body).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.error().1, Some("destination_currency"));

    nixo_core::ledger::fx::set_rate(server.db(), usd, mad, "10.05".parse().unwrap(), 0)
        .await
        .unwrap();
    let payout = create(&server, &body).await;
    assert_eq!(payout["exchange_rate"], "10.05");
    assert_eq!(payout["destination_currency"], "MAD");
    assert_eq!(payout["destination_amount"].to_string(), "2512.50");
    assert_eq!(payout["destination_country"], "MA", "taken from the IBAN");
    let done = wait_for(&server, payout["id"].as_str().unwrap(), "succeeded").await;
    assert_eq!(done["destination_amount"].to_string(), "2512.50");
    assert_eq!(balance(&server, "USD").await, ("12249.25".into(), "0.00".into()));
    // The bank was asked to pay MAD 2,512.50, and the ledger recorded the rate.
    let rate: String = sqlx::query_scalar("SELECT fx_rate FROM transactions WHERE kind = 'payout'")
        .fetch_one(&server.db().pool)
        .await
        .unwrap();
    assert_eq!(rate, "10.05");
    server.stop().await;
}
