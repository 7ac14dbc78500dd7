//! Resource representations shared by API responses and event snapshots
//! (`data.object`), so a webhook shows exactly what the API shows.

use crate::ledger::Balance;
use crate::money::{Currency, MinorUnits};
use serde_json::{Value, json};

fn entries(balances: &[Balance], pick: impl Fn(&Balance) -> i64) -> Vec<Value> {
    balances
        .iter()
        .filter_map(|b| {
            let currency = Currency::from_code(&b.currency)?;
            Some(json!({ "currency": b.currency, "amount": currency.to_json_number(pick(b)) }))
        })
        .collect()
}

/// The balance object (Nixo document): available, pending and reserved per
/// currency, amounts as JSON numbers with the currency's decimals.
pub fn balance(livemode: bool, balances: &[Balance]) -> Value {
    json!({
        "object": "balance",
        "livemode": livemode,
        "available": entries(balances, |b| b.available_minor),
        "pending": entries(balances, |b| b.pending_minor),
        "reserved": entries(balances, |b| b.reserved_minor),
    })
}
