//! Dated API versions and the translation between them.
//!
//! The core speaks only the current version. The edge resolves the version
//! of each request (the `Nixo-Version` header, else the account's pinned
//! version) and translates older versions at the edge: requests are upgraded
//! before forwarding, responses downgraded before they reach the client.
//!
//! ## 2025-01-01 (current)
//! Amounts are decimal amounts in the currency's major unit: `"50.00"` or
//! `50.00` KES in a transfer request, `"amount": 100000.00` in balances.
//!
//! ## 2024-06-01
//! Amounts were integers in the currency's minor unit: a transfer of 50 KES
//! was `"amount": 5000`, a balance of 100,000 KES was `"amount": 10000000`.
//! Affected routes: `POST /v1/payments/transfer` (request `amount`) and
//! `GET /v1/balances` (`available`, `pending`, `reserved` amounts).

use crate::schema::{self, Currency, FieldError, RouteId};
use serde_json::{Map, Number, Value};
use std::str::FromStr;

/// The current version: what the core speaks and new accounts are pinned to.
pub const CURRENT: &str = "2025-01-01";
/// The version before it: amounts in integer minor units.
pub const V2024_06_01: &str = "2024-06-01";
/// API versions served, newest first.
pub const SUPPORTED_VERSIONS: [&str; 2] = [CURRENT, V2024_06_01];

/// Looks up a version by its exact date string.
pub fn supported(asked: &str) -> Option<&'static str> {
    SUPPORTED_VERSIONS.iter().copied().find(|v| *v == asked.trim())
}

/// The version of a request: the header if present (it must be supported),
/// else the account's pinned version, else the current one.
pub fn resolve(header: Option<&str>, pinned: Option<&str>) -> Result<&'static str, FieldError> {
    match header {
        Some(asked) => supported(asked).ok_or_else(|| {
            FieldError::new(
                "Nixo-Version",
                format!("Unknown API version; supported: {}", SUPPORTED_VERSIONS.join(", ")),
            )
        }),
        None => Ok(pinned.and_then(supported).unwrap_or(CURRENT)),
    }
}

/// Whether requests or responses of `route` differ between `version` and
/// the current version.
pub fn translates(version: &str, route: RouteId) -> bool {
    version == V2024_06_01 && matches!(route, RouteId::Transfer | RouteId::Balances)
}

/// Rewrites a request body of `version` into the current version. Bodies
/// that are not what the old version expects are refused with the field.
pub fn upgrade_request(version: &str, route: RouteId, body: &[u8]) -> Result<Vec<u8>, FieldError> {
    if !translates(version, route) || route != RouteId::Transfer {
        return Ok(body.to_vec());
    }
    let mut map = schema::parse_object(body)?;
    let currency = schema::currency(map.get("currency"), "currency")?;
    let minor = match map.get("amount") {
        None | Some(Value::Null) => return Err(FieldError::missing("amount")),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    };
    let minor = minor.filter(|m| *m > 0).ok_or_else(|| {
        FieldError::new(
            "amount",
            format!("In API version {V2024_06_01} amount is a positive integer in minor units (5000 = 50.00)"),
        )
    })?;
    map.insert("amount".into(), Value::String(currency.minor_to_text(minor)));
    Ok(serde_json::to_vec(&Value::Object(map)).expect("a JSON map serialises"))
}

/// Rewrites a successful response body of the current version into
/// `version`. Anything that is not the expected shape passes unchanged
/// (errors have the same shape in every version).
pub fn downgrade_response(version: &str, route: RouteId, body: &[u8]) -> Vec<u8> {
    if !translates(version, route) || route != RouteId::Balances {
        return body.to_vec();
    }
    // `12.50` KES → `1250`.
    map_balance_amounts(body, |currency, amount| {
        currency.text_to_minor(&amount.to_string()).map(Number::from)
    })
}

/// Rewrites every `{"currency":…,"amount":…}` entry of a balance body with
/// `convert`; entries it declines, and bodies that are not a balance, stay
/// as they are.
fn map_balance_amounts(body: &[u8], convert: impl Fn(Currency, &Number) -> Option<Number>) -> Vec<u8> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    if map.get("object").and_then(Value::as_str) != Some("balance") {
        return body.to_vec();
    }
    for list in ["available", "pending", "reserved"] {
        let Some(Value::Array(entries)) = map.get_mut(list) else {
            continue;
        };
        for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
            let currency = entry
                .get("currency")
                .and_then(Value::as_str)
                .and_then(Currency::from_code);
            let converted = match (currency, entry.get("amount")) {
                (Some(currency), Some(Value::Number(amount))) => convert(currency, amount),
                _ => None,
            };
            if let Some(amount) = converted {
                entry.insert("amount".into(), Value::Number(amount));
            }
        }
    }
    serde_json::to_vec(&Value::Object(map)).expect("a JSON map serialises")
}

