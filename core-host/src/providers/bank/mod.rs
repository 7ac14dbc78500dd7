//! The bank rail: ISO 20022 customer credit transfers.
//!
//! Nixo sends one `pain.001.001.09` per payout (end-to-end id = payout id,
//! message id derived from it, so a resubmission is recognisably the same
//! message) and reads the bank's `pain.002.001.10` status reports from a
//! feed. [`BankRail`] is the contract; [`host_to_host`] is the HTTP client a
//! real bank connection uses, [`sandbox`] a bank that speaks the same
//! messages. [`pain001`] and [`pain002`] are the wire formats alone.

pub mod host_to_host;
pub mod pain001;
pub mod pain002;
pub mod sandbox;

use super::{RailError, RailFuture};
use crate::money::Currency;

/// The ordering party's account at the bank (Nixo's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debtor {
    pub name: String,
    pub iban: String,
    pub bic: String,
}

/// One credit transfer to one creditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditTransfer {
    /// `GrpHdr/MsgId`, at most 35 characters.
    pub message_id: String,
    /// `GrpHdr/CreDtTm`, ISO 8601 with offset.
    pub created_at: String,
    /// `GrpHdr/InitgPty/Nm`.
    pub initiating_party: String,
    /// `PmtInf/PmtInfId` and `EndToEndId`: the payout id.
    pub end_to_end_id: String,
    /// `ReqdExctnDt/Dt`, YYYY-MM-DD.
    pub execution_date: String,
    pub debtor: Debtor,
    pub amount_minor: i64,
    pub currency: Currency,
    pub creditor_name: String,
    pub creditor_iban: String,
    /// `RmtInf/Ustrd`.
    pub remittance: String,
    /// SEPA service level (`SvcLvl/Cd=SEPA`, `ChrgBr=SLEV`): EUR to a SEPA country.
    pub sepa: bool,
}

/// ISO 20022 transaction status codes Nixo acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Technical validation passed (ACTC), accepted for processing (ACCP),
    /// settlement in process (ACSP), pending (PDNG): still on its way.
    InProgress,
    /// Settlement completed (ACSC, ACCC): the creditor has the money.
    Settled,
    /// Rejected (RJCT), with a reason code.
    Rejected,
}

impl TxStatus {
    pub fn from_code(code: &str) -> Option<TxStatus> {
        Some(match code {
            "ACTC" | "ACCP" | "ACSP" | "PDNG" | "ACWC" | "PART" | "RCVD" => TxStatus::InProgress,
            "ACSC" | "ACCC" => TxStatus::Settled,
            "RJCT" => TxStatus::Rejected,
            _ => return None,
        })
    }
}

/// One transaction's status in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionStatus {
    pub end_to_end_id: String,
    /// The ISO code as sent (ACSC, RJCT …).
    pub code: String,
    /// `StsRsnInf/Rsn/Cd` (AC01, AC04, AM04 …).
    pub reason: Option<String>,
    /// `StsRsnInf/AddtlInf`.
    pub info: Option<String>,
}

/// A `pain.002` status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub message_id: String,
    pub created_at: String,
    pub original_message_id: String,
    pub original_message_name: String,
    /// `GrpSts`, when the bank states one for the whole message.
    pub group_status: Option<String>,
    /// A group-level reason (a whole message refused: FF01, DU01 …).
    pub group_reason: Option<String>,
    pub original_payment_id: Option<String>,
    pub transactions: Vec<TransactionStatus>,
}

/// What a submission got back at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The bank's immediate report (ACTC when the file passed validation).
    pub report: StatusReport,
}

/// A report from the bank's feed, with the feed position after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    pub cursor: String,
    pub report: StatusReport,
}

/// A bank connection.
pub trait BankRail: Send + Sync {
    /// Submits one credit transfer. The same message again is recognised by
    /// the bank and answered as before (it is not paid twice). A message the
    /// bank refuses as a whole is [`RailError::Rejected`].
    fn submit<'a>(&'a self, transfer: &'a CreditTransfer) -> RailFuture<'a, Acknowledgement>;

    /// The next status report after `cursor` (`None`: from the start), or
    /// `None` when there is none yet.
    fn next_report<'a>(&'a self, cursor: Option<&'a str>) -> RailFuture<'a, Option<FeedItem>>;
}

/// Countries of the SEPA scheme.
pub const SEPA_COUNTRIES: [&str; 36] = [
    "AD", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GI", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK", "SM",
];

/// Whether a transfer travels under the SEPA scheme.
pub fn is_sepa(currency: Currency, creditor_iban: &str) -> bool {
    currency.code == "EUR" && SEPA_COUNTRIES.contains(&creditor_iban.get(..2).unwrap_or_default())
}

pub(crate) fn rejected(code: &str, message: impl Into<String>) -> RailError {
    RailError::Rejected {
        code: code.to_string(),
        message: message.into(),
    }
}
