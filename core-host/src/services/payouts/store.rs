//! Payout rows: reading them, rendering them, and the effects that write
//! them (handed to the ledger so they commit with the money they describe).

use crate::db::{Bind, Db};
use crate::ledger::{Effect, Environment, Statement};
use crate::money::{Currency, MinorUnits};
use nixo_api::types::{self, ObjectType, PayoutRecipient, PayoutStatus, PayoutStatusChange};
use serde_json::{Map, Number, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Event types a payout emits.
pub const PAYOUT_CREATED: &str = "payout.created";
pub const PAYOUT_PROCESSING: &str = "payout.processing";
pub const PAYOUT_SUCCEEDED: &str = "payout.succeeded";
pub const PAYOUT_FAILED: &str = "payout.failed";
pub const PAYOUT_CANCELED: &str = "payout.canceled";

/// Where a payout stands with its rail.
pub const RAIL_UNSUBMITTED: &str = "unsubmitted";
/// Being handed to the rail (from here on, cancel is refused).
pub const RAIL_SUBMITTING: &str = "submitting";
pub const RAIL_SUBMITTED: &str = "submitted";
pub const RAIL_ANSWERED: &str = "answered";

pub fn status_text(status: PayoutStatus) -> &'static str {
    match status {
        PayoutStatus::Pending => "pending",
        PayoutStatus::Processing => "processing",
        PayoutStatus::Succeeded => "succeeded",
        PayoutStatus::Failed => "failed",
        PayoutStatus::Canceled => "canceled",
    }
}

pub fn parse_status(text: &str) -> Option<PayoutStatus> {
    Some(match text {
        "pending" => PayoutStatus::Pending,
        "processing" => PayoutStatus::Processing,
        "succeeded" => PayoutStatus::Succeeded,
        "failed" => PayoutStatus::Failed,
        "canceled" => PayoutStatus::Canceled,
        _ => return None,
    })
}

/// One status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub status: PayoutStatus,
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// A payout as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Payout {
    pub id: String,
    pub environment: Environment,
    pub account_id: String,
    pub status: PayoutStatus,
    pub status_reason: Option<String>,
    pub method: nixo_api::payouts::PayoutMethod,
    pub wallet_id: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    pub fee_minor: i64,
    pub destination_country: String,
    pub destination_amount_minor: i64,
    pub destination_currency: Currency,
    pub fx_rate: Option<String>,
    pub recipient_name: String,
    /// Canonical IBAN or MSISDN (personal data: shown masked).
    pub recipient_account: String,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
    pub transaction_id: Option<i64>,
    pub rail_state: &'static str,
    pub rail_reference: Option<String>,
    pub rail_status: Option<String>,
    pub rail_receipt: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub idempotency_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub history: Vec<Change>,
}

/// Everything but the last four characters replaced by `*`.
pub fn mask(account: &str) -> String {
    let chars: Vec<char> = account.chars().collect();
    let keep = chars.len().min(4);
    let hidden = chars.len() - keep;
    let mut out = "*".repeat(hidden);
    out.extend(&chars[hidden..]);
    out
}

fn number(currency: Currency, minor: i64) -> Number {
    match currency.to_json_number(minor) {
        Value::Number(n) => n,
        other => unreachable!("a JSON number, not {other}"),
    }
}

impl Payout {
    /// The API object.
    pub fn render(&self) -> types::Payout {
        use nixo_api::payouts::PayoutMethod;
        let masked = mask(&self.recipient_account);
        types::Payout {
            id: self.id.clone(),
            object: ObjectType::Payout,
            amount: number(self.currency, self.amount_minor),
            currency: self.currency.code.to_string(),
            status: self.status,
            created: self.created_at_ms / 1000,
            destination_country: self.destination_country.clone(),
            destination_currency: self.destination_currency.code.to_string(),
            destination_amount: number(self.destination_currency, self.destination_amount_minor),
            exchange_rate: self.fx_rate.clone(),
            method: self.method.as_str().to_string(),
            recipient: PayoutRecipient {
                full_name: self.recipient_name.clone(),
                account_iban: (self.method == PayoutMethod::Bank).then(|| masked.clone()),
                phone_number: (self.method == PayoutMethod::Mpesa).then_some(masked),
            },
            fee: number(self.currency, self.fee_minor),
            failure_code: self.failure_code.clone(),
            failure_message: self.failure_message.clone(),
            status_history: self
                .history
                .iter()
                .map(|c| PayoutStatusChange {
                    status: c.status,
                    at: c.at_ms / 1000,
                    reason: c.reason.clone(),
                })
                .collect(),
            description: self.description.clone(),
            metadata: self.metadata.clone(),
            livemode: self.environment == Environment::Live,
        }
    }

    fn event(&self, event_type: &'static str) -> Effect {
        Effect::Event {
            event_type,
            account_id: self.account_id.clone(),
            environment: self.environment,
            object: serde_json::to_value(self.render()).expect("a payout serialises"),
        }
    }

