//! Transactions over HTTP through the gateway: each filter proven on seeded
//! data (amount and date edges included), one transaction with its legs,
//! fee and exchange rate, pages forward and back losing and repeating
//! nothing while new rows arrive, incoming transfers seen by the receiver,
//! and the CSV export parsed back equal to the list.

use nixo_core::ledger::fx;
use nixo_core::money::Currency;
use nixo_core::server::ServeConfig;
use nixo_tests::{TestServer, start_with};
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn transfer(server: &TestServer, from: i64, to: i64, amount: &str, currency: &str) -> i64 {
    let body = json!({ "from_wallet": from, "to_wallet": to, "amount": amount, "currency": currency });
    let reply = server.post("/v1/payments/transfer", &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["data"]["tx_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a transaction id in {}", reply.body))
}

fn ids(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

async fn list(server: &TestServer, query: &str) -> Value {
    let reply = server.get(&format!("/v1/transactions?{query}")).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.body
}

/// A server whose sandbox rate limit leaves these tests' bursts alone.
async fn server_on(dir: &std::path::Path, database_url: Option<String>) -> TestServer {
    let mut config = ServeConfig {
        database_url,
        ..ServeConfig::ephemeral(dir)
    };
    config
        .edge_variables
        .insert("rate_limit_sandbox".into(), "100000/1".into());
    start_with(config, None).await
}

/// The CSV export for `query` (after `format=csv`), and the ids of its rows.
async fn export(server: &TestServer, query: &str) -> (String, Vec<i64>) {
    let reply = server
        .client
        .get(format!("{}/v1/transactions/export?format=csv&{query}", server.base))
        .header("authorization", format!("Bearer {}", server.key))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let text = reply.text().await.unwrap();
    let ids = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    (text, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_pages_details_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(dir.path(), None).await;
    let (kes, usd) = (Currency::from_code("KES").unwrap(), Currency::from_code("USD").unwrap());
    fx::set_rate(server.db(), kes, usd, "0.0077".parse().unwrap(), 0)
        .await
        .unwrap();
    fx::set_rate(server.db(), usd, kes, "129.50".parse().unwrap(), 0)
        .await
        .unwrap();

    let small = transfer(&server, 101, 102, "10.00", "KES").await;
    let middle = transfer(&server, 101, 102, "20.00", "KES").await;
    let large = transfer(&server, 101, 102, "30.00", "KES").await;
    let converted = transfer(&server, 101, 103, "1000.00", "KES").await;
    let dollars = transfer(&server, 103, 101, "5.00", "USD").await;
    let mine = [small, middle, large, converted, dollars];

    // Everything, newest first: the sandbox's three funding transactions, then these.
    let all = list(&server, "limit=100").await;
    assert_eq!(ids(&all)[..5], mine.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(ids(&list(&server, "type=funding").await).len(), 3);
    let all = list(&server, "type=transfer&limit=100").await;
    assert_eq!(all["data"][0]["object"], "transaction");
    assert_eq!(all["data"][0]["direction"], "out");
    assert_eq!(all["data"][0]["status"], "settled");

    // Each filter.
    assert_eq!(ids(&list(&server, "currency=USD&type=transfer").await), vec![dollars]);
    assert_eq!(ids(&list(&server, "type=transfer&limit=100").await).len(), 5);
    assert_eq!(ids(&list(&server, "type=payout").await), Vec::<i64>::new());
    assert_eq!(ids(&list(&server, "status=settled&limit=100").await).len(), 8);
    assert_eq!(ids(&list(&server, "status=declined").await), Vec::<i64>::new());
    // Amount edges are inclusive.
    assert_eq!(
        ids(&list(&server, "currency=KES&amount[gte]=20.00&amount[lte]=30").await),
        vec![large, middle]
    );
    assert_eq!(
        ids(&list(&server, "currency=KES&amount%5Blte%5D=10.00").await),
        vec![small]
    );
    assert_eq!(
        ids(&list(&server, "currency=KES&amount[gte]=30.01&amount[lte]=999.99").await),
        Vec::<i64>::new()
    );
    // The wallet filter: from or to it.
    assert_eq!(
        ids(&list(&server, "wallet=103&type=transfer").await),
        vec![dollars, converted]
    );
    // Dates: everything is from this second or the one before; none from tomorrow.
    let created = all["data"][4]["created"].as_i64().unwrap();
    assert_eq!(
        ids(&list(&server, &format!("type=transfer&created[gte]={created}&limit=100")).await).len(),
        5
    );
    let before_any = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["created"].as_i64().unwrap())
        .min()
        .unwrap()
        - 1;
    let funding_only = list(&server, &format!("created[lte]={before_any}&type=transfer")).await;
    assert_eq!(ids(&funding_only), Vec::<i64>::new());
    assert_eq!(
        ids(&list(&server, &format!("created[gte]={}", created + 86_400)).await),
        Vec::<i64>::new()
    );
    // Refusals name their parameter.
    let no_currency = server.get("/v1/transactions?amount[gte]=1").await;
    assert_eq!(no_currency.error(), ("invalid_request", Some("amount[gte]")));
    let not_mine = server.get("/v1/transactions?wallet=1").await;
    assert_eq!((not_mine.status, not_mine.error().1), (404, Some("wallet")));

    // One, with legs, fee and exchange rate.
    let one = server.get(&format!("/v1/transactions/{converted}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["exchange"]["rate"], "0.0077");
    assert_eq!(one.body["exchange"]["source_amount"].to_string(), "1000.00");
    assert_eq!(one.body["exchange"]["target_currency"], "USD");
    let legs = one.body["legs"].as_array().unwrap();
    assert!(legs.len() >= 2, "{}", one.body);
    assert!(legs.iter().any(|l| l["debit"] == "101"), "{}", one.body);
    assert!(legs.iter().any(|l| l["credit"] == "103"), "{}", one.body);
    assert_eq!(server.get("/v1/transactions/99999999").await.status, 404);
    assert_eq!(server.get("/v1/transactions/abc").await.status, 404);

    // Pages of 2 forward, while new transactions arrive: nothing lost or repeated.
    let mut seen = Vec::new();
    let mut page = list(&server, "type=transfer&limit=2").await;
    let mut arrived = Vec::new();
    loop {
        seen.extend(ids(&page));
        arrived.push(transfer(&server, 102, 101, "1.00", "KES").await);
        if page["has_more"] == false {
            break;
        }
        let last = seen.last().unwrap();
        page = list(&server, &format!("type=transfer&limit=2&starting_after={last}")).await;
    }
    assert_eq!(seen, mine.iter().rev().copied().collect::<Vec<_>>());
    // And back from the oldest: the same rows, newer ones included now.
    let mut back = Vec::new();
    let mut before = *seen.last().unwrap();
    back.push(before);
    loop {
        let page = list(&server, &format!("type=transfer&limit=2&ending_before={before}")).await;
        let got = ids(&page);
        if got.is_empty() {
            break;
        }
        back.splice(0..0, got.clone());
        before = got[0];
        if page["has_more"] == false {
            break;
        }
    }
    let expected: Vec<i64> = arrived.iter().rev().chain(mine.iter().rev()).copied().collect();
    assert_eq!(back, expected);
    assert_eq!(back.iter().collect::<BTreeSet<_>>().len(), back.len());

    // A payout with a fee (M-Pesa 1 %; this number's result comes late, so
    // it stays processing while the export and the list are read).
    let payout = json!({ "amount": "100", "currency": "KES",
        "recipient": { "full_name": "Late", "phone_number": "254700000007" } });
    let paid = server.post("/v1/payouts", &payout.to_string()).await;
    assert_eq!(paid.status, 200, "{}", paid.body);

    // The export, parsed back, is the list.
    let response = server
        .client
        .get(format!(
            "{}/v1/transactions/export?format=csv&currency=KES",
            server.base
        ))
        .header("authorization", format!("Bearer {}", server.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        nixo_core::services::transactions::CSV_HEADER.trim_end()
    );
    let listed = list(&server, "currency=KES&limit=100").await;
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), listed["data"].as_array().unwrap().len());
    for (row, tx) in rows.iter().zip(listed["data"].as_array().unwrap()) {
        assert_eq!(row[0], tx["id"].to_string());
        assert_eq!(row[2], tx["type"].as_str().unwrap());
        assert_eq!(row[3], tx["status"].as_str().unwrap());
        assert_eq!(row[4], tx["direction"].as_str().unwrap());
        assert_eq!(row[5], tx["amount"].to_string(), "amounts are exact decimals");
        assert_eq!(row[6], "KES");
        assert_eq!(row[7], tx["fee"].to_string());
    }
    let fees: Vec<&str> = rows.iter().filter(|r| r[2] == "payout").map(|r| r[7]).collect();
    assert_eq!(fees, ["1.00"], "the payout's fee");
    // A status filter follows a status as it changes: a payout held for
    // review, then canceled.
    let held = json!({ "amount": "10000.00", "currency": "USD",
        "recipient": { "full_name": "Big", "account_iban": "MA64011519000001205000534921" } });
    let held = server.post("/v1/payouts", &held.to_string()).await;
    assert_eq!(held.body["status"], "pending", "{}", held.body);
    assert_eq!(ids(&list(&server, "status=pending_review").await).len(), 1);
    let canceled = server
        .send(
            "DELETE",
            &format!("/v1/payouts/{}/cancel", held.body["id"].as_str().unwrap()),
            Some(&server.key.clone()),
            None,
        )
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.body);
    assert_eq!(ids(&list(&server, "status=pending_review").await).len(), 0);
    assert_eq!(ids(&list(&server, "status=voided&type=payout").await).len(), 1);
    // The wallet filter walks its own index, in the list and the export alike.
    let (_, exported) = export(&server, "wallet=103").await;
    let listed = ids(&list(&server, "wallet=103&limit=100").await);
    assert_eq!(exported, listed);
    assert!(listed.contains(&dollars) && listed.contains(&converted) && !listed.contains(&small));
    let missing = server.get("/v1/transactions/export?currency=KES").await;
    assert_eq!(missing.error(), ("invalid_request", Some("format")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_sees_an_incoming_transfer_and_others_see_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(dir.path(), None).await;
    let customer = server
        .post("/v1/accounts", r#"{"type":"individual","currencies":["USD"]}"#)
        .await;
    let customer_id = customer.body["id"].as_str().unwrap().to_string();
    let wallet = customer.body["wallets"][0]["id"].as_i64().unwrap();
    let paid = transfer(&server, 103, wallet, "7.25", "USD").await;

    let theirs = server
        .send_with(
            "GET",
            "/v1/transactions",
            &[("Nixo-Account", customer_id.as_str())],
            None,
        )
        .await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert_eq!(ids(&theirs.body), vec![paid]);
    assert_eq!(theirs.body["data"][0]["direction"], "in");
    assert_eq!(theirs.body["data"][0]["amount"].to_string(), "7.25");
    let by_wallet = server
        .send_with(
            "GET",
            &format!("/v1/transactions?wallet={wallet}"),
            &[("Nixo-Account", customer_id.as_str())],
            None,
        )
        .await;
    assert_eq!(ids(&by_wallet.body), vec![paid]);
    let one = server
        .send_with(
            "GET",
            &format!("/v1/transactions/{paid}"),
            &[("Nixo-Account", customer_id.as_str())],
            None,
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.body);

    // The platform made it: it sees it going out.
    let platform = list(&server, "type=transfer&limit=100").await;
    assert_eq!(ids(&platform), vec![paid]);
    assert_eq!(platform["data"][0]["direction"], "out");
    server.stop().await;
}

async fn export_in_batches_equals_the_list(server: &TestServer) {
    let n = 2_345;
    nixo_tests::seed_transfers(server, n, 3).await;
    let (text, exported) = export(server, "type=transfer").await;
    assert_eq!(exported.len() as i64, n, "every row once");
    assert_eq!(exported.iter().collect::<BTreeSet<_>>().len() as i64, n);
    let amounts: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').nth(5).unwrap()).collect();
    assert!(
        amounts.contains(&"0.02") && amounts.contains(&"23.46"),
        "exact decimals"
    );
    // The list, page by page, in the same order.
    let mut listed = Vec::new();
    let mut query = "type=transfer&limit=100".to_string();
    loop {
        let page = list(server, &query).await;
        listed.extend(ids(&page));
        if page["has_more"] == false {
            break;
        }
        query = format!("type=transfer&limit=100&starting_after={}", listed.last().unwrap());
    }
    assert_eq!(exported, listed);
}

nixo_tests::on_both_databases!(export_in_batches_equals_the_list, super::server_on);
