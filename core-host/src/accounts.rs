//! Accounts: platforms (the owners of API keys) and the customer accounts
//! under them (individuals and businesses with KYC data). Rows only; the
//! rules are in `services::accounts` and `services::kyc`.

use crate::db::Db;
use crate::ledger::Environment;
use rand::Rng;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What the rules are told about an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFacts {
    pub kyc_level: u8,
    pub age_days: u32,
}

pub const MS_PER_DAY: i64 = 86_400_000;

/// A new id with `prefix` and 16 base62 characters.
pub fn new_id(prefix: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let suffix: String = (0..16)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Creates a platform account (verified at onboarding, at `kyc_level`) and
/// returns its id (`acct_` + 16 base62 characters).
pub async fn create(db: &Db, environment: Environment, name: &str, kyc_level: u8) -> Result<String, sqlx::Error> {
    let id = new_id("acct_");
    let now_ms = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO accounts (id, environment, name, kyc_level, created_at_ms, account_type, verification_status,
             updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, 'platform', 'verified', $5)",
    )
    .bind(&id)
    .bind(environment.as_str())
    .bind(name)
    .bind(i64::from(kyc_level))
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    sqlx::query("INSERT INTO account_verifications (account_id, status, created_at_ms) VALUES ($1, 'verified', $2)")
        .bind(&id)
        .bind(now_ms)
        .execute(&db.pool)
        .await?;
    Ok(id)
}

/// Whether `account_id` is a customer account of `platform_id`.
pub async fn belongs_to(
    db: &Db,
    account_id: &str,
    platform_id: &str,
    environment: Environment,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 FROM accounts WHERE id = $1 AND platform_account_id = $2 AND environment = $3")
        .bind(account_id)
        .bind(platform_id)
        .bind(environment.as_str())
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.is_some())
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: String,
    pub environment: Environment,
    pub platform_account_id: Option<String>,
    /// `platform`, `individual` or `business`.
    pub account_type: String,
    pub name: String,
    /// `email`, `phone`, `individual`, `business`, `documents` (checked JSON;
    /// no identity number).
    pub profile: Map<String, Value>,
    pub id_number_sealed: Option<String>,
    pub verification_status: String,
    pub verification_reasons: Vec<String>,
    pub kyc_level: u8,
    pub metadata: Map<String, Value>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

pub const COLUMNS: &str = "id, environment, platform_account_id, account_type, name, profile, id_number_sealed,
    verification_status, verification_reasons, kyc_level, metadata, created_at_ms, COALESCE(updated_at_ms, created_at_ms)";

fn json_map(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

impl AccountRow {
    pub fn from_row(row: &AnyRow) -> Result<AccountRow, sqlx::Error> {
        let environment: String = row.try_get(1)?;
        let profile: String = row.try_get(5)?;
        let reasons: String = row.try_get(8)?;
        let level: i64 = row.try_get(9)?;
        let metadata: String = row.try_get(10)?;
        Ok(AccountRow {
            id: row.try_get(0)?,
            environment: Environment::parse(&environment).unwrap_or(Environment::Sandbox),
            platform_account_id: row.try_get(2)?,
            account_type: row.try_get(3)?,
            name: row.try_get(4)?,
            profile: json_map(&profile),
            id_number_sealed: row.try_get(6)?,
            verification_status: row.try_get(7)?,
            verification_reasons: serde_json::from_str(&reasons).unwrap_or_default(),
            kyc_level: u8::try_from(level).unwrap_or(0),
            metadata: json_map(&metadata),
            created_at_ms: row.try_get(11)?,
            updated_at_ms: row.try_get(12)?,
        })
    }
}

/// An account by id.
pub async fn load(db: &Db, id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    row.as_ref().map(AccountRow::from_row).transpose()
}

/// One step of an account's verification history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationStep {
    pub status: String,
    pub reasons: Vec<String>,
    pub at_ms: i64,
}

pub async fn history(db: &Db, id: &str) -> Result<Vec<VerificationStep>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT status, reasons, created_at_ms FROM account_verifications WHERE account_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let reasons: String = r.try_get(1)?;
            Ok(VerificationStep {
                status: r.try_get(0)?,
                reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                at_ms: r.try_get(2)?,
            })
        })
        .collect()
}

/// The wallets of an account: (id, currency), oldest first.
pub async fn wallets(db: &Db, id: &str) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, currency FROM ledger_accounts WHERE owner_account_id = $1 AND kind = 'wallet' ORDER BY id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// True once any account exists (the server has been bootstrapped).
pub async fn any(db: &Db) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) FROM accounts").fetch_one(&db.pool).await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

pub async fn facts(db: &Db, account_id: &str, now_ms: i64) -> Result<AccountFacts, sqlx::Error> {
    // On every transfer's path (limits and fraud facts): a direct read.
    let row = db
        .read_one(
            "SELECT kyc_level, created_at_ms FROM accounts WHERE id = $1",
            &[account_id.into()],
        )
        .await?;
    let kyc_level = row.int(0)?;
    let created_at_ms = row.int(1)?;
    Ok(AccountFacts {
        kyc_level: u8::try_from(kyc_level).unwrap_or(0),
        age_days: u32::try_from((now_ms - created_at_ms).max(0) / MS_PER_DAY).unwrap_or(u32::MAX),
    })
}
