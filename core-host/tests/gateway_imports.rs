//! The gateway must run unchanged on Spin: every interface the component
//! imports is one that Spin 2.2+ / 3.x provides, so it cannot come to depend
//! on something only `nixo serve` implements.

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Interfaces Spin (2.2 and later) provides to HTTP components, by prefix;
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
    assert!(
        imports.iter().any(|i| i.starts_with("fermyon:spin/variables@")),
        "{imports:?}"
    );
    let exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.to_string()).collect();
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")),
        "{exports:?}"
    );
}
