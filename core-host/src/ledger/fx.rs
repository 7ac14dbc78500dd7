//! Exchange rates and the conversion rule.
//!
//! Rates live in `fx_rates`; every rate ever set is kept with its time, and
//! the latest applies. Conversion rule, applied once per transfer:
//!
//! 1. `fee = floor(amount × fee_bp / 10 000)` in the source currency (the
//!    customer never pays a fraction of a minor unit);
//! 2. `converted = truncate((amount − fee) × rate)` to the destination's
//!    minor unit — rounding happens once, toward zero, at the end. The
//!    remainder (less than one destination minor unit) stays with the house.

use crate::db::Db;
use crate::money::Currency;
use rust_decimal::{Decimal, RoundingStrategy};
use sqlx::Row;
use std::str::FromStr;

/// Largest fee a rate may carry (10 %).
pub const FEE_BP_MAX: u16 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub base: Currency,
    pub quote: Currency,
    /// Quote units per base unit.
    pub rate: Decimal,
    pub fee_bp: u16,
    pub set_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    pub fee_minor: i64,
    /// What leaves the sender for the exchange (amount − fee).
    pub net_minor: i64,
    pub to_amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FxError {
    #[error("no exchange rate from {0} to {1}")]
    NoRate(&'static str, &'static str),
    #[error("the amount is too small to convert")]
    TooSmall,
    #[error("the amount is too large to convert")]
    TooLarge,
    #[error("rates are positive and fees at most {FEE_BP_MAX} basis points")]
    InvalidRate,
}

/// Applies the conversion rule.
pub fn convert(
    amount_minor: i64,
    from: Currency,
    to: Currency,
    rate: Decimal,
    fee_bp: u16,
) -> Result<Conversion, FxError> {
    if rate <= Decimal::ZERO || fee_bp > FEE_BP_MAX || amount_minor <= 0 {
        return Err(FxError::InvalidRate);
    }
    let fee_minor =
        i64::try_from(i128::from(amount_minor) * i128::from(fee_bp) / 10_000).map_err(|_| FxError::TooLarge)?;
    let net_minor = amount_minor - fee_minor;
    let converted = Decimal::new(net_minor, from.exponent)
        .checked_mul(rate)
        .ok_or(FxError::TooLarge)?;
    let mut converted = converted.round_dp_with_strategy(to.exponent, RoundingStrategy::ToZero);
    converted.rescale(to.exponent);
    let to_amount_minor = i64::try_from(converted.mantissa()).map_err(|_| FxError::TooLarge)?;
    if to_amount_minor <= 0 || net_minor <= 0 {
        return Err(FxError::TooSmall);
    }
    Ok(Conversion {
        fee_minor,
        net_minor,
        to_amount_minor,
    })
}

/// Records a new rate (it applies from now on).
pub async fn set_rate(db: &Db, base: Currency, quote: Currency, rate: Decimal, fee_bp: u16) -> anyhow::Result<()> {
    anyhow::ensure!(base != quote, "a rate needs two different currencies");
    anyhow::ensure!(rate > Decimal::ZERO && fee_bp <= FEE_BP_MAX, FxError::InvalidRate);
    sqlx::query(
        "INSERT INTO fx_rates (base_currency, quote_currency, rate, fee_bp, set_at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(base.code)
    .bind(quote.code)
    .bind(rate.normalize().to_string())
    .bind(i64::from(fee_bp))
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The latest rate from `base` to `quote`.
pub async fn latest_rate(db: &Db, base: Currency, quote: Currency) -> Result<Option<Rate>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT rate, fee_bp, set_at_ms FROM fx_rates WHERE base_currency = $1 AND quote_currency = $2
         ORDER BY set_at_ms DESC, id DESC LIMIT 1",
    )
    .bind(base.code)
    .bind(quote.code)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get(0)?;
    let fee_bp: i64 = row.try_get(1)?;
    Ok(Decimal::from_str(&text).ok().map(|rate| Rate {
        base,
        quote,
        rate,
        fee_bp: u16::try_from(fee_bp).unwrap_or(FEE_BP_MAX),
        set_at_ms: row.try_get(2).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn conversion_truncates_once_at_the_end() {
        // 100.00 KES at 0.0077 USD/KES, no fee: 0.77 USD exactly.
        let r = convert(10_000, c("KES"), c("USD"), Decimal::from_str("0.0077").unwrap(), 0).unwrap();
        assert_eq!(
            r,
            Conversion {
                fee_minor: 0,
                net_minor: 10_000,
                to_amount_minor: 77
            }
        );
        // 1.99 KES → 0.015323 USD → 0.01 (truncated, never rounded up).
        let r = convert(199, c("KES"), c("USD"), Decimal::from_str("0.0077").unwrap(), 0).unwrap();
        assert_eq!(r.to_amount_minor, 1);
    }

    #[test]
    fn fees_round_down_in_the_customers_favour() {
        // 1% of 10.99 KES = 0.1099 → 0.10 KES.
        let r = convert(1_099, c("KES"), c("UGX"), Decimal::from_str("28.5").unwrap(), 100).unwrap();
        assert_eq!(r.fee_minor, 10);
        assert_eq!(r.net_minor, 1_089);
        // 10.89 KES × 28.5 = 310.365 UGX → 310 (UGX has no minor unit).
        assert_eq!(r.to_amount_minor, 310);
    }

    #[test]
    fn exponents_differ_both_ways() {
        // 1 JPY → 0.0064 BHD at 0.0064 BHD/JPY; BHD has 3 decimals: 0.006.
        let r = convert(1, c("JPY"), c("BHD"), Decimal::from_str("0.0064").unwrap(), 0).unwrap();
        assert_eq!(r.to_amount_minor, 6);
        assert_eq!(
            convert(1, c("KES"), c("USD"), Decimal::from_str("0.0077").unwrap(), 0),
            Err(FxError::TooSmall)
        );
        assert_eq!(
            convert(1, c("KES"), c("USD"), Decimal::ZERO, 0),
            Err(FxError::InvalidRate)
        );
    }
}
