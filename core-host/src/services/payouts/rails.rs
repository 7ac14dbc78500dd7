//! Payouts on their rails: submission (a durable job per payout), the
//! bank's status-report feed (a periodic job), Daraja's results (callbacks,
//! and a status query when none comes), and the outcome of each: posted or
//! released in the same database transaction as the payout's new status
//! and its event.
//!
//! Crash safety: the submission job is written with the payout; a payout is
//! marked `submitting` before the rail is called and the rail request
//! carries a reference derived from the payout id (pain.001 MsgId,
//! Daraja OriginatorConversationID), so a retry after a crash is the same
//! request to the rail, never a second payment. An answer applies once:
//! the ledger hold can be resolved only once, and the payout's update is
//! guarded on its previous state.

use super::store::{self, Payout};
use super::{ServiceError, ServiceResult, Services};
use crate::jobs::NewJob;
use crate::jobs::runner::ClaimedJob;
use crate::ledger::{LedgerError, Resolution, Statement};
use crate::providers::RailError;
use crate::providers::bank::{self, BankRail, CreditTransfer, Debtor, StatusReport, TxStatus};
use crate::providers::mpesa::{self, B2cPayment, B2cResult, MobileMoneyRail, StatusQuery, daraja};
use nixo_api::payouts::PayoutMethod;
use nixo_api::types::PayoutStatus;
use serde_json::json;
use std::sync::Arc;

/// The bank feed job, and how often it reads the feed.
pub const BANK_REPORTS_JOB: &str = "bank.reports";
pub const BANK_REPORTS_INTERVAL_MS: i64 = 1_000;
/// Reports read at most per run.
pub const BANK_REPORTS_PER_RUN_MAX: usize = 500;
/// The M-Pesa status check job: when no result came within
/// [`MPESA_RESULT_WAIT_MS`] of acceptance, Nixo asks Daraja, up to
/// [`MPESA_STATUS_QUERIES_MAX`] times.
pub const MPESA_CHECK_JOB: &str = "payout.mpesa_check";
pub const MPESA_RESULT_WAIT_MS: i64 = 60_000;
pub const MPESA_STATUS_QUERIES_MAX: i64 = 5;

/// The rails payouts travel on, and how Nixo identifies itself on them.
pub struct PayoutRails {
    pub bank: Arc<dyn BankRail>,
    pub mpesa: Arc<dyn MobileMoneyRail>,
    /// Nixo's account at the bank (the debtor of every credit transfer).
    pub debtor: Debtor,
    pub initiating_party: String,
    /// Public base URL Daraja posts results to (the gateway's).
    pub callback_base_url: String,
    /// The secret path token of the M-Pesa callback URLs.
    pub callback_token: String,
    /// How long to wait for a Daraja result before asking.
    pub mpesa_result_wait_ms: i64,
    /// How long to wait for an STK push's callback before asking.
    pub stk_result_wait_ms: i64,
    /// How long a withdrawal waits for its rail's answer before it answers
    /// PROCESSING.
    pub withdrawal_wait_ms: i64,
}

impl PayoutRails {
    pub fn callback_url(&self, template: &str) -> String {
        format!(
            "{}{}",
            self.callback_base_url.trim_end_matches('/'),
            template.replace("{token}", &self.callback_token)
        )
    }

