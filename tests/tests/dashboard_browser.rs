//! The risk dashboard in a real browser: headless Chromium (Debian's
//! `chromium`), driven over the W3C WebDriver protocol by `chromedriver`
//! (Debian's `chromium-driver`) on loopback, at a phone's width. A reviewer
//! signs in with the key, sees the held transfer in the queue, approves it
//! and sees the balance change; the page is saved as a screenshot
//! (`target/tmp/dashboard-approved.png`).
//!
//! `scripts/setup` installs both packages; without them the test says so
//! and passes, except in CI (`CI=true`), where it fails.

use nixo_tests::{SEED_TRANSFER, start};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    process: std::process::Child,
    base: String,
    session: String,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ending the session makes chromedriver quit Chromium; killing
        // chromedriver alone would leave the browser running (on a panic too).
        self.end_session();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn find(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.is_file())
}

impl Driver {
    async fn start(chromium: &std::path::Path, chromedriver: &std::path::Path) -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let process = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Driver {
            process,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: reqwest::Client::new(),
            _profile: profile,
        };
        let started = Instant::now();
        while driver
            .client
            .get(format!("{}/status", driver.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            // A phone's width: the layout must hold.
            "--window-size=390,900".into(),
            format!("--user-data-dir={}", driver._profile.path().display()),
        ];
        let created = driver
            .call(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args}}}})),
            )
            .await;
        driver.session = created["sessionId"].as_str().expect("a session").to_string();
        driver
    }

    /// `DELETE /session/{id}`, blocking (it runs in `drop`), bounded by timeouts.
    fn end_session(&self) {
        use std::io::{Read, Write};
        let Some(addr) = self.base.strip_prefix("http://") else {
            return;
        };
        if self.session.is_empty() {
            return;
        }
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut req = self.client.request(method.parse().unwrap(), url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let reply: Value = req.send().await.expect("chromedriver answers").json().await.unwrap();
        assert!(reply["value"]["error"].is_null(), "WebDriver {method} {path}: {reply}");
        reply["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("an element for {css}: {found}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.call("GET", &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (a form's navigation may finish after its click returns)
    /// until the page's URL ends with `suffix` and its source has `text`.
    async fn wait_for(&self, suffix: &str, text: &str) {
        let started = Instant::now();
        loop {
            let url = self.url().await;
            let source = self.call("GET", "/source", None).await;
            if url.ends_with(suffix) && source.as_str().unwrap_or_default().contains(text) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "waited for {suffix} with {text:?}; at {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_a_held_transfer_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (find("chromium"), find("chromedriver")) else {
        assert!(
            std::env::var("CI").is_err(),
            "chromium and chromedriver are required in CI (scripts/setup installs them)"
        );
        eprintln!("SKIPPED: chromium or chromedriver is not on the PATH (run scripts/setup)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, false).await;
    // The 21st transfer within the hour is held for review.
    for _ in 0..21 {
        server.post("/v1/payments/transfer", SEED_TRANSFER).await;
    }
    let driver = Driver::start(&chromium, &chromedriver).await;

    driver.go(&format!("{}/dashboard", server.base)).await;
    assert!(
        driver.url().await.ends_with("/dashboard/login"),
        "signed out: the sign-in page"
    );
    driver.type_into("#key", &server.key).await;
    driver.click("button[type=submit]").await;
    driver.wait_for("/dashboard", "Review queue").await;

    let queue = driver.text("#reviews").await;
    assert!(queue.contains("Review queue (1)"), "{queue}");
    let kes = "tr[data-currency=KES] td[data-kind=available]";
    assert_eq!(driver.text(kes).await, "199950.00", "50.00 held at the source");

    driver
        .type_into("input[name=note][id^=note-approve]", "known customer")
        .await;
    driver.click("button[aria-label^=\"Approve review\"]").await;
    // The queue is empty after approval.
    driver.wait_for("/dashboard#reviews", "Review queue (0)").await;
    assert_eq!(driver.text(kes).await, "200000.00", "the held 50.00 settled");
    let approved = server.get("/v1/reviews?open=false").await;
    assert_eq!(approved.body["data"][0]["status"], "approved");
    assert_eq!(approved.body["data"][0]["note"], "known customer");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-approved.png");
    driver.screenshot(&shot).await;
    eprintln!("screenshot: {}", shot.display());
    drop(driver);
    server.stop().await;
}
