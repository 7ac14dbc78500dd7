//! Reviews: money a `review` verdict holds (a transfer's hold, a payout or
//! withdrawal held `pending`) waits here for a person. Approve moves it on
//! (the transfer settles, the payout goes to its rail); decline releases it
//! (`declined_by_review`); nobody deciding before `expires_at` releases it
//! too (`review_expired`, the rule plugins' default policy: void).
//!
//! Exactly once: a review is opened in the ledger transaction that holds
//! the money, and closed by an update guarded on `status = 'open'` in the
//! same transaction as the money's move — two approvals, or an approval and
//! the expiry, cannot both win.

use super::payouts::store::{self as payout_store, Payout};
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::db::{Bind, Db};
use crate::ledger::{Effect, Environment, LedgerError, Resolution, Statement};
use crate::money::{Currency, MinorUnits};
use crate::pagination::{self, Listing};
use crate::rules::manifest::ReviewExpiry;
use nixo_api::pagination::ListParams;
use nixo_api::reviews::ReviewFilter;
use nixo_api::types::{self, ObjectType, PayoutStatus, ReviewParties, ReviewStatus};
use serde_json::{Value, json};
use sqlx::Row;

pub const REVIEW_OPENED: &str = "review.opened";
pub const REVIEW_CLOSED: &str = "review.closed";
/// How long a review stays open before it expires (its policy decides).
pub const REVIEW_WINDOW_MS: i64 = 72 * 3_600_000;
/// The periodic job that expires reviews nobody decided, how often, and how many per run.
pub const EXPIRE_JOB: &str = "reviews.expire";
pub const EXPIRE_INTERVAL_MS: i64 = 1_000;
pub const EXPIRE_BATCH_MAX: i64 = 100;
/// Who closes an expired review.
pub const SYSTEM: &str = "system";
const REVIEW_CLOSED_ALREADY: &str = "review_closed";

/// What a review verdict holds, as the service that held it knows it.
#[derive(Debug, Clone)]
pub struct Opening {
    pub subject: &'static str,
    pub payout_id: Option<String>,
    pub amount_minor: i64,
    pub currency: Currency,
    pub parties: ReviewParties,
    pub rules_applied: Vec<String>,
    pub reasons: Vec<String>,
    pub score_bp: u16,
    /// The rules' policy when nobody decides in time.
    pub on_expiry: ReviewExpiry,
}

/// A review as stored.
#[derive(Debug, Clone)]
pub struct ReviewRow {
    pub id: String,
    pub environment: Environment,
    pub account_id: String,
    pub subject: String,
    pub transaction_id: i64,
    pub payout_id: Option<String>,
    pub amount_minor: i64,
    pub currency: Currency,
    pub parties: Value,
    pub rules: Vec<String>,
    pub reasons: Vec<String>,
    pub score_bp: i64,
    pub status: String,
    /// `void` or `approve`: what an expiry does.
    pub on_expiry: String,
    pub closed_by: Option<String>,
    pub note: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

const COLUMNS: &str =
    "id, environment, account_id, subject, transaction_id, payout_id, amount_minor, currency, parties,
    rules, reasons, score_bp, status, closed_by, note, created_at_ms, expires_at_ms, closed_at_ms, on_expiry";

fn from_row(row: &sqlx::any::AnyRow) -> Result<ReviewRow, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Protocol(format!("unknown stored {what}"));
    let environment: String = row.try_get(1)?;
    let currency: String = row.try_get(7)?;
    let text = |i: usize| -> Result<String, sqlx::Error> { row.try_get(i) };
    Ok(ReviewRow {
        id: row.try_get(0)?,
        environment: Environment::parse(&environment).ok_or_else(|| bad("environment"))?,
        account_id: row.try_get(2)?,
        subject: row.try_get(3)?,
        transaction_id: row.try_get(4)?,
        payout_id: row.try_get(5)?,
        amount_minor: row.try_get(6)?,
        currency: Currency::from_code(&currency).ok_or_else(|| bad("currency"))?,
        parties: serde_json::from_str(&text(8)?).unwrap_or(Value::Null),
        rules: serde_json::from_str(&text(9)?).unwrap_or_default(),
        reasons: serde_json::from_str(&text(10)?).unwrap_or_default(),
        score_bp: row.try_get(11)?,
        status: row.try_get(12)?,
        closed_by: row.try_get(13)?,
        note: row.try_get(14)?,
        created_at_ms: row.try_get(15)?,
        expires_at_ms: row.try_get(16)?,
        closed_at_ms: row.try_get(17)?,
        on_expiry: row.try_get(18)?,
    })
}

