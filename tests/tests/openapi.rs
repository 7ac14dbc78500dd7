//! The OpenAPI document: generated from the routes and types, committed as
//! `docs/openapi.json`, served without a key through the gateway, and in
//! step with the rules the gateway enforces.

use nixo_api::schema::{self, ROUTES};
use nixo_api::types::{TRANSFER_FIELDS, TRANSFER_REQUIRED};
use nixo_core::api::{openapi, openapi_document};
use nixo_tests::{SEED_TRANSFER, start};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[test]
fn the_committed_document_is_the_generated_one() {
    let committed = std::fs::read_to_string(COMMITTED).unwrap();
    let generated = openapi::render(&openapi_document());
    assert!(
        committed == generated,
        "docs/openapi.json is stale; regenerate it with\n    cargo run -p nixo-core --bin nixo -- openapi > docs/openapi.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_a_key_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    let reply = server.send("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, openapi_document());
    assert_eq!(reply.body["openapi"], "3.1.0");
    assert!(reply.header("request-id").unwrap().starts_with("req_"));
    // It is not a way around validation.
    let odd = server.send("GET", "/v1/openapi.json?x=1", None, None).await;
    assert_eq!(odd.status, 400);
    assert_eq!(odd.error(), ("invalid_request", Some("x")));
    server.stop().await;
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn documented_requests_follow_the_gateways_rules() {
    let doc = openapi_document();
    // Every route the gateway knows is documented with its method, and no other.
    let mut documented = openapi::operations(&doc);
    let mut known: Vec<(String, String)> = ROUTES
        .iter()
        .filter(|r| r.documented)
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    documented.sort();
    known.sort();
    assert_eq!(documented, known);

    // The transfer body: the same fields, the same required ones, the
    // document's example accepted by the parser.
    let body = &doc["components"]["schemas"]["TransferBody"];
    let fields: BTreeSet<String> = TRANSFER_FIELDS.iter().map(|f| f.to_string()).collect();
    assert_eq!(property_names(body), fields);
    let required: BTreeSet<String> = body["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(required, TRANSFER_REQUIRED.iter().map(|f| f.to_string()).collect());
    assert_eq!(body["additionalProperties"], false);
    let example = serde_json::to_vec(&body["example"]).unwrap();
    schema::transfer_request(&example).expect("the documented example is valid");
    assert_eq!(
        body["example"],
        serde_json::from_str::<Value>(SEED_TRANSFER).unwrap(),
        "the Nexbit document's example, verbatim"
    );

    // The account bodies: the parsers' fields, and examples they accept.
    for (name, fields) in [
        ("AccountCreateBody", &nixo_api::accounts::CREATE_FIELDS[..]),
        ("AccountUpdateBody", &nixo_api::accounts::UPDATE_FIELDS[..]),
    ] {
        let body = &doc["components"]["schemas"][name];
        let known: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
        assert_eq!(property_names(body), known, "{name}");
        let example = serde_json::to_vec(&body["example"]).unwrap();
        let parsed = if name == "AccountCreateBody" {
            nixo_api::accounts::create_request(&example).map(drop)
        } else {
            nixo_api::accounts::update_request(&example).map(drop)
        };
        parsed.unwrap_or_else(|e| panic!("the {name} example is valid: {e:?}"));
    }

    // The event types an endpoint may subscribe to, as the parser knows them.
    let names: BTreeSet<String> = doc["components"]["schemas"]["EventTypeName"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let known: BTreeSet<String> = nixo_api::webhooks::EVENT_TYPES
        .iter()
        .chain(&["*"])
        .map(|t| t.to_string())
        .collect();
    assert_eq!(names, known);

    // The deposit and withdrawal bodies: the parser's fields, and the
    // Nexbit document's examples, verbatim and accepted.
    let transact = &doc["components"]["schemas"]["TransactBody"]["oneOf"];
    for (variant, fields, example) in [
        (
            &transact[0],
            &nixo_api::payments::DEPOSIT_FIELDS[..],
            json!({"type": "deposit", "amount": 100, "currency": "KES", "phone_number": "254712345678"}),
        ),
        (
            &transact[1],
            &nixo_api::payments::WITHDRAWAL_FIELDS[..],
            json!({"type": "withdrawal", "from_wallet": 101, "amount": 2500, "currency": "KES",
                   "destination": "254712345678", "metadata": {"gateway": "mpesa"}}),
        ),
    ] {
        let known: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
        assert_eq!(property_names(variant), known, "{}", variant["title"]);
        assert_eq!(variant["example"], example);
        nixo_api::payments::transact_request(&serde_json::to_vec(&example).unwrap())
            .unwrap_or_else(|e| panic!("the {} example is valid: {e:?}", variant["title"]));
    }

    // Query parameters: each documented one is known to the parser, and an
    // undocumented one is refused.
    for route in ROUTES.iter().filter(|r| r.method == "GET" && r.documented) {
        let op = &doc["paths"][route.path]["get"];
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let transactions = route.path.starts_with("/v1/transactions");
        for name in &params {
            let sample = match *name {
                n if n.contains("_after") || n.contains("_before") => "x1",
                "status" if transactions => "settled",
                "status" => "failed",
                "currency" => "USD",
                "type" if transactions => "transfer",
                "type" => "payout.created",
                "verification_status" => "verified",
                "open" => "true",
                "reason" => "velocity_1h",
                "format" => "csv",
                // Amounts are read in a currency's units.
                n if n.starts_with("amount[") => "1.00&currency=USD",
                _ => "1",
            };
            // The export's one required parameter.
            let required = if route.path.ends_with("/export") && *name != "format" {
                "&format=csv"
            } else {
                ""
            };
            let outcome = schema::validate(route, Some(&format!("{name}={sample}{required}")), b"");
            assert!(
                outcome.is_ok(),
                "{} documents {name}, the gateway refuses it: {outcome:?}",
                route.path
            );
        }
        let unknown = schema::validate(route, Some("undocumented=1"), b"").unwrap_err();
        assert_eq!(unknown.field, "undocumented", "{}", route.path);
    }

    // Every operation documents the errors every request can meet.
    for (method, path) in openapi::operations(&doc) {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        assert!(op["responses"]["500"].is_object(), "{method} {path}");
        if path != "/v1/openapi.json" {
            for status in ["400", "401", "403", "429"] {
                assert!(op["responses"][status].is_object(), "{method} {path} {status}");
            }
        }
    }
}
