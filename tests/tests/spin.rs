//! The gateway on a real Fermyon Spin, deployed as the README says: the
//! component `spin build` writes is the one the project's build embeds, two
//! Spin gateways and two cores on one PostgreSQL share one Redis (rate
//! limits, idempotent replays, money moved once), and the Kubernetes
//! manifests name what `spin.toml` and `nixo serve` expect.
//!
//! The whole end-to-end suite also runs through Spin (`NIXO_TEST_GATEWAY=spin`,
//! see `scripts/test`); these are the cases only a Spin deployment has.

use nixo_core::auth::{self, KeyAccess};
use nixo_core::ledger::Environment;
use nixo_core::server::{self, ServeConfig};
use nixo_tests::spin::{self, repo_root};
use nixo_tests::{PgDatabase, Reply, TestServer, fetch, redis_url, start_through};
use std::collections::BTreeSet;

#[test]
fn spin_build_writes_the_component_spin_toml_names_and_it_is_the_embedded_gateway() {
    let Some(spin) = spin::required() else { return };
    let built = spin::build_once(&spin);
    let embedded = nixo_core::artefacts::GATEWAY_WASM;
    let on_disk = std::fs::read(&built).unwrap();
    assert!(
        on_disk == embedded,
        "spin build wrote {} ({} bytes), which differs from the gateway the project's build embeds ({} bytes)",
        built.display(),
        on_disk.len(),
        embedded.len()
    );
}

/// Two cores on one PostgreSQL (sharing the secrets, as replicas must), each
/// behind its own `spin up`, both gateways' key/value stores on one Redis.
async fn two_replicas(pg: &PgDatabase) -> (TestServer, TestServer, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let config = |dir: &std::path::Path| ServeConfig {
        database_url: Some(pg.url.clone()),
        ..ServeConfig::ephemeral(dir)
    };
    let a = start_through(config(dirs[0].path()), None, true).await;
    std::fs::copy(dirs[0].path().join("secrets.json"), dirs[1].path().join("secrets.json")).unwrap();
    let b = start_through(config(dirs[1].path()), Some(a.key.clone()), true).await;
    assert_ne!(a.base, b.base, "two gateways");
    (a, b, dirs)
}

async fn get_balances(server: &TestServer, key: &str) -> Reply {
    fetch(
        server
            .client
            .get(format!("{}/v1/balances", server.base))
            .header("authorization", format!("Bearer {key}")),
    )
    .await
}

async fn transfer(server: &TestServer, idempotency_key: &str, amount: &str) -> Reply {
    let body = format!(r#"{{"from_wallet":101,"to_wallet":102,"amount":"{amount}","currency":"KES"}}"#);
    fetch(
        server
            .client
            .post(format!("{}/v1/payments/transfer", server.base))
            .header("authorization", format!("Bearer {}", server.key))
            .header("idempotency-key", idempotency_key)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spin_gateways_and_two_cores_share_limits_replays_and_the_ledger() {
    if spin::required().is_none() {
        return;
    }
    let Some(_redis) = redis_url().await else { return };
    let Some(pg) = PgDatabase::create("spin_replicas").await else {
        return;
    };
    let (a, b, _dirs) = two_replicas(&pg).await;

    // A key allowed 9 requests an hour: 24 requests split across both
    // gateways at once, exactly 9 admitted, whichever gateway took them.
    let hasher = server::key_hasher(&a.data_dir).unwrap();
    let account = auth::default_account(a.db(), Environment::Sandbox)
        .await
        .unwrap()
        .unwrap();
    let limited = KeyAccess::new(
        vec![],
        Some(nixo_api::access::RateLimit {
            limit: 9,
            window_s: 3600,
        }),
    )
    .unwrap();
    let key = auth::create_key(a.db(), &hasher, &account, Environment::Sandbox, &limited)
        .await
        .unwrap()
        .key;
    let burst = (0..24).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        get_balances(server, &key)
    });
    let replies = futures_util::future::join_all(burst).await;
    let admitted: Vec<bool> = replies.iter().map(|r| r.status == 200).collect();
    assert_eq!(
        admitted.iter().filter(|ok| **ok).count(),
        9,
        "exactly the limit, across both gateways"
    );
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert_eq!(reply.error().0, "rate_limit_exceeded");
        assert!(reply.header("retry-after").is_some());
    }

    // The same idempotent transfer sent to both gateways at once runs once;
    // a later retry on the other gateway replays the first answer verbatim.
    let racing = (0..6).map(|i| transfer(if i % 2 == 0 { &a } else { &b }, "spin-replicas-1", "7.00"));
    let replies = futures_util::future::join_all(racing).await;
    let ran = replies
        .iter()
        .filter(|r| r.status == 200 && r.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(ran, 1, "exactly one core ran it");
    assert!(
        replies.iter().all(|r| r.status == 200 || r.status == 409),
        "the others replay or wait"
    );
    let first = transfer(&a, "spin-replicas-2", "1.00").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = transfer(&b, "spin-replicas-2", "1.00").await;
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.text, first.text);

    // Each key moved money once, as both replicas see it.
    assert_eq!(a.wallet_balance(101).await.0, "99992.00");
    assert_eq!(b.wallet_balance(102).await.0, "100008.00");
    a.stop().await;
    b.stop().await;
}