    /// Whether a callback's path token is ours (constant time).
    pub fn token_ok(&self, token: &str) -> bool {
        let (a, b) = (token.as_bytes(), self.callback_token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The pain.001 message id of a payout: derived from it, so a resubmission
/// is the same message (`Max35Text`).
pub fn message_id(payout_id: &str) -> String {
    format!("NIXO-{payout_id}")
}

fn credit_transfer(rails: &PayoutRails, p: &Payout) -> CreditTransfer {
    let created = chrono::DateTime::from_timestamp_millis(p.created_at_ms).unwrap_or_default();
    CreditTransfer {
        message_id: message_id(&p.id),
        created_at: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        initiating_party: rails.initiating_party.clone(),
        end_to_end_id: p.id.clone(),
        execution_date: created.format("%Y-%m-%d").to_string(),
        debtor: rails.debtor.clone(),
        amount_minor: p.destination_amount_minor,
        currency: p.destination_currency,
        creditor_name: p.recipient_name.chars().take(bank::pain001::NAME_LEN_MAX).collect(),
        creditor_iban: p.recipient_account.clone(),
        remittance: format!("Nixo payout {}", p.id),
        sepa: bank::is_sepa(p.destination_currency, &p.recipient_account),
    }
}

fn b2c_payment(rails: &PayoutRails, p: &Payout) -> B2cPayment {
    B2cPayment {
        originator_id: p.id.clone(),
        msisdn: p.recipient_account.clone(),
        amount_kes: p.destination_amount_minor / 100,
        remarks: p
            .description
            .clone()
            .unwrap_or_else(|| "Nixo payout".into())
            .chars()
            .take(100)
            .collect(),
        occasion: p.id.clone(),
        result_url: rails.callback_url(nixo_api::schema::MPESA_B2C_RESULT_PATH),
        timeout_url: rails.callback_url(nixo_api::schema::MPESA_B2C_TIMEOUT_PATH),
    }
}

/// Applies `after` (from `before`) without moving money.
async fn save(services: &Services, before: &Payout, after: &Payout, event: Option<&'static str>) -> ServiceResult<()> {
    let effects = store::update(before, after, event);
    services
        .ledger
        .apply_effects(effects, after.updated_at_ms)
        .await
        .map_err(ServiceError::from)
}

/// How a payout ended on its rail.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded {
        rail_status: String,
        receipt: Option<String>,
    },
    Failed {
        rail_status: String,
        code: String,
        message: String,
    },
}

/// Times [`conclude`] reads the payout again when it changed (its rail
/// state moved on) while the answer was being applied.
pub const CONCLUDE_ATTEMPTS_MAX: u32 = 3;

/// Posts or releases the payout's hold with its new status, once. A second
/// answer for a payout already ended is a no-op (`Ok(false)`). A payout that
/// changed underneath (another step of its submission committed meanwhile)
/// is read again and the answer applied to what it is now.
pub async fn conclude(services: &Services, payout_id: &str, outcome: Outcome) -> ServiceResult<bool> {
    let mut attempt = 1;
    loop {
        match conclude_once(services, payout_id, &outcome).await {
            Err(ServiceError::Conflict {
                code: PAYOUT_CHANGED, ..
            }) if attempt < CONCLUDE_ATTEMPTS_MAX => {
                attempt += 1;
            }
            Err(ServiceError::Conflict {
                code: PAYOUT_CHANGED,
                message,
            }) => return Err(ServiceError::Internal(anyhow::anyhow!("{message}"))),
            other => return other,
        }
    }
}

/// The conflict [`conclude_once`] reports when the payout changed meanwhile.
const PAYOUT_CHANGED: &str = "payout_changed";

async fn conclude_once(services: &Services, payout_id: &str, outcome: &Outcome) -> ServiceResult<bool> {
    let db = &services.ledger.db;
    let Some(p) = store::load(db, payout_id).await? else {
        return Err(ServiceError::not_found(
            "payout",
            format!("No such payout: {payout_id}"),
        ));
    };
    if !matches!(p.status, PayoutStatus::Processing) {
        tracing::info!(payout = %p.id, status = store::status_text(p.status), "rail answer for a payout already ended: ignored");
        return Ok(false);
    }
    let now_ms = services.clock.now_ms();
    let (after, resolution, event) = match outcome {
        Outcome::Succeeded { rail_status, receipt } => {
            let mut after = p.moved(PayoutStatus::Succeeded, None, now_ms);
            after.rail_status = Some(rail_status.clone());
            after.rail_receipt = receipt.clone().or(after.rail_receipt);
            (after, Resolution::Post(None), store::PAYOUT_SUCCEEDED)
        }
        Outcome::Failed {
            rail_status,
            code,
            message,
        } => {
            let mut after = p.moved(PayoutStatus::Failed, Some(code), now_ms);
            after.rail_status = Some(rail_status.clone());
            after.failure_code = Some(code.clone());
            after.failure_message = Some(message.clone());
            (after, Resolution::Void, store::PAYOUT_FAILED)
        }
    };
    let mut after = after;
    after.rail_state = store::RAIL_ANSWERED;
    let tx = p
        .transaction_id
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("payout {} has no hold", p.id)))?;
    let effects = store::update(&p, &after, Some(event));
    match services.ledger.resolve_with(tx, resolution, effects, now_ms).await {
        Ok(_) => {
            tracing::info!(payout = %p.id, status = store::status_text(after.status),
                failure_code = after.failure_code.as_deref().unwrap_or(""), "payout ended");
            Ok(true)
        }
        Err(LedgerError::EffectRefused(_) | LedgerError::NotPending(_)) => {
            let now = store::load(db, payout_id).await?;
            match now {
                Some(now) if now.status != PayoutStatus::Processing => Ok(false),
                _ => Err(ServiceError::Conflict {
                    code: PAYOUT_CHANGED,
                    message: format!("payout {payout_id} changed while its answer was applied").into(),
                }),
            }
        }
        Err(LedgerError::PendingExpired(_)) => {
            // The hold ran out before the rail answered: nothing can be posted.
            Err(ServiceError::Internal(anyhow::anyhow!(
                "payout {payout_id}: the hold expired before the rail's answer"
            )))
        }
        Err(other) => Err(other.into()),
    }
}

