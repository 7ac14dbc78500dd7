//! Plugin manifests: `<plugins>/<name>.toml` beside the artefact.
//!
//! ```toml
//! name = "fraud-check"            # 1-64 of a-z 0-9 -
//! version = "0.1.0"
//! kind = "fraud"                  # fraud (payout rules: next version of the host)
//! artefact = "fraud-check.wasm"   # default: <manifest stem>.wasm
//! sha256 = "…"                    # of the artefact; a mismatch refuses the plugin
//! failure_policy = "fail_closed"  # or "fail_open"; default fail_closed
//! applies_to = ["transfer", "withdrawal"]   # default: every kind
//!
//! [limits]                        # optional: the host's default where absent,
//! fuel_per_call_max = 10000000     # never above the host's ceiling
//! deadline_ms = 100
//! memory_max_bytes = 16777216
//! artefact_len_max_bytes = 8388608
//! core_instances_max = 8
//! prewarmed_instances = 2        # warm instances kept ready (default 0)
//! ```

use super::{RuleLimits, TransactionKind};
use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Largest manifest accepted.
pub const MANIFEST_LEN_MAX_BYTES: u64 = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// A failing rule denies the transaction.
    FailClosed,
    /// A failing rule is skipped (logged, not counted).
    FailOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    Fraud,
    Payout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppliesTo {
    Transfer,
    Deposit,
    Withdrawal,
    Payout,
}

impl AppliesTo {
    pub fn matches(self, kind: TransactionKind) -> bool {
        matches!(
            (self, kind),
            (AppliesTo::Transfer, TransactionKind::Transfer)
                | (AppliesTo::Deposit, TransactionKind::Deposit)
                | (AppliesTo::Withdrawal, TransactionKind::Withdrawal)
                | (AppliesTo::Payout, TransactionKind::Payout)
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    pub fuel_per_call_max: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub memory_max_bytes: Option<usize>,
    pub artefact_len_max_bytes: Option<u64>,
    pub core_instances_max: Option<u32>,
    pub prewarmed_instances: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub artefact: Option<String>,
    pub sha256: String,
    #[serde(default = "fail_closed")]
    pub failure_policy: FailurePolicy,
    pub applies_to: Option<Vec<AppliesTo>>,
    /// Payout rules: the rail they check.
    pub rail: Option<PayoutRail>,
    #[serde(default)]
    pub limits: ManifestLimits,
    /// Settings handed to the plugin on every call (thresholds, lists).
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    /// What happens to money this rule sent to review when nobody decides
    /// in time: `void` (released, the default) or `approve` (moves on).
    #[serde(default)]
    pub review_expiry: ReviewExpiry,
}

/// A fraud rule's policy for reviews that expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewExpiry {
    #[default]
    Void,
    Approve,
}

impl ReviewExpiry {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewExpiry::Void => "void",
            ReviewExpiry::Approve => "approve",
        }
    }
}

/// Entries, key length and value length of a manifest's `[config]`.
pub const CONFIG_ENTRIES_MAX: usize = 64;
pub const CONFIG_KEY_LEN_MAX: usize = 64;
pub const CONFIG_VALUE_LEN_MAX: usize = 1_024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutRail {
    Mpesa,
    Bank,
}

fn fail_closed() -> FailurePolicy {
    FailurePolicy::FailClosed
}

