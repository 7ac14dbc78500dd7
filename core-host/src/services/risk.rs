//! The fraud rules' view of money leaving a wallet: the facts they are
//! given (account, velocity, metadata) and what the decision log keeps of
//! them. Every service that moves money out of a wallet asks here.

use super::{Actor, ServiceResult, Services};
use crate::money::{Currency, MinorUnits};
use crate::{accounts, ledger, rules};
use serde_json::{Map, Value, json};

/// What is being assessed.
pub struct Subject<'a> {
    pub kind: rules::TransactionKind,
    pub wallet: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    /// As the rules see it (a wallet id, a canonical IBAN or MSISDN).
    pub destination: String,
    /// As the decision log keeps it (personal data masked).
    pub logged_destination: String,
    pub destination_country: Option<String>,
    pub metadata: &'a Map<String, Value>,
}

fn kind_text(kind: rules::TransactionKind) -> &'static str {
    match kind {
        rules::TransactionKind::Transfer => "transfer",
        rules::TransactionKind::Deposit => "deposit",
        rules::TransactionKind::Withdrawal => "withdrawal",
        rules::TransactionKind::Payout => "payout",
    }
}

/// Runs every fraud rule on the subject: their combined verdicts, and the
/// input as the decision log records it.
pub async fn assess(
    services: &Services,
    actor: &Actor,
    subject: Subject<'_>,
) -> ServiceResult<(rules::Verdicts, Value)> {
    let now_ms = services.clock.now_ms();
    let ledger = &services.ledger;
    let currency = subject.currency;
    let account = accounts::facts(&ledger.db, &actor.account_id, now_ms).await?;
    let ledger::VelocityWindows { last_hour, last_day } = ledger.velocity(subject.wallet, now_ms).await?;
    let facts = rules::Transaction {
        kind: subject.kind,
        amount: rules::Money {
            amount: currency.to_decimal(subject.amount_minor).to_string(),
            currency: currency.code.to_string(),
        },
        source: subject.wallet.to_string(),
        destination: subject.destination,
        destination_country: subject.destination_country.clone(),
        account: rules::AccountFacts {
            kyc_level: account.kyc_level,
            age_days: account.age_days,
            sandbox: actor.environment == ledger::Environment::Sandbox,
        },
        velocity: rules::VelocityFacts {
            count_last_hour: last_hour.count,
            sum_last_hour: currency.to_decimal(last_hour.sum_minor).to_string(),
            count_last_day: last_day.count,
            sum_last_day: currency.to_decimal(last_day.sum_minor).to_string(),
        },
        metadata: subject
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    };
    let verdicts = services.rules.check_fraud(&facts);
    let mut logged = json!({
        "kind": kind_text(subject.kind),
        "amount": facts.amount.amount,
        "currency": facts.amount.currency,
        "source": facts.source,
        "destination": subject.logged_destination,
        "account": { "kyc_level": account.kyc_level, "age_days": account.age_days },
        "velocity": { "count_last_hour": last_hour.count, "count_last_day": last_day.count },
    });
    if let Some(country) = subject.destination_country {
        logged["destination_country"] = json!(country);
    }
    Ok((verdicts, logged))
}
