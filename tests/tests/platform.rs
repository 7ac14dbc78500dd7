//! The platform every feature stands on, over HTTP through the gateway:
//! the Idempotency-Key layer, the events outbox, cursor pages, and the
//! operations routes. The database-backed cases run on SQLite and on
//! PostgreSQL.

use futures_util::future::join_all;
use nixo_core::events;
use nixo_core::idempotency::{Begin, Scope, request_hash};
use nixo_core::ledger::Environment;
use nixo_tests::{PgDatabase, Reply, SEED_TRANSFER, TestServer, on_both_databases, start_on};
use sqlx::Row;
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;

fn transfer(amount: &str) -> String {
    format!(r#"{{"from_wallet":101,"to_wallet":102,"amount":"{amount}","currency":"KES"}}"#)
}

async fn post_keyed(server: &TestServer, key: &str, body: &str) -> Reply {
    server
        .send_with("POST", "/v1/payments/transfer", &[("idempotency-key", key)], Some(body))
        .await
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&server.db().pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

on_both_databases!(idempotency_keys_replay_refuse_and_expire);
async fn idempotency_keys_replay_refuse_and_expire(server: &TestServer) {
    // A finished request is replayed byte for byte.
    let first = post_keyed(server, "order-1", SEED_TRANSFER).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = post_keyed(server, "order-1", SEED_TRANSFER).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text, "byte for byte");
    assert_eq!(again.header("nixo-version"), Some("2025-01-01"));
    assert_ne!(again.header("request-id"), first.header("request-id"));
    assert_eq!(server.wallet_balance(101).await.0, "99950.00", "applied once");

    // The same key with another body: 422, nothing moves.
    let other = post_keyed(server, "order-1", &transfer("51.00")).await;
    assert_eq!(other.status, 422);
    assert_eq!(other.error(), ("idempotency_key_reused", Some("Idempotency-Key")));
    assert_eq!(server.wallet_balance(101).await.0, "99950.00");

    // A request refused by validation is not stored: the key stays usable.
    let refused = post_keyed(server, "order-2", &transfer("0")).await;
    assert_eq!(refused.status, 400);
    let fixed = post_keyed(server, "order-2", &transfer("2.00")).await;
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert_eq!(fixed.header("idempotent-replayed"), None);
    assert_eq!(server.wallet_balance(101).await.0, "99948.00");

    // A real concurrent burst on one key: one runs, the others wait (409)
    // or replay it; the money moves once.
    let body = transfer("3.00");
    let burst = join_all((0..8).map(|_| post_keyed(server, "order-3", &body))).await;
    let ran: Vec<&Reply> = burst
        .iter()
        .filter(|r| r.status == 200 && r.header("idempotent-replayed").is_none())
        .collect();
    assert_eq!(ran.len(), 1, "exactly one request ran");
    for reply in &burst {
        match reply.status {
            200 => assert_eq!(reply.body["data"]["tx_id"], ran[0].body["data"]["tx_id"]),
            409 => assert_eq!(reply.error(), ("idempotency_key_in_use", Some("Idempotency-Key"))),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(server.wallet_balance(101).await.0, "99945.00");

    // A request in progress holds its key: take order-5 as a running request
    // would, and the same request over HTTP is told to wait.
    let store = server.running().idempotency();
    let account = nixo_core::auth::default_account(server.db(), Environment::Sandbox)
        .await
        .unwrap()
        .unwrap();
    let scope = Scope {
        environment: Environment::Sandbox,
        account_id: account,
        key: "order-5".into(),
    };
    let body = transfer("5.00");
    let hash = request_hash("POST", "/v1/payments/transfer", body.as_bytes());
    let now = server.running().clock.now_ms();
    let Begin::Proceed(_held) = store.begin(&scope, &hash, now).await.unwrap() else {
        panic!("a new key is free");
    };
    let busy = post_keyed(server, "order-5", &body).await;
    assert_eq!(busy.status, 409);
    assert_eq!(busy.error(), ("idempotency_key_in_use", Some("Idempotency-Key")));
    let other = post_keyed(server, "order-5", &transfer("6.00")).await;
    assert_eq!(
        other.error().0,
        "idempotency_key_reused",
        "another body under a held key"
    );

    // Its holder never answers (its request died): once the lease has passed,
    // a retry takes the key over and runs.
    server.running().clock.advance(61_000);
    let taken = post_keyed(server, "order-5", &body).await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(taken.header("idempotent-replayed"), None);
    assert_eq!(server.wallet_balance(101).await.0, "99940.00");
    let again = post_keyed(server, "order-5", &body).await;
    assert_eq!(again.text, taken.text, "the taken-over answer is stored");
    store.flush().await;

    // 24 hours later the purge job deletes the records.
    assert!(count(server, "SELECT COUNT(*) FROM idempotency_keys").await >= 3);
    let before_purge = server.wallet_balance(101).await.0;
    server.running().clock.advance(25 * HOUR_MS);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(server, "SELECT COUNT(*) FROM idempotency_keys").await > 0 {
        assert!(Instant::now() < deadline, "the purge job did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and the job that did it is recorded as succeeded.
    while count(
        server,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'idempotency.purge' AND state = 'succeeded'",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "the purge job was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The records are gone (as a crash before an answer was recorded would
    // lose one): the key is new to the layer, and the ledger still knows its
    // transfer — same transaction, nothing applied twice.
    let after = post_keyed(server, "order-2", &transfer("2.00")).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["data"]["tx_id"], fixed.body["data"]["tx_id"]);
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    assert_eq!(server.wallet_balance(101).await.0, before_purge);
}

on_both_databases!(events_exist_exactly_when_their_change_committed);
async fn events_exist_exactly_when_their_change_committed(server: &TestServer) {
    let account = nixo_core::auth::default_account(server.db(), nixo_core::ledger::Environment::Sandbox)
        .await
        .unwrap()
        .unwrap();
    let before = events::for_account(server.db(), &account).await.unwrap();
    assert_eq!(
        before.len(),
        3,
        "one balance.updated per funding of wallets 101, 102 and 103"
    );
    let transactions = || count(server, "SELECT COUNT(*) FROM transactions");
    let tx_before = transactions().await;

    let reply = server.post("/v1/payments/transfer", &transfer("10.00")).await;
    assert_eq!(reply.status, 200);
    let after = events::for_account(server.db(), &account).await.unwrap();
    assert_eq!(after.len(), 4);
    let event = events::render(after.last().unwrap());
    assert_eq!(event["type"], "balance.updated");
    assert_eq!(event["object"], "event");
    assert_eq!(event["api_version"], "2025-01-01");
    assert_eq!(event["livemode"], false);
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    let balances = server.get("/v1/balances").await;
    assert_eq!(
        event["data"]["object"], balances.body,
        "the snapshot is the balance after the change"
    );

    // The change and its event fail together: a commit that does not
    // happen leaves neither.
    server.running().ledger().fail_next_commit();
    let failed = server.post("/v1/payments/transfer", &transfer("20.00")).await;
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(failed.error().0, "internal_error");
    assert_eq!(events::for_account(server.db(), &account).await.unwrap().len(), 4);
    assert_eq!(transactions().await, tx_before + 1);
    assert_eq!(server.wallet_balance(101).await.0, "99990.00");

    let reply = server.post("/v1/payments/transfer", &transfer("20.00")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(events::for_account(server.db(), &account).await.unwrap().len(), 5);
    assert_eq!(transactions().await, tx_before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_come_in_cursor_pages_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(dir.path(), None, false, None).await;
    for i in 1..=5 {
        let reply = server
            .post("/v1/payments/transfer", &transfer(&format!("{i}.00")))
            .await;
        assert_eq!(reply.status, 200);
    }
    server.running().flush_decisions().await;
    let ids = |reply: &Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = server.get("/v1/rules/decisions?limit=100").await;
    let all = ids(&listed);
    assert_eq!(all.len(), 5);

    let page1 = server.get("/v1/rules/decisions?limit=2").await;
    assert_eq!(page1.body["object"], "list");
    assert_eq!(page1.body["has_more"], true);
    let page2 = server
        .get(&format!(
            "/v1/rules/decisions?limit=2&starting_after={}",
            ids(&page1)[1]
        ))
        .await;
    assert_eq!(page2.body["has_more"], true);
    let page3 = server
        .get(&format!(
            "/v1/rules/decisions?limit=2&starting_after={}",
            ids(&page2)[1]
        ))
        .await;
    assert_eq!(page3.body["has_more"], false);
    let walked: Vec<String> = [ids(&page1), ids(&page2), ids(&page3)].concat();
    assert_eq!(walked, all, "forward pages cover the list once, in order");

    let back = server
        .get(&format!("/v1/rules/decisions?limit=2&ending_before={}", ids(&page2)[0]))
        .await;
    assert_eq!(ids(&back), ids(&page1), "a page back is the previous page");
    assert_eq!(back.body["has_more"], false, "nothing newer than page 1");

    let unknown = server
        .get("/v1/rules/decisions?starting_after=dec_nosuchdecision")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error(), ("resource_not_found", Some("starting_after")));
    // Both cursors: the objects between them.
    let between = server
        .get(&format!(
            "/v1/rules/decisions?starting_after={}&ending_before={}",
            all[0], all[4]
        ))
        .await;
    assert_eq!(ids(&between), all[1..4].to_vec());
    assert_eq!(between.body["has_more"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_allow_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(dir.path(), None, false, None).await;
    let healthz = server.ops_get("/healthz").await;
    assert_eq!((healthz.status, healthz.body["status"].as_str()), (200, Some("ok")));
    let readyz = server.ops_get("/readyz").await;
    assert_eq!((readyz.status, readyz.body["status"].as_str()), (200, Some("ready")));

    let reply = server.post("/v1/payments/transfer", &transfer("1.00")).await;
    assert_eq!(reply.status, 200);
    let metrics = server
        .client
        .get(format!("{}/metrics", server.ops_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for series in [
        r#"nixo_http_requests_total{route="/v1/payments/transfer",method="POST",status="200"}"#,
        "nixo_http_request_duration_seconds_bucket",
        r#"nixo_rule_decisions_total{plugin="fraud-check",outcome="allow"}"#,
        r#"nixo_ledger_transactions_total{kind="transfer",status="SETTLED"}"#,
        r#"nixo_jobs{state="available"}"#,
        r#"nixo_db_pool_connections{state="idle"}"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // Where the transfer's time went, stage by stage (the edge's stages when
    // the gateway runs in this process rather than on Spin).
    let mut stages = vec![
        "core.admit",
        "idempotency.begin",
        "idempotency.complete",
        "transfer.checks",
        "transfer.rules",
        "transfer.ledger",
    ];
    if server.spin.is_none() {
        stages.extend([
            "edge.request",
            "edge.instantiate",
            "edge.core_call",
            "edge.guest_request",
            "edge.guest_response",
        ]);
    }
    // Inside transfer.ledger, the SQLite writer's own stages (its group
    // commits are counted only on SQLite).
    if text.contains("nixo_ledger_group_commits_total") {
        stages.extend(["ledger.queue", "ledger.apply", "ledger.commit", "ledger.reply"]);
    }
    for stage in stages {
        let count = format!("nixo_stage_duration_seconds_count{{stage=\"{stage}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&count));
        let n: f64 = line
            .and_then(|l| l[count.len()..].parse().ok())
            .unwrap_or_else(|| panic!("missing {count} in:\n{text}"));
        assert!(n >= 1.0, "{line:?}");
    }

    // A known path with another method: 405 naming the methods it takes.
    let wrong = server
        .send("GET", "/v1/payments/transfer", Some(&server.key.clone()), None)
        .await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_with_the_reason_when_the_database_is_gone() {
    let Some(pg) = PgDatabase::create("readyz").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(dir.path(), None, false, Some(pg.url.clone())).await;
    let ready = server.ops_get("/readyz").await;
    assert_eq!(ready.status, 200);
    server.db().pool.close().await;
    let gone = server.ops_get("/readyz").await;
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert_eq!(gone.body["status"], "not_ready");
    assert!(gone.body["reasons"][0].as_str().unwrap().contains("database"));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_share_idempotency_keys() {
    use nixo_core::server::ServeConfig;
    let Some(pg) = PgDatabase::create("idempotency_replicas").await else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &std::path::Path| ServeConfig {
        database_url: Some(pg.url.clone()),
        ..ServeConfig::ephemeral(dir)
    };
    let a = nixo_tests::start_with(config(dir_a.path()), None).await;
    // Replicas share the database and the secrets (pepper, signing secret).
    std::fs::copy(dir_a.path().join("secrets.json"), dir_b.path().join("secrets.json")).unwrap();
    let b = nixo_tests::start_with(config(dir_b.path()), Some(a.key.clone())).await;

    // The same key sent to both replicas at once: one request runs.
    let body = transfer("7.00");
    let sends = (0..8).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        post_keyed(server, "replicated-1", &body)
    });
    let replies = join_all(sends).await;
    let ran = replies
        .iter()
        .filter(|r| r.status == 200 && r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(ran, 1, "exactly one replica ran it");
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 409));
    // A retry on the other replica replays what the first answered.
    let first = post_keyed(&a, "replicated-2", &transfer("1.00")).await;
    let retry = post_keyed(&b, "replicated-2", &transfer("1.00")).await;
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.text, first.text);
    assert_eq!(a.wallet_balance(101).await.0, "99992.00", "each key moved money once");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_has_one_server_and_its_answers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(dir.path(), None, false, None).await;
    let first = post_keyed(&server, "restart-1", &transfer("4.00")).await;
    assert_eq!(first.status, 200);

    // A second server on the same SQLite database is refused.
    let second = nixo_core::server::start(nixo_core::server::ServeConfig::ephemeral(dir.path())).await;
    let why = second.err().expect("refused").to_string();
    assert!(why.contains("another nixo serve"), "{why}");

    // The answer was written behind; after a restart it is read back.
    let key = server.key.clone();
    server.stop().await;
    let server = nixo_tests::start_with(nixo_core::server::ServeConfig::ephemeral(dir.path()), Some(key)).await;
    let again = post_keyed(&server, "restart-1", &transfer("4.00")).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    let other = post_keyed(&server, "restart-1", &transfer("5.00")).await;
    assert_eq!(other.error().0, "idempotency_key_reused");
    assert_eq!(server.wallet_balance(101).await.0, "99996.00");
    server.stop().await;
}

/// On PostgreSQL a request holds its key for `TABLE_LEASE_MS` unless it
/// renews it: a replica that died mid-request frees its keys that soon, and
/// a request that runs long keeps its key by renewing (the layer renews
/// every `TABLE_LEASE_RENEW_MS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lease_runs_out_unless_renewed() {
    use nixo_core::idempotency::{Store, TABLE_LEASE_MS, TABLE_LEASE_RENEW_MS};
    let Some(pg) = PgDatabase::create("table_lease").await else {
        return;
    };
    assert!(i64::try_from(TABLE_LEASE_RENEW_MS).unwrap() * 3 <= TABLE_LEASE_MS);
    let db = nixo_core::db::Db::open(&pg.url).await.unwrap();
    let ledger = nixo_core::ledger::Ledger::new(db.clone()).await.unwrap();
    let store = Store::open(&ledger, 0).await.unwrap();
    assert!(store.renews_leases(), "the table path renews");
    let scope = Scope {
        environment: Environment::Sandbox,
        account_id: "acct_lease".into(),
        key: "lease-1".into(),
    };
    let t0 = chrono::Utc::now().timestamp_millis();
    let Begin::Proceed(first) = store.begin(&scope, "h", t0).await.unwrap() else {
        panic!("the first request takes the key");
    };
    let at = |ms: i64| t0 + ms;
    assert_eq!(
        store.begin(&scope, "h", at(TABLE_LEASE_MS - 1)).await.unwrap(),
        Begin::InProgress
    );
    // Renewed halfway through: still held past the first lease's end.
    assert!(store.renew(&first, at(TABLE_LEASE_MS / 2)).await.unwrap());
    assert_eq!(
        store.begin(&scope, "h", at(TABLE_LEASE_MS + 1)).await.unwrap(),
        Begin::InProgress
    );
    // Not renewed again (its replica died): a retry takes the key over, and
    // the old holder can neither renew nor store an answer.
    let Begin::Proceed(_second) = store.begin(&scope, "h", at(TABLE_LEASE_MS * 3 / 2 + 1)).await.unwrap() else {
        panic!("a retry takes over a lease that ran out");
    };
    assert!(!store.renew(&first, at(TABLE_LEASE_MS * 2)).await.unwrap());
    db.close().await;
}
