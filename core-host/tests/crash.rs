//! Crash safety: `nixo serve` is killed with SIGKILL in the middle of a load
//! of transfers and restarted on the same data directory. Every transfer it
//! acknowledged is there exactly once, nothing is half-applied, and
//! `nixo ledger verify` passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;

use common::{spawn_with, verify};

const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transfers_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_with(dir.path(), &[]);
    let key = server.key.clone().expect("first start prints the key");
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, key, stop) = (client.clone(), server.base.clone(), key.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (from, to) = if c % 2 == 0 { (101, 102) } else { (102, 101) };
                let body = format!(r#"{{"from_wallet":{from},"to_wallet":{to},"amount":"1.00","currency":"KES"}}"#);
                let sent = client
                    .post(format!("{base}/v1/payments/transfer"))
                    .header("authorization", format!("Bearer {key}"))
                    .header("idempotency-key", format!("crash-{c}-{n}"))
                    .body(body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                if resp.status().is_success() {
                    let Ok(json) = resp.json::<serde_json::Value>().await else {
                        break;
                    };
                    acknowledged.push(json["data"]["tx_id"].as_str().unwrap().parse::<i64>().unwrap());
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for c in clients {
        acknowledged.extend(c.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "the load ran: {} acknowledged",
        acknowledged.len()
    );

    // Restart on the same directory: the ledger is whole.
    let (sound, report) = verify(dir.path(), &[]);
    assert!(sound, "{report}");
    let mut server = spawn_with(dir.path(), &[]);
    assert!(server.key.is_none(), "a restart does not bootstrap again");
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("nixo.db").display()))
        .await
        .unwrap();
    for tx_id in &acknowledged {
        let row: (String, i64) = sqlx::query_as(
            "SELECT status, (SELECT COUNT(*) FROM transfers WHERE transaction_id = t.id) FROM transactions t WHERE id = ?",
        )
        .bind(tx_id)
        .fetch_one(&db)
        .await
        .unwrap_or_else(|e| panic!("acknowledged transaction {tx_id} is missing: {e}"));
        assert!(row.0 == "SETTLED" || row.0 == "PENDING_REVIEW", "{tx_id}: {}", row.0);
        assert_eq!(row.1, 1, "transaction {tx_id} has exactly its one transfer");
    }
    // Money between the two wallets is conserved, holds included.
    let total: i64 = sqlx::query_scalar(
        "SELECT SUM(credits_posted - debits_posted + credits_pending - debits_pending) FROM ledger_accounts WHERE id IN (101, 102)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(total, 2 * 10_000_000);
    db.close().await;

    // And it still serves.
    let resp = client
        .get(format!("{}/v1/balances", server.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
