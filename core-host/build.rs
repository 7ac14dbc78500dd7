//! Builds the WebAssembly guests (the gateway component and the bundled rule
//! plugins) with a nested cargo in a target directory of their own, and hands
//! their paths to the crate as `NIXO_*_WASM` environment variables.
//!
//! - gateway: `wasm32-wasip2` (rustc links it into a component directly).
//! - plugins: `wasm32-unknown-unknown` core modules, wrapped into components
//!   here with `wit-component` (no WASI imports at all: nothing to sandbox).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const PROFILE: &str = "wasm-release";

/// (package, library file stem, target, env var, wrap as component)
/// The `testing` guests are fixtures for the sandbox tests, not product.
const GUESTS: [(&str, &str, &str, &str, bool); 7] = [
    (
        "nixo-gateway",
        "nixo_gateway",
        "wasm32-wasip2",
        "NIXO_GATEWAY_WASM",
        false,
    ),
    (
        "nixo-fraud-check",
        "nixo_fraud_check",
        "wasm32-unknown-unknown",
        "NIXO_FRAUD_CHECK_WASM",
        true,
    ),
    (
        "nixo-iban",
        "nixo_iban",
        "wasm32-unknown-unknown",
        "NIXO_IBAN_WASM",
        true,
    ),
    (
        "nixo-mpesa",
        "nixo_mpesa",
        "wasm32-unknown-unknown",
        "NIXO_MPESA_WASM",
        true,
    ),
    (
        "nixo-hostile-rule",
        "nixo_hostile_rule",
        "wasm32-unknown-unknown",
        "NIXO_TEST_HOSTILE_RULE_WASM",
        true,
    ),
    (
        "nixo-fs-rule",
        "nixo_fs_rule",
        "wasm32-wasip2",
        "NIXO_TEST_FS_RULE_WASM",
        false,
    ),
    (
        "nixo-chatty-rule",
        "nixo_chatty_rule",
        "wasm32-wasip2",
        "NIXO_TEST_CHATTY_RULE_WASM",
        false,
    ),
];

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().context("workspace root")?.to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // OUT_DIR is <target>/<profile>/build/<pkg>/out: keep guests beside it.
    let guest_target_dir = out_dir
        .ancestors()
        .nth(4)
        .context("target directory")?
        .join("wasm-guests");

    for path in [
        "api",
        "gateway",
        "plugins",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
        "core-host/migrations",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    for (package, stem, target, env_var, wrap) in GUESTS {
        build_guest(&root, &guest_target_dir, package, target)?;
        let built = guest_target_dir.join(target).join(PROFILE).join(format!("{stem}.wasm"));
        let bytes = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        let bytes = if wrap {
            to_component(&bytes).with_context(|| format!("wrapping {package}"))?
        } else {
            bytes
        };
        let dest = out_dir.join(format!("{stem}.component.wasm"));
        std::fs::write(&dest, bytes)?;
        println!("cargo:rustc-env={env_var}={}", dest.display());
    }
    Ok(())
}

fn build_guest(root: &Path, target_dir: &Path, package: &str, target: &str) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            target,
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir)
        // Flags and wrappers meant for the host build must not leak into the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .with_context(|| format!("running cargo for {package}"))?;
    if !status.success() {
        bail!(
            "building {package} for {target} failed; is the target installed? \
             (rustup target add wasm32-wasip2 wasm32-unknown-unknown)"
        );
    }
    Ok(())
}

fn to_component(module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}
