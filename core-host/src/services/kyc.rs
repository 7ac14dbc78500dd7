//! KYC verification: an asynchronous, durable flow.
//!
//! New KYC data writes a `kyc_checks` row and a `kyc.check` job in the same
//! transaction as the account change ([`start_effects`]; an older open check
//! of the account is superseded). The job creates the provider's check
//! under our id as its reference (a retry finds the same check), then polls
//! it with backoff until complete, and applies the outcome in one
//! transaction: the account's status, reasons and KYC level, a history
//! step, and — when verified — the `account.verified` event. A superseded
//! check's answer changes nothing.

use super::Services;
use crate::accounts;
use crate::jobs::NewJob;
use crate::jobs::runner::ClaimedJob;
use crate::ledger::{Effect, LedgerError, Statement};
use crate::providers::RailError;
use crate::providers::kyc::{CheckRequest, Outcome, outcome};
use nixo_api::types::VerificationChange;
use serde_json::{Value, json};
use sqlx::Row;

pub const CHECK_JOB: &str = "kyc.check";
pub const ACCOUNT_VERIFIED: &str = "account.verified";
/// First wait before reading a check again; doubles per read.
pub const POLL_FIRST_MS: i64 = 200;
/// Longest wait between two reads.
pub const POLL_MAX_MS: i64 = 60_000;
/// A check not complete after this long ends the wait: the account goes
/// back to unverified with `provider_timeout`.
pub const CHECK_TIMEOUT_MS: i64 = 7 * 86_400_000;
/// KYC level of a verified account.
pub const VERIFIED_LEVEL: i64 = 2;

fn check_job(check_id: &str, polls: i64, run_at_ms: i64, now_ms: i64) -> NewJob {
    NewJob::new(CHECK_JOB, json!({ "check_id": check_id, "polls": polls }), now_ms).run_at(run_at_ms)
}

/// The effects that start verifying an account with a new check.
pub fn start_effects(account_id: &str, check_id: &str, now_ms: i64) -> Vec<Effect> {
    vec![
        Effect::Sql(Statement::new(
            "UPDATE kyc_checks SET state = 'superseded', updated_at_ms = $2
                  WHERE account_id = $1 AND state IN ('submitting', 'pending')",
            vec![account_id.to_string().into(), now_ms.into()],
        )),
        Effect::Sql(Statement::new(
            "INSERT INTO kyc_checks (id, account_id, state, created_at_ms, updated_at_ms)
                  VALUES ($1, $2, 'submitting', $3, $3)",
            vec![
                check_id.to_string().into(),
                account_id.to_string().into(),
                now_ms.into(),
            ],
        )),
        Effect::Job(check_job(check_id, 0, now_ms, now_ms)),
    ]
}

struct CheckRow {
    account_id: String,
    provider_check_id: Option<String>,
    state: String,
    created_at_ms: i64,
}

async fn load_check(services: &Services, id: &str) -> Result<Option<CheckRow>, sqlx::Error> {
    let row = sqlx::query("SELECT account_id, provider_check_id, state, created_at_ms FROM kyc_checks WHERE id = $1")
        .bind(id)
        .fetch_optional(&services.ledger.db.pool)
        .await?;
    row.map(|r| {
        Ok(CheckRow {
            account_id: r.try_get(0)?,
            provider_check_id: r.try_get(1)?,
            state: r.try_get(2)?,
            created_at_ms: r.try_get(3)?,
        })
    })
    .transpose()
}

