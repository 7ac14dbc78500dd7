//! The foundation's end-to-end path: client → gateway component → core →
//! fraud-check plugin → ledger → response, over real HTTP.

use nixo_tests::{SEED_TRANSFER, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_transfer_settles_and_moves_exactly_the_amount() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    assert_eq!(server.wallet_balance(101).await.0, "100000.00");
    assert_eq!(server.wallet_balance(102).await.0, "100000.00");

    let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "success");
    let data = &reply.body["data"];
    assert_eq!(data["status"], "SETTLED");
    assert!(data["tx_id"].as_str().unwrap().parse::<u64>().unwrap() > 10_000);
    assert_eq!(data["risk_score"].to_string(), "0.05");
    assert_eq!(data["rules_applied"], serde_json::json!(["FraudCheck: ALLOW"]));
    assert!(data["error"].is_null());
    let timestamp = data["timestamp"].as_str().unwrap();
    // East Africa Time, like the document's examples.
    assert!(timestamp.ends_with("+03:00") && timestamp.len() == 25, "{timestamp}");
    assert!(reply.header("request-id").unwrap().starts_with("req_"));
    assert_eq!(reply.header("nixo-version"), Some("2025-01-01"));
    // The document's key order: status first, then data.
    let text = reply.body.to_string();
    assert!(text.starts_with(r#"{"status":"success","data":{"tx_id":"#), "{text}");

    assert_eq!(
        server.wallet_balance(101).await,
        ("99950.00".into(), "0.00".into(), "0.00".into())
    );
    assert_eq!(
        server.wallet_balance(102).await,
        ("100050.00".into(), "0.00".into(), "0.00".into())
    );
    // Account-wide, money only moved between the account's own wallets.
    let all = server.get("/v1/balances").await;
    assert_eq!(all.body["object"], "balance");
    assert_eq!(all.body["available"][0]["amount"].to_string(), "200000.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_structured_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let transfer = |from: i64, to: i64, amount: &str| {
        format!(r#"{{"from_wallet":{from},"to_wallet":{to},"amount":"{amount}","currency":"KES"}}"#)
    };

    // Insufficient funds: the wallet holds 100,000.00.
    let reply = server
        .post("/v1/payments/transfer", &transfer(101, 102, "100000.01"))
        .await;
    assert_eq!(reply.status, 402);
    assert_eq!(reply.error(), ("insufficient_funds", Some("amount")));

    // Unknown wallets, on either side.
    let reply = server.post("/v1/payments/transfer", &transfer(101, 999, "1.00")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), ("resource_not_found", Some("to_wallet")));
    let reply = server.post("/v1/payments/transfer", &transfer(555, 102, "1.00")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), ("resource_not_found", Some("from_wallet")));

    // Malformed JSON and bad fields.
    let reply = server.post("/v1/payments/transfer", r#"{"from_wallet": 101,"#).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error(), ("invalid_request", Some("body")));
    let reply = server.post("/v1/payments/transfer", &transfer(101, 102, "0.00")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error(), ("invalid_request", Some("amount")));
    assert_eq!(reply.body["error"]["message"], "Amount must be greater than 0");
    let reply = server.post("/v1/payments/transfer", &transfer(101, 102, "1.001")).await;
    assert_eq!(reply.error(), ("invalid_request", Some("amount")));
    let reply = server
        .post(
            "/v1/payments/transfer",
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"QQQ"}"#,
        )
        .await;
    assert_eq!(reply.error(), ("invalid_request", Some("currency")));

    // Missing, malformed and unknown keys.
    let reply = server
        .send("POST", "/v1/payments/transfer", None, Some(SEED_TRANSFER))
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error().0, "invalid_api_key");
    let reply = server
        .send(
            "POST",
            "/v1/payments/transfer",
            Some("sk_sandbox_123"),
            Some(SEED_TRANSFER),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error().0, "invalid_api_key");
    let forged = "sk_sandbox_0000000000000000000000000000000A";
    let reply = server
        .send("POST", "/v1/payments/transfer", Some(forged), Some(SEED_TRANSFER))
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"]["message"], "Invalid API key provided");

    // Unknown routes, at the edge and in the core; unknown version.
    for path in ["/", "/v2/payments", "/v1/nothing-here"] {
        let reply = server.send("GET", path, Some(&server.key.clone()), None).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.error().0, "resource_not_found");
        assert!(reply.header("request-id").is_some());
    }
    let reply = server
        .send("GET", "/v1/payments/transfer", Some(&server.key.clone()), None)
        .await;
    assert_eq!(reply.status, 405);
    let resp = server
        .client
        .get(format!("{}/v1/balances", server.base))
        .header("authorization", format!("Bearer {}", server.key))
        .header("nixo-version", "2019-12-31")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "Nixo-Version");

    // None of that moved money.
    assert_eq!(server.wallet_balance(101).await.0, "100000.00");
    assert_eq!(server.wallet_balance(102).await.0, "100000.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_verdict_holds_the_funds_instead_of_settling() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    // The fraud rule sends the 21st transfer within an hour to review.
    for _ in 0..20 {
        let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
        assert_eq!(reply.body["data"]["status"], "SETTLED");
    }
    let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["data"]["status"], "PENDING_REVIEW");
    assert_eq!(
        reply.body["data"]["rules_applied"],
        serde_json::json!(["FraudCheck: REVIEW"])
    );
    assert_eq!(reply.body["data"]["risk_score"].to_string(), "0.6");
    // 20 × 50.00 settled; 50.00 held: reserved at the source, pending at the destination.
    assert_eq!(
        server.wallet_balance(101).await,
        ("98950.00".into(), "0.00".into(), "50.00".into())
    );
    assert_eq!(
        server.wallet_balance(102).await,
        ("101000.00".into(), "50.00".into(), "0.00".into())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_data_directory_finds_the_ledger_intact() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let key = server.key.clone();
    let first = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(first.status, 200);
    server.stop().await;

    let server = start(dir.path(), Some(key), false).await;
    assert!(
        server.running.as_ref().unwrap().bootstrap.is_none(),
        "no second bootstrap"
    );
    assert_eq!(server.wallet_balance(101).await.0, "99950.00");
    assert_eq!(server.wallet_balance(102).await.0, "100050.00");
    let second = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(second.status, 200);
    let (a, b) = (
        first.body["data"]["tx_id"].as_str().unwrap(),
        second.body["data"]["tx_id"].as_str().unwrap(),
    );
    assert!(
        b.parse::<u64>().unwrap() > a.parse::<u64>().unwrap(),
        "ids keep increasing: {a} then {b}"
    );
    assert_eq!(server.wallet_balance(101).await.0, "99900.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_refuses_requests_that_bypass_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, true).await;
    let core = format!("http://{}", server.core_addr());
    let resp = server
        .client
        .post(format!("{core}/v1/payments/transfer"))
        .header("authorization", format!("Bearer {}", server.key))
        .header("nixo-gateway-signature", "t=1,v1=00")
        .body(SEED_TRANSFER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied");
    assert_eq!(server.wallet_balance(101).await.0, "100000.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_result_and_refuses_other_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let send = |body: &'static str| {
        server
            .client
            .post(format!("{}/v1/payments/transfer", server.base))
            .header("authorization", format!("Bearer {}", server.key))
            .header("idempotency-key", "order-7781")
            .body(body)
            .send()
    };
    let first = send(SEED_TRANSFER).await.unwrap();
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();
    let retry = send(SEED_TRANSFER).await.unwrap();
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers().get("idempotent-replayed").unwrap(), "true");
    let retry: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(retry, first, "the retry answers exactly what the first call answered");
    assert_eq!(server.wallet_balance(101).await.0, "99950.00", "applied once");

    let other = send(r#"{"from_wallet":101,"to_wallet":102,"amount":"51.00","currency":"KES"}"#)
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
    assert_eq!(other["error"]["field"], "Idempotency-Key");
    assert_eq!(server.wallet_balance(101).await.0, "99950.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_currency_transfer_applies_the_latest_rate_and_fee() {
    use nixo_core::ledger::{AccountKind, Environment, FLAG_NO_OVERDRAFT, Ledger, fx};
    use nixo_core::money::Currency;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let kes = Currency::from_code("KES").unwrap();
    let usd = Currency::from_code("USD").unwrap();

    // A USD wallet of another sandbox account, and two rates: the latest wins.
    let db = nixo_core::db::Db::open_sqlite(&dir.path().join("nixo.db"))
        .await
        .unwrap();
    let ledger = Ledger::new(db.clone()).await.unwrap();
    let other = nixo_core::accounts::create(&db, Environment::Sandbox, "Receiver", 2)
        .await
        .unwrap();
    let usd_wallet = ledger
        .create_account(
            None,
            Some(&other),
            Environment::Sandbox,
            AccountKind::Wallet,
            usd,
            FLAG_NO_OVERDRAFT,
        )
        .await
        .unwrap();
    let body = format!(r#"{{"from_wallet":101,"to_wallet":{usd_wallet},"amount":"1000.00","currency":"KES"}}"#);
    let reply = server.post("/v1/payments/transfer", &body).await;
    assert_eq!(reply.status, 400, "no rate yet: {}", reply.body);
    assert_eq!(reply.error(), ("invalid_request", Some("currency")));

    fx::set_rate(&db, kes, usd, "0.0070".parse().unwrap(), 0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    fx::set_rate(&db, kes, usd, "0.0077".parse().unwrap(), 100)
        .await
        .unwrap();
    let reply = server.post("/v1/payments/transfer", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["data"]["status"], "SETTLED");

    // 1,000.00 KES: fee 1% = 10.00 KES; 990.00 × 0.0077 = 7.623 → 7.62 USD.
    assert_eq!(server.wallet_balance(101).await.0, "99000.00");
    let row: (i64, String, String, i64) =
        sqlx::query_as("SELECT to_amount_minor, to_currency, fx_rate, fee_minor FROM transactions WHERE id = $1")
            .bind(reply.body["data"]["tx_id"].as_str().unwrap().parse::<i64>().unwrap())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(row, (762, "USD".to_string(), "0.0077".to_string(), 1_000));
    let received: i64 = sqlx::query_scalar("SELECT credits_posted FROM ledger_accounts WHERE id = $1")
        .bind(usd_wallet)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(received, 762);
    let report = nixo_core::ledger::verify::verify(&db, i64::MAX / 2, 0).await.unwrap();
    assert!(report.is_sound(), "{report}");
    db.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_path_runs_on_postgresql_too() {
    let Some(pg) = nixo_tests::PgDatabase::create("e2e").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = nixo_tests::start_on(dir.path(), None, false, Some(pg.url.clone())).await;
    let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["data"]["status"], "SETTLED");
    assert_eq!(server.wallet_balance(101).await.0, "99950.00");
    assert_eq!(server.wallet_balance(102).await.0, "100050.00");
    let reply = server
        .post(
            "/v1/payments/transfer",
            r#"{"from_wallet":101,"to_wallet":102,"amount":"99950.01","currency":"KES"}"#,
        )
        .await;
    assert_eq!(reply.error(), ("insufficient_funds", Some("amount")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_decision_is_logged_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    let tx_id = reply.body["data"]["tx_id"].as_str().unwrap().to_string();
    let path = format!("/v1/rules/decisions?transaction_id={tx_id}");
    let mut decisions = serde_json::Value::Null;
    for _ in 0..50 {
        decisions = server.get(&path).await.body;
        if decisions["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(decisions["object"], "list");
    let data = decisions["data"].as_array().expect("a list");
    assert_eq!(data.len(), 1, "{decisions}");
    let d = &data[0];
    assert!(d["id"].as_str().unwrap().starts_with("dec_"));
    assert_eq!(d["transaction_id"], tx_id.as_str());
    assert_eq!(d["plugin"]["name"], "fraud-check");
    assert_eq!(d["plugin"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(d["input"]["amount"], "50.00");
    assert_eq!(d["output"]["verdict"], "allow");
    assert_eq!(d["output"]["score_bp"], 500);
    assert!(d["fuel_used"].as_i64().unwrap() > 0);
    assert!(d["failure"].is_null());

    let bad = server.get("/v1/rules/decisions?limit=1000").await;
    assert_eq!(bad.error(), ("invalid_request", Some("limit")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_unknown_versions_bad_idempotency_keys_and_deep_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req = server
            .client
            .post(format!("{}/v1/payments/transfer", server.base))
            .header("authorization", format!("Bearer {}", server.key))
            .body(body);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.send()
    };
    let cases = [
        (
            vec![("nixo-version", "2019-01-01".to_string())],
            SEED_TRANSFER.to_string(),
            "Nixo-Version",
        ),
        (
            vec![("idempotency-key", "k".repeat(256))],
            SEED_TRANSFER.to_string(),
            "Idempotency-Key",
        ),
        (vec![], format!("{}1{}", "[".repeat(17), "]".repeat(17)), "body"),
    ];
    for (headers, body, field) in cases {
        let resp = post(headers, body).await.unwrap();
        assert_eq!(resp.status(), 400, "{field}");
        assert!(resp.headers().get("request-id").is_some());
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["field"], field);
        // The edge's own wording: the request never reached the core.
        let edge_says = match field {
            "Nixo-Version" => "Unknown API version; supported: 2025-01-01, 2024-06-01",
            "Idempotency-Key" => "Idempotency-Key must be 1 to 255 printable ASCII characters",
            _ => "JSON body is nested deeper than 16 levels",
        };
        assert_eq!(body["error"]["message"], edge_says);
    }
    assert_eq!(server.wallet_balance(101).await.0, "100000.00");
    server.stop().await;
}
