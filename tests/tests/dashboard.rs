//! The risk dashboard over HTTP on the public port: sign-in with a key, the
//! session cookie's attributes, the page's sections, approving a held
//! transfer with the CSRF token (and not without it), a forged or revoked
//! session sent back to sign in.

use nixo_tests::{SEED_TRANSFER, TestServer, start};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(server: &TestServer, cookie: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = client().get(format!("{}/dashboard", server.base));
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    (status, resp.text().await.unwrap(), location)
}

/// Signs in with `key`; the `name=value` cookie pair and the Set-Cookie line.
async fn sign_in(server: &TestServer, key: &str) -> (String, String) {
    let resp = client()
        .post(format!("{}/dashboard/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = set_cookie.split(';').next().unwrap().to_string();
    (pair, set_cookie)
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

async fn post_form(server: &TestServer, path: &str, cookie: &str, body: String) -> (u16, Option<String>) {
    let resp = client()
        .post(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_and_approves_a_held_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    // Signed out: to the sign-in page, which has a labelled key field.
    let (status, _, location) = page(&server, None).await;
    assert_eq!((status, location.as_deref()), (303, Some("/dashboard/login")));
    let login = client()
        .get(format!("{}/dashboard/login", server.base))
        .send()
        .await
        .unwrap();
    let login = login.text().await.unwrap();
    assert!(
        login.contains("<label for=\"key\">") && login.contains("id=\"key\""),
        "{login}"
    );
    let wrong = client()
        .post(format!("{}/dashboard/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=sk_sandbox_0000000000000000000000000000abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let (cookie, set_cookie) = sign_in(&server, &server.key).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "a sandbox session works on plain http: {set_cookie}"
    );
    assert!(!set_cookie.contains(&server.key), "the cookie never holds the key");

    // A transfer held for review (the 21st of the hour) is in the queue.
    for _ in 0..21 {
        server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    }
    let review = server.get("/v1/reviews?open=true").await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, html, _) = page(&server, Some(&cookie)).await;
    assert_eq!(status, 200, "{html}");
    for section in [
        "Balances",
        "Review queue (1)",
        "Rule plugins",
        "Recent decisions",
        "FraudCheck",
    ] {
        assert!(html.contains(section), "{section} missing");
    }
    assert!(html.contains(&format!("data-review=\"{review}\"")));
    assert!(html.contains("<meta name=\"viewport\""));
    assert!(html.contains("<svg role=\"img\""), "the latency chart");
    // 21 fraud decisions in the last hour, counted against the plugin's row.
    assert!(html.contains("<td>21</td>"), "decision count per plugin");

    // Without the page's token (a form posted from elsewhere): refused.
    let action = format!("/dashboard/reviews/{review}/approve");
    let (status, _) = post_form(&server, &action, &cookie, "note=x".into()).await;
    assert_eq!(status, 403);
    let (status, _) = post_form(&server, &action, &cookie, "csrf=0000&note=x".into()).await;
    assert_eq!(status, 403);
    let still = server.get(&format!("/v1/reviews/{review}")).await;
    assert_eq!(still.body["status"], "open");

    // With it: approved, the money moves, the queue is empty.
    let csrf = csrf_of(&html);
    let (status, location) = post_form(&server, &action, &cookie, format!("csrf={csrf}&note=checked+by+phone")).await;
    assert_eq!((status, location.as_deref()), (303, Some("/dashboard#reviews")));
    let done = server.get(&format!("/v1/reviews/{review}")).await;
    assert_eq!(done.body["status"], "approved");
    assert_eq!(done.body["note"], "checked by phone");
    assert_eq!(server.wallet_balance(102).await.0, "101050.00");
    let (_, html, _) = page(&server, Some(&cookie)).await;
    assert!(html.contains("Review queue (0)") && html.contains("Nothing is waiting for review."));
    // Twice: a conflict page, nothing moves.
    let (status, _) = post_form(&server, &action, &cookie, format!("csrf={csrf}")).await;
    assert_eq!(status, 409);

    // A tampered cookie is no session.
    let forged = format!("{}0", cookie);
    assert_eq!(page(&server, Some(&forged)).await.0, 303);
    // A revoked key ends its sessions.
    let key_id = done.body["closed_by"].as_str().unwrap().to_string();
    nixo_core::auth::revoke_key(server.db(), &key_id).await.unwrap();
    let (status, _, location) = page(&server, Some(&cookie)).await;
    assert_eq!((status, location.as_deref()), (303, Some("/dashboard/login")));
    server.stop().await;
}