/// Nixo's failure code for a bank rejection reason.
pub fn bank_failure_code(reason: Option<&str>) -> &'static str {
    match reason {
        Some("AC01") | Some("AC02") | Some("AC03") => "invalid_account_number",
        Some("AC04") | Some("AC06") => "account_closed",
        Some("AM04") => "insufficient_funds",
        Some("AG01") | Some("AG02") => "transaction_forbidden",
        Some("BE01") | Some("BE04") | Some("RC01") => "recipient_details_invalid",
        _ => "declined",
    }
}

/// The `payout.submit` job: hand the payout to its rail.
pub async fn submit(services: &Services, rails: &PayoutRails, job: &ClaimedJob) -> anyhow::Result<()> {
    let payout_id = job.payload["payout_id"].as_str().unwrap_or_default().to_string();
    let db = &services.ledger.db;
    let Some(p) = store::load(db, &payout_id).await? else {
        anyhow::bail!("no payout {payout_id}");
    };
    if p.status != PayoutStatus::Processing || matches!(p.rail_state, store::RAIL_SUBMITTED | store::RAIL_ANSWERED) {
        return Ok(());
    }
    let now_ms = services.clock.now_ms();
    let p = if p.rail_state == store::RAIL_UNSUBMITTED {
        let mut submitting = p.clone();
        submitting.rail_state = store::RAIL_SUBMITTING;
        submitting.updated_at_ms = now_ms;
        match save(services, &p, &submitting, None).await {
            Ok(()) => submitting,
            // Canceled meanwhile: nothing to submit.
            Err(_) => return Ok(()),
        }
    } else {
        p
    };
    match p.method {
        PayoutMethod::Bank => {
            let transfer = credit_transfer(rails, &p);
            match rails.bank.submit(&transfer).await {
                Ok(ack) => {
                    let mut after = p.clone();
                    after.rail_state = store::RAIL_SUBMITTED;
                    after.rail_reference = Some(transfer.message_id.clone());
                    after.rail_status = ack.report.group_status.clone();
                    after.updated_at_ms = services.clock.now_ms();
                    save(services, &p, &after, None).await?;
                    Ok(())
                }
                Err(RailError::Rejected { code, message }) => {
                    // Account and amount reasons map like the report's; a
                    // refused file (FF01, DU01 …) is the rail's refusal.
                    let failure = if code.starts_with("AC") || code.starts_with("AM") {
                        bank_failure_code(Some(&code))
                    } else {
                        "rail_rejected"
                    };
                    conclude(
                        services,
                        &p.id,
                        Outcome::Failed {
                            rail_status: "RJCT".into(),
                            code: failure.into(),
                            message: format!("The bank refused the transfer ({code}): {message}"),
                        },
                    )
                    .await?;
                    Ok(())
                }
                Err(transient) => Err(anyhow::anyhow!(transient)),
            }
        }
        PayoutMethod::Mpesa => {
            let payment = b2c_payment(rails, &p);
            match rails.mpesa.pay(&payment).await {
                Ok(accepted) => {
                    let now_ms = services.clock.now_ms();
                    let mut after = p.clone();
                    after.rail_state = store::RAIL_SUBMITTED;
                    after.rail_reference = Some(accepted.conversation_id.clone());
                    after.rail_status = Some("accepted".into());
                    after.updated_at_ms = now_ms;
                    let mut effects = store::update(&p, &after, None);
                    effects.push(crate::ledger::Effect::Job(check_job(
                        &p.id,
                        1,
                        now_ms + rails.mpesa_result_wait_ms,
                        now_ms,
                    )));
                    services.ledger.apply_effects(effects, now_ms).await?;
                    Ok(())
                }
                Err(RailError::Rejected { code, message }) => {
                    conclude(
                        services,
                        &p.id,
                        Outcome::Failed {
                            rail_status: code.clone(),
                            code: "rail_rejected".into(),
                            message: format!("M-Pesa refused the payment ({code}): {message}"),
                        },
                    )
                    .await?;
                    Ok(())
                }
                Err(transient) => Err(anyhow::anyhow!(transient)),
            }
        }
    }
}

