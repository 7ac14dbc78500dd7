//! `nixo plugin new`: a rule project that builds, tests and installs with
//! `nixo plugin build | test | install`, in Rust, JavaScript or Python.
//!
//! Every project holds `nixo-plugin.toml` (language and the manifest the
//! build writes), `wit/rules.wit` (the frozen contract it is built
//! against), `cases.toml` and a README; then the language's own files.

use super::RULES_WIT;
use super::project::{Lang, PROJECT_FILE};
use crate::rules::manifest::PluginKind;
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Writes a new rule project `dir/name` in `lang`.
pub fn new_template(name: &str, kind: PluginKind, lang: Lang, dir: &Path) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!("a plugin name is 1 to 64 characters of a-z, 0-9 and '-', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    std::fs::create_dir_all(root.join("wit"))?;
    let (kind_name, world) = match kind {
        PluginKind::Fraud => ("fraud", "fraud-rule"),
        PluginKind::Payout => ("payout", "payout-rule"),
    };
    let payout = kind == PluginKind::Payout;
    // Payout rules name their rail; a language runtime needs a larger
    // artefact (and CPython more core instances) than a Rust rule, and
    // time for a fresh pool slot's first decision.
    let rail = if payout { "rail = \"bank\"\n" } else { "" };
    let limits = match lang {
        Lang::Rust => "",
        Lang::Js => {
            "\n# A JavaScript engine (SpiderMonkey) runs inside the component.\n[manifest.limits]\n\
             artefact_len_max_bytes = 16777216\ndeadline_ms = 500\n"
        }
        Lang::Python => {
            "\n# A Python interpreter (CPython) runs inside the component.\n[manifest.limits]\n\
             artefact_len_max_bytes = 25165824\ncore_instances_max = 40\ndeadline_ms = 500\n"
        }
    };
    // A rule in a language runtime is decided in instances warmed ahead:
    // the runtime's first call in an instance costs more than the rule.
    let prewarm = if lang == Lang::Rust {
        ""
    } else {
        "# Decided in instances made and warmed ahead, off the request path.\nprewarmed_instances = 2\n"
    };
    let project = format!(
        "# How `nixo plugin build` builds this rule, and the manifest it writes\n\
         # beside the artefact in dist/ (see the Nixo README for every field).\n\
         lang = \"{}\"\n\n[manifest]\nname = \"{name}\"\nversion = \"0.1.0\"\nkind = \"{kind_name}\"\n{rail}\
         failure_policy = \"fail_closed\"\n{limits}{prewarm}",
        lang.as_str()
    );
    std::fs::write(root.join(PROJECT_FILE), project)?;
    std::fs::write(root.join("wit/rules.wit"), RULES_WIT)?;
    std::fs::write(root.join("cases.toml"), if payout { PAYOUT_CASES } else { FRAUD_CASES })?;
    std::fs::write(
        root.join(".gitignore"),
        "/dist/\n/target/\n/node_modules/\n__pycache__/\n",
    )?;
    let (files, prepare) = match lang {
        Lang::Rust => {
            std::fs::create_dir_all(root.join("src"))?;
            let cargo = format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                 [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
                 [target.'cfg(target_family = \"wasm\")'.dependencies]\n\
                 wit-bindgen = {{ version = \"0.51\", default-features = false, features = [\"macros\"] }}\n\n\
                 # A crate of its own, not a member of any enclosing workspace.\n[workspace]\n\n\
                 [profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\n"
            );
            std::fs::write(root.join("Cargo.toml"), cargo)?;
            let lib = if payout { RUST_PAYOUT } else { RUST_FRAUD };
            std::fs::write(root.join("src/lib.rs"), lib.replace("{world}", world))?;
            (
                "`src/lib.rs` (the rule; `cargo test` runs its unit tests natively)",
                "rustup target add wasm32-unknown-unknown   # once",
            )
        }
        Lang::Js => {
            let package = format!(
                "{{\n  \"name\": \"{name}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"type\": \"module\",\n  \
                 \"devDependencies\": {{\n    \"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\",\n    \
                 \"@bytecodealliance/preview2-shim\": \"{PREVIEW2_SHIM_VERSION}\"\n  }}\n}}\n"
            );
            std::fs::write(root.join("package.json"), package)?;
            std::fs::write(root.join("rule.js"), if payout { JS_PAYOUT } else { JS_FRAUD })?;
            (
                "`rule.js` (the rule, an ES module)",
                "npm install                                # once: the builder",
            )
        }
        Lang::Python => {
            std::fs::write(root.join("app.py"), if payout { PY_PAYOUT } else { PY_FRAUD })?;
            (
                "`app.py` (the rule)",
                "pip install componentize-py==0.25.1       # once: the builder",
            )
        }
    };
    let readme = format!(
        "# {name}\n\nA Nixo {world} plugin in {}: {files}, `cases.toml` (what it must decide),\n\
         `{PROJECT_FILE}` (its manifest: limits, config).\n\n```sh\n{prepare}\n\
         nixo plugin build                          # dist/{name}.wasm and dist/{name}.toml\n\
         nixo plugin test                           # every case in cases.toml, with fuel and time\n\
         nixo plugin install --data-dir DATA --server http://127.0.0.1:8080   # live, no restart\n```\n",
        lang.display()
    );
    std::fs::write(root.join("README.md"), readme)?;
    Ok(root)
}

/// The componentize-js a JavaScript template asks npm for.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// componentize-js 0.23.0 imports this at run time but lists it only for
/// development: the template names it so `npm install` brings it.
pub const PREVIEW2_SHIM_VERSION: &str = "0.17.4";

const JS_FRAUD: &str = r#"// A Nixo fraud rule in JavaScript. `check` gets the transaction (records
// in camelCase, amounts as exact decimal strings) and the manifest's
// [config] as [key, value] pairs; it returns { verdict, scoreBp, reasons }.
// No files, network, clock or randomness: the same input, the same answer.

/** "150000.25" -> 15000025n at 2 decimals: compare money exactly, never as floats. */
function minor(amount, decimals) {
  if (!/^\d+(\.\d*)?$/.test(amount)) throw new Error(`not a decimal amount: ${amount}`);
  const [whole, fraction = ""] = amount.split(".");
  return BigInt(whole) * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, "0").slice(0, decimals) || "0");
}

