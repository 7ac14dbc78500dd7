//! Abuse at the edge: a client guessing API keys is cut off after a few
//! failures without costing the core a lookup per guess, an unknown key is
//! remembered as unknown, other clients keep being served, the routes that
//! take no key are limited per address, and `X-Forwarded-For` is believed
//! only from a configured proxy. (A test binary of its own: it counts the
//! core's lookups of unknown keys in the process-wide metrics.)

use futures_util::future::join_all;
use nixo_core::server::ServeConfig;
use nixo_tests::{Reply, TestServer, fetch, start_with};
use std::collections::BTreeMap;

/// Lookups of unknown keys the core has answered (`/internal/v1/keys/resolve`
/// with a 4xx; a valid key's refreshes are not counted).
async fn lookups(server: &TestServer) -> u64 {
    let metrics = server
        .client
        .get(format!("{}/metrics", server.ops_base()))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("nixo_http_requests_total{") && l.contains("route=\"/internal/v1/keys/resolve\""))
        .filter(|l| l.contains("status=\"4"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `GET /v1/balances` as the client at `address` (through the trusted
/// proxy's `X-Forwarded-For`), with `key` when given.
async fn balances_as(server: &TestServer, address: &str, key: Option<&str>) -> Reply {
    let mut req = server
        .client
        .get(format!("{}/v1/balances", server.base))
        .header("x-forwarded-for", address);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    fetch(req).await
}

fn guess(n: usize) -> String {
    format!("sk_sandbox_guess{n:016}")
}

fn assert_cut_off(reply: &Reply) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.error().0, "rate_limit_exceeded");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed authentications")
    );
    assert!(
        reply
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_guessing_is_cut_off_per_address_without_core_lookups_or_harm_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        edge_variables: BTreeMap::from([
            ("trusted_proxies".to_string(), "127.0.0.1".to_string()),
            ("auth_failures_per_address".to_string(), "5/3600".to_string()),
            ("rate_limit_public".to_string(), "3/3600".to_string()),
            ("rate_limit_sandbox".to_string(), "100000/1".to_string()),
        ]),
        ..ServeConfig::ephemeral(dir.path())
    };
    let server = start_with(config, None).await;
    let key = server.key.clone();
    let (client, guesser) = ("203.0.113.5", "198.51.100.7");

    assert_eq!(balances_as(&server, client, Some(&key)).await.status, 200);
    let before = lookups(&server).await;

    // Five wrong keys: five 401s, each a core lookup.
    for n in 0..5 {
        let reply = balances_as(&server, guesser, Some(&guess(n))).await;
        assert_eq!(
            (reply.status, reply.error().0),
            (401, "invalid_api_key"),
            "{}",
            reply.body
        );
    }
    assert_eq!(lookups(&server).await, before + 5);

    // Then a flood of guesses, concurrently, while the client goes on: every
    // guess is refused before any lookup, the client is served throughout.
    let guesses = join_all((5..405).map(|n| {
        let server = &server;
        async move { balances_as(server, guesser, Some(&guess(n))).await }
    }));
    let served = async {
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(balances_as(&server, client, Some(&key)).await.status);
        }
        statuses
    };
    let (guesses, served) = tokio::join!(guesses, served);
    guesses.iter().for_each(assert_cut_off);
    assert!(served.iter().all(|s| *s == 200), "{served:?}");
    assert_eq!(lookups(&server).await, before + 5, "no core lookup for a refused guess");

    // No key or a malformed one counts too; a key already cached as valid
    // still works from that address (a NAT shared with a guesser).
    assert_cut_off(&balances_as(&server, guesser, None).await);
    assert_cut_off(&balances_as(&server, guesser, Some("sk_sandbox_short")).await);
    assert_eq!(balances_as(&server, guesser, Some(&key)).await.status, 200);

    // Another address has its own budget, and a repeated unknown key is
    // remembered: three tries, one lookup.
    for _ in 0..3 {
        let reply = balances_as(&server, "192.0.2.1", Some(&guess(9_999))).await;
        assert_eq!((reply.status, reply.error().0), (401, "invalid_api_key"));
    }
    assert_eq!(lookups(&server).await, before + 6);

    // The routes that take no key are limited per address.
    let document = |address: &'static str| {
        let req = server
            .client
            .get(format!("{}/v1/openapi.json", server.base))
            .header("x-forwarded-for", address);
        async move { req.send().await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(document("198.51.100.20").await.status(), 200);
    }
    let refused = document("198.51.100.20").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(document("198.51.100.21").await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_ignored_unless_the_peer_is_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        edge_variables: BTreeMap::from([("auth_failures_per_address".to_string(), "2/3600".to_string())]),
        ..ServeConfig::ephemeral(dir.path())
    };
    let server = start_with(config, None).await;
    assert_eq!(server.get("/v1/balances").await.status, 200);
    // Claiming a new address per request does not buy new budget. (No key
    // at all: failures that need no lookup, so the other test's count of
    // lookups in this process is not disturbed.)
    for n in 0..2 {
        let reply = balances_as(&server, &format!("198.51.100.{n}"), None).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    assert_cut_off(&balances_as(&server, "198.51.100.99", None).await);
    // A key this edge has known as valid is still served, after its cached
    // record went stale too (it is looked up again).
    assert_eq!(server.get("/v1/balances").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(
        nixo_api::access::KEY_CACHE_TTL_S as u64 * 1000 + 200,
    ))
    .await;
    assert_eq!(server.get("/v1/balances").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_in_bounded_time_while_others_are_served() {
    use nixo_core::edge::{BODY_READ_TIMEOUT_MS, HEADER_READ_TIMEOUT_MS};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if nixo_tests::spin::through_spin() {
        // Spin's own HTTP listener holds these connections; what it does
        // with them is Spin's configuration, not the component's.
        eprintln!("embedded gateway only: the slow-client limits are the embedded host's listener's");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(ServeConfig::ephemeral(dir.path()), None).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    // Headers that never end (slow loris), and a body that never arrives.
    let mut headers = tokio::net::TcpStream::connect(&addr).await.unwrap();
    headers
        .write_all(b"GET /v1/balances HTTP/1.1\r\nHost: nixo\r\n")
        .await
        .unwrap();
    let mut body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/payments/transfer HTTP/1.1\r\nHost: nixo\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"from_wallet\"",
        server.key
    );
    body.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();

    // Everyone else is served meanwhile.
    for _ in 0..5 {
        assert_eq!(server.get("/v1/balances").await.status, 200);
    }
    let read_all = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).to_string()
    };
    let slack = Duration::from_secs(5);
    let (cut, timed_out) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS) + slack, read_all(headers)),
        tokio::time::timeout(Duration::from_millis(BODY_READ_TIMEOUT_MS) + slack, async {
            let mut answer = vec![0u8; 4096];
            let n = body.read(&mut answer).await.unwrap_or(0);
            String::from_utf8_lossy(&answer[..n]).to_string()
        }),
    );
    cut.expect("a client that never finishes its headers is disconnected");
    let timed_out = timed_out.expect("a body that never arrives gets an answer");
    assert!(timed_out.starts_with("HTTP/1.1 408"), "{timed_out}");
    assert!(timed_out.contains(r#""code":"invalid_request""#), "{timed_out}");
    assert!(started.elapsed() >= Duration::from_millis(HEADER_READ_TIMEOUT_MS.min(BODY_READ_TIMEOUT_MS)) - slack);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_port_cuts_off_a_client_that_never_finishes_its_headers_while_serving_others() {
    use nixo_core::edge::HEADER_READ_TIMEOUT_MS;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        ServeConfig {
            core_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServeConfig::ephemeral(dir.path())
        },
        None,
    )
    .await;
    let core = server.core_addr();
    let mut slow = tokio::net::TcpStream::connect(core).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: core\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    // Other callers of the core (gateways on Spin) are served meanwhile,
    // on kept-alive connections.
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let reply = client.get(format!("http://{core}/healthz")).send().await.unwrap();
        assert_eq!(reply.status(), 200);
    }
    let slack = Duration::from_secs(5);
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_millis(HEADER_READ_TIMEOUT_MS) + slack,
        slow.read_to_end(&mut answer),
    )
    .await
    .expect("a client that never finishes its headers is disconnected")
    .ok();
    assert!(started.elapsed() >= Duration::from_millis(HEADER_READ_TIMEOUT_MS) - slack);
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("200 OK"), "{answer}");
    server.stop().await;
}
