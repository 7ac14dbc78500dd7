//! The risk-team kit, as its users run it: `nixo plugin test` on the case
//! files beside each bundled plugin, and `nixo plugin check` on good and
//! refused artefacts.

use std::path::{Path, PathBuf};
use std::process::Command;

const NIXO: &str = env!("CARGO_BIN_EXE_nixo");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(NIXO).args(args).env("NIXO_LOG", "error").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_bundled_plugins_pass_their_case_files() {
    for (artefact, cases) in [
        (env!("NIXO_FRAUD_CHECK_WASM"), "plugins/fraud-check/cases.toml"),
        (env!("NIXO_IBAN_WASM"), "plugins/iban/cases.toml"),
        (env!("NIXO_MPESA_WASM"), "plugins/mpesa/cases.toml"),
    ] {
        let cases = root().join(cases);
        let (ok, out) = run(&["plugin", "test", artefact, "--cases", cases.to_str().unwrap()]);
        assert!(ok, "{out}");
        assert!(out.contains(" passed, 0 failed"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }
}

#[test]
fn a_failing_case_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("wrong.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"wrong on purpose\"\nkind = \"transfer\"\namount = \"50.00\"\ncurrency = \"KES\"\n\
         destination = \"102\"\nexpect_verdict = \"deny\"\n",
    )
    .unwrap();
    let (ok, out) = run(&[
        "plugin",
        "test",
        env!("NIXO_FRAUD_CHECK_WASM"),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        out.contains("FAIL  wrong on purpose: verdict allow (want deny)"),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");
}

#[test]
fn check_reports_worlds_and_refusals() {
    let (ok, out) = run(&["plugin", "check", env!("NIXO_IBAN_WASM")]);
    assert!(ok, "{out}");
    assert!(out.contains("world:    nixo:rules/payout-rule"), "{out}");
    assert!(out.contains("name:     IbanRule"), "{out}");
    assert!(
        out.contains("imports:  nixo:rules/types@0.1.0\n"),
        "types only, no WASI: {out}"
    );

    let (ok, out) = run(&["plugin", "check", env!("NIXO_FRAUD_CHECK_WASM")]);
    assert!(ok && out.contains("world:    nixo:rules/fraud-rule"), "{out}");

    let (ok, out) = run(&["plugin", "check", env!("NIXO_TEST_FS_RULE_WASM")]);
    assert!(!ok);
    assert!(out.contains("refused") && out.contains("wasi:filesystem/"), "{out}");
}

/// `nixo plugin new` writes a crate that builds for wasm on its own, whose
/// component loads and passes its own case file.
#[test]
fn a_new_plugin_template_builds_loads_and_passes_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Build with the very toolchain running this test (it has the wasm targets).
    let rustc = Path::new(&cargo).with_file_name("rustc");
    for (name, kind) in [("demo-fraud", "fraud"), ("demo-payout", "payout")] {
        let (ok, out) = run(&[
            "plugin",
            "new",
            name,
            "--kind",
            kind,
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        let crate_dir = dir.path().join(name);
        let target = dir.path().join("target");
        let built = Command::new(&cargo)
            .current_dir(&crate_dir)
            .args([
                "build",
                "--offline",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
                "--target-dir",
            ])
            .arg(&target)
            .envs(rustc.exists().then(|| ("RUSTC", rustc.clone())))
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        let module = target.join(format!(
            "wasm32-unknown-unknown/release/{}.wasm",
            name.replace('-', "_")
        ));
        let component = dir.path().join(format!("{name}.wasm"));
        let (ok, out) = run(&[
            "plugin",
            "componentize",
            module.to_str().unwrap(),
            "-o",
            component.to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        let (ok, out) = run(&["plugin", "check", component.to_str().unwrap()]);
        assert!(
            ok && out.contains(&format!("world:    nixo:rules/{kind}-rule")),
            "{out}"
        );
        let cases = crate_dir.join("cases.toml");
        let (ok, out) = run(&[
            "plugin",
            "test",
            component.to_str().unwrap(),
            "--cases",
            cases.to_str().unwrap(),
        ]);
        assert!(ok && out.contains("2 passed, 0 failed"), "{out}");
    }
}

/// A released version of the WIT contract is frozen: its file hashes to
/// what it shipped with, and plugins built against it (the bundled ones)
/// keep loading. A change is a new version beside it (`wit/nixo-rules@0.2.0/`).
#[test]
fn the_released_wit_is_frozen() {
    let text = std::fs::read(root().join("wit/nixo-rules@0.1.0/rules.wit")).unwrap();
    assert_eq!(
        nixo_core::wasm_cache::sha256_hex(&text),
        "f80df73db09fdcf04739561aa64d328a46060672030b3882916825947b83a5f6",
        "wit/nixo-rules@0.1.0 was released: add a new version instead of editing it"
    );
    assert!(String::from_utf8(text).unwrap().contains("package nixo:rules@0.1.0;"));
    for artefact in [
        env!("NIXO_FRAUD_CHECK_WASM"),
        env!("NIXO_IBAN_WASM"),
        env!("NIXO_MPESA_WASM"),
    ] {
        let (ok, out) = run(&["plugin", "check", artefact]);
        assert!(ok && out.contains("nixo:rules/types@0.1.0"), "{out}");
    }
}