function setting(config, key, fallback) {
  const found = config.find(([k]) => k === key);
  return found ? found[1] : fallback;
}

export const fraudCheck = {
  name() {
    return "MyRule";
  },
  check(tx, config) {
    const limit = setting(config, `review_amount.${tx.amount.currency}`, tx.amount.currency === "KES" ? "100000" : null);
    if (limit !== null && minor(tx.amount.amount, 4) >= minor(limit, 4)) {
      return { verdict: "review", scoreBp: 6000, reasons: [`large_${tx.amount.currency.toLowerCase()}_amount`] };
    }
    return { verdict: "allow", scoreBp: 100, reasons: [] };
  },
};
"#;

const JS_PAYOUT: &str = r#"// A Nixo payout rule in JavaScript. `check` gets the payout request and
// the manifest's [config]; it returns { destination, facts } to accept, or
// throws { field, code, message } to refuse.

export const payoutCheck = {
  name() {
    return "MyPayoutRule";
  },
  check(request, config) {
    const compact = request.destination.replace(/\s+/g, "");
    if (compact.length < 6 || compact.length > 34 || !/^[A-Za-z0-9]+$/.test(compact)) {
      throw { field: "destination", code: "invalid_destination", message: "6 to 34 letters and digits" };
    }
    return { destination: compact.toUpperCase(), facts: [] };
  },
};
"#;

const PY_FRAUD: &str = r#""""A Nixo fraud rule in Python.

`check` gets the transaction (dataclasses; amounts as exact decimal strings)
and the manifest's [config] as (key, value) pairs, and returns a Decision.
No files, network, clock or randomness: the same input, the same answer.
"""

from decimal import Decimal

from wit_world import exports
from wit_world.imports.types import Decision, Verdict


class FraudCheck(exports.FraudCheck):
    def name(self) -> str:
        return "MyRule"

    def check(self, tx, config) -> Decision:
        settings = dict(config)
        default = "100000" if tx.amount.currency == "KES" else None
        limit = settings.get("review_amount." + tx.amount.currency, default)
        if limit is not None and Decimal(tx.amount.amount) >= Decimal(limit):
            return Decision(Verdict.REVIEW, 6000, ["large_" + tx.amount.currency.lower() + "_amount"])
        return Decision(Verdict.ALLOW, 100, [])
"#;

const PY_PAYOUT: &str = r#""""A Nixo payout rule in Python.

`check` gets the payout request and the manifest's [config]; it returns a
Routing to accept, or raises Err(Refusal(...)) to refuse.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.payout_check import Refusal, Routing


class PayoutCheck(exports.PayoutCheck):
    def name(self) -> str:
        return "MyPayoutRule"

    def check(self, request, config) -> Routing:
        compact = "".join(request.destination.split())
        if not (6 <= len(compact) <= 34 and compact.isascii() and compact.isalnum()):
            raise Err(Refusal("destination", "invalid_destination", "6 to 34 letters and digits"))
        return Routing(compact.upper(), [])
"#;

const RUST_FRAUD: &str = r#"//! A Nixo fraud rule. The logic is plain Rust in `decide` (test it with
//! `cargo test`); the export below is compiled only for wasm targets.

