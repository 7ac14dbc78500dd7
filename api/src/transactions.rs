//! The transaction routes' request rules: the filters of
//! `GET /v1/transactions` and of its CSV export, and transaction ids.

use crate::pagination::{CreatedRange, ListParams};
use crate::schema::{self, Checked, Currency, FieldError};
use serde_json::Value;

/// Transaction kinds a list can be filtered by.
pub const TYPES: [&str; 5] = ["transfer", "payout", "deposit", "withdrawal", "funding"];
/// Statuses a list can be filtered by, as the API writes them.
pub const STATUSES: [&str; 6] = ["pending", "settled", "pending_review", "declined", "voided", "expired"];
/// Export formats.
pub const FORMATS: [&str; 1] = ["csv"];

/// `GET /v1/transactions` filters (the export takes the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    pub kind: Option<&'static str>,
    pub status: Option<&'static str>,
    pub currency: Option<Currency>,
    pub wallet: Option<i64>,
    /// `amount[gte]`, `amount[lte]` in minor units of `currency` (which they need).
    pub amount_gte_minor: Option<i64>,
    pub amount_lte_minor: Option<i64>,
    pub created: CreatedRange,
}

fn one_of(key: &str, value: &str, allowed: &[&'static str]) -> Checked<&'static str> {
    allowed
        .iter()
        .copied()
        .find(|a| *a == value)
        .ok_or_else(|| FieldError::new(key, format!("{key} must be one of {}", allowed.join(", "))))
}

/// Takes one filter pair; `None` when the key is not a filter.
fn take(
    filter: &mut TransactionFilter,
    amounts: &mut Vec<(String, String)>,
    key: &str,
    value: &str,
) -> Option<Checked<()>> {
    if let Some(taken) = filter.created.take(key, value) {
        return Some(taken);
    }
    let result = match key {
        "type" => one_of(key, value, &TYPES).map(|k| filter.kind = Some(k)),
        "status" => one_of(key, value, &STATUSES).map(|s| filter.status = Some(s)),
        "currency" => {
            schema::currency(Some(&Value::String(value.to_string())), "currency").map(|c| filter.currency = Some(c))
        }
        "wallet" => value
            .parse::<i64>()
            .ok()
            .filter(|w| *w > 0)
            .map(|w| filter.wallet = Some(w))
            .ok_or_else(|| FieldError::new("wallet", "wallet must be a positive integer wallet id")),
        "amount[gte]" | "amount[lte]" => {
            amounts.push((key.to_string(), value.to_string()));
            Ok(())
        }
        _ => return None,
    };
    Some(result)
}

/// Amounts are read in the filter's currency, once it is known.
fn finish_amounts(filter: &mut TransactionFilter, amounts: Vec<(String, String)>) -> Checked<()> {
    for (key, value) in amounts {
        let currency = filter.currency.ok_or_else(|| {
            FieldError::new(
                key.clone(),
                format!("{key} needs currency: amounts are compared in one currency's units"),
            )
        })?;
        let plain = !value.is_empty() && value.len() <= 24 && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let minor = currency
            .text_to_minor(&value)
            .filter(|m| plain && (0..schema::AMOUNT_MINOR_MAX).contains(m))
            .ok_or_else(|| {
                FieldError::new(
                    key.clone(),
                    format!(
                        "{key} must be an amount in {} with at most {} decimals",
                        currency.code, currency.exponent
                    ),
                )
            })?;
        if key == "amount[gte]" {
            filter.amount_gte_minor = Some(minor);
        } else {
            filter.amount_lte_minor = Some(minor);
        }
    }
    Ok(())
}

/// Parses the `GET /v1/transactions` query.
pub fn transactions_query(query: Option<&str>) -> Checked<(TransactionFilter, ListParams)> {
    let (mut filter, mut page, mut amounts) = (TransactionFilter::default(), ListParams::default(), Vec::new());
    for (key, value) in schema::query_pairs(query) {
        if let Some(taken) = page
            .take(&key, &value)
            .or_else(|| take(&mut filter, &mut amounts, &key, &value))
        {
            taken?;
            continue;
        }
        return Err(FieldError::new(
            key.clone(),
            format!("Received unknown parameter: {key}"),
        ));
    }
    finish_amounts(&mut filter, amounts)?;
    Ok((filter, page))
}

/// Parses the `GET /v1/transactions/export` query: `format=csv` and the filters.
pub fn export_query(query: Option<&str>) -> Checked<TransactionFilter> {
    let (mut filter, mut amounts, mut format) = (TransactionFilter::default(), Vec::new(), None);
    for (key, value) in schema::query_pairs(query) {
        if key == "format" {
            format = Some(one_of("format", &value, &FORMATS)?);
            continue;
        }
        if let Some(taken) = take(&mut filter, &mut amounts, &key, &value) {
            taken?;
            continue;
        }
        return Err(FieldError::new(
            key.clone(),
            format!("Received unknown parameter: {key}"),
        ));
    }
    format.ok_or_else(|| FieldError::missing("format"))?;
    finish_amounts(&mut filter, amounts)?;
    Ok(filter)
}

/// A transaction id in a path: digits.
pub fn transaction_id(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_amounts_need_a_currency() {
        let (f, page) = transactions_query(Some(
            "type=payout&status=settled&currency=USD&amount%5Bgte%5D=10.50&wallet=103&limit=5",
        ))
        .unwrap();
        assert_eq!(
            (f.kind, f.status, f.wallet, f.amount_gte_minor),
            (Some("payout"), Some("settled"), Some(103), Some(1050))
        );
        assert_eq!(page.limit, 5);
        let err = transactions_query(Some("amount[lte]=5")).unwrap_err();
        assert_eq!(err.field, "amount[lte]");
        assert_eq!(transactions_query(Some("status=done")).unwrap_err().field, "status");
        assert_eq!(export_query(Some("type=payout")).unwrap_err().field, "format");
        assert!(export_query(Some("format=csv&currency=KES")).is_ok());
        assert_eq!(transaction_id("10001"), Some(10001));
        assert_eq!(transaction_id("x1"), None);
    }
}