    /// Moves to `status` (recorded in the history with `reason`).
    pub fn moved(&self, status: PayoutStatus, reason: Option<&str>, at_ms: i64) -> Payout {
        let mut next = self.clone();
        next.status = status;
        next.status_reason = reason.map(str::to_string);
        next.updated_at_ms = at_ms;
        next.history.push(Change {
            status,
            reason: reason.map(str::to_string),
            at_ms,
        });
        next
    }
}

pub const COLUMNS: &str =
    "id, environment, account_id, status, status_reason, method, wallet_id, amount_minor, currency,
    fee_minor, destination_country, destination_amount_minor, destination_currency, fx_rate, recipient_name,
    recipient_account, description, metadata, transaction_id, rail_state, rail_reference, rail_status, rail_receipt,
    failure_code, failure_message, idempotency_id, created_at_ms, updated_at_ms";

fn rail_state(text: &str) -> &'static str {
    [RAIL_UNSUBMITTED, RAIL_SUBMITTING, RAIL_SUBMITTED, RAIL_ANSWERED]
        .into_iter()
        .find(|s| *s == text)
        .unwrap_or(RAIL_ANSWERED)
}

fn currency(code: &str) -> Result<Currency, sqlx::Error> {
    Currency::from_code(code).ok_or_else(|| sqlx::Error::Protocol(format!("unknown stored currency {code}")))
}

/// A row (in [`COLUMNS`] order), without its history.
pub fn from_row(row: &AnyRow) -> Result<Payout, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Protocol(format!("unknown stored {what}"));
    let environment: String = row.try_get(1)?;
    let status: String = row.try_get(3)?;
    let method: String = row.try_get(5)?;
    let metadata: String = row.try_get(17)?;
    let state: String = row.try_get(19)?;
    Ok(Payout {
        id: row.try_get(0)?,
        environment: Environment::parse(&environment).ok_or_else(|| bad("environment"))?,
        account_id: row.try_get(2)?,
        status: parse_status(&status).ok_or_else(|| bad("status"))?,
        status_reason: row.try_get(4)?,
        method: nixo_api::payouts::PayoutMethod::parse(&method).ok_or_else(|| bad("method"))?,
        wallet_id: row.try_get(6)?,
        amount_minor: row.try_get(7)?,
        currency: currency(&row.try_get::<String, _>(8)?)?,
        fee_minor: row.try_get(9)?,
        destination_country: row.try_get(10)?,
        destination_amount_minor: row.try_get(11)?,
        destination_currency: currency(&row.try_get::<String, _>(12)?)?,
        fx_rate: row.try_get(13)?,
        recipient_name: row.try_get(14)?,
        recipient_account: row.try_get(15)?,
        description: row.try_get(16)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        transaction_id: row.try_get(18)?,
        rail_state: rail_state(&state),
        rail_reference: row.try_get(20)?,
        rail_status: row.try_get(21)?,
        rail_receipt: row.try_get(22)?,
        failure_code: row.try_get(23)?,
        failure_message: row.try_get(24)?,
        idempotency_id: row.try_get(25)?,
        created_at_ms: row.try_get(26)?,
        updated_at_ms: row.try_get(27)?,
        history: Vec::new(),
    })
}

/// Attaches the status history of each payout (one query for all).
pub async fn with_history(db: &Db, mut payouts: Vec<Payout>) -> Result<Vec<Payout>, sqlx::Error> {
    if payouts.is_empty() {
        return Ok(payouts);
    }
    let placeholders: Vec<String> = (1..=payouts.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT payout_id, status, reason, at_ms FROM payout_status_history WHERE payout_id IN ({}) ORDER BY id",
        placeholders.join(", ")
    );
    let binds: Vec<Bind> = payouts.iter().map(|p| Bind::Text(p.id.clone())).collect();
    let rows = crate::db::bind_all(sqlx::query(&sql), &binds)
        .fetch_all(&db.pool)
        .await?;
    for row in rows {
        let id: String = row.try_get(0)?;
        let status: String = row.try_get(1)?;
        let change = Change {
            status: parse_status(&status).ok_or_else(|| sqlx::Error::Protocol("unknown stored status".into()))?,
            reason: row.try_get(2)?,
            at_ms: row.try_get(3)?,
        };
        if let Some(p) = payouts.iter_mut().find(|p| p.id == id) {
            p.history.push(change);
        }
    }
    Ok(payouts)
}

/// A payout by id, with its history.
pub async fn load(db: &Db, id: &str) -> Result<Option<Payout>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payouts WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_history(db, vec![from_row(&row)?]).await?.pop())
}

/// The payout a client's idempotency identity made, if any.
pub async fn by_idempotency_id(db: &Db, idempotency_id: &str) -> Result<Option<Payout>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payouts WHERE idempotency_id = $1");
    let row = sqlx::query(&sql).bind(idempotency_id).fetch_optional(&db.pool).await?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_history(db, vec![from_row(&row)?]).await?.pop())
}

/// What this wallet already sent on this rail since `since_ms` (for daily limits).
pub async fn sent_since(db: &Db, wallet_id: i64, method: &str, since_ms: i64) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payouts
         WHERE wallet_id = $1 AND method = $2 AND created_at_ms >= $3
           AND status IN ('pending', 'processing', 'succeeded')",
    )
    .bind(wallet_id)
    .bind(method)
    .bind(since_ms)
    .fetch_one(&db.pool)
    .await?;
    row.try_get(0)
}

