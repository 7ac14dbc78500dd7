//! Money at the API boundary: ISO 4217 currencies and exact amounts.
//!
//! Amounts are parsed from JSON strings or JSON numbers by their exact text
//! (serde_json is built with `arbitrary_precision`, so a number is never a
//! float in between), checked against the currency's exponent, and carried as
//! integer minor units (`i64`) everywhere after that.

use crate::error::ApiError;
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

/// Largest amount accepted in one operation, in minor units (10^15). Keeps
/// every ledger sum far from `i64` overflow.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;

/// An ISO 4217 currency known to Nixo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Number of decimals in the minor unit (KES 2, JPY 0, BHD 3).
    pub exponent: u32,
}

/// Currencies with exponent 0 (ISO 4217 list, current codes).
const EXPONENT_0: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
/// Currencies with exponent 3.
const EXPONENT_3: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
/// Currencies with exponent 4.
const EXPONENT_4: &[&str] = &["CLF", "UYW"];
/// Currencies with exponent 2.
const EXPONENT_2: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND",
    "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK",
    "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD",
    "YER", "ZAR", "ZMW", "ZWG",
];

impl Currency {
    /// Looks up an upper-case ISO 4217 code.
    pub fn from_code(code: &str) -> Option<Currency> {
        let tables: [(&[&'static str], u32); 4] = [(EXPONENT_2, 2), (EXPONENT_0, 0), (EXPONENT_3, 3), (EXPONENT_4, 4)];
        tables.iter().find_map(|(codes, exponent)| {
            codes.iter().find(|c| **c == code).map(|c| Currency {
                code: c,
                exponent: *exponent,
            })
        })
    }

    /// Minor units as an exact decimal with the currency's scale ("12500.50").
    pub fn to_decimal(&self, minor: i64) -> Decimal {
        Decimal::new(minor, self.exponent)
    }

    /// Minor units as a JSON number with exactly the currency's decimals.
    pub fn to_json_number(&self, minor: i64) -> Value {
        let text = self.to_decimal(minor).to_string();
        // With arbitrary_precision the number keeps this exact text.
        Value::Number(serde_json::Number::from_str(&text).expect("a decimal is a JSON number"))
    }
}

/// Reads the `currency` parameter.
pub fn parse_currency(value: Option<&Value>, field: &'static str) -> Result<Currency, ApiError> {
    let code = match value {
        None | Some(Value::Null) => return Err(ApiError::missing(field)),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::invalid(field, "must be a three-letter ISO 4217 code"));
        }
    };
    Currency::from_code(code)
        .ok_or_else(|| ApiError::invalid(field, format!("'{code}' is not a supported ISO 4217 currency code")))
}

/// Reads an amount given as a JSON string ("50.00") or number (2500), exactly,
/// and returns it in minor units of `currency`.
pub fn parse_amount(value: Option<&Value>, currency: Currency, field: &'static str) -> Result<i64, ApiError> {
    let text = match value {
        None | Some(Value::Null) => return Err(ApiError::missing(field)),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ApiError::invalid(field, "must be a decimal string or a number"));
        }
    };
    let plain = !text.is_empty()
        && text.len() <= 40
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !text.starts_with('.')
        && !text.ends_with('.');
    let decimal = if plain {
        Decimal::from_str_exact(&text).ok()
    } else {
        None
    };
    let decimal = decimal.ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("'{text}' is not a plain decimal amount such as \"50.00\""),
        )
    })?;
    if decimal <= Decimal::ZERO {
        return Err(ApiError::invalid(field, "Amount must be greater than 0"));
    }
    let decimal = decimal.normalize();
    if decimal.scale() > currency.exponent {
        return Err(ApiError::invalid(
            field,
            format!("{} allows at most {} decimal places", currency.code, currency.exponent),
        ));
    }
    let mut minor = decimal;
    minor.rescale(currency.exponent);
    let minor = i64::try_from(minor.mantissa())
        .ok()
        .filter(|m| *m <= AMOUNT_MINOR_MAX)
        .ok_or_else(|| ApiError::invalid(field, "Amount is larger than the largest allowed"))?;
    Ok(minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kes() -> Currency {
        Currency::from_code("KES").unwrap()
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Currency::from_code("KES").unwrap().exponent, 2);
        assert_eq!(Currency::from_code("JPY").unwrap().exponent, 0);
        assert_eq!(Currency::from_code("BHD").unwrap().exponent, 3);
        assert!(Currency::from_code("kes").is_none());
        assert!(Currency::from_code("XXX").is_none());
    }

    #[test]
    fn strings_and_numbers_parse_exactly() {
        assert_eq!(parse_amount(Some(&json!("50.00")), kes(), "amount"), Ok(5_000));
        assert_eq!(parse_amount(Some(&json!(2500)), kes(), "amount"), Ok(250_000));
        let n: Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(parse_amount(Some(&n), kes(), "amount"), Ok(10));
        // 0.30000000000000004 as f64 would be 0.30; exact parsing refuses it.
        let n: Value = serde_json::from_str("0.30000000000000004").unwrap();
        assert!(parse_amount(Some(&n), kes(), "amount").is_err());
        assert_eq!(parse_amount(Some(&json!("1.500")), kes(), "amount"), Ok(150));
    }

    #[test]
    fn bad_amounts_name_the_field() {
        for bad in [
            json!("0"),
            json!("-1"),
            json!("1.234"),
            json!("1e3"),
            json!(""),
            json!(true),
        ] {
            let err = parse_amount(Some(&bad), kes(), "amount").unwrap_err();
            assert_eq!(err.field.as_deref(), Some("amount"), "{bad}");
            assert_eq!(err.code, "invalid_request");
        }
        let jpy = Currency::from_code("JPY").unwrap();
        assert!(parse_amount(Some(&json!("10.5")), jpy, "amount").is_err());
        assert!(parse_amount(Some(&json!("99999999999999999999")), kes(), "amount").is_err());
        assert!(parse_amount(None, kes(), "amount").is_err());
    }

    #[test]
    fn json_numbers_keep_the_currency_scale() {
        assert_eq!(kes().to_json_number(1_250_050).to_string(), "12500.50");
        assert_eq!(Currency::from_code("JPY").unwrap().to_json_number(7).to_string(), "7");
    }
}
