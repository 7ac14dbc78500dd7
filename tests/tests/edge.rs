//! The edge gateway, through the real Wasm component under `nixo serve`:
//! authentication, scopes, environments, rate limits (in memory and on
//! Redis shared by two hosts), API versions and request validation. Every
//! case checks the status, the error body and the headers a client sees.

use nixo_api::access::{KEY_CACHE_TTL_S, RateLimit};
use nixo_api::schema::RouteId;
use nixo_api::versions::{self, V2024_06_01};
use nixo_core::auth::{self, KeyAccess};
use nixo_core::ledger::Environment;
use nixo_core::server::{self, ServeConfig};
use nixo_tests::{PgDatabase, Reply, SEED_TRANSFER, TestServer, fetch, redis_url, start, start_with};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn new_key(server: &TestServer, environment: Environment, access: KeyAccess) -> (String, String) {
    let hasher = server::key_hasher(&server.data_dir).unwrap();
    let account = match auth::default_account(server.db(), environment).await.unwrap() {
        Some(account) => account,
        None => nixo_core::accounts::create(server.db(), environment, "Live account", 1)
            .await
            .unwrap(),
    };
    let key = auth::create_key(server.db(), &hasher, &account, environment, &access)
        .await
        .unwrap();
    (key.key, key.id)
}

fn limited(limit: u64, window_s: u64) -> KeyAccess {
    KeyAccess::new(vec![], Some(RateLimit { limit, window_s })).unwrap()
}

fn assert_error(reply: &Reply, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.error(), (code, field), "{}", reply.body);
    assert!(reply.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    let id = reply.header("request-id").expect("every response has a Request-Id");
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");
}

/// A fresh server whose gateway gets one Spin variable set.
async fn start_with_variable(dir: &std::path::Path, name: &str, value: &str) -> TestServer {
    let config = ServeConfig {
        edge_variables: BTreeMap::from([(name.to_string(), value.to_string())]),
        ..ServeConfig::ephemeral(dir)
    };
    start_with(config, None).await
}

