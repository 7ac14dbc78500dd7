//! Money in and out of Nexbit wallets (the Nexbit document's
//! `POST /v1/payments/transact`), async payments (`POST /v1/payments/async`)
//! and the ids the status routes take. The edge validates with these
//! functions and the core parses with them.

use crate::payouts::PayoutMethod;
use crate::schema::{self, Checked, Currency, FieldError, text};
use serde_json::{Map, Value};

/// Fields `POST /v1/payments/transact` takes (either type).
pub const TRANSACT_FIELDS: [&str; 9] = [
    "type",
    "amount",
    "currency",
    "phone_number",
    "wallet",
    "to_wallet",
    "from_wallet",
    "destination",
    "metadata",
];
/// Fields a deposit takes, and the ones a withdrawal takes.
pub const DEPOSIT_FIELDS: [&str; 7] = [
    "type",
    "amount",
    "currency",
    "phone_number",
    "wallet",
    "to_wallet",
    "metadata",
];
pub const WITHDRAWAL_FIELDS: [&str; 6] = ["type", "from_wallet", "amount", "currency", "destination", "metadata"];
/// Longest destination text read (an IBAN with spaces, a phone number).
pub const DESTINATION_LEN_MAX: usize = 48;
/// What one M-Pesa STK push may ask for, in whole shillings (Daraja's bounds).
pub const STK_AMOUNT_KES_MIN: i64 = 1;
pub const STK_AMOUNT_KES_MAX: i64 = 250_000;

/// A parsed `POST /v1/payments/transact` body.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactRequest {
    Deposit(DepositRequest),
    Withdrawal(WithdrawalRequest),
}

/// Money in: an M-Pesa STK push to `msisdn`, credited to `wallet` (or the
/// account's wallet in the currency).
#[derive(Debug, Clone, PartialEq)]
pub struct DepositRequest {
    pub amount_minor: i64,
    pub currency: Currency,
    /// Canonical `2547XXXXXXXX` / `2541XXXXXXXX`.
    pub msisdn: String,
    pub wallet: Option<i64>,
    pub metadata: Map<String, Value>,
}

/// Money out to an M-Pesa number or a bank account.
#[derive(Debug, Clone, PartialEq)]
pub struct WithdrawalRequest {
    pub from_wallet: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    /// As sent (trimmed); the payout rule of the rail normalises it.
    pub destination: String,
    pub method: PayoutMethod,
    pub metadata: Map<String, Value>,
}

/// A Kenyan mobile number as `07…`/`01…`, `+254…` or `254…` (spaces and
/// dashes allowed) → `254XXXXXXXXX`; `None` when it is not one.
pub fn kenyan_msisdn(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let national = if let Some(rest) = compact.strip_prefix("+254") {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix("254") {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix('0') {
        rest.to_string()
    } else {
        return None;
    };
    let ok = national.len() == 9
        && national.bytes().all(|b| b.is_ascii_digit())
        && (national.starts_with('7') || national.starts_with('1'));
    ok.then(|| format!("254{national}"))
}

/// Whether a destination looks like a phone number (digits, `+`, spaces,
/// dashes) rather than an account number with letters (an IBAN).
fn looks_like_phone(destination: &str) -> bool {
    destination
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-'))
}

fn optional_wallet(map: &Map<String, Value>, field: &str) -> Checked<Option<i64>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => schema::wallet_id(map, field).map(Some),
    }
}

