//! The KYC provider's HTTP format (JSON), apart from any mapping.
//!
//! - `POST /v3/checks` with [`CreateCheck`] → 201 [`Check`] (200 and the
//!   same check when `reference` was seen before).
//! - `GET /v3/checks/{id}` → [`Check`].
//! - Errors: [`ErrorEnvelope`] with a 4xx or 5xx status.
//!
//! Requests carry `Authorization: Token token=<api token>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const CHECKS_PATH: &str = "/v3/checks";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Applicant {
    /// `individual` or `business`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Names, date of birth, address, or the business's data.
    pub profile: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckDocument {
    #[serde(rename = "type")]
    pub kind: String,
    pub file_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateCheck {
    pub reference: String,
    pub applicant: Applicant,
    #[serde(default)]
    pub documents: Vec<CheckDocument>,
    /// Reports to run: `identity`, `document`, `watchlist`.
    pub report_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    /// `clear`, `consider`, or `missing` (nothing to check).
    pub result: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub id: String,
    pub reference: String,
    /// `in_progress` or `complete`.
    pub status: String,
    /// Overall: `clear` or `consider`, once complete.
    pub result: Option<String>,
    #[serde(default)]
    pub reports: Vec<Report>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}