/// Rewrites a request body of the current version into `version` (what an
/// old client would have sent); the inverse of [`upgrade_request`], used to
/// check that translations round-trip.
pub fn downgrade_request(version: &str, route: RouteId, body: &[u8]) -> Result<Vec<u8>, FieldError> {
    if !translates(version, route) || route != RouteId::Transfer {
        return Ok(body.to_vec());
    }
    let mut map: Map<String, Value> = schema::parse_object(body)?;
    let currency = schema::currency(map.get("currency"), "currency")?;
    let minor = schema::amount_minor(map.get("amount"), currency, "amount")?;
    map.insert("amount".into(), Value::Number(Number::from(minor)));
    Ok(serde_json::to_vec(&Value::Object(map)).expect("a JSON map serialises"))
}

/// Rewrites a response body of `version` into the current version; the
/// inverse of [`downgrade_response`].
pub fn upgrade_response(version: &str, route: RouteId, body: &[u8]) -> Vec<u8> {
    if !translates(version, route) || route != RouteId::Balances {
        return body.to_vec();
    }
    // `1250` KES → `12.50`.
    map_balance_amounts(body, |currency, amount| {
        let text = currency.minor_to_text(amount.as_i64()?);
        Some(Number::from_str(&text).expect("decimal text is a JSON number"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_prefers_the_header_then_the_pin() {
        assert_eq!(resolve(None, None), Ok(CURRENT));
        assert_eq!(resolve(None, Some(V2024_06_01)), Ok(V2024_06_01));
        assert_eq!(resolve(Some("2025-01-01"), Some(V2024_06_01)), Ok(CURRENT));
        assert_eq!(resolve(Some("1999-01-01"), None).unwrap_err().field, "Nixo-Version");
        assert_eq!(resolve(None, Some("1999-01-01")), Ok(CURRENT));
    }

    #[test]
    fn old_transfer_requests_upgrade_and_round_trip() {
        let old = br#"{"from_wallet":101,"to_wallet":102,"amount":5000,"currency":"KES","metadata":{"a":"b"}}"#;
        let new = upgrade_request(V2024_06_01, RouteId::Transfer, old).unwrap();
        assert_eq!(
            String::from_utf8(new.clone()).unwrap(),
            r#"{"from_wallet":101,"to_wallet":102,"amount":"50.00","currency":"KES","metadata":{"a":"b"}}"#
        );
        assert_eq!(
            downgrade_request(V2024_06_01, RouteId::Transfer, &new).unwrap(),
            old.to_vec()
        );
        let jpy = br#"{"from_wallet":1,"to_wallet":2,"amount":7,"currency":"JPY"}"#;
        let up = upgrade_request(V2024_06_01, RouteId::Transfer, jpy).unwrap();
        assert!(String::from_utf8_lossy(&up).contains(r#""amount":"7""#));
        for bad in [
            r#"{"amount":"50.00","currency":"KES"}"#,
            r#"{"amount":0,"currency":"KES"}"#,
            r#"{"amount":1.5,"currency":"KES"}"#,
        ] {
            let err = upgrade_request(V2024_06_01, RouteId::Transfer, bad.as_bytes()).unwrap_err();
            assert_eq!(err.field, "amount", "{bad}");
        }
        assert_eq!(upgrade_request(CURRENT, RouteId::Transfer, b"x").unwrap(), b"x");
    }

    #[test]
    fn balances_downgrade_and_round_trip() {
        let new = br#"{"object":"balance","livemode":false,"available":[{"currency":"KES","amount":100000.00},{"currency":"BHD","amount":1.005}],"pending":[],"reserved":[{"currency":"JPY","amount":7}]}"#;
        let old = downgrade_response(V2024_06_01, RouteId::Balances, new);
        assert_eq!(
            String::from_utf8(old.clone()).unwrap(),
            r#"{"object":"balance","livemode":false,"available":[{"currency":"KES","amount":10000000},{"currency":"BHD","amount":1005}],"pending":[],"reserved":[{"currency":"JPY","amount":7}]}"#
        );
        assert_eq!(upgrade_response(V2024_06_01, RouteId::Balances, &old), new.to_vec());
        let error = br#"{"error":{"code":"resource_not_found"}}"#;
        assert_eq!(
            downgrade_response(V2024_06_01, RouteId::Balances, error),
            error.to_vec()
        );
        assert_eq!(downgrade_response(CURRENT, RouteId::Balances, new), new.to_vec());
    }
}