fn deposit(map: &Map<String, Value>) -> Checked<DepositRequest> {
    schema::reject_unknown(map, &DEPOSIT_FIELDS)?;
    let currency = schema::currency(map.get("currency"), "currency")?;
    let amount_minor = schema::amount_minor(map.get("amount"), currency, "amount")?;
    let wallet = optional_wallet(map, "wallet")?;
    let to_wallet = optional_wallet(map, "to_wallet")?;
    let wallet = match (wallet, to_wallet) {
        (Some(a), Some(b)) if a != b => {
            return Err(FieldError::new(
                "to_wallet",
                "Give wallet or to_wallet (the same wallet), not two different ones",
            ));
        }
        (a, b) => a.or(b),
    };
    let phone = text(map, "phone_number", "phone_number")?.ok_or_else(|| {
        FieldError::new(
            "phone_number",
            "Missing required parameter: phone_number (deposits are collected by M-Pesa STK push, the one \
             deposit method; give the payer's number as 07…, +254… or 254…)",
        )
    })?;
    let msisdn = kenyan_msisdn(phone).ok_or_else(|| {
        FieldError::new(
            "phone_number",
            "phone_number must be a Kenyan mobile number such as 0712345678, +254712345678 or 254712345678",
        )
    })?;
    if currency.code != "KES" {
        return Err(FieldError::new(
            "currency",
            "M-Pesa deposits are collected in KES: currency must be KES",
        ));
    }
    if amount_minor % 100 != 0 {
        return Err(FieldError::new(
            "amount",
            "M-Pesa collects whole shillings: amount must have no cents",
        ));
    }
    let kes = amount_minor / 100;
    if !(STK_AMOUNT_KES_MIN..=STK_AMOUNT_KES_MAX).contains(&kes) {
        return Err(FieldError::new(
            "amount",
            format!("An M-Pesa deposit is {STK_AMOUNT_KES_MIN} to {STK_AMOUNT_KES_MAX} KES"),
        ));
    }
    let metadata = schema::metadata(map.get("metadata"))?;
    Ok(DepositRequest {
        amount_minor,
        currency,
        msisdn,
        wallet,
        metadata,
    })
}

fn withdrawal(map: &Map<String, Value>) -> Checked<WithdrawalRequest> {
    schema::reject_unknown(map, &WITHDRAWAL_FIELDS)?;
    let from_wallet = schema::wallet_id(map, "from_wallet")?;
    let currency = schema::currency(map.get("currency"), "currency")?;
    let amount_minor = schema::amount_minor(map.get("amount"), currency, "amount")?;
    let destination = text(map, "destination", "destination")?.ok_or_else(|| FieldError::missing("destination"))?;
    let destination = schema::bounded(destination, "destination", DESTINATION_LEN_MAX)?;
    let metadata = schema::metadata(map.get("metadata"))?;
    let implied = if looks_like_phone(&destination) {
        PayoutMethod::Mpesa
    } else {
        PayoutMethod::Bank
    };
    let method = match metadata.get("gateway").and_then(Value::as_str) {
        None => implied,
        Some(gateway) => {
            let method = PayoutMethod::parse(gateway)
                .ok_or_else(|| FieldError::new("metadata.gateway", "metadata.gateway must be \"mpesa\" or \"bank\""))?;
            if method != implied {
                return Err(FieldError::new(
                    "destination",
                    format!(
                        "metadata.gateway \"{gateway}\" does not match the destination: M-Pesa takes a phone \
                         number, a bank an IBAN"
                    ),
                ));
            }
            method
        }
    };
    Ok(WithdrawalRequest {
        from_wallet,
        amount_minor,
        currency,
        destination,
        method,
        metadata,
    })
}

/// Parses and checks a `POST /v1/payments/transact` body.
pub fn transact_request(body: &[u8]) -> Checked<TransactRequest> {
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &TRANSACT_FIELDS)?;
    match text(&map, "type", "type")? {
        None => Err(FieldError::missing("type")),
        Some("deposit") => deposit(&map).map(TransactRequest::Deposit),
        Some("withdrawal") => withdrawal(&map).map(TransactRequest::Withdrawal),
        Some(_) => Err(FieldError::new("type", "type must be \"deposit\" or \"withdrawal\"")),
    }
}

