//! Rules in Rust, JavaScript and Python, as a risk analyst writes them:
//! `nixo plugin new` → `build` → `test` → `install` into a running server,
//! then a transfer over HTTP decided by the new rule — and the repository's
//! own JavaScript and Python plugins, built from source, pass their cases
//! through the real host.
//!
//! The builders come from npm (componentize-js, found through
//! `NIXO_COMPONENTIZE_JS` or a `node_modules`) and PyPI (`componentize-py`
//! on PATH); `scripts/setup` installs both. Without them these tests fail
//! in CI and are skipped, loudly, elsewhere.

use nixo_tests::{TestServer, start_with};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Whether the builder for `lang` is here; in CI it must be.
fn builder_present(lang: &str) -> bool {
    let on_path = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let present = match lang {
        "rust" => true,
        "js" => {
            on_path("node")
                && (std::env::var_os("NIXO_COMPONENTIZE_JS").is_some()
                    || root()
                        .join("plugins/velocity-js/node_modules/@bytecodealliance/componentize-js")
                        .exists())
        }
        _ => on_path(&std::env::var("NIXO_COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into())),
    };
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the {lang} rule builder (scripts/setup installs it)"
        );
        eprintln!("SKIPPED: the {lang} rule builder is not installed (scripts/setup installs it)");
    }
    present
}

/// Runs `nixo` with the kit's compile cache shared between the tests.
fn nixo(args: &[&str]) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = Path::new(&cargo).with_file_name("rustc");
    let out = Command::new(nixo_tests::nixo_cli())
        .args(args)
        .env("NIXO_LOG", "error")
        .env("NIXO_CACHE_DIR", std::env::temp_dir().join("nixo-test-kit-cache"))
        // A Rust rule builds offline with the toolchain running this test,
        // into a target directory of its own (kept between runs).
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", std::env::temp_dir().join("nixo-test-rule-target"))
        .envs(rustc.exists().then(|| ("RUSTC", rustc.clone())))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A transfer of `amount` KES from 101 to 102: its answer's status and data.
