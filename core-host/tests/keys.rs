//! `nixo keys` against a running server: created keys work, listings never
//! show a key, a rolled key works until its grace period ends, a revoked key
//! stops working at once.

use nixo_core::server::{self, ServeConfig};
use std::path::Path;
use std::process::Command;

const NIXO: &str = env!("CARGO_BIN_EXE_nixo");

fn keys(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(NIXO)
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The key id a `create` or `roll` reported on stderr.
fn key_id(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .expect("a key id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_be_created_listed_rolled_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let running = server::start(ServeConfig::ephemeral(dir.path())).await.unwrap();
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let status = |key: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}/v1/balances"))
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let (ok, first, err) = keys(dir.path(), &["create"]);
    assert!(ok, "{err}");
    assert!(first.starts_with("sk_sandbox_"));
    let first_id = key_id(&err);
    assert_eq!(status(first.clone()).await, 200);

    let (ok, listing, _) = keys(dir.path(), &["list"]);
    assert!(ok);
    assert_eq!(
        listing.lines().count(),
        2,
        "the bootstrap key and the new one: {listing}"
    );
    assert!(!listing.contains(&first), "a listing never shows a key");
    assert!(listing.contains(&first_id) && listing.contains("active"));

    let (ok, second, err) = keys(dir.path(), &["roll", &first_id, "--grace-seconds", "1"]);
    assert!(ok, "{err}");
    assert_eq!(
        status(first.clone()).await,
        200,
        "the old key works during the grace period"
    );
    assert_eq!(status(second.clone()).await, 200);
    // The edge cached the old key's record before the roll: the new expiry
    // reaches it with the next lookup, within the key cache's lifetime.
    refused_within_cache_lifetime(&status, &first, "and not after it").await;

    let second_id = key_id(err.split("new key").nth(1).unwrap());
    let (ok, _, err) = keys(dir.path(), &["revoke", &second_id]);
    assert!(ok, "{err}");
    refused_within_cache_lifetime(&status, &second, "revocation").await;
    let (ok, _, _) = keys(dir.path(), &["revoke", &second_id]);
    assert!(!ok, "revoking twice says so");
    running.stop().await.unwrap();
}

/// Polls with `key` until the edge answers 401; fails if that takes longer
/// than the edge's key cache lifetime (plus a margin).
async fn refused_within_cache_lifetime<F, Fut>(status: &F, key: &str, what: &str)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let limit = std::time::Duration::from_secs(nixo_api::access::KEY_CACHE_TTL_S as u64 + 2);
    let started = std::time::Instant::now();
    loop {
        match status(key.to_string()).await {
            401 => return,
            200 => assert!(started.elapsed() < limit, "{what}: the key still works after {limit:?}"),
            other => panic!("{what}: unexpected status {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
