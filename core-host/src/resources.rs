//! Resource representations shared by API responses and event snapshots
//! (`data.object`), so a webhook shows exactly what the API shows.

use crate::ledger::Balance;
use crate::money::{Currency, MinorUnits};
use nixo_api::types::{BalanceAmount, BalanceObject, ObjectType};
use serde_json::Value;

fn entries(balances: &[Balance], pick: impl Fn(&Balance) -> i64) -> Vec<BalanceAmount> {
    balances
        .iter()
        .filter_map(|b| {
            let currency = Currency::from_code(&b.currency)?;
            let Value::Number(amount) = currency.to_json_number(pick(b)) else {
                return None;
            };
            Some(BalanceAmount {
                currency: b.currency.clone(),
                amount,
            })
        })
        .collect()
}

/// The balance object (Nixo document): available, pending and reserved per
/// currency, amounts as JSON numbers with the currency's decimals.
pub fn balance(livemode: bool, balances: &[Balance]) -> BalanceObject {
    BalanceObject {
        object: ObjectType::Balance,
        livemode,
        available: entries(balances, |b| b.available_minor),
        pending: entries(balances, |b| b.pending_minor),
        reserved: entries(balances, |b| b.reserved_minor),
    }
}
