//! Hostile input at every door: every route of the API (and the callback
//! doors Daraja uses) with every method, each sent a list of hostile
//! requests — oversized and deeply nested JSON, invalid UTF-8, numbers of
//! 400 digits and huge exponents, duplicate keys, negative zero, unknown
//! fields, bodies that are not objects, huge headers and query strings.
//! Every answer must come within a bounded time, never be a 5xx, and every
//! 4xx must be a structured error (`{"error":{"code","message"}}`); a body
//! that is hostile is never accepted. The test prints what it tried.
//! (Slow clients are `edge_abuse.rs`'s.)

use nixo_api::schema::ROUTES;
use nixo_core::server::ServeConfig;
use nixo_tests::start_with;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long any answer may take.
const ANSWER_WITHIN_MS: u64 = 10_000;
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A hostile request: a name, a body, and extra headers or query.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    query: String,
    header: Option<(&'static str, String)>,
    /// Whether the body is hostile (a route that takes a body must refuse it).
    hostile_body: bool,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        body: body.into(),
        query: String::new(),
        header: None,
        hostile_body: true,
    }
}

fn cases() -> Vec<Case> {
    let transfer = |amount: &str| {
        format!(r#"{{"from_wallet":101,"to_wallet":102,"amount":{amount},"currency":"KES"}}"#).into_bytes()
    };
    let mut invalid_utf8 =
        br#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES","metadata":{"n":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let mut oversized =
        br#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES","metadata":{"n":""#.to_vec();
    oversized.extend(std::iter::repeat_n(b'x', 2 << 20));
    oversized.extend_from_slice(br#""}}"#);
    vec![
        case("oversized JSON (2 MiB)", oversized),
        case(
            "deeply nested arrays (100,000 levels)",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        case(
            "deeply nested objects (10,000 levels)",
            format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)),
        ),
        case("invalid UTF-8 in a string", invalid_utf8),
        case("a number of 400 digits", transfer(&"9".repeat(400))),
        case("a decimal of 400 digits", transfer(&format!("1.{}", "1".repeat(399)))),
        case("an exponent of 400", transfer("1e400")),
        case("an exponent of -400", transfer("1e-400")),
        case("negative zero", transfer("-0")),
        case("negative zero text", transfer(r#""-0.00""#)),
        case("NaN", transfer("NaN")),
        case(
            "duplicate keys",
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","amount":"90000.00","currency":"KES"}"#,
        ),
        case(
            "unknown fields",
            r#"{"from_wallet":101,"to_wallet":102,"amount":"1.00","currency":"KES","debug":true,"__proto__":{}}"#,
        ),
        case("an array, not an object", r#"[{"amount":"1.00"}]"#),
        case("null", "null"),
        case("not JSON", "amount=1.00&currency=KES"),
        case("truncated JSON", r#"{"from_wallet":101,"to_wallet":"#),
        case("a NUL byte", b"{\"amount\":\"1.00\0\"}".to_vec()),
        Case {
            name: "a 64 KiB header",
            body: Vec::new(),
            query: String::new(),
            header: Some(("x-filler", "a".repeat(64 << 10))),
            hostile_body: false,
        },
        Case {
            name: "a 32 KiB query string",
            body: Vec::new(),
            query: format!("?limit=1&{}", "x=1&".repeat(8 << 10)),
            header: None,
            hostile_body: false,
        },
        Case {
            name: "a query parameter of 400 digits",
            body: Vec::new(),
            query: format!("?limit={}", "9".repeat(400)),
            header: None,
            hostile_body: false,
        },
    ]
}

/// A concrete path for a route template: each `{param}` an id that exists
/// nowhere (or a wrong callback token).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "zz_not_a_real_id_1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_method_answers_hostile_input_with_a_structured_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::ephemeral(dir.path());
    // A test of input, not of rate limits.
    for (name, value) in [("rate_limit_sandbox", "1000000/1"), ("rate_limit_public", "1000000/1")] {
        config.edge_variables.insert(name.into(), value.into());
    }
    let server = start_with(config, None).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(ANSWER_WITHIN_MS))
        .build()
        .unwrap();
    let mut paths: Vec<String> = ROUTES.iter().map(|r| concrete(r.path)).collect();
    paths.dedup();
    let cases = cases();
    // route × method × case → status, printed as a table at the end.
    let mut table: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut tried = 0;
    for path in &paths {
        for method in METHODS {
            for case in &cases {
                tried += 1;
                let url = format!("{}{path}{}", server.base, case.query);
                let mut request = client
                    .request(method.parse().unwrap(), &url)
                    .bearer_auth(&server.key)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("hostile-{tried}"));
                if let Some((name, value)) = &case.header {
                    request = request.header(*name, value);
                }
                if !case.body.is_empty() {
                    request = request.body(case.body.clone());
                }
                let started = Instant::now();
                let what = format!("{method} {path} with {}", case.name);
                let short = |text: String| text.chars().take(300).collect::<String>();
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(err) => {
                        failures.push(short(format!("{what}: no answer within {ANSWER_WITHIN_MS} ms ({err})")));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                *table
                    .entry(case.name.to_string())
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                if status >= 500 {
                    failures.push(short(format!("{what}: {status} {}", String::from_utf8_lossy(&body))));
                    continue;
                }
                if (400..500).contains(&status) {
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if !(json["error"]["code"].is_string() && json["error"]["message"].is_string()) {
                        failures.push(format!(
                            "{what}: {status} without a structured error: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        ));
                    }
                } else if case.hostile_body && method != "GET" && method != "OPTIONS" {
                    failures.push(format!(
                        "{what}: accepted with {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
                assert!(started.elapsed() < Duration::from_millis(ANSWER_WITHIN_MS));
            }
        }
    }
    println!(
        "hostile input: {tried} requests ({} paths × {} methods × {} cases); answers per case:",
        paths.len(),
        METHODS.len(),
        cases.len()
    );
    for (case, statuses) in &table {
        let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        println!("  {case:<40} {}", statuses.join(" "));
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} hostile requests were mishandled:\n{}",
        failures.len(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    // The server still serves, and nothing hostile moved money.
    let reply = server.get("/v1/balances?wallet_id=101").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["available"][0]["amount"].to_string(), "100000.00");
    server.stop().await;
}
