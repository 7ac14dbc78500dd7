//! Hot reload under load: transfers keep succeeding while the fraud rule is
//! replaced in the plugins directory, and the answers show the switch.

use nixo_core::rules::manifest::Manifest;
use nixo_core::server::{self, ServeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOSTILE: &[u8] = include_bytes!(env!("NIXO_TEST_HOSTILE_RULE_WASM"));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_rule_under_load_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    // A load test of reloading, not of rate limits: lift the sandbox default.
    let running = server::start(ServeConfig {
        edge_variables: [("rate_limit_sandbox".to_string(), "1000000/1".to_string())].into(),
        ..ServeConfig::ephemeral(dir.path())
    })
    .await
    .unwrap();
    let key = running.bootstrap.as_ref().unwrap().sandbox_key.clone();
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, base, key, stop) = (client.clone(), base.clone(), key.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = client
                    .post(format!("{base}/v1/payments/transfer"))
                    .header("authorization", format!("Bearer {key}"))
                    .body(r#"{"from_wallet":101,"to_wallet":102,"amount":"0.01","currency":"KES"}"#)
                    .send()
                    .await
                    .expect("the server answers");
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.unwrap();
                assert!(status == 200 || status == 202, "{status}: {body}");
                seen.push(body["data"]["rules_applied"][0].as_str().unwrap().to_string());
            }
            seen
        }));
    }

    tokio::time::sleep(Duration::from_millis(400)).await;
    let plugins = dir.path().join("plugins");
    std::fs::write(plugins.join("fraud-check-v2.wasm"), HOSTILE).unwrap();
    let sha = nixo_core::wasm_cache::sha256_hex(HOSTILE);
    let manifest = Manifest::render("fraud-check", "2.0.0", "fraud-check-v2.wasm", &sha, "fail_closed");
    std::fs::write(plugins.join("fraud-check.toml"), manifest).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let resp = loop {
        let resp = client
            .get(format!("{base}/v1/balances"))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = client
            .post(format!("{base}/v1/payments/transfer"))
            .header("authorization", format!("Bearer {key}"))
            .body(r#"{"from_wallet":102,"to_wallet":101,"amount":"0.01","currency":"KES"}"#)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        if body["data"]["rules_applied"][0] == "Hostile: ALLOW" || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        resp["data"]["rules_applied"][0], "Hostile: ALLOW",
        "the new version serves"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    assert!(
        seen.iter()
            .any(|r| r == "FraudCheck: ALLOW" || r == "FraudCheck: REVIEW"),
        "old version served"
    );
    assert!(
        seen.iter().any(|r| r == "Hostile: ALLOW"),
        "new version served under load"
    );

    // The decision log shows the switch: the new version decided, by its hash.
    let hostile_sha = nixo_core::wasm_cache::sha256_hex(HOSTILE);
    let mut versions = Vec::new();
    for _ in 0..50 {
        let log: serde_json::Value = client
            .get(format!("{base}/v1/rules/decisions?limit=100"))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        versions = log["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["plugin"]["version"].as_str().unwrap().to_string(),
                    d["plugin"]["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if versions.iter().any(|(v, _)| v == "2.0.0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        versions.iter().any(|(v, sha)| v == "2.0.0" && *sha == hostile_sha),
        "{versions:?}"
    );
    running.stop().await.unwrap();
}