fn check_job(payout_id: &str, query: i64, run_at_ms: i64, now_ms: i64) -> NewJob {
    NewJob::new(
        MPESA_CHECK_JOB,
        json!({ "payout_id": payout_id, "query": query }),
        now_ms,
    )
    .run_at(run_at_ms)
    .unique(format!("{MPESA_CHECK_JOB}:{payout_id}:{query}"))
}

/// The `payout.mpesa_check` job: no result yet? Ask Daraja, and look again later.
pub async fn mpesa_check(services: &Services, rails: &PayoutRails, job: &ClaimedJob) -> anyhow::Result<()> {
    let payout_id = job.payload["payout_id"].as_str().unwrap_or_default().to_string();
    let query = job.payload["query"].as_i64().unwrap_or(1);
    let Some(p) = store::load(&services.ledger.db, &payout_id).await? else {
        return Ok(());
    };
    if p.status != PayoutStatus::Processing {
        return Ok(());
    }
    let status_query = StatusQuery {
        originator_id: p.id.clone(),
        result_url: rails.callback_url(nixo_api::schema::MPESA_B2C_RESULT_PATH),
        timeout_url: rails.callback_url(nixo_api::schema::MPESA_B2C_TIMEOUT_PATH),
    };
    rails
        .mpesa
        .query_status(&status_query)
        .await
        .map_err(anyhow::Error::new)?;
    tracing::info!(payout = %p.id, query, "asked Daraja for the status of a payout without a result");
    if query < MPESA_STATUS_QUERIES_MAX {
        let now_ms = services.clock.now_ms();
        let job = check_job(
            &p.id,
            query + 1,
            now_ms + rails.mpesa_result_wait_ms * (query + 1),
            now_ms,
        );
        crate::jobs::enqueue_now(&services.ledger, &job, now_ms).await?;
    } else {
        tracing::error!(payout = %p.id, "no M-Pesa result after {MPESA_STATUS_QUERIES_MAX} status queries; an operator must look");
    }
    Ok(())
}

/// The `bank.reports` job: read the bank's feed from where it was left.
pub async fn bank_reports(services: &Services, rails: &PayoutRails) -> anyhow::Result<()> {
    let db = &services.ledger.db;
    let mut cursor: Option<String> = sqlx::query_scalar("SELECT cursor FROM rail_cursors WHERE rail = 'bank'")
        .fetch_optional(&db.pool)
        .await?;
    for _ in 0..BANK_REPORTS_PER_RUN_MAX {
        let Some(item) = rails.bank.next_report(cursor.as_deref()).await? else {
            break;
        };
        ingest_bank_report(services, &item.report).await?;
        let advance = Statement::new(
            "INSERT INTO rail_cursors (rail, cursor) VALUES ('bank', $1)
             ON CONFLICT (rail) DO UPDATE SET cursor = excluded.cursor RETURNING rail",
            vec![item.cursor.as_str().into()],
        );
        services.ledger.write_statements(vec![advance]).await?;
        cursor = Some(item.cursor);
    }
    Ok(())
}