async fn transfer(server: &TestServer, amount: &str) -> (u16, Value) {
    let body = format!(r#"{{"from_wallet":101,"to_wallet":102,"amount":"{amount}","currency":"KES"}}"#);
    let reply = server.post("/v1/payments/transfer", &body).await;
    (reply.status, reply.body["data"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rule_in_each_language_goes_from_template_to_deciding_live_transfers() {
    let langs: Vec<&str> = ["rust", "js", "python"]
        .into_iter()
        .filter(|lang| builder_present(lang))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_with(
        nixo_core::server::ServeConfig {
            // The server's own compile cache, which `install` fills.
            cache_dir: Some(data.join("cache")),
            ..nixo_core::server::ServeConfig::ephemeral(&data)
        },
        None,
    )
    .await;
    let projects = dir.path().join("projects");
    let data_arg = data.to_str().unwrap().to_string();
    let ops = server.ops_base();
    let mut installed = vec!["FraudCheck: ALLOW".to_string()];
    for lang in langs {
        let name = format!("limit-{lang}");
        let display = format!("Limit{}", lang.to_ascii_uppercase());
        let (ok, out) = nixo(&[
            "plugin",
            "new",
            &name,
            "--lang",
            lang,
            "--dir",
            projects.to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        let project = projects.join(&name);
        // What an analyst edits: the rule's name, and its threshold in the
        // manifest's [config] (no rebuild needed to tune it later).
        for file in ["src/lib.rs", "rule.js", "app.py"] {
            let path = project.join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                std::fs::write(&path, text.replace("\"MyRule\"", &format!("\"{display}\""))).unwrap();
            }
        }
        let manifest = project.join("nixo-plugin.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            format!("{text}\n[manifest.config]\n\"review_amount.KES\" = \"1000\"\n"),
        )
        .unwrap();

        let project_arg = project.to_str().unwrap();
        let (ok, out) = nixo(&["plugin", "build", project_arg]);
        assert!(ok, "{lang}: {out}");
        let (ok, out) = nixo(&["plugin", "test", project_arg]);
        assert!(ok && out.contains("2 passed, 0 failed"), "{lang}: {out}");
        assert!(out.contains("(fuel "), "fuel per case: {out}");

        let (ok, out) = nixo(&[
            "plugin",
            "install",
            project_arg,
            "--data-dir",
            &data_arg,
            "--server",
            &ops,
        ]);
        assert!(ok, "{lang}: {out}");
        assert!(out.contains(&format!("{ops} reports it active")), "{out}");

        // Live, without a restart: 1000.00 KES is now held for review by
        // the new rule (the bundled rule allows it), 999.99 passes.
        let (status, held) = transfer(&server, "1000.00").await;
        assert_eq!(
            (status, &held["status"]),
            (202, &Value::from("PENDING_REVIEW")),
            "{lang}: {held}"
        );
        let applied: Vec<String> = held["rules_applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        assert!(applied.contains(&format!("{display}: REVIEW")), "{lang}: {applied:?}");
        installed.push(format!("{display}: ALLOW"));
        let (status, passed) = transfer(&server, "999.99").await;
        assert_eq!(
            (status, &passed["status"]),
            (200, &Value::from("SETTLED")),
            "{lang}: {passed}"
        );
        let mut applied: Vec<String> = passed["rules_applied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        // In the plugins' file-name order.
        applied.sort();
        installed.sort();
        assert_eq!(applied, installed, "every installed rule decides");
        if lang != "rust" {
            // The template keeps pre-warmed instances: the server decided in them.
            let metrics = reqwest::get(format!("{ops}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let warm = metrics.lines().find(|line| {
                line.starts_with("nixo_rule_prewarm_decisions_total{")
                    && line.contains(&format!("plugin=\"{name}\""))
                    && line.contains("instance=\"prewarmed\"")
            });
            let count: f64 = warm
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            assert!(count >= 1.0, "{lang}: no decision in a pre-warmed instance: {warm:?}");
        }
    }
    server.stop().await;
}

/// The repository's JavaScript and Python plugins, built from source, pass
/// their case files; bad builds and missing tools say what to do.
#[test]
fn the_javascript_and_python_plugins_build_from_source_and_pass_their_cases() {
    let out_dir = tempfile::tempdir().unwrap();
    for (lang, project, cases) in [("js", "plugins/velocity-js", 5), ("python", "plugins/country-py", 5)] {
        if !builder_present(lang) {
            continue;
        }
        let out = out_dir.path().join(lang);
        let (ok, text) = nixo(&[
            "plugin",
            "build",
            root().join(project).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let name = project.rsplit('/').next().unwrap();
        let manifest = out.join(format!("{name}.toml"));
        let (ok, text) = nixo(&["plugin", "check", manifest.to_str().unwrap()]);
        assert!(ok && text.contains("world:    nixo:rules/fraud-rule"), "{text}");
        assert!(
            text.contains("imports:  nixo:rules/types@0.1.0\n"),
            "no WASI at all: {text}"
        );
        let (ok, text) = nixo(&[
            "plugin",
            "test",
            manifest.to_str().unwrap(),
            "--cases",
            root().join(project).join("cases.toml").to_str().unwrap(),
        ]);
        assert!(ok && text.contains(&format!("{cases} passed, 0 failed")), "{text}");

        // The default limits refuse a language runtime; the manifest's
        // [limits] are what let it in, one by one.
        let bare = out.join(format!("{name}.wasm"));
        let (ok, text) = nixo(&["plugin", "check", bare.to_str().unwrap()]);
        assert!(!ok, "{text}");
        assert!(text.contains("bytes; its limit is 8388608"), "artefact size: {text}");
        if lang == "python" {
            let built = std::fs::read_to_string(&manifest).unwrap();
            let tight: String = built
                .lines()
                .filter(|l| !l.starts_with("core_instances_max"))
                .map(|l| format!("{l}\n"))
                .collect();
            let tight_manifest = out.join("tight.toml");
            std::fs::write(&tight_manifest, tight).unwrap();
            let (ok, text) = nixo(&["plugin", "check", tight_manifest.to_str().unwrap()]);
            assert!(!ok, "{text}");
            assert!(
                text.contains("creates 38 core module instances; its limit is 8"),
                "{text}"
            );
        }
    }
}

#[test]
fn a_missing_builder_names_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = nixo(&[
        "plugin",
        "new",
        "demo",
        "--lang",
        "python",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let out = Command::new(nixo_tests::nixo_cli())
        .args(["plugin", "build"])
        .arg(dir.path().join("demo"))
        .env("NIXO_COMPONENTIZE_PY", "/nonexistent/componentize-py")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("pip install componentize-py==0.25.1"), "{text}");
}

/// The payout templates in JavaScript and Python (a result: the routing,
/// or a refusal naming the field) build and pass their own cases.
#[test]
fn the_payout_templates_in_javascript_and_python_build_and_pass_their_cases() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["js", "python"] {
        if !builder_present(lang) {
            continue;
        }
        let name = format!("route-{lang}");
        let (ok, out) = nixo(&[
            "plugin",
            "new",
            &name,
            "--lang",
            lang,
            "--kind",
            "payout",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        let project = dir.path().join(&name);
        let (ok, out) = nixo(&["plugin", "build", project.to_str().unwrap()]);
        assert!(ok, "{lang}: {out}");
        let (ok, out) = nixo(&["plugin", "check", project.to_str().unwrap()]);
        assert!(ok && out.contains("world:    nixo:rules/payout-rule"), "{lang}: {out}");
        let (ok, out) = nixo(&["plugin", "test", project.to_str().unwrap()]);
        assert!(ok && out.contains("2 passed, 0 failed"), "{lang}: {out}");
    }
}