/// "1500.5" -> 15_005_000 (at 4 decimals): money compared exactly, never
/// as floats. `None` for anything but digits with at most one dot.
pub fn minor_units(amount: &str) -> Option<u128> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let fraction = format!("{fraction:0<4}");
    Some(whole.parse::<u128>().ok()? * 10_000 + fraction[..4].parse::<u128>().ok()?)
}

/// Decides on `amount` (an exact decimal string) in `currency`, reviewing
/// amounts at or above `review_at` (default: 100000 for KES): returns
/// (verdict, score in basis points, reasons).
pub fn decide(amount: &str, currency: &str, review_at: Option<&str>) -> (&'static str, u16, Vec<String>) {
    let limit = review_at.or((currency == "KES").then_some("100000"));
    match (minor_units(amount), limit.map(minor_units)) {
        (None, _) | (_, Some(None)) => ("deny", 10_000, vec!["unreadable_amount".into()]),
        (Some(a), Some(Some(l))) if a >= l => (
            "review",
            6_000,
            vec![format!("large_{}_amount", currency.to_ascii_lowercase())],
        ),
        _ => ("allow", 100, Vec::new()),
    }
}

#[cfg(target_family = "wasm")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "{world}" });

    use exports::nixo::rules::fraud_check::Guest;
    use nixo::rules::types::{Decision, Transaction, Verdict};

    struct Rule;

    impl Guest for Rule {
        fn name() -> String {
            "MyRule".to_string()
        }

        fn check(tx: Transaction, config: Vec<(String, String)>) -> Decision {
            let key = format!("review_amount.{}", tx.amount.currency);
            let review_at = config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str());
            let (verdict, score_bp, reasons) = super::decide(&tx.amount.amount, &tx.amount.currency, review_at);
            let verdict = match verdict {
                "deny" => Verdict::Deny,
                "review" => Verdict::Review,
                _ => Verdict::Allow,
            };
            Decision { verdict, score_bp, reasons }
        }
    }

    export!(Rule);
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_kes_amounts_are_reviewed() {
        assert_eq!(super::decide("150000.00", "KES", None).0, "review");
        assert_eq!(super::decide("50.00", "KES", None).0, "allow");
        assert_eq!(super::decide("999.99", "USD", Some("1000")).0, "allow");
        assert_eq!(super::decide("1000", "USD", Some("1000.00")).0, "review");
        assert_eq!(super::decide("1e3", "USD", None).0, "deny");
    }
}
"#;

const RUST_PAYOUT: &str = r#"//! A Nixo payout rule. The logic is plain Rust in `normalise` (test it with
//! `cargo test`); the export below is compiled only for wasm targets.

/// Accepts destinations of 6 to 34 letters and digits (spaces ignored),
/// upper-cased; refuses anything else with (field, code, message).
pub fn normalise(destination: &str) -> Result<String, (&'static str, &'static str, String)> {
    let compact: String = destination.chars().filter(|c| !c.is_whitespace()).collect();
    if (6..=34).contains(&compact.len()) && compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(compact.to_ascii_uppercase())
    } else {
        Err(("destination", "invalid_destination", "6 to 34 letters and digits".to_string()))
    }
}

#[cfg(target_family = "wasm")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "{world}" });

    use exports::nixo::rules::payout_check::{Guest, PayoutRequest, Refusal, Routing};

    struct Rule;

    impl Guest for Rule {
        fn name() -> String {
            "MyPayoutRule".to_string()
        }

        fn check(request: PayoutRequest, _config: Vec<(String, String)>) -> Result<Routing, Refusal> {
            super::normalise(&request.destination)
                .map(|destination| Routing { destination, facts: Vec::new() })
                .map_err(|(field, code, message)| Refusal { field: field.into(), code: code.into(), message })
        }
    }

    export!(Rule);
}

#[cfg(test)]
mod tests {
    #[test]
    fn destinations_are_normalised_or_refused() {
        assert_eq!(super::normalise("ab12 cd34").unwrap(), "AB12CD34");
        assert!(super::normalise("x").is_err());
    }
}
"#;

const FRAUD_CASES: &str = r#"[[case]]
name = "a small transfer is allowed"
kind = "transfer"
amount = "50.00"
currency = "KES"
destination = "102"
expect_verdict = "allow"

[[case]]
name = "a large KES transfer is reviewed"
kind = "transfer"
amount = "150000.00"
currency = "KES"
destination = "102"
expect_verdict = "review"
expect_reasons = ["large_kes_amount"]
"#;

const PAYOUT_CASES: &str = r#"[[case]]
name = "a spaced destination is normalised"
rail = "bank"
destination = "ab12 cd34"
amount = "10.00"
currency = "EUR"
expect_destination = "AB12CD34"

[[case]]
name = "a short destination is refused"
rail = "bank"
destination = "x"
amount = "10.00"
currency = "EUR"
expect_refusal = "invalid_destination"
expect_field = "destination"
"#;
