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
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(status(first.clone()).await, 401, "and not after it");

    let second_id = key_id(err.split("new key").nth(1).unwrap());
    let (ok, _, err) = keys(dir.path(), &["revoke", &second_id]);
    assert!(ok, "{err}");
    assert_eq!(status(second.clone()).await, 401, "revocation takes effect at once");
    let (ok, _, _) = keys(dir.path(), &["revoke", &second_id]);
    assert!(!ok, "revoking twice says so");
    running.stop().await.unwrap();
}
