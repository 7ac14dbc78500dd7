//! `nixo webhooks listen` forwards new events to a local receiver, signed
//! with the secret it prints; `nixo webhooks verify` accepts exactly those
//! signatures. Both run as the real binary against a real server.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{NIXO, spawn_with};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Inbox = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: axum::body::Bytes) -> &'static str {
    let signature = headers
        .get("nixo-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    inbox.lock().unwrap().push((signature.to_string(), body.to_vec()));
    "ok"
}

fn verify(secret: &str, signature: &str, body: &[u8]) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let out = Command::new(NIXO)
        .args([
            "webhooks",
            "verify",
            "--secret",
            secret,
            "--signature",
            signature,
            "--payload-file",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_forwards_signed_events_and_verify_checks_them() {
    let inbox: Inbox = Arc::default();
    let app = Router::new().route("/hook", post(receive)).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_with(dir.path(), &[]);
    let key = server.key.clone().unwrap();
    let mut listen = Command::new(NIXO)
        .args([
            "webhooks",
            "listen",
            "--forward-to",
            &hook,
            "--api-url",
            &server.base,
            "--key",
            &key,
        ])
        .args([
            "--events",
            "payout.created,payout.processing",
            "--max-events",
            "2",
            "--interval-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let mut secret = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(s) = line.strip_prefix("nixo: deliveries are signed with ") {
            secret = Some(s.to_string());
            break;
        }
    }
    let secret = secret.expect("listen prints its secret");
    // Let the listener take its starting point, then make events.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = r#"{"amount":"10.00","currency":"USD","recipient":{"full_name":"Jane","account_iban":"MA64011519000001205000534921"}}"#;
    let created = reqwest::Client::new()
        .post(format!("{}/v1/payouts", server.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let printed: Vec<String> = lines.by_ref().take(2).map(|l| l.unwrap()).collect();
    assert!(listen.wait().unwrap().success(), "stops after --max-events");
    assert!(
        printed[0].contains("payout.created") && printed[0].contains("200"),
        "{printed:?}"
    );
    assert!(printed[1].contains("payout.processing"), "{printed:?}");

    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (signature, body) in &got {
        assert_eq!(verify(&secret, signature, body), (true, "valid".to_string()));
        let mut tampered = body.clone();
        tampered.push(b' ');
        let (ok, said) = verify(&secret, signature, &tampered);
        assert!(!ok && said.contains("no signature matches"), "{said}");
        assert!(!verify("whsec_wrong", signature, body).0);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