fn status_of(text: &str) -> ReviewStatus {
    match text {
        "approved" => ReviewStatus::Approved,
        "declined" => ReviewStatus::Declined,
        "expired" => ReviewStatus::Expired,
        _ => ReviewStatus::Open,
    }
}

impl ReviewRow {
    pub fn render(&self) -> types::Review {
        types::Review {
            id: self.id.clone(),
            object: ObjectType::Review,
            subject: self.subject.clone(),
            transaction_id: self.transaction_id.to_string(),
            payout: self.payout_id.clone(),
            amount: match self.currency.to_json_number(self.amount_minor) {
                Value::Number(n) => n,
                other => unreachable!("a JSON number, not {other}"),
            },
            currency: self.currency.code.to_string(),
            parties: ReviewParties {
                from_wallet: self.parties["from_wallet"].as_i64(),
                to_wallet: self.parties["to_wallet"].as_i64(),
                recipient: self.parties["recipient"].as_str().map(str::to_string),
            },
            rules_applied: self.rules.clone(),
            reasons: self.reasons.clone(),
            risk_score: super::payments::risk_score(u16::try_from(self.score_bp).unwrap_or(u16::MAX)),
            status: status_of(&self.status),
            created: self.created_at_ms / 1000,
            expires_at: self.expires_at_ms / 1000,
            closed_at: self.closed_at_ms.map(|ms| ms / 1000),
            closed_by: self.closed_by.clone(),
            note: self.note.clone(),
            on_expiry: self.on_expiry.clone(),
            livemode: self.environment == Environment::Live,
        }
    }
}

/// The effects that open a review for the transaction the movement they
/// ride on records (its id is filled in by the ledger).
pub fn open_effects(actor: &Actor, opening: &Opening, now_ms: i64) -> Vec<Effect> {
    let row = ReviewRow {
        id: crate::ids::new_id("rev_"),
        environment: actor.environment,
        account_id: actor.account_id.clone(),
        subject: opening.subject.to_string(),
        transaction_id: 0,
        payout_id: opening.payout_id.clone(),
        amount_minor: opening.amount_minor,
        currency: opening.currency,
        parties: serde_json::to_value(&opening.parties).expect("parties serialise"),
        rules: opening.rules_applied.clone(),
        reasons: opening.reasons.clone(),
        score_bp: i64::from(opening.score_bp),
        status: "open".into(),
        on_expiry: opening.on_expiry.as_str().into(),
        closed_by: None,
        note: None,
        created_at_ms: now_ms,
        expires_at_ms: now_ms + REVIEW_WINDOW_MS,
        closed_at_ms: None,
    };
    let insert = Effect::Sql(Statement::new(
        "INSERT INTO reviews (id, environment, account_id, subject, transaction_id, payout_id, amount_minor,
                  currency, parties, rules, reasons, score_bp, status, created_at_ms, expires_at_ms, on_expiry)
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'open', $13, $14, $15)",
        vec![
            row.id.clone().into(),
            row.environment.as_str().into(),
            row.account_id.clone().into(),
            row.subject.clone().into(),
            Bind::ThisTransaction,
            row.payout_id.clone().into(),
            row.amount_minor.into(),
            row.currency.code.into(),
            row.parties.to_string().into(),
            json!(row.rules).to_string().into(),
            json!(row.reasons).to_string().into(),
            row.score_bp.into(),
            row.created_at_ms.into(),
            row.expires_at_ms.into(),
            row.on_expiry.clone().into(),
        ],
    ));
    let event = Effect::EventOfTransaction {
        event_type: REVIEW_OPENED,
        account_id: row.account_id.clone(),
        environment: row.environment,
        object: serde_json::to_value(row.render()).expect("a review serialises"),
        field: "transaction_id",
    };
    vec![insert, event]
}

pub async fn load(db: &Db, id: &str) -> Result<Option<ReviewRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM reviews WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// One of the actor's reviews.
pub async fn retrieve(services: &Services, actor: &Actor, id: &str) -> ServiceResult<ReviewRow> {
    let missing = || ServiceError::NotFound {
        field: None,
        message: format!("No such review: '{id}'").into(),
    };
    if !nixo_api::reviews::review_id_ok(id) {
        return Err(missing());
    }
    load(&services.ledger.db, id)
        .await?
        .filter(|r| r.account_id == actor.account_id && r.environment == actor.environment)
        .ok_or_else(missing)
}

