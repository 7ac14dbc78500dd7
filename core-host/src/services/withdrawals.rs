//! Withdrawals (money out of a wallet to M-Pesa or a bank account, the
//! Nexbit document's `type: "withdrawal"`): a payout from the named wallet
//! to the account holder's own destination, on the same rails, rules and
//! hold as `/v1/payouts`. The answer waits a short while for the rail: a
//! confirmation within [`WITHDRAWAL_WAIT_MS`] answers SETTLED, otherwise
//! the withdrawal is PROCESSING and ends later (settled, or reversed with
//! the funds released).

use super::payouts::store::Payout;
use super::payouts::{self, CreatePayout};
use super::{Actor, ServiceError, ServiceResult, Services};
use nixo_api::payments::WithdrawalRequest;
use nixo_api::payouts::{PayoutMethod, PayoutRequest, RecipientAccount};
use nixo_api::types::PayoutStatus;

/// How long a withdrawal waits for its rail's answer (config
/// `NIXO_WITHDRAWAL_WAIT_MS`).
pub const WITHDRAWAL_WAIT_MS: i64 = 5_000;
/// How often the wait looks at the payout.
const WAIT_POLL_MS: u64 = 20;
/// The description the rail carries.
const DESCRIPTION: &str = "Nexbit withdrawal";
/// The creditor name when the account has none on record.
const HOLDER_FALLBACK: &str = "Account holder";

/// Runs a withdrawal and waits (briefly) for its rail.
pub async fn withdraw(
    services: &Services,
    actor: &Actor,
    req: &WithdrawalRequest,
    idempotency_key: Option<&str>,
) -> ServiceResult<Payout> {
    // A withdrawal goes to the account holder's own bank account or phone.
    let holder = crate::accounts::load(&services.ledger.db, &actor.account_id)
        .await?
        .map(|a| a.name)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| HOLDER_FALLBACK.to_string());
    let account = match req.method {
        PayoutMethod::Mpesa => RecipientAccount::Phone(req.destination.clone()),
        PayoutMethod::Bank => RecipientAccount::Iban(req.destination.clone()),
    };
    let command = CreatePayout {
        actor: actor.clone(),
        request: PayoutRequest {
            amount_minor: req.amount_minor,
            currency: req.currency,
            destination_country: None,
            destination_currency: None,
            method: req.method,
            full_name: holder.chars().take(nixo_api::payouts::RECIPIENT_NAME_LEN_MAX).collect(),
            account,
            description: Some(DESCRIPTION.into()),
            metadata: req.metadata.clone(),
        },
        // Its own namespace: a payout and a withdrawal never share a key.
        idempotency_key: idempotency_key.map(|k| format!("withdrawal:{k}")),
        from_wallet: Some(req.from_wallet),
    };
    let payout = payouts::create(services, command).await.map_err(|err| match err {
        // The payout's recipient is the withdrawal's destination.
        ServiceError::Invalid { field, message } if field.starts_with("recipient.") => ServiceError::Invalid {
            field: "destination".into(),
            message,
        },
        other => other,
    })?;
    wait_for_rail(services, payout).await
}

/// The payout once its rail answered, or as it is when the wait runs out.
async fn wait_for_rail(services: &Services, payout: Payout) -> ServiceResult<Payout> {
    if payout.status != PayoutStatus::Processing {
        return Ok(payout);
    }
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(services.rails.withdrawal_wait_ms.max(0) as u64);
    let mut latest = payout;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(WAIT_POLL_MS)).await;
        if let Some(now) = payouts::store::load(&services.ledger.db, &latest.id).await? {
            latest = now;
        }
        if latest.status != PayoutStatus::Processing {
            break;
        }
    }
    Ok(latest)
}