/// `spin.toml`'s application variables: (name, required).
fn spin_variables() -> Vec<(String, bool)> {
    let manifest: toml::Table = std::fs::read_to_string(repo_root().join("spin.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["variables"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, spec)| {
            (
                name.clone(),
                spec.get("required").and_then(|r| r.as_bool()) == Some(true),
            )
        })
        .collect()
}

fn yaml_documents(file: &str) -> Vec<yaml_rust2::Yaml> {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
}

fn of_kind<'a>(documents: &'a [yaml_rust2::Yaml], kind: &str) -> &'a yaml_rust2::Yaml {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_kubernetes_manifests_parse_and_name_the_right_variables() {
    let gateway = yaml_documents("deploy/kubernetes/gateway.yaml");
    let app = of_kind(&gateway, "SpinApp");
    assert_eq!(app["apiVersion"].as_str(), Some("core.spinkube.dev/v1alpha1"));
    assert_eq!(app["spec"]["executor"].as_str(), Some("containerd-shim-spin"));
    let set: BTreeSet<&str> = app["spec"]["variables"]
        .as_vec()
        .expect("spec.variables")
        .iter()
        .map(|v| v["name"].as_str().expect("a variable's name"))
        .collect();
    let declared = spin_variables();
    for name in &set {
        assert!(
            declared.iter().any(|(n, _)| n == name),
            "{name} is not a spin.toml variable"
        );
    }
    for (name, required) in &declared {
        assert!(
            !required || set.contains(name.as_str()),
            "required variable {name} is not set"
        );
    }
    // The secret comes from a Kubernetes Secret, never inline.
    let secret_ref = app["spec"]["variables"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("gateway_signing_secret"))
        .map(|v| &v["valueFrom"]["secretKeyRef"])
        .unwrap();
    let (secret_name, secret_key) = (
        secret_ref["name"].as_str().unwrap(),
        secret_ref["key"].as_str().unwrap(),
    );
    // Every replica counts in one Redis: the store spin.toml uses, on Redis.
    let store = &app["spec"]["runtimeConfig"]["keyValueStores"][0];
    assert_eq!(store["name"].as_str(), Some("default"));
    assert_eq!(store["type"].as_str(), Some("redis"));
    assert!(
        store["options"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|o| o["name"].as_str() == Some("url"))
    );
    let core_url = app["spec"]["variables"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some("core_url"))
        .and_then(|v| v["value"].as_str())
        .expect("core_url is set")
        .to_string();

    let core = yaml_documents("deploy/kubernetes/core.yaml");
    let deployment = of_kind(&core, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_vec()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..1], ["serve"]);
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .map(|i| args[i + 1])
            .unwrap_or_else(|| panic!("{name} is passed"))
    };
    let core_listen = flag("--core-listen");
    flag("--data-dir");
    // The gateway reaches the core's port through the Service.
    let service = of_kind(&core, "Service");
    let service_name = service["metadata"]["name"].as_str().unwrap();
    let port = service["spec"]["ports"][0]["port"].as_i64().unwrap();
    assert_eq!(core_url, format!("http://{service_name}:{port}"));
    let target = service["spec"]["ports"][0]["targetPort"].as_i64().unwrap();
    assert!(
        core_listen.ends_with(&format!(":{target}")),
        "{core_listen} vs targetPort {target}"
    );
    // The core signs with the same Secret the gateway reads.
    let env = container["env"].as_vec().expect("env");
    let signing = env
        .iter()
        .find(|e| e["name"].as_str() == Some(nixo_core::server::ENV_GATEWAY_SECRET))
        .expect("the core's signing secret");
    assert_eq!(signing["valueFrom"]["secretKeyRef"]["name"].as_str(), Some(secret_name));
    assert_eq!(signing["valueFrom"]["secretKeyRef"]["key"].as_str(), Some(secret_key));
    // Replicas share one database, named by a Secret.
    let database = env
        .iter()
        .find(|e| e["name"].as_str() == Some("NIXO_DATABASE_URL"))
        .expect("the database URL");
    assert_eq!(
        database["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some(secret_name)
    );
    // Replicas share the API-key pepper: secrets.json mounted from a Secret.
    let mounts = container["volumeMounts"].as_vec().expect("volumeMounts");
    assert!(
        mounts.iter().any(|m| m["subPath"].as_str() == Some("secrets.json")),
        "secrets.json is mounted"
    );
    // Probed where the core answers without a signature.
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["readinessProbe"]["httpGet"]["port"].as_i64(), Some(target));
}
