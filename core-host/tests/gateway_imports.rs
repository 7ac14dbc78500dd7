//! The gateway must run unchanged on Spin: every interface the component
//! imports is one that Spin 3.x provides, so it cannot come to depend on
//! something only `nixo serve` implements. (Spin 3.0 added
//! `wasi:keyvalue@0.2.0-draft2`, which the rate limiter's atomic increment
//! needs; everything else is in Spin 2.2 too.)

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Interfaces Spin (3.0 and later) provides to HTTP components, by prefix;
/// WASI 0.2.x minor versions link semver-compatibly.
const SPIN_PROVIDES: &[&str] = &[
    "wasi:http/types@0.2.",
    "wasi:http/outgoing-handler@0.2.",
    "wasi:io/error@0.2.",
    "wasi:io/poll@0.2.",
    "wasi:io/streams@0.2.",
    "wasi:cli/environment@0.2.",
    "wasi:cli/exit@0.2.",
    "wasi:cli/stdin@0.2.",
    "wasi:cli/stdout@0.2.",
    "wasi:cli/stderr@0.2.",
    "wasi:cli/terminal-input@0.2.",
    "wasi:cli/terminal-output@0.2.",
    "wasi:cli/terminal-stdin@0.2.",
    "wasi:cli/terminal-stdout@0.2.",
    "wasi:cli/terminal-stderr@0.2.",
    "wasi:clocks/monotonic-clock@0.2.",
    "wasi:clocks/wall-clock@0.2.",
    "wasi:random/random@0.2.",
    "wasi:random/insecure@0.2.",
    "wasi:random/insecure-seed@0.2.",
    "wasi:filesystem/types@0.2.",
    "wasi:filesystem/preopens@0.2.",
    "fermyon:spin/variables@2.0.0",
    "fermyon:spin/key-value@2.0.0",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
];

#[test]
fn the_gateway_imports_only_what_spin_provides_and_exports_the_http_handler() {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::new(&engine, nixo_core::artefacts::GATEWAY_WASM).unwrap();
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&engine).map(|(name, _)| name.to_string()).collect();
    assert!(!imports.is_empty());
    for import in &imports {
        assert!(
            SPIN_PROVIDES.iter().any(|p| import.starts_with(p)),
            "Spin does not provide `{import}`"
        );
    }
    for needed in [
        "fermyon:spin/variables@",
        "wasi:keyvalue/store@",
        "wasi:keyvalue/atomics@",
    ] {
        assert!(imports.iter().any(|i| i.starts_with(needed)), "{needed}: {imports:?}");
    }
    let exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.to_string()).collect();
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")),
        "{exports:?}"
    );
}

/// `spin.toml` declares every variable the component reads (the signing
/// secret as a secret), maps each into the component, gives it the
/// key/value store it opens and only the core as outbound host, and its
/// default rate limits are the ones the component falls back to.
#[test]
fn spin_toml_declares_what_the_component_reads() {
    use nixo_gateway::access::{RATE_LIMIT_LIVE_DEFAULT, RATE_LIMIT_SANDBOX_DEFAULT, RateLimit};
    use nixo_gateway::edge::variables;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spin.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let declared = manifest["variables"].as_table().unwrap();
    let component = manifest["component"]["gateway"].as_table().unwrap();
    let mapped = component["variables"].as_table().unwrap();
    for name in variables::ALL {
        assert!(declared.contains_key(name), "spin.toml does not declare `{name}`");
        assert_eq!(
            mapped[name].as_str(),
            Some(format!("{{{{ {name} }}}}").as_str()),
            "{name}"
        );
    }
    assert_eq!(declared[variables::SIGNING_SECRET]["secret"].as_bool(), Some(true));
    let default = |name: &str| RateLimit::parse(declared[name]["default"].as_str().unwrap());
    assert_eq!(default(variables::RATE_LIMIT_SANDBOX), Some(RATE_LIMIT_SANDBOX_DEFAULT));
    assert_eq!(default(variables::RATE_LIMIT_LIVE), Some(RATE_LIMIT_LIVE_DEFAULT));
    let store = declared[variables::KV_STORE]["default"].as_str().unwrap();
    let strings = |name: &str| -> Vec<&str> {
        component[name]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect()
    };
    let stores = strings("key_value_stores");
    assert_eq!(stores, vec![store]);
    let outbound = strings("allowed_outbound_hosts");
    assert_eq!(outbound, vec!["{{ core_url }}"]);
    let runtime = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime-config.toml")).unwrap();
    let runtime: toml::Table = toml::from_str(&runtime).unwrap();
    assert_eq!(runtime["key_value_store"][store]["type"].as_str(), Some("redis"));
}