fn history_effect(p: &Payout, change: &Change) -> Effect {
    Effect::Sql(Statement::new(
        "INSERT INTO payout_status_history (payout_id, status, reason, at_ms) VALUES ($1, $2, $3, $4)",
        vec![
            p.id.clone().into(),
            status_text(change.status).into(),
            change.reason.clone().into(),
            change.at_ms.into(),
        ],
    ))
}

/// Effects that write a new payout (its whole history so far, and an event
/// per step). `transaction_id` is looked up by the ledger identity of its
/// hold, written in the same transaction just before.
pub fn insert(p: &Payout, hold_identity: Option<&str>, events: &[(&'static str, &Payout)]) -> Vec<Effect> {
    let mut effects = vec![Effect::Sql(
        Statement::new(
            "INSERT INTO payouts (id, environment, account_id, status, status_reason, method, wallet_id, amount_minor,
                 currency, fee_minor, destination_country, destination_amount_minor, destination_currency, fx_rate,
                 recipient_name, recipient_account, description, metadata, transaction_id, rail_state, idempotency_id,
                 created_at_ms, updated_at_ms)
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 (SELECT id FROM transactions WHERE idempotency_id = $19), $20, $21, $22, $23)
              ON CONFLICT DO NOTHING",
            vec![
                p.id.clone().into(),
                p.environment.as_str().into(),
                p.account_id.clone().into(),
                status_text(p.status).into(),
                p.status_reason.clone().into(),
                p.method.as_str().into(),
                p.wallet_id.into(),
                p.amount_minor.into(),
                p.currency.code.into(),
                p.fee_minor.into(),
                p.destination_country.clone().into(),
                p.destination_amount_minor.into(),
                p.destination_currency.code.into(),
                p.fx_rate.clone().into(),
                p.recipient_name.clone().into(),
                p.recipient_account.clone().into(),
                p.description.clone().into(),
                Value::Object(p.metadata.clone()).to_string().into(),
                hold_identity.map(str::to_string).into(),
                p.rail_state.into(),
                p.idempotency_id.clone().into(),
                p.created_at_ms.into(),
                p.updated_at_ms.into(),
            ],
        )
        .must_change(PAYOUT_EXISTS),
    )];
    effects.extend(p.history.iter().map(|c| history_effect(p, c)));
    effects.extend(events.iter().map(|(t, snapshot)| snapshot.event(t)));
    effects
}

/// The refusal of [`insert`] when the payout (or its idempotency identity) exists.
pub const PAYOUT_EXISTS: &str = "payout_exists";
/// The refusal of [`update`] when the payout moved on meanwhile.
pub const PAYOUT_MOVED: &str = "payout_moved";

/// Effects that move `before` to `after`, guarded on `before`'s status and
/// rail state (a concurrent change makes it [`PAYOUT_MOVED`]); new history
/// entries and `event` (if any) with them.
pub fn update(before: &Payout, after: &Payout, event: Option<&'static str>) -> Vec<Effect> {
    let mut effects = vec![Effect::Sql(
        Statement::new(
            "UPDATE payouts SET status = $2, status_reason = $3, rail_state = $4, rail_reference = $5,
                 rail_status = $6, rail_receipt = $7, failure_code = $8, failure_message = $9, updated_at_ms = $10
              WHERE id = $1 AND status = $11 AND rail_state = $12",
            vec![
                after.id.clone().into(),
                status_text(after.status).into(),
                after.status_reason.clone().into(),
                after.rail_state.into(),
                after.rail_reference.clone().into(),
                after.rail_status.clone().into(),
                after.rail_receipt.clone().into(),
                after.failure_code.clone().into(),
                after.failure_message.clone().into(),
                after.updated_at_ms.into(),
                status_text(before.status).into(),
                before.rail_state.into(),
            ],
        )
        .must_change(PAYOUT_MOVED),
    )];
    effects.extend(
        after.history[before.history.len()..]
            .iter()
            .map(|c| history_effect(after, c)),
    );
    if let Some(event_type) = event {
        effects.push(after.event(event_type));
    }
    effects
}

/// A raw rail message kept for audit; a repeated `dedupe_key` is ignored.
pub fn rail_message(
    rail: &str,
    direction: &str,
    kind: &str,
    payout_id: Option<&str>,
    dedupe_key: Option<String>,
    body: &str,
    at_ms: i64,
) -> Effect {
    Effect::Sql(Statement::new(
        "INSERT INTO rail_messages (rail, direction, kind, payout_id, dedupe_key, body, at_ms)
              VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        vec![
            rail.into(),
            direction.into(),
            kind.into(),
            payout_id.map(str::to_string).into(),
            dedupe_key.into(),
            body.into(),
            at_ms.into(),
        ],
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_keep_the_last_four() {
        assert_eq!(
            super::mask("MA64011519000001205000534921"),
            "************************4921"
        );
        assert_eq!(super::mask("254712345678"), "********5678");
        assert_eq!(super::mask("12"), "12");
    }
}
