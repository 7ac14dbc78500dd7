//! Reviews over HTTP through the gateway: a review verdict opens one with
//! the hold; approve moves the money (a transfer settles, a payout goes to
//! its rail), decline and expiry release it; exactly once under concurrent
//! approvals; only keys with the reviews scope close one. SQLite and
//! PostgreSQL.

use nixo_api::access::RateLimit;
use nixo_core::auth::{self, KeyAccess};
use nixo_core::ledger::Environment;
use nixo_core::server;
use nixo_tests::{Reply, SEED_TRANSFER, TestServer, on_both_databases};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Holds a transfer for review (the fraud rule reviews the 21st transfer
/// of a wallet within an hour) and returns (its tx_id, its review).
async fn held_transfer(server: &TestServer) -> (String, Value) {
    for _ in 0..20 {
        let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
        assert_eq!(reply.body["data"]["status"], "SETTLED", "{}", reply.body);
    }
    let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let tx = reply.body["data"]["tx_id"].as_str().unwrap().to_string();
    let open = server.get("/v1/reviews?open=true").await;
    assert_eq!(open.status, 200, "{}", open.body);
    let review = open.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["transaction_id"] == tx.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("a review for {tx}: {}", open.body));
    (tx, review)
}

fn review_path(review: &Value, action: &str) -> String {
    format!("/v1/reviews/{}/{action}", review["id"].as_str().unwrap())
}

async fn event_count(server: &TestServer, event_type: &str) -> usize {
    let reply = server.get(&format!("/v1/events?type={event_type}&limit=100")).await;
    reply.body["data"].as_array().unwrap().len()
}

async fn an_approved_transfer_settles_once(server: &TestServer) {
    let (tx, review) = held_transfer(server).await;
    assert_eq!(review["object"], "review");
    assert_eq!(review["subject"], "transfer");
    assert_eq!(review["status"], "open");
    assert_eq!(review["amount"].to_string(), "50.00");
    assert_eq!(
        review["parties"],
        json!({"from_wallet": 101, "to_wallet": 102, "recipient": null})
    );
    assert_eq!(review["rules_applied"], json!(["FraudCheck: REVIEW"]));
    assert!(!review["reasons"].as_array().unwrap().is_empty(), "{review}");
    assert!(review["expires_at"].as_i64().unwrap() > review["created"].as_i64().unwrap());
    let one = server
        .get(&format!("/v1/reviews/{}", review["id"].as_str().unwrap()))
        .await;
    assert_eq!(one.body["id"], review["id"]);
    // Held: reserved at the source, pending at the destination.
    assert_eq!(
        server.wallet_balance(102).await,
        ("101000.00".into(), "50.00".into(), "0.00".into())
    );

    let approved = server
        .post(&review_path(&review, "approve"), r#"{"note":"known customer"}"#)
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["note"], "known customer");
    assert!(
        approved.body["closed_by"].as_str().unwrap().starts_with("key_"),
        "{}",
        approved.body
    );
    let status = server.get(&format!("/v1/payments/{tx}")).await;
    assert_eq!(status.body["data"]["status"], "SETTLED");
    assert_eq!(
        server.wallet_balance(102).await,
        ("101050.00".into(), "0.00".into(), "0.00".into())
    );
    // Twice, or the other way: refused, nothing moves again.
    for action in ["approve", "decline"] {
        let again = server.post(&review_path(&review, action), "").await;
        assert_eq!(
            (again.status, again.error().0),
            (409, "review_closed"),
            "{}",
            again.body
        );
    }
    assert_eq!(server.wallet_balance(102).await.0, "101050.00");
    assert_eq!(event_count(server, "review.opened").await, 1);
    assert_eq!(event_count(server, "review.closed").await, 1);
    let closed = server.get("/v1/reviews?open=false").await;
    assert_eq!(closed.body["data"].as_array().unwrap().len(), 1);
}
on_both_databases!(an_approved_transfer_settles_once);

async fn a_declined_transfer_releases_the_hold(server: &TestServer) {
    let (tx, review) = held_transfer(server).await;
    let declined = server.post(&review_path(&review, "decline"), "").await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    assert_eq!(declined.body["status"], "declined");
    let status = server.get(&format!("/v1/payments/{tx}")).await;
    assert_eq!(status.body["status"], "failed");
    assert_eq!(status.body["data"]["error"]["code"], "declined_by_review");
    assert_eq!(
        server.wallet_balance(101).await,
        ("99000.00".into(), "0.00".into(), "0.00".into())
    );
    assert_eq!(
        server.wallet_balance(102).await,
        ("101000.00".into(), "0.00".into(), "0.00".into())
    );
}
on_both_databases!(a_declined_transfer_releases_the_hold);

