//! The KYC provider: an identity-verification service Nixo sends checks
//! to. A check is created with the applicant's data and our reference
//! (`kyc_…`, so a retried creation finds the same check), runs
//! asynchronously, and is read back until complete with a result per report
//! (identity, document, watchlist). [`KycProvider`] is the contract,
//! [`wire`] the HTTP format alone, [`client`] the HTTP client, [`sandbox`]
//! a provider that speaks the same protocol.

pub mod client;
pub mod sandbox;
pub mod wire;

use super::RailFuture;

/// What Nixo sends to have an applicant checked.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckRequest {
    /// Our check id: the provider keys on it.
    pub reference: String,
    /// `individual` or `business`.
    pub applicant_type: String,
    /// The profile, as JSON (names, date of birth, address, business data).
    pub applicant: serde_json::Value,
    /// The identity number, in clear for the provider only.
    pub id_number: Option<String>,
    /// (type, reference) of each document.
    pub documents: Vec<(String, String)>,
}

impl std::fmt::Debug for CheckRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRequest")
            .field("reference", &self.reference)
            .field("applicant_type", &self.applicant_type)
            .finish_non_exhaustive()
    }
}

/// A check as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    pub id: String,
    pub complete: bool,
    /// (report name, result): `clear`, `consider` or `missing`.
    pub reports: Vec<(String, String)>,
}

/// What a complete check means for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Verified,
    /// Rejected, with reason codes.
    Rejected(Vec<String>),
    /// Something is missing (reason codes); the account can submit it.
    RequiresInput(Vec<String>),
}

/// Reads a complete check: a `consider` on identity or watchlist rejects; a
/// missing document asks for input; all clear verifies.
pub fn outcome(state: &CheckState) -> Outcome {
    let mut rejected = Vec::new();
    let mut missing = Vec::new();
    for (report, result) in &state.reports {
        match (report.as_str(), result.as_str()) {
            (_, "clear") => {}
            ("identity", _) => rejected.push("identity_mismatch".to_string()),
            ("watchlist", _) => rejected.push("watchlist_match".to_string()),
            ("document", "missing") => missing.push("document_missing".to_string()),
            ("document", _) => rejected.push("document_invalid".to_string()),
            (other, _) => rejected.push(format!("{other}_failed")),
        }
    }
    if !rejected.is_empty() {
        Outcome::Rejected(rejected)
    } else if !missing.is_empty() {
        Outcome::RequiresInput(missing)
    } else {
        Outcome::Verified
    }
}

/// An identity-verification provider.
pub trait KycProvider: Send + Sync {
    /// Creates a check (or finds the one made with the same reference).
    fn create_check<'a>(&'a self, request: &'a CheckRequest) -> RailFuture<'a, String>;
    /// Reads a check.
    fn check<'a>(&'a self, id: &'a str) -> RailFuture<'a, CheckState>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(reports: &[(&str, &str)]) -> CheckState {
        CheckState {
            id: "chk_1".into(),
            complete: true,
            reports: reports.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn results_map_to_outcomes() {
        assert_eq!(
            outcome(&state(&[("identity", "clear"), ("document", "clear")])),
            Outcome::Verified
        );
        assert_eq!(
            outcome(&state(&[("identity", "clear"), ("document", "missing")])),
            Outcome::RequiresInput(vec!["document_missing".into()])
        );
        assert_eq!(
            outcome(&state(&[("identity", "consider"), ("document", "missing")])),
            Outcome::Rejected(vec!["identity_mismatch".into()])
        );
    }
}