async fn send_with(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut req = server
        .client
        .request(method.parse().unwrap(), format!("{}{path}", server.base));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    fetch(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_at_the_edge_for_existence_environment_expiry_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_variable(dir.path(), "environments", "sandbox").await;

    let missing = server.send("GET", "/v1/balances", None, None).await;
    assert_error(&missing, 401, "invalid_api_key", None);
    let malformed = send_with(&server, "GET", "/v1/balances", &[("authorization", "Basic abc")], None).await;
    assert_error(&malformed, 401, "invalid_api_key", None);
    let unknown = server
        .send(
            "GET",
            "/v1/balances",
            Some("sk_sandbox_0000000000000000000000000000abcd"),
            None,
        )
        .await;
    assert_error(&unknown, 401, "invalid_api_key", None);
    assert!(unknown.header("ratelimit-limit").is_none(), "no key, no limit");

    // The right secret under the other environment's prefix is another key.
    let swapped = server.key.replacen("sk_sandbox_", "sk_live_", 1);
    let reply = server.send("GET", "/v1/balances", Some(&swapped), None).await;
    assert_error(&reply, 401, "invalid_api_key", None);
    // A real live key against an endpoint that serves sandbox keys only.
    let (live, _) = new_key(&server, Environment::Live, KeyAccess::default()).await;
    let reply = server.send("GET", "/v1/balances", Some(&live), None).await;
    assert_error(&reply, 401, "invalid_api_key", None);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("environment"));

    // Scopes: a read-only key reads but cannot move money.
    let read_only = KeyAccess::new(vec!["balances:read".into()], None).unwrap();
    let (reader, _) = new_key(&server, Environment::Sandbox, read_only).await;
    assert_eq!(
        server.send("GET", "/v1/balances", Some(&reader), None).await.status,
        200
    );
    let refused = server
        .send("POST", "/v1/payments/transfer", Some(&reader), Some(SEED_TRANSFER))
        .await;
    assert_error(&refused, 403, "permission_denied", None);
    let refused = server.send("GET", "/v1/rules/decisions", Some(&reader), None).await;
    assert_error(&refused, 403, "permission_denied", None);
    assert_eq!(server.wallet_balance(101).await.0, "100000.00");

    // Rolled with a grace period: the old key works until the period ends,
    // and stops exactly then (the edge knows the expiry from its lookup).
    let (old, old_id) = new_key(&server, Environment::Sandbox, KeyAccess::default()).await;
    let hasher = server::key_hasher(&server.data_dir).unwrap();
    let rolled = auth::roll_key(server.db(), &hasher, &old_id, 1_500).await.unwrap();
    let rolled_at = Instant::now();
    assert_eq!(server.send("GET", "/v1/balances", Some(&old), None).await.status, 200);
    assert_eq!(
        server.send("GET", "/v1/balances", Some(&rolled.key), None).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1_600).saturating_sub(rolled_at.elapsed())).await;
    let reply = server.send("GET", "/v1/balances", Some(&old), None).await;
    assert_error(&reply, 401, "invalid_api_key", None);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("expired"));
    assert_eq!(
        server.send("GET", "/v1/balances", Some(&rolled.key), None).await.status,
        200
    );

    // Revocation reaches the edge within the key cache's lifetime.
    let (doomed, doomed_id) = new_key(&server, Environment::Sandbox, KeyAccess::default()).await;
    assert_eq!(
        server.send("GET", "/v1/balances", Some(&doomed), None).await.status,
        200
    );
    assert!(auth::revoke_key(server.db(), &doomed_id).await.unwrap());
    let revoked_at = Instant::now();
    loop {
        let reply = server.send("GET", "/v1/balances", Some(&doomed), None).await;
        if reply.status == 401 {
            assert_error(&reply, 401, "invalid_api_key", None);
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(KEY_CACHE_TTL_S as u64 + 2),
            "a revoked key still works after the cache lifetime"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

/// Fires `n` concurrent balance reads with `key` at the given servers in
/// turn; returns the replies in that order.
async fn burst(servers: &[&TestServer], key: &str, n: usize) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let server = servers[i % servers.len()];
            let req = server
                .client
                .get(format!("{}/v1/balances", server.base))
                .header("authorization", format!("Bearer {key}"));
            tokio::spawn(fetch(req))
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn check_burst(replies: &[Reply], limit: u64) {
    let passed = replies.iter().filter(|r| r.status == 200).count() as u64;
    assert_eq!(passed, limit, "exactly the limit passes");
    for reply in replies {
        assert_eq!(reply.header("ratelimit-limit"), Some(limit.to_string().as_str()));
        assert!(reply.header("ratelimit-remaining").is_some());
        assert!(
            reply
                .header("ratelimit-reset")
                .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
        );
        if reply.status != 200 {
            assert_error(reply, 429, "rate_limit_exceeded", None);
            assert!(
                reply
                    .header("retry-after")
                    .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
            );
            assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
        } else {
            assert!(reply.header("retry-after").is_none());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_lets_exactly_its_limit_through_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let (key, _) = new_key(&server, Environment::Sandbox, limited(7, 3600)).await;
    let replies = burst(&[&server], &key, 20).await;
    check_burst(&replies, 7);
    // A transfer refused by the limit moves nothing.
    let reply = server
        .send("POST", "/v1/payments/transfer", Some(&key), Some(SEED_TRANSFER))
        .await;
    assert_error(&reply, 429, "rate_limit_exceeded", None);
    assert_eq!(server.wallet_balance(101).await.0, "100000.00");
    // Other keys have their own counters.
    let ok = server.get("/v1/balances").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("ratelimit-policy"), Some("50;w=1"), "the sandbox default");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_sharing_redis_share_one_rate_limit() {
    let Some(redis) = redis_url().await else { return };
    let Some(pg) = PgDatabase::create("edge_redis").await else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &std::path::Path| ServeConfig {
        database_url: Some(pg.url.clone()),
        kv_url: Some(redis.clone()),
        ..ServeConfig::ephemeral(dir)
    };
    let a = start_with(config(dir_a.path()), None).await;
    // Replicas share the database and the secrets (pepper, signing secret).
    std::fs::copy(dir_a.path().join("secrets.json"), dir_b.path().join("secrets.json")).unwrap();
    let b = start_with(config(dir_b.path()), Some(a.key.clone())).await;
    let (key, _) = new_key(&a, Environment::Sandbox, limited(9, 3600)).await;
    let replies = burst(&[&a, &b], &key, 24).await;
    check_burst(&replies, 9);
    let passed_per_host = |offset: usize| {
        replies
            .iter()
            .skip(offset)
            .step_by(2)
            .filter(|r| r.status == 200)
            .count()
    };
    assert_eq!(passed_per_host(0) + passed_per_host(1), 9);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_version_is_translated_both_ways_and_accounts_keep_their_pin() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let account = auth::default_account(server.db(), Environment::Sandbox)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth::pinned_version(server.db(), &account).await.unwrap(), None);
    let current = server.get("/v1/balances?wallet_id=101").await;
    assert_eq!(current.header("nixo-version"), Some(versions::CURRENT));
    assert_eq!(
        auth::pinned_version(server.db(), &account).await.unwrap().as_deref(),
        Some(versions::CURRENT),
        "pinned at first use"
    );
    let old = [
        ("authorization", format!("Bearer {}", server.key)),
        ("nixo-version", V2024_06_01.to_string()),
    ];
    let old: Vec<(&str, &str)> = old.iter().map(|(n, v)| (*n, v.as_str())).collect();

    // Balances: the same ledger, amounts in minor units for the old version;
    // upgrading the old body gives back the current body exactly.
    let before = send_with(&server, "GET", "/v1/balances?wallet_id=101", &old, None).await;
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(before.header("nixo-version"), Some(V2024_06_01));
    assert_eq!(before.body["available"][0]["amount"].to_string(), "10000000");
    let upgraded = versions::upgrade_response(V2024_06_01, RouteId::Balances, before.body.to_string().as_bytes());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&upgraded).unwrap(),
        current.body
    );

    // Transfer: an old client's integer minor units move the same money as
    // the current client's decimal string.
    let old_body = versions::downgrade_request(V2024_06_01, RouteId::Transfer, SEED_TRANSFER.as_bytes()).unwrap();
    let old_body = String::from_utf8(old_body).unwrap();
    assert!(old_body.contains(r#""amount":5000"#), "{old_body}");
    let settled = send_with(&server, "POST", "/v1/payments/transfer", &old, Some(&old_body)).await;
    assert_eq!(settled.status, 200, "{}", settled.body);
    assert_eq!(settled.body["data"]["status"], "SETTLED");
    assert_eq!(settled.header("nixo-version"), Some(V2024_06_01));
    assert_eq!(server.wallet_balance(101).await.0, "99950.00");
    let new_way = server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    assert_eq!(new_way.status, 200);
    assert_eq!(server.wallet_balance(101).await.0, "99900.00");
    let after = send_with(&server, "GET", "/v1/balances?wallet_id=101", &old, None).await;
    assert_eq!(after.body["available"][0]["amount"].to_string(), "9990000");

    // An old client sending the new shape is told what its version expects.
    let wrong = send_with(&server, "POST", "/v1/payments/transfer", &old, Some(SEED_TRANSFER)).await;
    assert_error(&wrong, 400, "invalid_request", Some("amount"));
    assert_eq!(wrong.header("nixo-version"), Some(V2024_06_01));
    // Unknown versions name the header.
    let auth_only = [
        ("authorization", format!("Bearer {}", server.key)),
        ("nixo-version", "2019-01-01".into()),
    ];
    let auth_only: Vec<(&str, &str)> = auth_only.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let unknown = send_with(&server, "GET", "/v1/balances", &auth_only, None).await;
    assert_error(&unknown, 400, "invalid_request", Some("Nixo-Version"));

    // An account pinned to the old version gets it without the header (the
    // pin reaches the edge with the next key lookup).
    let (pinned_key, _) = new_key(&server, Environment::Sandbox, KeyAccess::default()).await;
    auth::pin_version(server.db(), &account, V2024_06_01).await.unwrap();
    let reply = server
        .send("GET", "/v1/balances?wallet_id=101", Some(&pinned_key), None)
        .await;
    assert_eq!(reply.header("nixo-version"), Some(V2024_06_01));
    assert_eq!(reply.body["available"][0]["amount"].to_string(), "9990000");
    // …and can still ask for the current version per request.
    let current_again = [
        ("authorization", format!("Bearer {pinned_key}")),
        ("nixo-version", versions::CURRENT.into()),
    ];
    let current_again: Vec<(&str, &str)> = current_again.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = send_with(&server, "GET", "/v1/balances?wallet_id=101", &current_again, None).await;
    assert_eq!(reply.header("nixo-version"), Some(versions::CURRENT));
    assert_eq!(reply.body["available"][0]["amount"].to_string(), "99900.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_validated_at_the_edge_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let transfer = |body: &str| {
        let server = &server;
        let body = body.to_string();
        async move { server.post("/v1/payments/transfer", &body).await }
    };
    let cases: &[(&str, &str)] = &[
        (r#"{"to_wallet":102,"amount":"1.00","currency":"KES"}"#, "from_wallet"),
        (
            r#"{"from_wallet":"101","to_wallet":102,"amount":"1.00","currency":"KES"}"#,
            "from_wallet",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":-2,"amount":"1.00","currency":"KES"}"#,
            "to_wallet",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"0","currency":"KES"}"#,
            "amount",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"-5.00","currency":"KES"}"#,
            "amount",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.001","currency":"KES"}"#,
            "amount",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":1e3,"currency":"KES"}"#,
            "amount",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"kes"}"#,
            "currency",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"XYZ"}"#,
            "currency",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES","memo":"x"}"#,
            "memo",
        ),
        (
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES","metadata":{"n":1}}"#,
            "metadata.n",
        ),
        ("not json", "body"),
        ("[1,2]", "body"),
    ];
    for (body, field) in cases {
        let reply = transfer(body).await;
        assert_error(&reply, 400, "invalid_request", Some(field));
        assert!(
            reply.header("ratelimit-limit").is_some(),
            "after auth: limits on every response"
        );
        assert_eq!(reply.header("nixo-version"), Some(versions::CURRENT));
    }
    for (path, field) in [
        ("/v1/balances?wallet_id=abc", "wallet_id"),
        ("/v1/balances?currency=KES", "currency"),
        ("/v1/rules/decisions?limit=0", "limit"),
        ("/v1/rules/decisions?transaction_id=x", "transaction_id"),
    ] {
        assert_error(&server.get(path).await, 400, "invalid_request", Some(field));
    }
    let key = server.key.clone();
    let auth = format!("Bearer {key}");
    let form = send_with(
        &server,
        "POST",
        "/v1/payments/transfer",
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        None,
    )
    .await;
    assert_error(&form, 400, "invalid_request", Some("body"));
    let form = server
        .client
        .post(format!("{}/v1/payments/transfer", server.base))
        .header("authorization", &auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("from_wallet=101&to_wallet=102&amount=1.00&currency=KES");
    assert_error(&fetch(form).await, 400, "invalid_request", Some("Content-Type"));
    let get_with_body = server.send("GET", "/v1/balances", Some(&key), Some("{}")).await;
    assert_error(&get_with_body, 400, "invalid_request", Some("body"));
    let too_big = format!(
        r#"{{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES","metadata":{{"a":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    assert_error(&transfer(&too_big).await, 413, "invalid_request", Some("body"));
    // Far larger: refused by the host before the component reads it, whether
    // announced by Content-Length or streamed without one. The client is
    // still sending when the answer comes: the rest is read and dropped, so
    // it reads the 413 instead of a broken pipe (on Spin too).
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(12 << 20));
    assert_error(&transfer(&huge).await, 413, "invalid_request", Some("body"));
    let chunks: Vec<Result<String, std::io::Error>> = (0..48).map(|_| Ok("x".repeat(64 * 1024))).collect();
    let streamed = server
        .client
        .post(format!("{}/v1/payments/transfer", server.base))
        .header("authorization", format!("Bearer {}", server.key))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)));
    assert_error(&fetch(streamed).await, 413, "invalid_request", Some("body"));
    assert_error(
        &server.send("GET", "/v1/payments/transfer", Some(&key), None).await,
        405,
        "invalid_request",
        None,
    );
    assert_error(&server.get("/v1/nothing-here").await, 404, "resource_not_found", None);
    assert_error(
        &server.get("/internal/v1/keys/resolve").await,
        404,
        "resource_not_found",
        None,
    );
    assert_eq!(server.wallet_balance(101).await.0, "100000.00", "nothing moved");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_may_call_no_host_but_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_variable(dir.path(), "core_url", "http://attacker.example").await;
    // The key lookup is the first outbound call: refused, so nothing passes.
    let reply = server.get("/v1/balances").await;
    assert_error(&reply, 502, "internal_error", None);
    server.stop().await;
}
