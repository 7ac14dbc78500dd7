//! The payout routes' request rules: the `POST /v1/payouts` body and the
//! `GET /v1/payouts` filters. The edge validates with these functions and
//! the core parses with them. Whether an IBAN or an M-Pesa number is real is
//! the payout rule plugins' call (in the core); here only the shape is
//! checked.

use crate::pagination::{CreatedRange, ListParams};
use crate::schema::{self, Checked, Currency, FieldError, bounded, text};
use serde_json::{Map, Value};

/// Fields of the body, and the required ones.
pub const PAYOUT_FIELDS: [&str; 8] = [
    "amount",
    "currency",
    "destination_country",
    "destination_currency",
    "method",
    "recipient",
    "description",
    "metadata",
];
pub const PAYOUT_REQUIRED: [&str; 3] = ["amount", "currency", "recipient"];
/// Fields of `recipient`.
pub const RECIPIENT_FIELDS: [&str; 3] = ["full_name", "account_iban", "phone_number"];
/// Longest recipient name, in characters.
pub const RECIPIENT_NAME_LEN_MAX: usize = 140;
/// Longest account text read (an IBAN is at most 34 characters; spaces allowed).
pub const RECIPIENT_ACCOUNT_LEN_MAX: usize = 48;
/// Longest description, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 140;

/// How a payout travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutMethod {
    /// A bank transfer to an IBAN (ISO 20022 credit transfer).
    Bank,
    /// M-Pesa B2C to a Kenyan mobile number.
    Mpesa,
}

impl PayoutMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutMethod::Bank => "bank",
            PayoutMethod::Mpesa => "mpesa",
        }
    }

    pub fn parse(text: &str) -> Option<PayoutMethod> {
        match text {
            "bank" => Some(PayoutMethod::Bank),
            "mpesa" => Some(PayoutMethod::Mpesa),
            _ => None,
        }
    }
}

/// Where the money goes, as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientAccount {
    Iban(String),
    Phone(String),
}

impl RecipientAccount {
    /// The request field the account came in.
    pub fn field(&self) -> &'static str {
        match self {
            RecipientAccount::Iban(_) => "recipient.account_iban",
            RecipientAccount::Phone(_) => "recipient.phone_number",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            RecipientAccount::Iban(t) | RecipientAccount::Phone(t) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PayoutRequest {
    pub amount_minor: i64,
    pub currency: Currency,
    pub destination_country: Option<String>,
    /// What the recipient receives, when it differs from `currency`.
    pub destination_currency: Option<Currency>,
    pub method: PayoutMethod,
    pub full_name: String,
    pub account: RecipientAccount,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
}

fn country(value: &str) -> Checked<String> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value.to_string())
    } else {
        Err(FieldError::new(
            "destination_country",
            "destination_country must be an ISO 3166-1 alpha-2 code such as \"MA\"",
        ))
    }
}

fn recipient(value: Option<&Value>) -> Checked<(String, RecipientAccount)> {
    let map = match value {
        None | Some(Value::Null) => return Err(FieldError::missing("recipient")),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(FieldError::new("recipient", "recipient must be an object")),
    };
    if let Some(unknown) = map.keys().find(|k| !RECIPIENT_FIELDS.contains(&k.as_str())) {
        let field = format!("recipient.{unknown}");
        return Err(FieldError::new(
            field.clone(),
            format!("Received unknown parameter: {field}"),
        ));
    }
    let name =
        text(map, "full_name", "recipient.full_name")?.ok_or_else(|| FieldError::missing("recipient.full_name"))?;
    let name = bounded(name, "recipient.full_name", RECIPIENT_NAME_LEN_MAX)?;
    let iban = text(map, "account_iban", "recipient.account_iban")?;
    let phone = text(map, "phone_number", "recipient.phone_number")?;
    let account = match (iban, phone) {
        (Some(iban), None) => {
            RecipientAccount::Iban(bounded(iban, "recipient.account_iban", RECIPIENT_ACCOUNT_LEN_MAX)?)
        }
        (None, Some(phone)) => {
            RecipientAccount::Phone(bounded(phone, "recipient.phone_number", RECIPIENT_ACCOUNT_LEN_MAX)?)
        }
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "recipient.phone_number",
                "Give either recipient.account_iban or recipient.phone_number, not both",
            ));
        }
        (None, None) => {
            return Err(FieldError::new(
                "recipient.account_iban",
                "Missing required parameter: recipient.account_iban (bank) or recipient.phone_number (M-Pesa)",
            ));
        }
    };
    Ok((name, account))
}

/// Parses and checks a `POST /v1/payouts` body.
pub fn payout_request(body: &[u8]) -> Checked<PayoutRequest> {
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &PAYOUT_FIELDS)?;
    let currency = schema::currency(map.get("currency"), "currency")?;
    let amount_minor = schema::amount_minor(map.get("amount"), currency, "amount")?;
    let destination_country = text(&map, "destination_country", "destination_country")?
        .map(country)
        .transpose()?;
    let destination_currency = match map.get("destination_currency") {
        None | Some(Value::Null) => None,
        value => Some(schema::currency(value, "destination_currency")?),
    };
    let (full_name, account) = recipient(map.get("recipient"))?;
    let implied = match account {
        RecipientAccount::Iban(_) => PayoutMethod::Bank,
        RecipientAccount::Phone(_) => PayoutMethod::Mpesa,
    };
    let method = match text(&map, "method", "method")? {
        None => implied,
        Some(m) => {
            let method = PayoutMethod::parse(m)
                .ok_or_else(|| FieldError::new("method", "method must be \"bank\" or \"mpesa\""))?;
            if method != implied {
                return Err(FieldError::new(
                    "method",
                    format!(
                        "method \"{m}\" does not match the recipient: a bank payout takes recipient.account_iban, \
                         an M-Pesa payout recipient.phone_number"
                    ),
                ));
            }
            method
        }
    };
    let description = text(&map, "description", "description")?
        .map(|d| bounded(d, "description", DESCRIPTION_LEN_MAX))
        .transpose()?;
    let metadata = schema::metadata(map.get("metadata"))?;
    Ok(PayoutRequest {
        amount_minor,
        currency,
        destination_country,
        destination_currency,
        method,
        full_name,
        account,
        description,
        metadata,
    })
}

