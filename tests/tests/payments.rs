//! Money in and out, end to end over HTTP through the gateway, against the
//! sandbox Daraja (STK push and B2C) and the sandbox bank that `nixo serve`
//! starts: the Nexbit document's three examples verbatim, every deposit
//! result code, late, duplicate, lost and forged callbacks, withdrawals
//! confirmed fast and slow (and reversed), and async payments — including a
//! server killed with SIGKILL while it drains them. SQLite and PostgreSQL.

use nixo_core::rail_wiring::{RailsConfig, SandboxTimings};
use nixo_core::server::ServeConfig;
use nixo_tests::{Reply, TestServer, on_both_databases, start_with};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The Nexbit document's three request bodies, verbatim.
const DOCUMENTED_DEPOSIT: &str = r#"{
  "type": "deposit",
  "amount": 100,
  "currency": "KES",
  "phone_number": "254712345678"
}"#;
const DOCUMENTED_WITHDRAWAL: &str = r#"{
  "type": "withdrawal",
  "from_wallet": 101,
  "amount": 2500,
  "currency": "KES",
  "destination": "254712345678",
  "metadata": {
    "gateway": "mpesa"
  }
}"#;
const DOCUMENTED_ASYNC: &str = r#"{
  "from_wallet": 101,
  "to_wallet": 102,
  "amount": "1.00",
  "currency": "KES"
}"#;
/// A valid IBAN the sandbox bank settles; one it rejects (AC04, closed).
const IBAN_OK: &str = "MA64011519000001205000534921";
const IBAN_CLOSED: &str = "GB25NWBK60161331920004";

fn timings() -> SandboxTimings {
    SandboxTimings {
        bank_settle_delay_ms: 100,
        mpesa_result_delay_ms: 50,
        mpesa_slow_delay_ms: 2_500,
        mpesa_result_wait_ms: 1_500,
        stk_result_wait_ms: 1_500,
        withdrawal_wait_ms: 5_000,
        ..SandboxTimings::default()
    }
}

async fn start_timed(dir: &std::path::Path, database_url: Option<String>, timings: SandboxTimings) -> TestServer {
    start_with(
        ServeConfig {
            database_url,
            rails: RailsConfig::Sandbox(timings),
            ..ServeConfig::ephemeral(dir)
        },
        None,
    )
    .await
}

async fn start(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    start_timed(dir, database_url, timings()).await
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|_| panic!("a decimal, not {text}"))
}

/// (available, pending, reserved) of a KES wallet.
async fn wallet(server: &TestServer, id: i64) -> (Decimal, Decimal, Decimal) {
    let (a, p, r) = server.wallet_balance(id).await;
    (dec(&a), dec(&p), dec(&r))
}

async fn deposit(server: &TestServer, phone: &str, amount: i64) -> Reply {
    let body = json!({ "type": "deposit", "amount": amount, "currency": "KES", "phone_number": phone });
    server.post("/v1/payments/transact", &body.to_string()).await
}