impl Manifest {
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let manifest: Manifest = toml::from_str(text).context("the manifest is not valid")?;
        let name_ok = !manifest.name.is_empty()
            && manifest.name.len() <= 64
            && manifest
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ensure!(name_ok, "name must be 1 to 64 characters of a-z, 0-9 and '-'");
        ensure!(
            !manifest.version.is_empty() && manifest.version.len() <= 32,
            "version must be 1 to 32 characters"
        );
        ensure!(
            manifest.sha256.len() == 64 && manifest.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "sha256 must be 64 hex digits"
        );
        ensure!(
            manifest.config.len() <= CONFIG_ENTRIES_MAX
                && manifest
                    .config
                    .iter()
                    .all(|(k, v)| !k.is_empty() && k.len() <= CONFIG_KEY_LEN_MAX && v.len() <= CONFIG_VALUE_LEN_MAX),
            "[config] holds at most {CONFIG_ENTRIES_MAX} entries, keys of 1 to {CONFIG_KEY_LEN_MAX} bytes, \
             values of at most {CONFIG_VALUE_LEN_MAX} bytes"
        );
        ensure!(
            (manifest.kind == PluginKind::Payout) == manifest.rail.is_some(),
            "payout rules name their `rail` (mpesa or bank); fraud rules do not"
        );
        if let Some(artefact) = &manifest.artefact {
            ensure!(
                !artefact.contains('/') && !artefact.contains('\\') && artefact.ends_with(".wasm"),
                "artefact must be a .wasm file name in the plugins directory"
            );
        }
        Ok(manifest)
    }

    /// Reads the manifest at `path` and the artefact it names, checking the
    /// artefact's size (against the plugin's limits) and hash.
    pub fn load(path: &Path, defaults: &RuleLimits, ceilings: &RuleLimits) -> anyhow::Result<(Manifest, Vec<u8>)> {
        let size = std::fs::metadata(path)?.len();
        ensure!(
            size <= MANIFEST_LEN_MAX_BYTES,
            "manifest is larger than {MANIFEST_LEN_MAX_BYTES} bytes"
        );
        let manifest = Manifest::parse(&std::fs::read_to_string(path)?)?;
        let artefact = manifest.artefact_path(path);
        let size = std::fs::metadata(&artefact)
            .with_context(|| format!("artefact {}", artefact.display()))?
            .len();
        let max = manifest.limits(defaults, ceilings).artefact_len_max_bytes;
        ensure!(
            size <= max,
            "the artefact's {size} bytes are over its limit of {max} (raise `artefact_len_max_bytes` in the \
             manifest's [limits], at most {})",
            ceilings.artefact_len_max_bytes
        );
        let bytes = std::fs::read(&artefact)?;
        let actual = crate::wasm_cache::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            bail!(
                "sha256 mismatch: the manifest says {}, the artefact is {actual}",
                manifest.sha256
            );
        }
        Ok((manifest, bytes))
    }

    pub fn artefact_path(&self, manifest_path: &Path) -> PathBuf {
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        match &self.artefact {
            Some(name) => dir.join(name),
            None => manifest_path.with_extension("wasm"),
        }
    }

    /// The plugin's limits: its own where given (never above the host's
    /// ceilings), else the host's defaults.
    pub fn limits(&self, defaults: &RuleLimits, ceilings: &RuleLimits) -> RuleLimits {
        fn pick<T: Ord + Copy>(own: Option<T>, default: T, ceiling: T) -> T {
            own.unwrap_or(default).min(ceiling)
        }
        let own = &self.limits;
        RuleLimits {
            fuel_per_call_max: pick(
                own.fuel_per_call_max,
                defaults.fuel_per_call_max,
                ceilings.fuel_per_call_max,
            ),
            deadline_ms: pick(own.deadline_ms, defaults.deadline_ms, ceilings.deadline_ms),
            memory_max_bytes: pick(
                own.memory_max_bytes,
                defaults.memory_max_bytes,
                ceilings.memory_max_bytes,
            ),
            artefact_len_max_bytes: pick(
                own.artefact_len_max_bytes,
                defaults.artefact_len_max_bytes,
                ceilings.artefact_len_max_bytes,
            ),
            core_instances_max: pick(
                own.core_instances_max,
                defaults.core_instances_max,
                ceilings.core_instances_max,
            ),
            prewarmed_instances: pick(
                own.prewarmed_instances,
                defaults.prewarmed_instances,
                ceilings.prewarmed_instances,
            ),
            // A manifest may raise memory; the table grows with it.
            table_elements_max: if own.memory_max_bytes.is_some_and(|m| m > defaults.memory_max_bytes) {
                ceilings.table_elements_max
            } else {
                defaults.table_elements_max
            },
            ..*defaults
        }
    }

    /// The `[config]` table as the plugin receives it.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The first kind of transaction the rule applies to (transfers when
    /// it applies to every kind).
    pub fn first_kind(&self) -> TransactionKind {
        match self.applies_to.as_deref().and_then(<[AppliesTo]>::first) {
            None | Some(AppliesTo::Transfer) => TransactionKind::Transfer,
            Some(AppliesTo::Deposit) => TransactionKind::Deposit,
            Some(AppliesTo::Withdrawal) => TransactionKind::Withdrawal,
            Some(AppliesTo::Payout) => TransactionKind::Payout,
        }
    }

    pub fn applies_to(&self, kind: TransactionKind) -> bool {
        self.applies_to
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k.matches(kind)))
    }

    /// A fraud-rule manifest for an artefact, as `nixo` writes for bundled plugins.
    pub fn render(name: &str, version: &str, artefact: &str, sha256: &str, policy: &str) -> String {
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\nkind = \"fraud\"\nartefact = \"{artefact}\"\n\
             sha256 = \"{sha256}\"\nfailure_policy = \"{policy}\"\n"
        )
    }

    /// A payout-rule manifest (always fail closed).
    pub fn render_payout(name: &str, version: &str, artefact: &str, sha256: &str, rail: &str) -> String {
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\nkind = \"payout\"\nrail = \"{rail}\"\n\
             artefact = \"{artefact}\"\nsha256 = \"{sha256}\"\nfailure_policy = \"fail_closed\"\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_rendered_manifest_parses_with_defaults() {
        let m = Manifest::parse(&Manifest::render(
            "fraud-check",
            "0.1.0",
            "fraud-check.wasm",
            SHA,
            "fail_open",
        ))
        .unwrap();
        assert_eq!(m.failure_policy, FailurePolicy::FailOpen);
        assert!(m.applies_to(TransactionKind::Payout));
        let host = RuleLimits::default();
        assert_eq!(
            m.limits(&host, &RuleLimits::ceilings()),
            host,
            "no [limits]: the defaults"
        );
    }

    #[test]
    fn limits_may_rise_to_the_ceilings_and_no_further() {
        let text = format!(
            "name = \"x\"\nversion = \"1\"\nkind = \"fraud\"\nsha256 = \"{SHA}\"\napplies_to = [\"transfer\"]\n\
             [limits]\nfuel_per_call_max = 1000000000000\ndeadline_ms = 5\nmemory_max_bytes = 67108864\n\
             core_instances_max = 1000\nprewarmed_instances = 99\n"
        );
        let m = Manifest::parse(&text).unwrap();
        let (host, ceilings) = (RuleLimits::default(), RuleLimits::ceilings());
        let limits = m.limits(&host, &ceilings);
        assert_eq!(limits.fuel_per_call_max, ceilings.fuel_per_call_max);
        assert_eq!(limits.deadline_ms, 5);
        assert_eq!(limits.memory_max_bytes, 64 << 20, "raised, under the ceiling");
        assert_eq!(limits.core_instances_max, ceilings.core_instances_max);
        assert_eq!(limits.prewarmed_instances, super::super::PREWARMED_INSTANCES_MAX);
        assert_eq!(
            limits.artefact_len_max_bytes, host.artefact_len_max_bytes,
            "not named: the default"
        );
        assert_eq!(m.failure_policy, FailurePolicy::FailClosed, "fail closed by default");
        assert!(!m.applies_to(TransactionKind::Deposit));
    }

    #[test]
    fn bad_manifests_say_why() {
        for (text, why) in [
            (
                "name = \"Bad Name\"\nversion = \"1\"\nkind = \"fraud\"\nsha256 = \"00\"",
                "name",
            ),
            (
                &format!(
                    "name = \"x\"\nversion = \"1\"\nkind = \"fraud\"\nsha256 = \"zz{}\"",
                    &SHA[2..]
                ),
                "sha256",
            ),
            (
                &format!(
                    "name = \"x\"\nversion = \"1\"\nkind = \"fraud\"\nsha256 = \"{SHA}\"\nartefact = \"../x.wasm\""
                ),
                "artefact",
            ),
            (
                &format!("name = \"x\"\nversion = \"1\"\nkind = \"fraud\"\nsha256 = \"{SHA}\"\nsurprise = 1"),
                "not valid",
            ),
        ] {
            let err = format!("{:#}", Manifest::parse(text).unwrap_err());
            assert!(err.contains(why), "{err}");
        }
    }
}