async fn concurrent_approvals_move_the_money_once(server: &TestServer) {
    let (_, review) = held_transfer(server).await;
    let path = review_path(&review, "approve");
    let replies: Vec<Reply> = futures_util::future::join_all((0..8).map(|_| server.post(&path, "{}"))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, 200 | 409)), "{statuses:?}");
    assert_eq!(
        server.wallet_balance(102).await,
        ("101050.00".into(), "0.00".into(), "0.00".into())
    );
    assert_eq!(event_count(server, "review.closed").await, 1);
}
on_both_databases!(concurrent_approvals_move_the_money_once);

/// A USD payout of 10,000 or more goes to review (the fraud rule's threshold).
async fn held_payout(server: &TestServer) -> (Value, Value) {
    let body = json!({"amount": "10000.00", "currency": "USD",
        "recipient": {"full_name": "Test User", "account_iban": "MA64011519000001205000534921"}});
    let payout = server.post("/v1/payouts", &body.to_string()).await;
    assert_eq!(payout.body["status"], "pending", "{}", payout.body);
    let list = server.get("/v1/reviews?open=true").await;
    let review = list.body["data"][0].clone();
    assert_eq!(review["subject"], "payout");
    assert_eq!(review["payout"], payout.body["id"]);
    assert_eq!(review["parties"]["recipient"], "************************4921");
    (payout.body, review)
}