/// Applies one `pain.002`: each transaction's status to its payout, after
/// checking that the report answers the message Nixo sent for it.
pub async fn ingest_bank_report(services: &Services, report: &StatusReport) -> ServiceResult<()> {
    let now_ms = services.clock.now_ms();
    let body = bank::pain002::render(report);
    for tx in &report.transactions {
        let Some(p) = store::load(&services.ledger.db, &tx.end_to_end_id).await? else {
            tracing::warn!(end_to_end_id = %tx.end_to_end_id, "bank report for an unknown payout: ignored");
            continue;
        };
        if p.method != PayoutMethod::Bank || report.original_message_id != message_id(&p.id) {
            tracing::warn!(payout = %p.id, original = %report.original_message_id, "bank report does not answer this payout's message: ignored");
            continue;
        }
        services
            .ledger
            .apply_effects(
                vec![store::rail_message(
                    "bank",
                    "in",
                    "pain.002",
                    Some(&p.id),
                    Some(format!("bank:{}:{}", report.message_id, tx.end_to_end_id)),
                    &body,
                    now_ms,
                )],
                now_ms,
            )
            .await?;
        match TxStatus::from_code(&tx.code) {
            Some(TxStatus::Settled) => {
                conclude(
                    services,
                    &p.id,
                    Outcome::Succeeded {
                        rail_status: tx.code.clone(),
                        receipt: Some(report.message_id.clone()),
                    },
                )
                .await?;
            }
            Some(TxStatus::Rejected) => {
                let reason = tx.reason.as_deref();
                conclude(
                    services,
                    &p.id,
                    Outcome::Failed {
                        rail_status: format!("RJCT/{}", reason.unwrap_or("NARR")),
                        code: bank_failure_code(reason).into(),
                        message: tx.info.clone().unwrap_or_else(|| {
                            format!("The bank rejected the transfer ({})", reason.unwrap_or("RJCT"))
                        }),
                    },
                )
                .await?;
            }
            Some(TxStatus::InProgress) | None => {
                if p.status == PayoutStatus::Processing && p.rail_status.as_deref() != Some(tx.code.as_str()) {
                    let mut after = p.clone();
                    after.rail_status = Some(tx.code.clone());
                    after.updated_at_ms = now_ms;
                    if let Err(err) = save(services, &p, &after, None).await {
                        tracing::info!(payout = %p.id, error = %err, "in-progress status not recorded (the payout moved on)");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Why a Daraja callback was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefused {
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("does not match the payout: {0}")]
    Mismatch(String),
}

/// Applies a Daraja B2C result (from the ResultURL callback): strict
/// parsing, the payout and the conversation cross-checked, the amount
/// checked on success; a repeated result changes nothing.
pub async fn ingest_mpesa_result(
    services: &Services,
    body: &[u8],
) -> ServiceResult<Result<B2cResult, CallbackRefused>> {
    let parsed = match daraja::parse_result(body) {
        Ok(parsed) => parsed,
        Err(why) => return Ok(Err(CallbackRefused::Unreadable(why))),
    };
    let result_code = daraja::integer(&parsed.result_code).unwrap_or(-1);
    let result = B2cResult {
        originator_id: parsed.originator_conversation_id.clone(),
        conversation_id: parsed.conversation_id.clone(),
        result_code,
        description: parsed.result_desc.clone(),
        transaction_id: parsed.transaction_id.clone(),
        amount_kes: parsed.parameter("TransactionAmount").and_then(daraja::whole_shillings),
        receipt: parsed
            .parameter("TransactionReceipt")
            .and_then(|v| v.as_str().map(str::to_string)),
    };
    let Some(p) = store::load(&services.ledger.db, &result.originator_id).await? else {
        return Ok(Err(CallbackRefused::Mismatch(format!(
            "no payout {}",
            result.originator_id
        ))));
    };
    if p.method != PayoutMethod::Mpesa {
        return Ok(Err(CallbackRefused::Mismatch("not an M-Pesa payout".into())));
    }
    if let Some(reference) = &p.rail_reference
        && *reference != result.conversation_id
    {
        return Ok(Err(CallbackRefused::Mismatch(
            "ConversationID differs from Daraja's acceptance".into(),
        )));
    }
    let now_ms = services.clock.now_ms();
    services
        .ledger
        .apply_effects(
            vec![store::rail_message(
                "mpesa",
                "in",
                "b2c.result",
                Some(&p.id),
                Some(format!("mpesa:{}:{}", result.conversation_id, result.result_code)),
                &String::from_utf8_lossy(body),
                now_ms,
            )],
            now_ms,
        )
        .await?;
    let outcome = if result.result_code == 0 {
        let expected = p.destination_amount_minor / 100;
        if result.amount_kes != Some(expected) {
            return Ok(Err(CallbackRefused::Mismatch(format!(
                "TransactionAmount {:?} is not the payout's {expected} KES",
                result.amount_kes
            ))));
        }
        Outcome::Succeeded {
            rail_status: "0".into(),
            receipt: result.receipt.clone().or(result.transaction_id.clone()),
        }
    } else {
        Outcome::Failed {
            rail_status: result.result_code.to_string(),
            code: mpesa::failure_code(result.result_code).into(),
            message: format!("M-Pesa: {} (ResultCode {})", result.description, result.result_code),
        }
    };
    conclude(services, &p.id, outcome).await?;
    Ok(Ok(result))
}

/// A Daraja queue time-out: the request expired in Daraja's queue. Whether
/// it was paid is not known, so Nixo asks at once (a status query) rather
/// than guess.
pub async fn ingest_mpesa_timeout(services: &Services, body: &[u8]) -> ServiceResult<Result<(), CallbackRefused>> {
    let parsed = match daraja::parse_result(body) {
        Ok(parsed) => parsed,
        Err(why) => return Ok(Err(CallbackRefused::Unreadable(why))),
    };
    let Some(p) = store::load(&services.ledger.db, &parsed.originator_conversation_id).await? else {
        return Ok(Err(CallbackRefused::Mismatch("no such payout".into())));
    };
    if p.status == PayoutStatus::Processing {
        let now_ms = services.clock.now_ms();
        crate::jobs::enqueue_now(&services.ledger, &check_job(&p.id, 0, now_ms, now_ms), now_ms).await?;
        services.jobs.wake();
    }
    Ok(Ok(()))
}