/// Polls `GET /v1/payments/{tx_id}` until its status is `status`.
async fn wait_payment(server: &TestServer, tx_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = server.get(&format!("/v1/payments/{tx_id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body["data"]["status"] == status {
            return reply.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "payment {tx_id} stays {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `GET /v1/payments/async/{job_id}` until it has ended.
async fn wait_async(server: &TestServer, job_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = server.get(&format!("/v1/payments/async/{job_id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if matches!(reply.body["status"].as_str(), Some("succeeded" | "failed")) {
            return reply.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{job_id} stays {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Event types recorded for the account, oldest first.
async fn event_types(server: &TestServer, event_type: &str) -> Vec<Value> {
    let reply = server.get(&format!("/v1/events?type={event_type}&limit=100")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

fn tx_id(reply: &Reply) -> String {
    reply.body["data"]["tx_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", reply.body))
        .to_string()
}

async fn the_three_documented_examples_work_verbatim(server: &TestServer) {
    let (available_101, _, _) = wallet(server, 101).await;
    let (available_102, _, _) = wallet(server, 102).await;

    // Deposit: the document's answer; the amount is pending until M-Pesa confirms.
    let reply = server.post("/v1/payments/transact", DOCUMENTED_DEPOSIT).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["success"], true);
    assert_eq!(reply.body["status"], "initiated");
    assert!(
        reply.body["provider_ref"].as_str().unwrap().starts_with("ws_CO_"),
        "{}",
        reply.body
    );
    assert!(reply.body["redirect_url"].is_null());
    assert_eq!(
        reply.body["message"],
        "Deposit initiated successfully. Please complete the payment on your device."
    );
    let deposit_tx = reply.body["tx_id"].as_str().unwrap().to_string();
    let settled = wait_payment(server, &deposit_tx, "SETTLED").await;
    assert_eq!(settled["status"], "success");
    let (after, pending, _) = wallet(server, 101).await;
    assert_eq!((after - available_101, pending), (dec("100"), dec("0")));
    let succeeded = event_types(server, "deposit.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0]["data"]["object"]["phone_number"], "********5678");

    // Withdrawal: the document's answer shape, settled within the wait.
    let reply = server.post("/v1/payments/transact", DOCUMENTED_WITHDRAWAL).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "success");
    let data = &reply.body["data"];
    assert_eq!(data["status"], "SETTLED", "{}", reply.body);
    assert!(data["tx_id"].as_str().unwrap().parse::<u64>().unwrap() > 10_000);
    assert_eq!(data["rules_applied"], json!(["FraudCheck: ALLOW"]));
    assert!(data["error"].is_null());
    assert!(data["timestamp"].as_str().unwrap().ends_with("+03:00"), "{data}");
    assert!(data["risk_score"].is_number());
    let withdrawal_tx = tx_id(&reply);
    wait_payment(server, &withdrawal_tx, "SETTLED").await;
    // 2,500 and the M-Pesa fee (1 %) left the wallet; nothing stays held.
    let (after_withdrawal, _, reserved) = wallet(server, 101).await;
    assert_eq!((after - after_withdrawal, reserved), (dec("2525"), dec("0")));

    // Async: 202 with a job id, then the transfer, once.
    let reply = server.post("/v1/payments/async", DOCUMENTED_ASYNC).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!(reply.body["message"], "Transaction queued for processing.");
    let job_id = reply.body["job_id"].as_str().unwrap().to_string();
    assert!(nixo_api::payments::async_job_id_ok(&job_id), "{job_id}");
    let done = wait_async(server, &job_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["data"]["status"], "SETTLED");
    let (after_async, _, _) = wallet(server, 101).await;
    let (after_102, _, _) = wallet(server, 102).await;
    assert_eq!(after_withdrawal - after_async, dec("1"));
    assert_eq!(after_102 - available_102, dec("1"));
    assert_eq!(event_types(server, "async_payment.succeeded").await.len(), 1);
    let status = server
        .get(&format!(
            "/v1/payments/{}",
            done["result"]["data"]["tx_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status.body["data"]["status"], "SETTLED");
}
on_both_databases!(the_three_documented_examples_work_verbatim, super::start);

async fn each_deposit_result_code_ends_the_deposit_with_its_reason(server: &TestServer) {
    let (before, _, _) = wallet(server, 101).await;
    let cases = [
        ("254708001032", "canceled_by_payer"),
        ("254708001037", "payer_unreachable"),
        ("254708000001", "payer_insufficient_funds"),
        ("254708002001", "payer_wrong_pin"),
    ];
    let mut started = Vec::new();
    for (phone, _) in cases {
        let reply = deposit(server, phone, 500).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        started.push(reply.body["tx_id"].as_str().unwrap().to_string());
    }
    for ((_, code), tx) in cases.iter().zip(&started) {
        let failed = wait_payment(server, tx, "FAILED").await;
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["data"]["error"]["code"], *code, "{failed}");
    }
    let (after, pending, _) = wallet(server, 101).await;
    assert_eq!((after, pending), (before, dec("0")));
    assert_eq!(event_types(server, "deposit.failed").await.len(), 4);
    // Three ways to write a number; a paid deposit to the other wallet.
    for phone in ["0712345678", "+254712345678", "254712345678"] {
        let reply = server
            .post(
                "/v1/payments/transact",
                &json!({"type": "deposit", "amount": "10", "currency": "KES", "phone_number": phone, "wallet": 102})
                    .to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{phone}: {}", reply.body);
        wait_payment(server, reply.body["tx_id"].as_str().unwrap(), "SETTLED").await;
    }
    let refused = [
        (r#"{"type":"deposit","amount":100,"currency":"KES"}"#, "phone_number"),
        (
            r#"{"type":"deposit","amount":100,"currency":"KES","phone_number":"12345"}"#,
            "phone_number",
        ),
        (
            r#"{"type":"deposit","amount":100.5,"currency":"KES","phone_number":"0712345678"}"#,
            "amount",
        ),
        (
            r#"{"type":"deposit","amount":100,"currency":"USD","phone_number":"0712345678"}"#,
            "currency",
        ),
        (
            r#"{"type":"deposit","amount":100,"currency":"KES","phone_number":"0712345678","wallet":103}"#,
            "wallet",
        ),
        (
            r#"{"type":"deposit","amount":100,"currency":"KES","phone_number":"0712345678","wallet":999999}"#,
            "wallet",
        ),
    ];
    for (body, field) in refused {
        let reply = server.post("/v1/payments/transact", body).await;
        assert!(matches!(reply.status, 400 | 404), "{body}: {}", reply.body);
        assert_eq!(reply.error().1, Some(field), "{body}: {}", reply.body);
    }
}
on_both_databases!(each_deposit_result_code_ends_the_deposit_with_its_reason, super::start);

async fn late_duplicate_and_lost_callbacks(server: &TestServer) {
    let (before, _, _) = wallet(server, 101).await;
    // Late: pending (PROCESSING) until the callback comes.
    let late = deposit(server, "254708000007", 300).await;
    let late_tx = late.body["tx_id"].as_str().unwrap().to_string();
    let now = server.get(&format!("/v1/payments/{late_tx}")).await;
    assert_eq!(now.body["data"]["status"], "PROCESSING", "{}", now.body);
    let (_, pending, _) = wallet(server, 101).await;
    assert_eq!(pending, dec("300"));
    // Posted twice by Daraja: credited once.
    let twice = deposit(server, "254708000008", 200).await;
    // Never posted: the STK push query finds it paid.
    let lost = deposit(server, "254708000009", 100).await;
    for reply in [&late, &twice, &lost] {
        wait_payment(server, reply.body["tx_id"].as_str().unwrap(), "SETTLED").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, pending, _) = wallet(server, 101).await;
    assert_eq!((after - before, pending), (dec("600"), dec("0")));
    assert_eq!(event_types(server, "deposit.succeeded").await.len(), 3);
    let queried: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deposits WHERE status = 'succeeded' AND receipt IS NULL")
            .fetch_one(&server.db().pool)
            .await
            .unwrap();
    assert_eq!(queried, 1, "only the lost one was settled by a query (no receipt)");
}
on_both_databases!(late_duplicate_and_lost_callbacks, super::start);

/// The callback URL's secret token, as the server derives it.
fn callback_token(server: &TestServer) -> String {
    let secrets: Value = serde_json::from_slice(&std::fs::read(server.data_dir.join("secrets.json")).unwrap()).unwrap();
    nixo_core::rail_wiring::callback_token(secrets["gateway_signing_secret"].as_str().unwrap())
}

async fn post_raw(server: &TestServer, path: &str, body: String) -> u16 {
    server
        .client
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The sandbox never posts the result of a push to `254708000009`, and Nixo
/// waits long before asking: only a test's callbacks can move it.
async fn start_without_queries(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    start_timed(
        dir,
        database_url,
        SandboxTimings {
            stk_result_wait_ms: 600_000,
            ..timings()
        },
    )
    .await
}

async fn forged_wrong_and_repeated_stk_callbacks_change_nothing(server: &TestServer) {
    let (before, _, _) = wallet(server, 101).await;
    let reply = deposit(server, "254708000009", 100).await;
    let checkout = reply.body["provider_ref"].as_str().unwrap().to_string();
    let tx = reply.body["tx_id"].as_str().unwrap().to_string();
    let merchant: String =
        sqlx::query_scalar("SELECT merchant_request_id FROM deposits WHERE checkout_request_id = $1")
            .bind(checkout.as_str())
            .fetch_one(&server.db().pool)
            .await
            .unwrap();
    let callback = |amount: f64, checkout: &str, merchant: &str| {
        json!({"Body": {"stkCallback": {"MerchantRequestID": merchant, "CheckoutRequestID": checkout,
            "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"}, {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20250126120115_i64},
                {"Name": "PhoneNumber", "Value": 254708000009_i64}]}}}})
        .to_string()
    };
    let token = callback_token(server);
    let path = format!("/callbacks/mpesa/stk/{token}");
    // A wrong token is not a URL Nixo has.
    assert_eq!(
        post_raw(
            server,
            "/callbacks/mpesa/stk/0123456789abcdef0123456789abcdef",
            callback(100.0, &checkout, &merchant)
        )
        .await,
        404
    );
    // The right token with a wrong amount, an unknown push, another merchant request, junk: refused.
    assert_eq!(post_raw(server, &path, callback(99.0, &checkout, &merchant)).await, 400);
    assert_eq!(
        post_raw(server, &path, callback(100.0, "ws_CO_000000000000000000", &merchant)).await,
        400
    );
    assert_eq!(post_raw(server, &path, callback(100.0, &checkout, "1-2-3")).await, 400);
    assert_eq!(post_raw(server, &path, r#"{"Body":{}}"#.into()).await, 400);
    assert_eq!(post_raw(server, &path, "not json".into()).await, 400);
    let still = server.get(&format!("/v1/payments/{tx}")).await;
    assert_eq!(still.body["data"]["status"], "PROCESSING");
    // The genuine callback, three times: credited once.
    for _ in 0..3 {
        assert_eq!(
            post_raw(server, &path, callback(100.0, &checkout, &merchant)).await,
            200
        );
    }
    wait_payment(server, &tx, "SETTLED").await;
    let (after, pending, _) = wallet(server, 101).await;
    assert_eq!((after - before, pending), (dec("100"), dec("0")));
    // A cancellation after it was paid changes nothing either.
    let cancel = json!({"Body": {"stkCallback": {"MerchantRequestID": merchant, "CheckoutRequestID": checkout,
        "ResultCode": 1032, "ResultDesc": "Request cancelled by user"}}});
    assert_eq!(post_raw(server, &path, cancel.to_string()).await, 200);
    assert_eq!(wallet(server, 101).await.0, after);
}
on_both_databases!(
    forged_wrong_and_repeated_stk_callbacks_change_nothing,
    super::start_without_queries
);

async fn withdrawals_to_mpesa_and_bank(server: &TestServer) {
    let (start_101, _, _) = wallet(server, 101).await;
    // To a bank account (IBAN: the bank rail), confirmed within the wait.
    let bank = json!({"type": "withdrawal", "from_wallet": 101, "amount": "1000.00", "currency": "KES",
        "destination": IBAN_OK});
    let reply = server.post("/v1/payments/transact", &bank.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["data"]["status"], "SETTLED", "{}", reply.body);
    // To M-Pesa by the destination's form (no metadata.gateway).
    let mpesa = json!({"type": "withdrawal", "from_wallet": 101, "amount": 500, "currency": "KES",
        "destination": "0712345678"});
    let reply = server.post("/v1/payments/transact", &mpesa.to_string()).await;
    assert_eq!(reply.body["data"]["status"], "SETTLED", "{}", reply.body);
    // Fees: 0.5 % bank, 1 % M-Pesa.
    let (after, _, reserved) = wallet(server, 101).await;
    assert_eq!((start_101 - after, reserved), (dec("1005") + dec("505"), dec("0")));
    // The rail refuses fast: FAILED, the hold released.
    let rejected = json!({"type": "withdrawal", "from_wallet": 101, "amount": "100", "currency": "KES",
        "destination": "254700000002", "metadata": {"gateway": "mpesa"}});
    let reply = server.post("/v1/payments/transact", &rejected.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "failed");
    assert_eq!(reply.body["data"]["status"], "FAILED");
    assert_eq!(reply.body["data"]["error"]["code"], "rail_insufficient_funds");
    assert_eq!(wallet(server, 101).await.0, after);
    // A review holds the funds (the fraud rule's KES review threshold is
    // more than the wallet holds: top it up by M-Pesa first).
    let top_up = deposit(server, "254712345678", 100_000).await;
    wait_payment(server, top_up.body["tx_id"].as_str().unwrap(), "SETTLED").await;
    let big = json!({"type": "withdrawal", "from_wallet": 101, "amount": 150000, "currency": "KES",
        "destination": "254712345678"});
    let reply = server.post("/v1/payments/transact", &big.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["data"]["status"], "PENDING_REVIEW");
    let (_, _, reserved) = wallet(server, 101).await;
    assert_eq!(reserved, dec("151500"));
    // Not the caller's wallet, too much, a bad IBAN: structured errors.
    let not_mine = json!({"type": "withdrawal", "from_wallet": 999999, "amount": 10, "currency": "KES",
        "destination": "254712345678"});
    let reply = server.post("/v1/payments/transact", &not_mine.to_string()).await;
    assert_eq!(
        (reply.status, reply.error().1),
        (404, Some("from_wallet")),
        "{}",
        reply.body
    );
    let broke = json!({"type": "withdrawal", "from_wallet": 102, "amount": 240000, "currency": "KES",
        "destination": "254712345678"});
    let reply = server.post("/v1/payments/transact", &broke.to_string()).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    let bad_iban = json!({"type": "withdrawal", "from_wallet": 101, "amount": 10, "currency": "KES",
        "destination": "GB00NOTANIBAN0000"});
    let reply = server.post("/v1/payments/transact", &bad_iban.to_string()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error().1, Some("destination"), "{}", reply.body);
}
on_both_databases!(withdrawals_to_mpesa_and_bank, super::start);

/// Rails slower than the withdrawal's wait.
async fn start_slow_rails(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    start_timed(
        dir,
        database_url,
        SandboxTimings {
            mpesa_result_delay_ms: 1_500,
            bank_settle_delay_ms: 1_500,
            withdrawal_wait_ms: 300,
            ..timings()
        },
    )
    .await
}

async fn slow_withdrawals_answer_processing_then_settle_or_reverse(server: &TestServer) {
    let (before, _, _) = wallet(server, 101).await;
    let send = |destination: &str, amount: i64| {
        json!({"type": "withdrawal", "from_wallet": 101, "amount": amount, "currency": "KES",
            "destination": destination})
        .to_string()
    };
    let paid = server.post("/v1/payments/transact", &send("254712345678", 1000)).await;
    let refused = server.post("/v1/payments/transact", &send("254700002040", 2000)).await;
    let closed = server.post("/v1/payments/transact", &send(IBAN_CLOSED, 3000)).await;
    for reply in [&paid, &refused, &closed] {
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert_eq!(reply.body["data"]["status"], "PROCESSING", "{}", reply.body);
    }
    let (_, _, reserved) = wallet(server, 101).await;
    assert_eq!(reserved, dec("1010") + dec("2020") + dec("3015"));
    wait_payment(server, &tx_id(&paid), "SETTLED").await;
    let reversed = wait_payment(server, &tx_id(&refused), "FAILED").await;
    assert_eq!(reversed["data"]["error"]["code"], "recipient_not_registered");
    let reversed = wait_payment(server, &tx_id(&closed), "FAILED").await;
    assert_eq!(reversed["data"]["error"]["code"], "account_closed");
    let (after, _, reserved) = wallet(server, 101).await;
    assert_eq!((before - after, reserved), (dec("1010"), dec("0")));
}
on_both_databases!(
    slow_withdrawals_answer_processing_then_settle_or_reverse,
    super::start_slow_rails
);

async fn async_payments_run_once_with_their_answer(server: &TestServer) {
    let (before_101, _, _) = wallet(server, 101).await;
    let accepted: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..5 {
            let reply = server.post("/v1/payments/async", DOCUMENTED_ASYNC).await;
            assert_eq!(reply.status, 202, "{}", reply.body);
            ids.push(reply.body["job_id"].as_str().unwrap().to_string());
        }
        ids
    };
    for id in &accepted {
        let done = wait_async(server, id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert!(done["error"].is_null());
    }
    assert_eq!(before_101 - wallet(server, 101).await.0, dec("5"));
    // Failures keep their structured error; nothing moves.
    let broke = json!({"from_wallet": 101, "to_wallet": 102, "amount": "120000.00", "currency": "KES"});
    let reply = server.post("/v1/payments/async", &broke.to_string()).await;
    let done = wait_async(server, reply.body["job_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "insufficient_funds", "{done}");
    let nowhere = json!({"from_wallet": 101, "to_wallet": 999999, "amount": "1.00", "currency": "KES"});
    let reply = server.post("/v1/payments/async", &nowhere.to_string()).await;
    let done = wait_async(server, reply.body["job_id"].as_str().unwrap()).await;
    assert_eq!(
        (done["error"]["code"].as_str(), done["error"]["field"].as_str()),
        (Some("resource_not_found"), Some("to_wallet"))
    );
    assert_eq!(event_types(server, "async_payment.failed").await.len(), 2);
    // Another key's payment, or a made-up id: not found.
    let missing = server.get("/v1/payments/async/job_000000000000").await;
    assert_eq!(missing.status, 404);
    let bad = server.get("/v1/payments/async/not-a-job").await;
    assert_eq!(bad.status, 404);
    // Bad bodies are refused before anything is queued.
    let reply = server
        .post(
            "/v1/payments/async",
            r#"{"from_wallet":101,"to_wallet":102,"amount":"0","currency":"KES"}"#,
        )
        .await;
    assert_eq!((reply.status, reply.error().1), (400, Some("amount")));
    assert_eq!(before_101 - wallet(server, 101).await.0, dec("5"));
}
on_both_databases!(async_payments_run_once_with_their_answer, super::start);

/// Forgets every stored Idempotency-Key answer, as a crash between an
/// answer and its record does (SQLite records are written behind the
/// answer): the server is stopped, the rows deleted, the server started
/// again.
async fn lose_idempotency_records(server: TestServer, dir: &std::path::Path) -> TestServer {
    let key = server.key.clone();
    server.stop().await;
    let url = format!("sqlite://{}", dir.join("nixo.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM idempotency_keys")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    start_with(
        ServeConfig {
            rails: RailsConfig::Sandbox(timings()),
            ..ServeConfig::ephemeral(dir)
        },
        Some(key),
    )
    .await
}

/// A retried async payment whose first answer was lost (its Idempotency-Key
/// record never written) is the same payment: same job, money moved once.
/// The same key with another request is refused, not made into a payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_payment_retried_after_its_answer_was_lost_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let (before_101, _, _) = wallet(&server, 101).await;
    let headers = [("idempotency-key", "async-lost-1")];
    let first = server
        .send_with("POST", "/v1/payments/async", &headers, Some(DOCUMENTED_ASYNC))
        .await;
    assert_eq!(first.status, 202, "{}", first.body);
    let job_id = first.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(wait_async(&server, &job_id).await["status"], "succeeded");

    let server = lose_idempotency_records(server, dir.path()).await;
    let again = server
        .send_with("POST", "/v1/payments/async", &headers, Some(DOCUMENTED_ASYNC))
        .await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(
        again.body["job_id"],
        job_id.as_str(),
        "the same payment, not a second one"
    );
    assert_eq!(wait_async(&server, &job_id).await["status"], "succeeded");
    assert_eq!(before_101 - wallet(&server, 101).await.0, dec("1"), "moved once");

    let server = lose_idempotency_records(server, dir.path()).await;
    let other = json!({"from_wallet": 101, "to_wallet": 102, "amount": "2.00", "currency": "KES"});
    let reused = server
        .send_with("POST", "/v1/payments/async", &headers, Some(&other.to_string()))
        .await;
    assert_eq!(
        (reused.status, reused.error().0),
        (422, "idempotency_key_reused"),
        "{}",
        reused.body
    );
    assert_eq!(before_101 - wallet(&server, 101).await.0, dec("1"));
    server.stop().await;
}

/// A whole server in a child process (so it can be killed with SIGKILL).
struct Child {
    process: std::process::Child,
    addr: String,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

const SERVE: &str = env!("CARGO_BIN_EXE_nixo-test-serve");
/// The job lease of the child servers: work a killed one held is taken
/// over this long after it died.
const CHILD_LEASE_MS: &str = "1500";

fn spawn(dir: &std::path::Path, database_url: Option<&str>, listen: &str) -> (Child, Option<String>) {
    use std::io::BufRead;
    let process = std::process::Command::new(SERVE)
        .args([
            dir.to_str().unwrap(),
            database_url.unwrap_or("-"),
            listen,
            CHILD_LEASE_MS,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Owned at once: killed and reaped on drop, whatever happens next.
    let mut child = Child {
        process,
        addr: String::new(),
    };
    let mut lines = std::io::BufReader::new(child.process.stdout.take().unwrap()).lines();
    let mut key = None;
    loop {
        let line = lines.next().expect("the server prints its address").unwrap();
        if let Some(k) = line.strip_prefix("key ") {
            key = Some(k.to_string());
        } else if let Some(addr) = line.strip_prefix("ready ") {
            child.addr = addr.to_string();
            return (child, key);
        }
    }
}

fn database_of(dir: &std::path::Path, database_url: Option<&str>) -> String {
    database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("nixo.db").display()))
}

/// Tries at killing a server while its worker still has acknowledged
/// payments to run: a worker that keeps up can have run every one by the
/// time the kill lands (then the server is started again on the same data
/// and killed again).
const MID_DRAIN_ATTEMPTS_MAX: usize = 5;

async fn killed_mid_drain(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_of(dir.path(), database_url);
    let client = reqwest::Client::new();
    let mut key = None;
    let mut ids = Vec::new();
    let mut unfinished = 0;
    for attempt in 1..=MID_DRAIN_ATTEMPTS_MAX {
        let (first, printed) = spawn(dir.path(), database_url, "127.0.0.1:0");
        key = key.or(printed);
        let key = key.clone().expect("a first start prints the key");
        // Clients post async payments one after another; the server is killed
        // while it accepts them and its worker drains them. Only payments it
        // acknowledged (202) count.
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        const POSTERS: usize = 8;
        let posters: Vec<_> = (0..POSTERS)
            .map(|_| {
                let (client, key, accepted) = (client.clone(), key.clone(), accepted.clone());
                let url = format!("http://{}/v1/payments/async", first.addr);
                tokio::spawn(async move {
                    loop {
                        let sent = client
                            .post(&url)
                            .bearer_auth(&key)
                            .header("content-type", "application/json")
                            .body(DOCUMENTED_ASYNC)
                            .send()
                            .await;
                        let Ok(reply) = sent else { break };
                        if reply.status() != 202 {
                            break;
                        }
                        let Ok(body) = reply.json::<Value>().await else { break };
                        accepted
                            .lock()
                            .unwrap()
                            .push(body["job_id"].as_str().unwrap().to_string());
                    }
                })
            })
            .collect();
        const KILL_AFTER_ACCEPTED: usize = 120;
        let started = Instant::now();
        while accepted.lock().unwrap().len() < KILL_AFTER_ACCEPTED {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server stopped accepting"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for poster in posters {
            poster.await.unwrap();
        }
        ids.extend(accepted.lock().unwrap().iter().cloned());
        let db = nixo_core::db::Db::open(&url).await.unwrap();
        unfinished = sqlx::query_scalar("SELECT COUNT(*) FROM async_payments WHERE status IN ('queued', 'running')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        db.close().await;
        if unfinished > 0 {
            break;
        }
        eprintln!("attempt {attempt}: every acknowledged payment had run before the kill; again");
    }
    assert!(
        unfinished > 0,
        "killed mid-drain: in {MID_DRAIN_ATTEMPTS_MAX} attempts, every acknowledged payment had run before the kill"
    );
    let key = key.expect("a first start prints the key");
    let (second, _) = spawn(dir.path(), database_url, "127.0.0.1:0");
    let base = format!("http://{}", second.addr);
    let started = Instant::now();
    for id in &ids {
        loop {
            let reply = client
                .get(format!("{base}/v1/payments/async/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            let body: Value = reply.json().await.unwrap();
            if body["status"] == "succeeded" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{id} stays {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A payment the server committed but never acknowledged (killed while
    // answering) runs too: wait for every row, then count.
    let db = nixo_core::db::Db::open(&url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    while count("SELECT COUNT(*) FROM async_payments WHERE status IN ('queued', 'running')").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "async payments left unfinished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = count("SELECT COUNT(*) FROM async_payments").await;
    assert!(all >= ids.len() as i64, "every acknowledged payment is there");
    // Exactly one transaction per payment, each naming its own.
    let transfers = count("SELECT COUNT(*) FROM transactions WHERE kind = 'transfer' AND from_wallet = 101").await;
    assert_eq!(transfers, all);
    assert_eq!(count("SELECT COUNT(DISTINCT tx_id) FROM async_payments").await, all);
    db.close().await;
    // The money moved once per payment (settled, or held for review once
    // the wallet's hourly velocity asks for it: held money is not available).
    let balance = client
        .get(format!("{base}/v1/balances?wallet_id=101"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let available = dec(&balance["available"][0]["amount"].to_string());
    assert_eq!(dec("100000") - available, Decimal::from(all), "{balance}");
    eprintln!(
        "killed with {unfinished} of {} acknowledged payments unfinished; {all} recorded, each applied once",
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_draining_async_payments_applies_each_once_sqlite() {
    killed_mid_drain(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_draining_async_payments_applies_each_once_postgres() {
    let Some(pg) = nixo_tests::PgDatabase::create("killed_mid_drain").await else {
        return;
    };
    killed_mid_drain(Some(&pg.url)).await;
}

/// Daraja unreachable: a deposit is a 503 `provider_unavailable`, nothing
/// is pending, and a retry with the same Idempotency-Key prompts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_while_mpesa_is_down_is_a_503_and_can_be_retried() {
    use nixo_core::providers::bank::Debtor;
    use nixo_core::providers::mpesa::client::DarajaConfig;
    use nixo_core::rail_wiring::LiveRails;
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 (discard) here: every rail call fails at once.
    let dead = "http://127.0.0.1:9".to_string();
    let server = start_with(
        ServeConfig {
            rails: RailsConfig::Live(Box::new(LiveRails {
                bank_url: dead.clone(),
                bank_token: "t".into(),
                debtor: Debtor {
                    name: "Nixo Finance Ltd".into(),
                    iban: "GB82WEST12345698765432".into(),
                    bic: "WESTGB2L".into(),
                },
                daraja: DarajaConfig {
                    base_url: dead,
                    consumer_key: "k".into(),
                    consumer_secret: "s".into(),
                    shortcode: "600996".into(),
                    initiator_name: "nixo".into(),
                    security_credential: "c".into(),
                    command_id: "BusinessPayment".into(),
                    stk_shortcode: "174379".into(),
                    passkey: "p".into(),
                },
                public_url: "https://nixo.example".into(),
                mpesa_result_wait_ms: 60_000,
                stk_result_wait_ms: 60_000,
                withdrawal_wait_ms: 1_000,
            })),
            ..ServeConfig::ephemeral(dir.path())
        },
        None,
    )
    .await;
    let (before, _, _) = wallet(&server, 101).await;
    for _ in 0..2 {
        let reply = server
            .send_with(
                "POST",
                "/v1/payments/transact",
                &[("Idempotency-Key", "deposit-while-down")],
                Some(DOCUMENTED_DEPOSIT),
            )
            .await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.error().0, "provider_unavailable");
    }
    let attempts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deposits WHERE status = 'failed'")
        .fetch_one(&server.db().pool)
        .await
        .unwrap();
    assert_eq!(attempts, 2, "the retry prompted again");
    assert_eq!(wallet(&server, 101).await, (before, dec("0"), dec("0")));
    server.stop().await;
}