/// A page of the actor's reviews, newest first.
pub async fn list(
    services: &Services,
    actor: &Actor,
    filter: &ReviewFilter,
    page: &ListParams,
) -> ServiceResult<(Vec<ReviewRow>, bool)> {
    let mut scope = pagination::Scope::owned_by(actor);
    match filter.open {
        Some(true) => {
            scope.and("status =", Bind::Text("open".into()));
        }
        Some(false) => {
            scope.and("status <>", Bind::Text("open".into()));
        }
        None => {}
    }
    if let Some(reason) = &filter.reason {
        // Reason codes are letters, digits and `_` (checked), stored as a JSON list.
        scope.and("reasons LIKE", Bind::Text(format!("%\"{reason}\"%")));
    }
    scope.created(filter.created);
    let listing = Listing::by_created(COLUMNS, "reviews", scope);
    let rows = pagination::fetch(&services.ledger.db, &listing, page).await?;
    let reviews = rows.rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok((reviews, rows.has_more))
}

/// How a review is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
    /// Expired under the `void` policy: released.
    Expire,
    /// Expired under the `approve` policy: the money moves on.
    ExpireApprove,
}

impl Decision {
    fn status(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Decline => "declined",
            Decision::Expire | Decision::ExpireApprove => "expired",
        }
    }

    /// Whether the held money moves on (else it is released).
    fn moves_on(self) -> bool {
        matches!(self, Decision::Approve | Decision::ExpireApprove)
    }

    /// The failure code of the operation a release fails.
    fn failure_code(self) -> &'static str {
        match self {
            Decision::Expire | Decision::ExpireApprove => "review_expired",
            _ => "declined_by_review",
        }
    }
}

/// The guarded close and its event.
fn close_effects(r: &ReviewRow, decision: Decision, by: &str, note: Option<&str>, now_ms: i64) -> Vec<Effect> {
    let mut closed = r.clone();
    closed.status = decision.status().into();
    closed.closed_by = Some(by.to_string());
    closed.note = note.map(str::to_string);
    closed.closed_at_ms = Some(now_ms);
    vec![
        Effect::Sql(
            Statement::new(
                "UPDATE reviews SET status = $2, closed_by = $3, note = $4, closed_at_ms = $5
                  WHERE id = $1 AND status = 'open'",
                vec![
                    r.id.clone().into(),
                    decision.status().into(),
                    by.into(),
                    note.map(str::to_string).into(),
                    now_ms.into(),
                ],
            )
            .must_change(REVIEW_CLOSED_ALREADY),
        ),
        Effect::Event {
            event_type: REVIEW_CLOSED,
            account_id: r.account_id.clone(),
            environment: r.environment,
            object: serde_json::to_value(closed.render()).expect("a review serialises"),
        },
    ]
}

fn already_closed(r: &ReviewRow) -> ServiceError {
    ServiceError::Conflict {
        code: "review_closed",
        message: format!("Review {} is {} already", r.id, r.status).into(),
    }
}

/// The held payout of a payout review, still pending.
async fn held_payout(services: &Services, r: &ReviewRow) -> ServiceResult<Payout> {
    let id = r.payout_id.as_deref().unwrap_or_default();
    let payout = payout_store::load(&services.ledger.db, id)
        .await?
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("review {} names no payout {id}", r.id)))?;
    Ok(payout)
}

