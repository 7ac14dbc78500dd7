//! Transaction limits by KYC level: configuration, not code. The default
//! table is `config/limits.json` (built in); `NIXO_LIMITS_FILE` replaces it.
//!
//! A level says whether money may leave an account at all (level 0, not
//! verified, receives only), and per currency the most one transaction may
//! move and the most that may leave in one UTC day. Services check before
//! the ledger ([`check_outgoing`]); the account object shows the same
//! numbers with what is used today ([`view`]).
//!
//! The daily check reads what was sent today, then the ledger writes: two
//! requests racing at the edge of the limit can both pass (by at most one
//! transaction each). The ledger's own no-overdraft rule stays exact.

use crate::db::Db;
use crate::money::{Currency, MinorUnits};
use crate::services::{ServiceError, ServiceResult};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in table.
pub const DEFAULT_LIMITS_JSON: &str = include_str!("../config/limits.json");
/// Milliseconds in the UTC day a daily limit counts.
pub const DAY_MS: i64 = 86_400_000;
/// Transaction kinds that move money out of an account.
pub const OUTGOING_KINDS: &str = "'transfer', 'payout', 'withdrawal'";

/// One level's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelLimits {
    /// Whether money may leave at this level.
    pub outgoing: bool,
    /// Per currency code: the most one transaction moves, in minor units.
    pub per_transaction_minor: BTreeMap<String, i64>,
    /// Per currency code: the most that leaves in a UTC day, in minor units.
    pub daily_minor: BTreeMap<String, i64>,
}

/// Limits by KYC level (0 to 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    levels: BTreeMap<u8, LevelLimits>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_json(DEFAULT_LIMITS_JSON).expect("the built-in limits table is valid")
    }
}

fn amounts(level: &str, name: &str, value: Option<&Value>) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    let Some(value) = value else {
        return Ok(out);
    };
    let map = value
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("levels.{level}.{name} must be an object of currency: amount"))?;
    for (code, amount) in map {
        let currency = Currency::from_code(code)
            .ok_or_else(|| anyhow::anyhow!("levels.{level}.{name}: unknown currency {code}"))?;
        let text = amount.as_str().ok_or_else(|| {
            anyhow::anyhow!("levels.{level}.{name}.{code} must be a decimal string such as \"1000.00\"")
        })?;
        let minor = currency
            .text_to_minor(text)
            .filter(|m| *m >= 0)
            .ok_or_else(|| anyhow::anyhow!("levels.{level}.{name}.{code}: '{text}' is not an amount in {code}"))?;
        out.insert(code.clone(), minor);
    }
    Ok(out)
}

impl Limits {
    /// Reads a table: `{"levels": {"0": {"outgoing": false}, "1": {"outgoing":
    /// true, "per_transaction": {"USD": "1000.00"}, "daily": {…}}, …}}`.
    pub fn from_json(text: &str) -> anyhow::Result<Limits> {
        let value: Value = serde_json::from_str(text)?;
        let levels_value = value
            .get("levels")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow::anyhow!("the limits table needs a \"levels\" object"))?;
        let mut levels = BTreeMap::new();
        for (name, spec) in levels_value {
            let level: u8 = name
                .parse()
                .ok()
                .filter(|l| *l <= 3)
                .ok_or_else(|| anyhow::anyhow!("level '{name}' is not 0 to 3"))?;
            let outgoing = spec
                .get("outgoing")
                .and_then(Value::as_bool)
                .ok_or_else(|| anyhow::anyhow!("levels.{name}.outgoing must be true or false"))?;
            levels.insert(
                level,
                LevelLimits {
                    outgoing,
                    per_transaction_minor: amounts(name, "per_transaction", spec.get("per_transaction"))?,
                    daily_minor: amounts(name, "daily", spec.get("daily"))?,
                },
            );
        }
        for level in 0..=3u8 {
            anyhow::ensure!(levels.contains_key(&level), "the limits table has no level {level}");
        }
        Ok(Limits { levels })
    }

    pub fn load(path: &Path) -> anyhow::Result<Limits> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the limits file {}: {e}", path.display()))?;
        Limits::from_json(&text).map_err(|e| anyhow::anyhow!("limits file {}: {e}", path.display()))
    }

    pub fn level(&self, level: u8) -> &LevelLimits {
        &self.levels[&level.min(3)]
    }
}

/// Start of the UTC day of `now_ms`.
pub fn day_start_ms(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(DAY_MS)
}

