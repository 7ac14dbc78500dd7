//! Money at the API boundary: ISO 4217 currencies and exact amounts.
//!
//! The currency table and the amount rules live in the gateway crate's
//! `schema` module, so the edge and the core judge amounts identically.
//! Amounts are carried as integer minor units (`i64`) everywhere after
//! parsing; this module adds the core's decimal views of them.

use crate::error::ApiError;
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

pub use nixo_api::schema::{AMOUNT_MINOR_MAX, Currency, FieldError};

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> ApiError {
        ApiError::invalid(err.field, err.message)
    }
}

/// Decimal views of minor units.
pub trait MinorUnits {
    /// Minor units as an exact decimal with the currency's scale ("12500.50").
    fn to_decimal(&self, minor: i64) -> Decimal;
    /// Minor units as a JSON number with exactly the currency's decimals.
    fn to_json_number(&self, minor: i64) -> Value;
}

impl MinorUnits for Currency {
    fn to_decimal(&self, minor: i64) -> Decimal {
        Decimal::new(minor, self.exponent)
    }

    fn to_json_number(&self, minor: i64) -> Value {
        // With arbitrary_precision the number keeps this exact text.
        Value::Number(serde_json::Number::from_str(&self.minor_to_text(minor)).expect("decimal text is a JSON number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_keep_the_currency_scale() {
        let kes = Currency::from_code("KES").unwrap();
        assert_eq!(kes.to_json_number(1_250_050).to_string(), "12500.50");
        assert_eq!(kes.to_decimal(1_250_050).to_string(), "12500.50");
        assert_eq!(Currency::from_code("JPY").unwrap().to_json_number(7).to_string(), "7");
    }

    #[test]
    fn field_errors_become_400s_naming_the_field() {
        let err = ApiError::from(FieldError::missing("amount"));
        assert_eq!(err.code, "invalid_request");
        assert_eq!(err.field.as_deref(), Some("amount"));
    }
}