fn request(services: &Services, check_id: &str, account: &accounts::AccountRow) -> CheckRequest {
    let mut applicant = account
        .profile
        .get(account.account_type.as_str())
        .cloned()
        .unwrap_or_else(|| json!({}));
    for contact in ["email", "phone"] {
        if let Some(v) = account.profile.get(contact) {
            applicant[contact] = v.clone();
        }
    }
    let documents = account
        .profile
        .get("documents")
        .and_then(Value::as_array)
        .map(|docs| {
            docs.iter()
                .filter_map(|d| Some((d["type"].as_str()?.to_string(), d["reference"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    CheckRequest {
        reference: check_id.to_string(),
        applicant_type: account.account_type.clone(),
        applicant,
        id_number: account
            .id_number_sealed
            .as_deref()
            .and_then(|sealed| services.personal.open(&account.id, sealed)),
        documents,
    }
}

/// The `kyc.check` job.
pub async fn run_check(services: &Services, job: &ClaimedJob) -> anyhow::Result<()> {
    let check_id = job.payload["check_id"].as_str().unwrap_or_default().to_string();
    let polls = job.payload["polls"].as_i64().unwrap_or(0).clamp(0, 64);
    let Some(check) = load_check(services, &check_id).await? else {
        return Ok(());
    };
    if !matches!(check.state.as_str(), "submitting" | "pending") {
        return Ok(());
    }
    let Some(account) = accounts::load(&services.ledger.db, &check.account_id).await? else {
        return Ok(());
    };
    let now_ms = services.clock.now_ms();
    let provider_id = match check.provider_check_id {
        Some(id) => id,
        None => match services.kyc.create_check(&request(services, &check_id, &account)).await {
            Ok(id) => {
                let submitted = Statement::new(
                    "UPDATE kyc_checks SET provider_check_id = $1, state = 'pending', updated_at_ms = $2
                     WHERE id = $3 AND state = 'submitting' RETURNING id",
                    vec![id.as_str().into(), now_ms.into(), check_id.as_str().into()],
                );
                services.ledger.write_statements(vec![submitted]).await?;
                id
            }
            Err(RailError::Rejected { code, .. }) => {
                let refused = Outcome::RequiresInput(vec![format!("provider_refused_{code}")]);
                return settle(services, &check_id, &account, &refused, now_ms).await;
            }
            Err(transient) => return Err(transient.into()),
        },
    };
    let state = match services.kyc.check(&provider_id).await {
        Ok(state) => state,
        Err(RailError::Rejected { code, .. }) => {
            let lost = Outcome::RequiresInput(vec![format!("provider_refused_{code}")]);
            return settle(services, &check_id, &account, &lost, now_ms).await;
        }
        Err(transient) => return Err(transient.into()),
    };
    if !state.complete {
        if now_ms - check.created_at_ms >= CHECK_TIMEOUT_MS {
            let late = Outcome::RequiresInput(vec!["provider_timeout".into()]);
            return settle(services, &check_id, &account, &late, now_ms).await;
        }
        let wait = POLL_FIRST_MS.saturating_mul(1 << polls.min(20)).min(POLL_MAX_MS);
        let next = check_job(&check_id, polls + 1, now_ms + wait, now_ms);
        crate::jobs::enqueue_now(&services.ledger, &next, now_ms).await?;
        return Ok(());
    }
    settle(services, &check_id, &account, &outcome(&state), now_ms).await
}

/// Applies a check's outcome to its account, in one transaction.
async fn settle(
    services: &Services,
    check_id: &str,
    account: &accounts::AccountRow,
    result: &Outcome,
    now_ms: i64,
) -> anyhow::Result<()> {
    let (status, reasons, level) = match result {
        Outcome::Verified => ("verified", Vec::new(), VERIFIED_LEVEL),
        Outcome::Rejected(reasons) => ("rejected", reasons.clone(), 0),
        Outcome::RequiresInput(reasons) => ("unverified", reasons.clone(), 0),
    };
    let reasons_json = Value::from(reasons.clone()).to_string();
    let mut effects = vec![
        Effect::Sql(
            Statement::new(
                "UPDATE kyc_checks SET state = 'complete', outcome = $1, updated_at_ms = $2
                  WHERE id = $3 AND state IN ('submitting', 'pending')",
                vec![
                    json!({ "status": status, "reasons": reasons }).to_string().into(),
                    now_ms.into(),
                    check_id.to_string().into(),
                ],
            )
            .must_change("superseded"),
        ),
        Effect::Sql(Statement::new(
            "UPDATE accounts SET verification_status = $1, verification_reasons = $2, kyc_level = $3,
                     updated_at_ms = $4 WHERE id = $5",
            vec![
                status.into(),
                reasons_json.clone().into(),
                level.into(),
                now_ms.into(),
                account.id.clone().into(),
            ],
        )),
        Effect::Sql(Statement::new(
            "INSERT INTO account_verifications (account_id, status, reasons, check_id, created_at_ms)
                  VALUES ($1, $2, $3, $4, $5)",
            vec![
                account.id.clone().into(),
                status.into(),
                reasons_json.into(),
                check_id.to_string().into(),
                now_ms.into(),
            ],
        )),
    ];
    if status == "verified" {
        let mut verified = account.clone();
        verified.verification_status = status.into();
        verified.verification_reasons = Vec::new();
        verified.kyc_level = u8::try_from(level).unwrap_or(0);
        verified.updated_at_ms = now_ms;
        let mut object = super::accounts::render(services, &verified)
            .await
            .map_err(|e| anyhow::anyhow!("rendering the verified account: {e}"))?;
        object.verification_history.push(VerificationChange {
            status: status.into(),
            reasons: Vec::new(),
            at: now_ms / 1000,
        });
        effects.push(Effect::Event {
            event_type: ACCOUNT_VERIFIED,
            account_id: account
                .platform_account_id
                .clone()
                .unwrap_or_else(|| account.id.clone()),
            environment: account.environment,
            object: serde_json::to_value(object)?,
        });
    }
    match services.ledger.apply_effects(effects, now_ms).await {
        Ok(()) => {
            tracing::info!(account = %account.id, status, "KYC check settled");
            Ok(())
        }
        // A newer check took over: this answer is stale.
        Err(LedgerError::EffectRefused(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}
