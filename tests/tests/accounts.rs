//! Accounts over HTTP through the gateway: the document's `accounts/me`
//! example, customer accounts verified by the sandbox KYC provider
//! (verified with the `account.verified` event, rejected, missing
//! documents then verified), identity numbers sealed at rest and shown
//! masked, tiered limits refusing what a level may not send, and
//! `Nixo-Account` allowed for the key's platform and refused for any other
//! on every route.

use nixo_core::auth::{self, KeyAccess};
use nixo_core::ledger::Environment;
use nixo_core::limits::Limits;
use nixo_core::server::ServeConfig;
use nixo_tests::{Reply, TestServer, start, start_with};
use serde_json::{Value, json};
use sqlx::Row;
use std::time::{Duration, Instant};

fn person(id_number: &str, last_name: &str, documents: bool) -> String {
    let mut body = json!({
        "type": "individual",
        "email": "ama@example.com",
        "phone": "+254708374149",
        "individual": {
            "first_name": "Ama", "last_name": last_name, "date_of_birth": "1990-04-12",
            "address": { "line1": "12 Moi Avenue", "city": "Nairobi", "country": "KE" },
            "id_type": "national_id", "id_number": id_number
        },
        "currencies": ["USD", "KES"]
    });
    if documents {
        body["documents"] = json!([{ "type": "national_id", "reference": "file_8Hc2" }]);
    }
    body.to_string()
}