/// Closes a review with `decision`: the money moves (approve) or is
/// released (decline, expire) in the same ledger transaction, once.
pub async fn close(
    services: &Services,
    r: &ReviewRow,
    decision: Decision,
    by: &str,
    note: Option<&str>,
) -> ServiceResult<ReviewRow> {
    if r.status != "open" {
        return Err(already_closed(r));
    }
    let now_ms = services.clock.now_ms();
    let mut effects = close_effects(r, decision, by, note, now_ms);
    let ledger = &services.ledger;
    let outcome = match (r.subject.as_str(), decision.moves_on()) {
        ("transfer", true) => ledger
            .resolve_with(r.transaction_id, Resolution::Post(None), effects, now_ms)
            .await
            .map(drop),
        ("transfer", _) => {
            effects.push(Effect::Sql(Statement::new(
                "UPDATE transactions SET error_code = $2 WHERE id = $1",
                vec![r.transaction_id.into(), decision.failure_code().into()],
            )));
            ledger
                .resolve_with(r.transaction_id, Resolution::Void, effects, now_ms)
                .await
                .map(drop)
        }
        (_, true) => {
            // The payout goes to its rail; its funds stay held until the rail answers.
            let p = held_payout(services, r).await?;
            if p.status != PayoutStatus::Pending {
                return Err(already_closed(r));
            }
            let processing = p.moved(PayoutStatus::Processing, Some("approved_by_review"), now_ms);
            effects.extend(payout_store::update(
                &p,
                &processing,
                Some(payout_store::PAYOUT_PROCESSING),
            ));
            effects.push(Effect::Job(super::payouts::submit_job(&p.id, now_ms)));
            for sql in [
                "UPDATE transactions SET status = 'PENDING' WHERE id = $1 AND status = 'PENDING_REVIEW'",
                "UPDATE account_transactions SET status = 'PENDING' WHERE transaction_id = $1",
            ] {
                effects.push(Effect::Sql(Statement::new(sql, vec![r.transaction_id.into()])));
            }
            ledger.apply_effects(effects, now_ms).await
        }
        (_, _) => {
            let p = held_payout(services, r).await?;
            if p.status != PayoutStatus::Pending {
                return Err(already_closed(r));
            }
            let code = decision.failure_code();
            let mut failed = p.moved(PayoutStatus::Failed, Some(code), now_ms);
            failed.failure_code = Some(code.into());
            failed.failure_message = Some(match decision {
                Decision::Expire => "Nobody reviewed the payout in time; the funds were released".into(),
                _ => "A reviewer declined the payout; the funds were released".into(),
            });
            failed.rail_state = payout_store::RAIL_ANSWERED;
            effects.extend(payout_store::update(&p, &failed, Some(payout_store::PAYOUT_FAILED)));
            ledger
                .resolve_with(r.transaction_id, Resolution::Void, effects, now_ms)
                .await
                .map(drop)
        }
    };
    match outcome {
        Ok(()) => {
            tracing::info!(review = %r.id, status = decision.status(), by, "review closed");
            load(&ledger.db, &r.id)
                .await?
                .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("review {} vanished", r.id)))
        }
        Err(LedgerError::EffectRefused(_) | LedgerError::NotPending(_)) => {
            let now = load(&ledger.db, &r.id).await?.unwrap_or_else(|| r.clone());
            if now.status == "open" && !matches!(decision, Decision::Expire | Decision::ExpireApprove) {
                // The hold ended without the review (the ledger's own expiry).
                return Err(ServiceError::Conflict {
                    code: "review_expired",
                    message: format!("Review {}'s hold was released when it expired", r.id).into(),
                });
            }
            Err(already_closed(&now))
        }
        Err(LedgerError::PendingExpired(_)) => Err(ServiceError::Conflict {
            code: "review_expired",
            message: format!("Review {} expired; its hold was released", r.id).into(),
        }),
        Err(other) => Err(other.into()),
    }
}

/// The `reviews.expire` job: closes reviews past `expires_at` as expired,
/// releasing what they hold.
pub async fn expire_due(services: &Services) -> anyhow::Result<()> {
    let now_ms = services.clock.now_ms();
    let sql = format!(
        "SELECT {COLUMNS} FROM reviews WHERE status = 'open' AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(now_ms)
        .bind(EXPIRE_BATCH_MAX)
        .fetch_all(&services.ledger.db.pool)
        .await?;
    for row in &rows {
        let r = from_row(row)?;
        let decision = if r.on_expiry == ReviewExpiry::Approve.as_str() {
            Decision::ExpireApprove
        } else {
            Decision::Expire
        };
        match close(services, &r, decision, SYSTEM, None).await {
            Ok(_) => {}
            Err(ServiceError::Conflict { .. }) => {
                // The ledger voided the hold first (its own expiry): close the review alone.
                let effects = close_effects(&r, Decision::Expire, SYSTEM, None, now_ms);
                match services.ledger.apply_effects(effects, now_ms).await {
                    Ok(()) | Err(LedgerError::EffectRefused(_)) => {}
                    Err(other) => return Err(other.into()),
                }
            }
            Err(other) => return Err(anyhow::anyhow!("expiring review {}: {other}", r.id)),
        }
    }
    Ok(())
}
