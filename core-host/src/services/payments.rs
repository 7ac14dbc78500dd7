//! The Nexbit document's payment answer, `{"status", "data": {tx_id,
//! status, risk_score, rules_applied, error, timestamp}}`, for every kind
//! of payment (transfer, withdrawal, deposit), and
//! `GET /v1/payments/{tx_id}`: where a payment stands now.

use super::payouts::store as payout_store;
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::ledger::{Recorded, TxStatus};
use nixo_api::types::{EnvelopeStatus, PayoutStatus, TransferData, TransferError, TransferResponse, TransferStatus};
use rust_decimal::Decimal;
use serde_json::Number;
use sqlx::Row;

/// Where a payment stands, in the document's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentView {
    pub tx_id: i64,
    pub status: TransferStatus,
    pub risk_score_bp: Option<u16>,
    pub rules_applied: Vec<String>,
    /// (code, message, reasons) when it did not (or will not) settle.
    pub error: Option<(String, String, Vec<String>)>,
    pub created_at_ms: i64,
}

/// A risk score in basis points as the exact decimal the document shows.
pub fn risk_score(score_bp: u16) -> Number {
    let text = Decimal::new(i64::from(score_bp), 4).normalize().to_string();
    text.parse().expect("a decimal is a JSON number")
}

/// RFC 3339 in East Africa Time (`+03:00`), like the document's examples.
pub fn eat_timestamp(at_ms: i64) -> String {
    let eat = chrono::FixedOffset::east_opt(3 * 3600).expect("UTC+3 is an offset");
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .with_timezone(&eat)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

impl PaymentView {
    /// A transfer as the ledger recorded it.
    pub fn of_transfer(recorded: &Recorded, reasons: &[String]) -> PaymentView {
        let (status, error) = match recorded.status {
            TxStatus::Settled => (TransferStatus::Settled, None),
            TxStatus::PendingReview | TxStatus::Pending => (TransferStatus::PendingReview, None),
            TxStatus::Declined => (
                TransferStatus::Declined,
                Some((
                    "transfer_declined".to_string(),
                    "The transfer was declined by risk rules".to_string(),
                    reasons.to_vec(),
                )),
            ),
            TxStatus::Voided | TxStatus::Expired => (
                if recorded.status == TxStatus::Voided {
                    TransferStatus::Voided
                } else {
                    TransferStatus::Expired
                },
                Some((
                    "transfer_voided".to_string(),
                    "The transfer's hold was released without settling".to_string(),
                    Vec::new(),
                )),
            ),
        };
        PaymentView {
            tx_id: recorded.tx_id,
            status,
            risk_score_bp: recorded.risk_score_bp,
            rules_applied: recorded.rules_applied.clone(),
            error,
            created_at_ms: recorded.created_at_ms,
        }
    }

    /// The document's envelope: `success` unless the payment failed.
    pub fn envelope(&self) -> TransferResponse {
        let failed = matches!(
            self.status,
            TransferStatus::Declined | TransferStatus::Voided | TransferStatus::Expired | TransferStatus::Failed
        );
        TransferResponse {
            status: if failed {
                EnvelopeStatus::Failed
            } else {
                EnvelopeStatus::Success
            },
            data: TransferData {
                tx_id: self.tx_id.to_string(),
                status: self.status,
                risk_score: risk_score(self.risk_score_bp.unwrap_or(0)),
                rules_applied: self.rules_applied.clone(),
                error: self
                    .error
                    .clone()
                    .map(|(code, message, reasons)| TransferError { code, message, reasons }),
                timestamp: eat_timestamp(self.created_at_ms),
            },
        }
    }
}

/// The status of a payout-backed payment (a withdrawal).
fn payout_status(p: &payout_store::Payout) -> (TransferStatus, Option<(String, String, Vec<String>)>) {
    let error = || {
        Some((
            p.failure_code.clone().unwrap_or_else(|| "failed".into()),
            p.failure_message
                .clone()
                .unwrap_or_else(|| "The withdrawal did not complete; the funds were released".into()),
            Vec::new(),
        ))
    };
    match p.status {
        PayoutStatus::Succeeded => (TransferStatus::Settled, None),
        PayoutStatus::Processing => (TransferStatus::Processing, None),
        PayoutStatus::Pending => (TransferStatus::PendingReview, None),
        PayoutStatus::Failed if p.failure_code.as_deref() == Some("risk_declined") => {
            (TransferStatus::Declined, error())
        }
        PayoutStatus::Failed | PayoutStatus::Canceled => (TransferStatus::Failed, error()),
    }
}

/// One of the actor's payments by transaction id, as it stands now.
pub async fn status(services: &Services, actor: &Actor, tx_id: i64) -> ServiceResult<PaymentView> {
    let missing = || ServiceError::NotFound {
        field: None,
        message: format!("No such payment: '{tx_id}'").into(),
    };
    let db = &services.ledger.db;
    let row = sqlx::query(
        "SELECT kind, status, risk_score_bp, rules_applied, error_code, created_at_ms FROM transactions
         WHERE id = $1 AND account_id = $2 AND environment = $3",
    )
    .bind(tx_id)
    .bind(actor.account_id.as_str())
    .bind(actor.environment.as_str())
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(missing)?;
    let kind: String = row.try_get(0)?;
    let status: String = row.try_get(1)?;
    let rules: String = row.try_get(3)?;
    let recorded = Recorded {
        tx_id,
        status: TxStatus::parse(&status)
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("unknown stored status {status}")))?,
        replayed: false,
        created_at_ms: row.try_get(5)?,
        risk_score_bp: row.try_get::<Option<i64>, _>(2)?.and_then(|s| u16::try_from(s).ok()),
        rules_applied: serde_json::from_str(&rules).unwrap_or_default(),
    };
    let mut view = PaymentView::of_transfer(&recorded, &[]);
    let error_code: Option<String> = row.try_get(4)?;
    if let (TxStatus::Voided, Some(code @ ("declined_by_review" | "review_expired"))) =
        (recorded.status, error_code.as_deref())
    {
        let message = if code == "review_expired" {
            "Nobody reviewed the payment in time; the hold was released"
        } else {
            "A reviewer declined the payment; the hold was released"
        };
        view.error = Some((code.to_string(), message.to_string(), Vec::new()));
    }
    match kind.as_str() {
        "payout" => {
            let payout_id: Option<String> = sqlx::query_scalar("SELECT id FROM payouts WHERE transaction_id = $1")
                .bind(tx_id)
                .fetch_optional(&db.pool)
                .await?;
            if let Some(p) = match payout_id {
                Some(id) => payout_store::load(db, &id).await?,
                None => None,
            } {
                (view.status, view.error) = payout_status(&p);
            }
        }
        "deposit" => {
            if let Some(d) = super::deposits::by_transaction(db, tx_id).await? {
                (view.status, view.error) = match d.status.as_str() {
                    super::deposits::SUCCEEDED => (TransferStatus::Settled, None),
                    super::deposits::FAILED => (
                        TransferStatus::Failed,
                        Some((
                            d.failure_code.clone().unwrap_or_else(|| "mpesa_failed".into()),
                            format!(
                                "M-Pesa: {} (ResultCode {})",
                                d.result_desc.clone().unwrap_or_default(),
                                d.result_code.unwrap_or(-1)
                            ),
                            Vec::new(),
                        )),
                    ),
                    _ if recorded.status == TxStatus::Pending => (TransferStatus::Processing, None),
                    _ => (view.status, view.error),
                };
            }
        }
        _ => {}
    }
    Ok(view)
}

/// [`status`] of a withdrawal's payout.
pub async fn of_payout(services: &Services, actor: &Actor, p: &payout_store::Payout) -> ServiceResult<PaymentView> {
    let tx_id = p
        .transaction_id
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("payout {} has no transaction", p.id)))?;
    status(services, actor, tx_id).await
}