async fn wait_payout(server: &TestServer, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let reply = server.get(&format!("/v1/payouts/{id}")).await;
        if reply.body["status"] == status {
            return reply.body;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn an_approved_payout_goes_to_its_rail(server: &TestServer) {
    let (payout, review) = held_payout(server).await;
    let approved = server.post(&review_path(&review, "approve"), "").await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let done = wait_payout(server, payout["id"].as_str().unwrap(), "succeeded").await;
    let history: Vec<&str> = done["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["pending", "processing", "succeeded"]);
    let status = server
        .get(&format!("/v1/payments/{}", review["transaction_id"].as_str().unwrap()))
        .await;
    assert_eq!(status.body["data"]["status"], "SETTLED");
}
on_both_databases!(an_approved_payout_goes_to_its_rail);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_and_expired_payouts_fail_with_the_hold_released() {
    let dir = tempfile::tempdir().unwrap();
    let server = nixo_tests::start(dir.path(), None, false).await;
    let (payout, review) = held_payout(&server).await;
    let declined = server
        .post(&review_path(&review, "decline"), r#"{"note":"mule pattern"}"#)
        .await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    let failed = wait_payout(&server, payout["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["failure_code"], "declined_by_review");
    let usd = server.get("/v1/balances?wallet_id=103").await;
    assert_eq!(usd.body["available"][0]["amount"].to_string(), "12500.50");

    // Nobody decides: the review expires (the server's clock moves on) and releases.
    let (payout, review) = held_payout(&server).await;
    server
        .running()
        .clock
        .advance(nixo_core::services::reviews::REVIEW_WINDOW_MS + 1_000);
    let failed = wait_payout(&server, payout["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["failure_code"], "review_expired");
    let closed = server
        .get(&format!("/v1/reviews/{}", review["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (closed.body["status"].as_str(), closed.body["closed_by"].as_str()),
        (Some("expired"), Some("system"))
    );
    let late = server.post(&review_path(&review, "approve"), "").await;
    assert_eq!((late.status, late.error().0), (409, "review_closed"));
    let usd = server.get("/v1/balances?wallet_id=103").await;
    assert_eq!(usd.body["available"][0]["amount"].to_string(), "12500.50");
    server.stop().await;
}

/// A new sandbox key of the server's account with only `scopes`.
async fn scoped_key(server: &TestServer, scopes: Vec<String>) -> String {
    let hasher = server::key_hasher(&server.data_dir).unwrap();
    let account = auth::default_account(server.db(), Environment::Sandbox)
        .await
        .unwrap()
        .unwrap();
    let access = KeyAccess::new(
        scopes,
        Some(RateLimit {
            limit: 1000,
            window_s: 1,
        }),
    )
    .unwrap();
    auth::create_key(server.db(), &hasher, &account, Environment::Sandbox, &access)
        .await
        .unwrap()
        .key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_keys_with_the_reviews_scope_close_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let server = nixo_tests::start(dir.path(), None, false).await;
    let (_, review) = held_transfer(&server).await;
    let reader = scoped_key(&server, vec!["reviews:read".into()]).await;
    let listed = server.send("GET", "/v1/reviews", Some(&reader), None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let refused = server
        .send("POST", &review_path(&review, "approve"), Some(&reader), Some("{}"))
        .await;
    assert_eq!((refused.status, refused.error().0), (403, "permission_denied"));
    let other = scoped_key(&server, vec!["transfers:write".into()]).await;
    let refused = server
        .send("POST", &review_path(&review, "decline"), Some(&other), Some("{}"))
        .await;
    assert_eq!(refused.status, 403);
    let writer = scoped_key(&server, vec!["reviews:write".into()]).await;
    let approved = server
        .send("POST", &review_path(&review, "approve"), Some(&writer), Some(""))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    // Bad input: a structured 400 naming the field; an unknown review: 404.
    let bad = server.post(&review_path(&review, "decline"), r#"{"note":7}"#).await;
    assert_eq!((bad.status, bad.error().1), (400, Some("note")));
    let missing = server.post("/v1/reviews/rev_nothing/approve", "").await;
    assert_eq!(missing.status, 404);
    let filter = server.get("/v1/reviews?open=maybe").await;
    assert_eq!((filter.status, filter.error().1), (400, Some("open")));
    server.stop().await;
}

/// Holds the next transfer for review and returns (its tx_id, its review).
async fn next_held(server: &TestServer) -> (String, Value) {
    let reply = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(reply.body["data"]["status"], "PENDING_REVIEW", "{}", reply.body);
    let tx = reply.body["data"]["tx_id"].as_str().unwrap().to_string();
    let list = server.get("/v1/reviews?open=true&limit=100").await;
    let review = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["transaction_id"] == tx.as_str())
        .cloned()
        .unwrap();
    (tx, review)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_review_follows_the_rules_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = nixo_tests::start(dir.path(), None, false).await;
    let (voided_tx, review) = held_transfer(&server).await;
    assert_eq!(review["on_expiry"], "void", "the default policy");
    // The operator sets the fraud rule's policy to approve; the server reloads it.
    let manifest = server.data_dir.join("plugins").join("fraud-check.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("review_expiry = \"approve\"\n");
    std::fs::write(&manifest, text).unwrap();
    let started = Instant::now();
    let approved_tx = loop {
        let (tx, review) = next_held(&server).await;
        if review["on_expiry"] == "approve" {
            break tx;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the manifest was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Nobody decides: each review expires by the policy it was opened with.
    server
        .running()
        .clock
        .advance(nixo_core::services::reviews::REVIEW_WINDOW_MS + 1_000);
    let started = Instant::now();
    while !server.get("/v1/reviews?open=true").await.body["data"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(20), "reviews left open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = server.get(&format!("/v1/payments/{approved_tx}")).await;
    assert_eq!(settled.body["data"]["status"], "SETTLED", "{}", settled.body);
    let voided = server.get(&format!("/v1/payments/{voided_tx}")).await;
    assert_eq!(voided.body["data"]["status"], "VOIDED");
    assert_eq!(voided.body["data"]["error"]["code"], "review_expired");
    let closed = server.get("/v1/reviews?open=false&limit=100").await;
    for review in closed.body["data"].as_array().unwrap() {
        assert_eq!(
            (review["status"].as_str(), review["closed_by"].as_str()),
            (Some("expired"), Some("system"))
        );
    }
    server.stop().await;
}

/// Approvals racing the expiry: the review closes once, and the money
/// either settles (approved) or is released (expired), never both.
async fn approvals_racing_the_expiry_close_it_once(server: &TestServer) {
    let (tx, review) = held_transfer(server).await;
    let path = review_path(&review, "approve");
    server
        .running()
        .clock
        .advance(nixo_core::services::reviews::REVIEW_WINDOW_MS + 1);
    let replies: Vec<Reply> = futures_util::future::join_all((0..6).map(|_| server.post(&path, "{}"))).await;
    let wins = replies.iter().filter(|r| r.status == 200).count();
    assert!(wins <= 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().all(|r| matches!(r.status, 200 | 409)));
    let started = Instant::now();
    let closed = loop {
        let now = server
            .get(&format!("/v1/reviews/{}", review["id"].as_str().unwrap()))
            .await;
        if now.body["status"] != "open" {
            break now.body;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still open: {}", now.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let payment = server.get(&format!("/v1/payments/{tx}")).await;
    let (_, pending, reserved) = server.wallet_balance(102).await;
    assert_eq!(
        (pending.as_str(), reserved.as_str()),
        ("0.00", "0.00"),
        "nothing left held"
    );
    match closed["status"].as_str() {
        Some("approved") => {
            assert_eq!(wins, 1);
            assert_eq!(payment.body["data"]["status"], "SETTLED");
            assert_eq!(server.wallet_balance(102).await.0, "101050.00");
        }
        Some("expired") => {
            assert_eq!(wins, 0);
            assert_eq!(payment.body["data"]["status"], "VOIDED");
            assert_eq!(server.wallet_balance(102).await.0, "101000.00");
        }
        other => panic!("closed as {other:?}"),
    }
    assert_eq!(event_count(server, "review.closed").await, 1);
}
on_both_databases!(approvals_racing_the_expiry_close_it_once);