/// What an account sent today in a currency (settled, on its way, or held
/// for review), in minor units.
pub async fn used_today_minor(db: &Db, account_id: &str, currency: &str, now_ms: i64) -> Result<i64, sqlx::Error> {
    // Kept by database triggers on every write of `transactions` (the
    // kinds in OUTGOING_KINDS; statuses SETTLED, PENDING, PENDING_REVIEW):
    // one row, however long the day's history.
    db.read_one(
        "SELECT CAST(COALESCE(SUM(sum_minor), 0) AS BIGINT) FROM outgoing_daily
         WHERE account_id = $1 AND currency = $2 AND day_start_ms = $3",
        &[account_id.into(), currency.into(), day_start_ms(now_ms).into()],
    )
    .await?
    .int(0)
}

fn shown(currency: Currency, minor: i64) -> String {
    format!("{} {}", currency.code, currency.to_decimal(minor))
}

/// Refuses money leaving `account_id` beyond its level's limits (403,
/// naming the limit and its value).
pub async fn check_outgoing(
    db: &Db,
    limits: &Limits,
    account_id: &str,
    currency: Currency,
    amount_minor: i64,
    now_ms: i64,
) -> ServiceResult<()> {
    let facts = crate::accounts::facts(db, account_id, now_ms).await?;
    let level = limits.level(facts.kyc_level);
    if !level.outgoing {
        return Err(ServiceError::Forbidden {
            code: "account_not_verified",
            field: None,
            message: format!(
                "Account {account_id} is not verified (KYC level {}): it can receive money but not send it",
                facts.kyc_level
            )
            .into(),
        });
    }
    if let Some(max) = level.per_transaction_minor.get(currency.code)
        && amount_minor > *max
    {
        return Err(ServiceError::Forbidden {
            code: "limit_exceeded",
            field: Some("amount".into()),
            message: format!(
                "The per-transaction limit at KYC level {} is {}",
                facts.kyc_level,
                shown(currency, *max)
            )
            .into(),
        });
    }
    if let Some(max) = level.daily_minor.get(currency.code) {
        let used = used_today_minor(db, account_id, currency.code, now_ms).await?;
        if used.saturating_add(amount_minor) > *max {
            return Err(ServiceError::Forbidden {
                code: "limit_exceeded",
                field: Some("amount".into()),
                message: format!(
                    "The daily limit at KYC level {} is {}; {} was sent today",
                    facts.kyc_level,
                    shown(currency, *max),
                    shown(currency, used)
                )
                .into(),
            });
        }
    }
    Ok(())
}

/// An account's limits in the currencies it holds, with what is used today.
pub async fn view(
    db: &Db,
    limits: &Limits,
    kyc_level: u8,
    account_id: &str,
    currencies: &[String],
    now_ms: i64,
) -> Result<nixo_api::types::AccountLimits, sqlx::Error> {
    let level = limits.level(kyc_level);
    let mut out = Vec::new();
    for code in currencies {
        let Some(currency) = Currency::from_code(code) else {
            continue;
        };
        let number = |minor: Option<&i64>| minor.map(|m| currency.to_json_number(*m));
        let used = used_today_minor(db, account_id, code, now_ms).await?;
        out.push(nixo_api::types::CurrencyLimits {
            currency: code.clone(),
            per_transaction: number(level.per_transaction_minor.get(code)),
            daily: number(level.daily_minor.get(code)),
            used_today: currency.to_json_number(used),
        });
    }
    Ok(nixo_api::types::AccountLimits {
        level: kyc_level,
        outgoing_enabled: level.outgoing,
        currencies: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_table_reads() {
        let limits = Limits::default();
        assert!(!limits.level(0).outgoing);
        assert_eq!(limits.level(1).per_transaction_minor["USD"], 100_000);
        assert!(limits.level(3).daily_minor.is_empty());
    }

    #[test]
    fn bad_tables_say_what_is_wrong() {
        let err = Limits::from_json(r#"{"levels":{"0":{"outgoing":false}}}"#).unwrap_err();
        assert!(err.to_string().contains("no level 1"), "{err}");
        let err = Limits::from_json(r#"{"levels":{"0":{"outgoing":true,"daily":{"USD":"1.001"}}}}"#).unwrap_err();
        assert!(err.to_string().contains("levels.0.daily.USD"), "{err}");
    }

    #[test]
    fn days_start_at_utc_midnight() {
        assert_eq!(day_start_ms(DAY_MS * 3 + 5), DAY_MS * 3);
    }
}