/// Payout states a list can be filtered by.
pub const PAYOUT_STATUSES: [&str; 5] = ["pending", "processing", "succeeded", "failed", "canceled"];

/// `GET /v1/payouts` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutFilter {
    pub status: Option<&'static str>,
    pub currency: Option<Currency>,
    pub created: CreatedRange,
}

/// Parses the `GET /v1/payouts` query.
pub fn payouts_query(query: Option<&str>) -> Checked<(PayoutFilter, ListParams)> {
    let (mut filter, mut page) = (PayoutFilter::default(), ListParams::default());
    for (key, value) in schema::query_pairs(query) {
        if let Some(taken) = page.take(&key, &value).or_else(|| filter.created.take(&key, &value)) {
            taken?;
            continue;
        }
        match key.as_str() {
            "status" => {
                filter.status = Some(
                    PAYOUT_STATUSES
                        .into_iter()
                        .find(|s| *s == value.as_str())
                        .ok_or_else(|| {
                            FieldError::new(
                                "status",
                                format!("status must be one of {}", PAYOUT_STATUSES.join(", ")),
                            )
                        })?,
                );
            }
            "currency" => filter.currency = Some(schema::currency(Some(&Value::String(value.clone())), "currency")?),
            other => return Err(FieldError::new(other, format!("Received unknown parameter: {other}"))),
        }
    }
    Ok((filter, page))
}

/// A payout id in a path: `pyt_` and letters or digits.
pub fn payout_id_ok(id: &str) -> bool {
    id.len() > 4 && id.len() <= 64 && id.starts_with("pyt_") && id[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = r#"{
        "amount": 250.00,
        "currency": "USD",
        "destination_country": "MA",
        "recipient": { "full_name": "Test User", "account_iban": "MA64000..." }
    }"#;

    #[test]
    fn the_documented_body_has_a_valid_shape() {
        let req = payout_request(DOCUMENTED.as_bytes()).unwrap();
        assert_eq!((req.amount_minor, req.currency.code), (25_000, "USD"));
        assert_eq!(req.method, PayoutMethod::Bank);
        assert_eq!(req.destination_country.as_deref(), Some("MA"));
        assert_eq!(req.account, RecipientAccount::Iban("MA64000...".into()));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let cases = [
            (r#"{"amount":1,"currency":"USD"}"#, "recipient"),
            (
                r#"{"amount":1,"currency":"USD","recipient":{"account_iban":"x"}}"#,
                "recipient.full_name",
            ),
            (
                r#"{"amount":1,"currency":"USD","recipient":{"full_name":"A"}}"#,
                "recipient.account_iban",
            ),
            (
                r#"{"amount":1,"currency":"USD","recipient":{"full_name":"A","account_iban":"x","phone_number":"1"}}"#,
                "recipient.phone_number",
            ),
            (
                r#"{"amount":1,"currency":"USD","recipient":{"full_name":"A","iban":"x"}}"#,
                "recipient.iban",
            ),
            (
                r#"{"amount":1,"currency":"USD","destination_country":"ma","recipient":{"full_name":"A","account_iban":"x"}}"#,
                "destination_country",
            ),
            (
                r#"{"amount":1,"currency":"USD","method":"mpesa","recipient":{"full_name":"A","account_iban":"x"}}"#,
                "method",
            ),
            (
                r#"{"amount":1.001,"currency":"USD","recipient":{"full_name":"A","account_iban":"x"}}"#,
                "amount",
            ),
            (
                r#"{"amount":1,"currency":"USD","recipient":{"full_name":" ","account_iban":"x"}}"#,
                "recipient.full_name",
            ),
            (
                r#"{"amount":1,"currency":"USD","fee":1,"recipient":{"full_name":"A","account_iban":"x"}}"#,
                "fee",
            ),
        ];
        for (body, field) in cases {
            let err = payout_request(body.as_bytes()).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
    }

    #[test]
    fn list_filters() {
        let (filter, page) = payouts_query(Some(
            "status=failed&currency=USD&created%5Bgte%5D=10&created[lte]=20&limit=3",
        ))
        .unwrap();
        assert_eq!(filter.status, Some("failed"));
        assert_eq!(filter.currency.map(|c| c.code), Some("USD"));
        assert_eq!((filter.created.gte, filter.created.lte), (Some(10), Some(20)));
        assert_eq!(page.limit, 3);
        assert_eq!(payouts_query(Some("status=done")).unwrap_err().field, "status");
        assert_eq!(payouts_query(Some("created[gt]=1")).unwrap_err().field, "created[gt]");
        assert_eq!(payouts_query(Some("created[gte]=x")).unwrap_err().field, "created[gte]");
    }

    #[test]
    fn payout_ids() {
        assert!(payout_id_ok("pyt_1A2B3C4D5E6F"));
        assert!(!payout_id_ok("pyt_"));
        assert!(!payout_id_ok("tx_1"));
        assert!(!payout_id_ok("pyt_a-b"));
    }
}