/// An async payment's id: `job_` and 12 lower-case hex digits.
pub fn async_job_id_ok(id: &str) -> bool {
    id.strip_prefix("job_")
        .is_some_and(|hex| hex.len() == ASYNC_JOB_HEX_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Hex digits of an async payment id (the document's `job_a1b2c3d4e5f6`).
pub const ASYNC_JOB_HEX_LEN: usize = 12;

/// A transaction id as the payment routes show it (`"10056"`).
pub fn tx_id(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
        .filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_bodies_parse() {
        let deposit =
            transact_request(br#"{"type":"deposit","amount":100,"currency":"KES","phone_number":"254712345678"}"#)
                .unwrap();
        let TransactRequest::Deposit(d) = deposit else {
            panic!("a deposit")
        };
        assert_eq!(
            (d.amount_minor, d.msisdn.as_str(), d.wallet),
            (10_000, "254712345678", None)
        );
        let withdrawal = transact_request(
            br#"{"type":"withdrawal","from_wallet":101,"amount":2500,"currency":"KES","destination":"254712345678","metadata":{"gateway":"mpesa"}}"#,
        )
        .unwrap();
        let TransactRequest::Withdrawal(w) = withdrawal else {
            panic!("a withdrawal")
        };
        assert_eq!(
            (w.from_wallet, w.amount_minor, w.method),
            (101, 250_000, PayoutMethod::Mpesa)
        );
    }

    #[test]
    fn phone_numbers_in_three_forms() {
        for form in [
            "0712345678",
            "+254712345678",
            "254712345678",
            "0712 345 678",
            "0112345678",
        ] {
            assert!(kenyan_msisdn(form).is_some(), "{form}");
        }
        assert_eq!(kenyan_msisdn("0712345678").as_deref(), Some("254712345678"));
        for bad in [
            "712345678",
            "+255712345678",
            "07123456789",
            "0812345678",
            "07a2345678",
            "",
        ] {
            assert_eq!(kenyan_msisdn(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (r#"{"amount":100,"currency":"KES"}"#, "type"),
            (r#"{"type":"refund","amount":100,"currency":"KES"}"#, "type"),
            (r#"{"type":"deposit","amount":100,"currency":"KES"}"#, "phone_number"),
            (
                r#"{"type":"deposit","amount":100,"currency":"KES","phone_number":"12"}"#,
                "phone_number",
            ),
            (
                r#"{"type":"deposit","amount":100,"currency":"USD","phone_number":"0712345678"}"#,
                "currency",
            ),
            (
                r#"{"type":"deposit","amount":"100.50","currency":"KES","phone_number":"0712345678"}"#,
                "amount",
            ),
            (
                r#"{"type":"deposit","amount":250001,"currency":"KES","phone_number":"0712345678"}"#,
                "amount",
            ),
            (
                r#"{"type":"deposit","amount":1,"currency":"KES","phone_number":"0712345678","destination":"x"}"#,
                "destination",
            ),
            (
                r#"{"type":"deposit","amount":1,"currency":"KES","phone_number":"0712345678","wallet":1,"to_wallet":2}"#,
                "to_wallet",
            ),
            (
                r#"{"type":"withdrawal","amount":1,"currency":"KES","destination":"0712345678"}"#,
                "from_wallet",
            ),
            (
                r#"{"type":"withdrawal","from_wallet":101,"amount":1,"currency":"KES"}"#,
                "destination",
            ),
            (
                r#"{"type":"withdrawal","from_wallet":101,"amount":1,"currency":"KES","destination":"254712345678","metadata":{"gateway":"paypal"}}"#,
                "metadata.gateway",
            ),
            (
                r#"{"type":"withdrawal","from_wallet":101,"amount":1,"currency":"KES","destination":"254712345678","metadata":{"gateway":"bank"}}"#,
                "destination",
            ),
            (
                r#"{"type":"withdrawal","from_wallet":101,"amount":1,"currency":"KES","destination":"x","phone_number":"0712345678"}"#,
                "phone_number",
            ),
        ];
        for (body, field) in cases {
            let err = transact_request(body.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{body}"));
            assert_eq!(err.field, field, "{body}: {}", err.message);
        }
    }

    #[test]
    fn ids() {
        assert!(async_job_id_ok("job_a1b2c3d4e5f6"));
        assert!(!async_job_id_ok("job_a1b2c3d4e5f"));
        assert!(!async_job_id_ok("pyt_a1b2c3d4e5f6"));
        assert_eq!(tx_id("10056"), Some(10_056));
        assert_eq!(tx_id("0"), None);
        assert_eq!(tx_id("1e3"), None);
        assert_eq!(tx_id("99999999999999999999"), None);
    }
}
