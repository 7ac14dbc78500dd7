//! Customer accounts (the owners of wallets and API keys).

use crate::db::Db;
use crate::ledger::Environment;
use rand::Rng;
use sqlx::Row;

/// What the rules are told about an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFacts {
    pub kyc_level: u8,
    pub age_days: u32,
}

pub const MS_PER_DAY: i64 = 86_400_000;

/// Creates an account and returns its id (`acct_` + 16 base62 characters).
pub async fn create(db: &Db, environment: Environment, name: &str, kyc_level: u8) -> Result<String, sqlx::Error> {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let suffix: String = (0..16)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    let id = format!("acct_{suffix}");
    sqlx::query("INSERT INTO accounts (id, environment, name, kyc_level, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(environment.as_str())
        .bind(name)
        .bind(i64::from(kyc_level))
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&db.pool)
        .await?;
    Ok(id)
}

/// True once any account exists (the server has been bootstrapped).
pub async fn any(db: &Db) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) FROM accounts").fetch_one(&db.pool).await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

pub async fn facts(db: &Db, account_id: &str, now_ms: i64) -> Result<AccountFacts, sqlx::Error> {
    let row = sqlx::query("SELECT kyc_level, created_at_ms FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_one(&db.pool)
        .await?;
    let kyc_level: i64 = row.try_get(0)?;
    let created_at_ms: i64 = row.try_get(1)?;
    Ok(AccountFacts {
        kyc_level: u8::try_from(kyc_level).unwrap_or(0),
        age_days: u32::try_from((now_ms - created_at_ms).max(0) / MS_PER_DAY).unwrap_or(u32::MAX),
    })
}