/// Reads an account until its verification status is `want`.
async fn until_status(server: &TestServer, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = server.get(&format!("/v1/accounts/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body["verification_status"] == want {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "account {id} never became {want}: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_me_answers_the_documents_authentication_example() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    // The document's example: GET /v1/accounts/me with Nixo-Version 2025-01-01.
    let reply = server
        .send_with("GET", "/v1/accounts/me", &[("Nixo-Version", "2025-01-01")], None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("nixo-version"), Some("2025-01-01"));
    let me = &reply.body;
    assert_eq!(me["object"], "account");
    assert!(me["id"].as_str().unwrap().starts_with("acct_"));
    assert_eq!(me["type"], "platform");
    assert_eq!(me["verification_status"], "verified");
    assert_eq!(me["limits"]["level"], 3);
    let wallets: Vec<i64> = me["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(wallets, vec![101, 102, 103]);
    let usd = me["balances"]["available"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "USD")
        .unwrap()
        .clone();
    assert_eq!(usd["amount"].to_string(), "12500.50");
    server.stop().await;
}

async fn a_customer_is_verified_and_the_platform_gets_account_verified(server: &TestServer) {
    let created = server.post("/v1/accounts", &person("A1234567", "Mensah", true)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["verification_status"], "pending");
    assert_eq!(created.body["requirements"], json!([]));
    assert_eq!(created.body["individual"]["id_number"], "••••4567");
    assert_eq!(created.body["limits"]["outgoing_enabled"], false);
    assert_eq!(created.body["wallets"].as_array().unwrap().len(), 2);

    let verified = until_status(server, &id, "verified").await;
    let steps: Vec<&str> = verified["verification_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["unverified", "pending", "verified"]);
    assert_eq!(verified["limits"]["level"], 2);
    assert_eq!(verified["limits"]["outgoing_enabled"], true);

    // The event, in the platform's event log, with the account as it is now.
    let events = server.get("/v1/events?type=account.verified").await;
    assert_eq!(events.status, 200, "{}", events.body);
    let data = events.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", events.body);
    assert_eq!(data[0]["data"]["object"]["id"], id.as_str());
    assert_eq!(data[0]["data"]["object"]["verification_status"], "verified");

    // At rest the identity number is sealed; it is nowhere in clear.
    let row = sqlx::query("SELECT profile, id_number_sealed FROM accounts WHERE id = $1")
        .bind(&id)
        .fetch_one(&server.db().pool)
        .await
        .unwrap();
    let profile: String = row.get(0);
    let sealed: String = row.get(1);
    assert!(!profile.contains("A1234567") && !sealed.contains("A1234567"));

    // Listed under the platform, filterable by status.
    let listed = server.get("/v1/accounts?verification_status=verified").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["data"][0]["id"], id.as_str());
    let none = server.get("/v1/accounts?verification_status=rejected").await;
    assert_eq!(none.body["data"], json!([]));
}

nixo_tests::on_both_databases!(a_customer_is_verified_and_the_platform_gets_account_verified);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_missing_documents_then_verified_on_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let mismatch = server.post("/v1/accounts", &person("B99990000", "Otieno", true)).await;
    let mismatch_id = mismatch.body["id"].as_str().unwrap().to_string();
    let watch = server
        .post("/v1/accounts", &person("C1234567", "Watchlist", true))
        .await;
    let watch_id = watch.body["id"].as_str().unwrap().to_string();
    let no_docs = server.post("/v1/accounts", &person("D1234567", "Kamau", false)).await;
    assert_eq!(no_docs.body["requirements"], json!(["documents"]));
    let no_docs_id = no_docs.body["id"].as_str().unwrap().to_string();

    let rejected = until_status(&server, &mismatch_id, "rejected").await;
    assert_eq!(rejected["verification_reasons"], json!(["identity_mismatch"]));
    let rejected = until_status(&server, &watch_id, "rejected").await;
    assert_eq!(rejected["verification_reasons"], json!(["watchlist_match"]));

    // Missing documents: back to unverified, saying what is missing...
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting = loop {
        let reply = server.get(&format!("/v1/accounts/{no_docs_id}")).await;
        if reply.body["verification_reasons"] == json!(["document_missing"]) {
            break reply.body;
        }
        assert!(Instant::now() < deadline, "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(waiting["verification_status"], "unverified");
    // ...and new documents restart verification, which now passes.
    let updated = server
        .send(
            "PUT",
            &format!("/v1/accounts/{no_docs_id}"),
            Some(&server.key.clone()),
            Some(r#"{"documents":[{"type":"passport","reference":"file_9Jd3"}],"phone":"+254711000111"}"#),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["verification_status"], "pending");
    assert_eq!(updated.body["phone"], "+254711000111");
    until_status(&server, &no_docs_id, "verified").await;

    // Bad input names its field; a business's data on an individual is refused.
    let bad = server
        .post(
            "/v1/accounts",
            r#"{"type":"individual","individual":{"date_of_birth":"1990-02-30"}}"#,
        )
        .await;
    assert_eq!(
        (bad.status, bad.error()),
        (400, ("invalid_request", Some("individual.date_of_birth")))
    );
    let wrong = server
        .send(
            "PUT",
            &format!("/v1/accounts/{no_docs_id}"),
            Some(&server.key.clone()),
            Some(r#"{"business":{"legal_name":"X Ltd"}}"#),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.error()),
        (400, ("invalid_request", Some("business")))
    );
    server.stop().await;
}

fn acting(account: &str) -> Vec<(String, String)> {
    vec![("Nixo-Account".into(), account.into())]
}

async fn send_as(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Reply {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    server.send_with(method, path, &refs, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_what_a_level_may_not_send() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::ephemeral(dir.path());
    // Level 2 may send 60 USD at once and 100 USD a day.
    config.limits = Limits::from_json(
        r#"{"levels":{"0":{"outgoing":false},"1":{"outgoing":true},
            "2":{"outgoing":true,"per_transaction":{"USD":"60.00"},"daily":{"USD":"100.00"}},"3":{"outgoing":true}}}"#,
    )
    .unwrap();
    let server = start_with(config, None).await;
    let created = server.post("/v1/accounts", &person("A1234567", "Mensah", true)).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let usd_wallet = created.body["wallets"][0]["id"].as_i64().unwrap();
    assert_eq!(created.body["wallets"][0]["currency"], "USD");
    // The platform funds the customer: an unverified account can receive.
    let funded = server
        .post(
            "/v1/payments/transfer",
            &json!({ "from_wallet": 103, "to_wallet": usd_wallet, "amount": "500.00", "currency": "USD" }).to_string(),
        )
        .await;
    assert_eq!(funded.status, 200, "{}", funded.body);

    let me = acting(&id);
    let out = |amount: &str| {
        json!({ "from_wallet": usd_wallet, "to_wallet": 103, "amount": amount, "currency": "USD" }).to_string()
    };
    // Still pending (or just verified): wait for a known state first.
    let refused = send_as(&server, "POST", "/v1/payments/transfer", &me, Some(&out("10.00"))).await;
    if refused.status == 403 {
        assert_eq!(refused.error().0, "account_not_verified", "{}", refused.body);
    }
    until_status(&server, &id, "verified").await;
    let too_big = send_as(&server, "POST", "/v1/payments/transfer", &me, Some(&out("60.01"))).await;
    assert_eq!(
        (too_big.status, too_big.error()),
        (403, ("limit_exceeded", Some("amount")))
    );
    assert!(
        too_big.body["error"]["message"].as_str().unwrap().contains("USD 60.00"),
        "{}",
        too_big.body
    );
    let first = send_as(&server, "POST", "/v1/payments/transfer", &me, Some(&out("60.00"))).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let over_day = send_as(&server, "POST", "/v1/payments/transfer", &me, Some(&out("40.01"))).await;
    assert_eq!(
        (over_day.status, over_day.error()),
        (403, ("limit_exceeded", Some("amount")))
    );
    assert!(
        over_day.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("USD 100.00"),
        "{}",
        over_day.body
    );
    let last = send_as(&server, "POST", "/v1/payments/transfer", &me, Some(&out("40.00"))).await;
    assert_eq!(last.status, 200, "{}", last.body);
    // The account shows its limits and what is used.
    let view = send_as(&server, "GET", "/v1/accounts/me", &me, None).await;
    assert_eq!(view.body["id"], id.as_str());
    let usd = &view.body["limits"]["currencies"][0];
    assert_eq!(
        (
            usd["currency"].as_str(),
            usd["daily"].to_string(),
            usd["used_today"].to_string()
        ),
        (Some("USD"), "100.00".into(), "100.00".into())
    );

    // An unverified account cannot send at all.
    let fresh = server
        .post("/v1/accounts", r#"{"type":"business","currencies":["USD"]}"#)
        .await;
    assert_eq!(fresh.body["verification_status"], "unverified");
    let fresh_id = fresh.body["id"].as_str().unwrap().to_string();
    let fresh_wallet = fresh.body["wallets"][0]["id"].as_i64().unwrap();
    server
        .post(
            "/v1/payments/transfer",
            &json!({ "from_wallet": 103, "to_wallet": fresh_wallet, "amount": "5.00", "currency": "USD" }).to_string(),
        )
        .await;
    let blocked = send_as(
        &server,
        "POST",
        "/v1/payments/transfer",
        &acting(&fresh_id),
        Some(
            &json!({ "from_wallet": fresh_wallet, "to_wallet": 103, "amount": "1.00", "currency": "USD" }).to_string(),
        ),
    )
    .await;
    assert_eq!((blocked.status, blocked.error().0), (403, "account_not_verified"));
    server.stop().await;
}

/// A valid request body for a write route (the edge validates bodies
/// before the core looks at `Nixo-Account`).
fn valid_body(path: &str) -> Option<&'static str> {
    Some(match path {
        "/v1/payments/transfer" | "/v1/payments/async" => {
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES"}"#
        }
        "/v1/payments/transact" => r#"{"type":"deposit","amount":100,"currency":"KES","phone_number":"254712345678"}"#,
        "/v1/payouts" => {
            r#"{"amount":"10.00","currency":"USD","recipient":{"full_name":"T U","account_iban":"MA64011519000001205000534921"}}"#
        }
        "/v1/webhook_endpoints" => r#"{"url":"http://127.0.0.1:9/hook","enabled_events":["*"]}"#,
        "/v1/webhook_endpoints/{id}" => r#"{"description":"x"}"#,
        "/v1/webhook_endpoints/{id}/rotate_secret" => "{}",
        "/v1/events/{id}/resend" => r#"{"endpoint":"we_1A2B3C"}"#,
        "/v1/accounts" => r#"{"type":"individual"}"#,
        "/v1/accounts/{id}" => r#"{"phone":"+254708374149"}"#,
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nixo_account_is_the_platforms_own_customers_only_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let customer = server
        .post("/v1/accounts", r#"{"type":"individual","currencies":["KES"]}"#)
        .await;
    let customer_id = customer.body["id"].as_str().unwrap().to_string();

    // Another platform on the same installation, with its own key.
    let db = server.db();
    let other = nixo_core::accounts::create(db, Environment::Sandbox, "Other platform", 3)
        .await
        .unwrap();
    let hasher = nixo_core::server::key_hasher(dir.path()).unwrap();
    let other_key = auth::create_key(
        db,
        &hasher,
        &other,
        Environment::Sandbox,
        &KeyAccess::new(vec![], None).unwrap(),
    )
    .await
    .unwrap()
    .key;

    // The platform acts for its customer.
    let mine = server
        .send_with(
            "GET",
            "/v1/accounts/me",
            &[("Nixo-Account", customer_id.as_str())],
            None,
        )
        .await;
    assert_eq!(
        (mine.status, mine.body["id"].as_str()),
        (200, Some(customer_id.as_str()))
    );
    let balances = server
        .send_with("GET", "/v1/balances", &[("Nixo-Account", customer_id.as_str())], None)
        .await;
    assert_eq!(balances.status, 200, "{}", balances.body);
    let kes = &balances.body["available"][0];
    assert_eq!(
        (kes["currency"].as_str(), kes["amount"].to_string()),
        (Some("KES"), "0.00".into())
    );

    // The other platform cannot, on any route, nor see the account.
    for route in nixo_api::schema::ROUTES.iter().filter(|r| !r.is_public()) {
        let path = route
            .path
            .replace("{id}", "x1")
            .replace("{tx_id}", "10001")
            .replace("{job_id}", "job_a1b2c3d4e5f6");
        let path = if route.path.starts_with("/v1/accounts/{id}") {
            route.path.replace("{id}", &customer_id)
        } else {
            path
        };
        // The export's one required parameter.
        let query = if route.id == nixo_api::schema::RouteId::TransactionExport {
            "?format=csv"
        } else {
            ""
        };
        let mut req = reqwest::Client::new()
            .request(route.method.parse().unwrap(), format!("{}{path}{query}", server.base))
            .header("authorization", format!("Bearer {other_key}"))
            .header("Nixo-Account", customer_id.as_str());
        if let Some(body) = valid_body(route.path).filter(|_| matches!(route.method, "POST" | "PUT")) {
            req = req.header("content-type", "application/json").body(body);
        }
        let reply = nixo_tests::fetch(req).await;
        assert_eq!(
            (reply.status, reply.error()),
            (403, ("permission_denied", Some("Nixo-Account"))),
            "{} {path}: {}",
            route.method,
            reply.body
        );
    }
    let other_reads = server
        .send("GET", &format!("/v1/accounts/{customer_id}"), Some(&other_key), None)
        .await;
    assert_eq!(other_reads.status, 404, "{}", other_reads.body);
    let other_list = server.send("GET", "/v1/accounts", Some(&other_key), None).await;
    assert_eq!(other_list.body["data"], json!([]));
    // A customer cannot create accounts, and a malformed header is a 400.
    let nested = server
        .send_with(
            "POST",
            "/v1/accounts",
            &[("Nixo-Account", customer_id.as_str())],
            Some(r#"{"type":"individual"}"#),
        )
        .await;
    assert_eq!((nested.status, nested.error().0), (403, "permission_denied"));
    let malformed = server
        .send_with("GET", "/v1/accounts/me", &[("Nixo-Account", "bob")], None)
        .await;
    assert_eq!(
        (malformed.status, malformed.error()),
        (400, ("invalid_request", Some("Nixo-Account")))
    );
    server.stop().await;
}
