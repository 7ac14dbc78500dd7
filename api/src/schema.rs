//! The API's request schema: which routes exist, which scope each needs, and
//! what their query strings and bodies must look like.
//!
//! The edge validates every request with these functions before forwarding
//! it, and the core parses with the same functions, so the two can never
//! disagree about what is valid. Amounts are read from their exact JSON text
//! (serde_json's `arbitrary_precision`): no float ever holds money.

use crate::pagination::ListParams;
use serde_json::{Map, Value};

/// What is wrong with a request, naming the field (`amount`, `metadata.note`,
/// `body`, a query parameter or a header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        Self::new(field, format!("Missing required parameter: {field}"))
    }
}

pub type Checked<T> = Result<T, FieldError>;

/// Amounts in one operation are below this, in minor units (10^15). Keeps
/// every ledger sum far from `i64` overflow.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;
/// Longest amount text read.
pub const AMOUNT_TEXT_LEN_MAX: usize = 40;
/// Metadata: keys, key length and value length (Stripe's limits).
pub const METADATA_KEYS_MAX: usize = 50;
pub const METADATA_KEY_LEN_MAX: usize = 40;
pub const METADATA_VALUE_LEN_MAX: usize = 500;
/// Page size bounds of list routes.
pub const LIST_LIMIT_MAX: i64 = 100;
pub const LIST_LIMIT_DEFAULT: i64 = 10;

/// An ISO 4217 currency known to Nixo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    /// Number of decimals in the minor unit (KES 2, JPY 0, BHD 3).
    pub exponent: u32,
}

/// Currencies with exponent 0 (ISO 4217 list, current codes).
pub const EXPONENT_0: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
/// Currencies with exponent 3.
pub const EXPONENT_3: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
/// Currencies with exponent 4.
pub const EXPONENT_4: &[&str] = &["CLF", "UYW"];
/// Currencies with exponent 2.
pub const EXPONENT_2: &[&str] = &[
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

    /// Minor units as decimal text with exactly the currency's decimals
    /// (`1250050` KES → `"12500.50"`).
    pub fn minor_to_text(&self, minor: i64) -> String {
        let digits = minor.unsigned_abs().to_string();
        let exponent = self.exponent as usize;
        let sign = if minor < 0 { "-" } else { "" };
        if exponent == 0 {
            return format!("{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = exponent + 1);
        let (whole, fraction) = padded.split_at(padded.len() - exponent);
        format!("{sign}{whole}.{fraction}")
    }

    /// Exact decimal text (`"12500.5"`, `"-3"`) to minor units; `None` when
    /// the text is not a plain decimal, has more decimals than the currency
    /// (trailing zeros aside) or does not fit.
    pub fn text_to_minor(&self, text: &str) -> Option<i64> {
        let decimal = split_decimal(text)?;
        let exponent = self.exponent as usize;
        if decimal.decimals > exponent {
            return None;
        }
        let scaled = format!("{}{}", decimal.digits, "0".repeat(exponent - decimal.decimals));
        let scaled = scaled.trim_start_matches('0');
        let magnitude: i64 = if scaled.is_empty() { 0 } else { scaled.parse().ok()? };
        Some(if decimal.negative { -magnitude } else { magnitude })
    }
}

/// A decimal text taken apart, without a size limit.
struct SplitDecimal {
    negative: bool,
    /// Whole and fraction digits together, trailing fraction zeros dropped.
    digits: String,
    /// Decimals left after trailing zeros are dropped.
    decimals: usize,
}

/// `[-]digits[.digits]`, nothing else.
fn split_decimal(text: &str) -> Option<SplitDecimal> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_ok(whole) || !digits_ok(fraction) || (unsigned.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    Some(SplitDecimal {
        negative,
        digits: format!("{whole}{fraction}"),
        decimals: fraction.len(),
    })
}

/// A JSON document read only to check that no object in it repeats a key.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UniqueKeys, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut keys = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(serde::de::Error::custom(format_args!("repeats the key \"{key}\"")));
            }
            map.next_value::<UniqueKeys>()?;
            keys.insert(key);
        }
        Ok(UniqueKeys)
    }
}

/// Parses a body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Checked<Map<String, Value>> {
    if body.is_empty() {
        return Err(FieldError::new("body", "Request body is empty; send a JSON object"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::new("body", format!("Request body is not valid JSON: {e}")))?;
    // A key given twice is ambiguous (which amount did the client mean?):
    // refused, at any depth, rather than silently taking the last.
    serde_json::from_slice::<UniqueKeys>(body).map_err(|e| FieldError::new("body", format!("Request body {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(FieldError::new("body", "Request body must be a JSON object")),
    }
}

/// An optional string field (`None` when absent or null).
pub fn text<'a>(map: &'a Map<String, Value>, key: &str, field: &str) -> Checked<Option<&'a str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(FieldError::new(field, format!("{field} must be a string"))),
    }
}

/// Trimmed text of 1 to `max` printable characters.
pub fn bounded(value: &str, field: &str, max: usize) -> Checked<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max || trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// Refuses parameters the route does not know (typos must not pass silently).
pub fn reject_unknown(map: &Map<String, Value>, known: &[&str]) -> Checked<()> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(FieldError::new(
            unknown.clone(),
            format!("Received unknown parameter: {unknown}"),
        )),
        None => Ok(()),
    }
}

/// A JSON number with no fractional part (`101`, and `101.0`, which JSON
/// Schema counts as an integer too).
fn integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let split = split_decimal(&n.to_string())?;
    if split.decimals != 0 {
        return None;
    }
    let digits = split.digits.trim_start_matches('0');
    let magnitude: i64 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    Some(if split.negative { -magnitude } else { magnitude })
}

/// A positive integer wallet id (`101`).
pub fn wallet_id(map: &Map<String, Value>, field: &str) -> Checked<i64> {
    match map.get(field) {
        None | Some(Value::Null) => Err(FieldError::missing(field)),
        Some(Value::Number(n)) => integer(n)
            .filter(|id| *id > 0)
            .ok_or_else(|| FieldError::new(field, format!("{field} must be a positive integer wallet id"))),
        Some(_) => Err(FieldError::new(
            field,
            format!("{field} must be an integer wallet id, such as 101"),
        )),
    }
}

/// A supported three-letter ISO 4217 code.
pub fn currency(value: Option<&Value>, field: &str) -> Checked<Currency> {
    let code = match value {
        None | Some(Value::Null) => return Err(FieldError::missing(field)),
        Some(Value::String(s)) => s,
        Some(_) => return Err(FieldError::new(field, "must be a three-letter ISO 4217 code")),
    };
    Currency::from_code(code)
        .ok_or_else(|| FieldError::new(field, format!("'{code}' is not a supported ISO 4217 currency code")))
}

/// An amount given as a JSON string (`"50.00"`) or number (`2500`), read
/// exactly: greater than 0, at most the currency's decimals, below
/// [`AMOUNT_MINOR_MAX`]. Returns minor units.
pub fn amount_minor(value: Option<&Value>, currency: Currency, field: &str) -> Checked<i64> {
    let text = match value {
        None | Some(Value::Null) => return Err(FieldError::missing(field)),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(FieldError::new(field, "must be a decimal string or a number")),
    };
    let plain = !text.is_empty()
        && text.len() <= AMOUNT_TEXT_LEN_MAX
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    let not_plain = || {
        FieldError::new(
            field,
            format!("'{text}' is not a plain decimal amount such as \"50.00\""),
        )
    };
    if !plain {
        return Err(not_plain());
    }
    // Sign and decimals are judged before size, so the message names the real problem.
    let unbounded = split_decimal(&text).ok_or_else(not_plain)?;
    if unbounded.negative || unbounded.digits.bytes().all(|b| b == b'0') {
        return Err(FieldError::new(field, "Amount must be greater than 0"));
    }
    if unbounded.decimals > currency.exponent as usize {
        return Err(FieldError::new(
            field,
            format!("{} allows at most {} decimal places", currency.code, currency.exponent),
        ));
    }
    currency
        .text_to_minor(&text)
        .filter(|m| *m < AMOUNT_MINOR_MAX)
        .ok_or_else(|| FieldError::new(field, "Amount is larger than the largest allowed"))
}

/// Optional flat metadata with string values.
pub fn metadata(value: Option<&Value>) -> Checked<Map<String, Value>> {
    let map = match value {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(FieldError::new(
                "metadata",
                "metadata must be an object of string values",
            ));
        }
    };
    if map.len() > METADATA_KEYS_MAX {
        return Err(FieldError::new(
            "metadata",
            format!("metadata may have at most {METADATA_KEYS_MAX} keys"),
        ));
    }
    for (key, value) in map {
        let field = format!("metadata.{key}");
        if key.is_empty() || key.chars().count() > METADATA_KEY_LEN_MAX {
            return Err(FieldError::new(
                field,
                format!("metadata keys are 1 to {METADATA_KEY_LEN_MAX} characters"),
            ));
        }
        match value {
            Value::String(s) if s.chars().count() <= METADATA_VALUE_LEN_MAX => {}
            Value::String(_) => {
                return Err(FieldError::new(
                    field,
                    format!("metadata values are at most {METADATA_VALUE_LEN_MAX} characters"),
                ));
            }
            _ => return Err(FieldError::new(field, "metadata values must be strings")),
        }
    }
    Ok(map.clone())
}

/// `POST /v1/payments/transfer`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRequest {
    pub from_wallet: i64,
    pub to_wallet: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    pub metadata: Map<String, Value>,
}

pub fn transfer_request(body: &[u8]) -> Checked<TransferRequest> {
    let map = parse_object(body)?;
    reject_unknown(&map, &crate::types::TRANSFER_FIELDS)?;
    let from_wallet = wallet_id(&map, "from_wallet")?;
    let to_wallet = wallet_id(&map, "to_wallet")?;
    let currency = currency(map.get("currency"), "currency")?;
    let amount_minor = amount_minor(map.get("amount"), currency, "amount")?;
    let metadata = metadata(map.get("metadata"))?;
    if from_wallet == to_wallet {
        return Err(FieldError::new("to_wallet", "to_wallet must differ from from_wallet"));
    }
    Ok(TransferRequest {
        from_wallet,
        to_wallet,
        amount_minor,
        currency,
        metadata,
    })
}

/// `key=value` pairs of a query string, percent-decoded (`+` is a space;
/// an invalid escape or non-UTF-8 bytes stay as they were sent).
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |at: usize| {
        bytes
            .get(at..at + 2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1)) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

fn unknown_parameter(name: &str) -> FieldError {
    FieldError::new(name, format!("Received unknown parameter: {name}"))
}

/// `GET /v1/balances?wallet_id=101`: the optional wallet to narrow to.
pub fn balances_query(query: Option<&str>) -> Checked<Option<i64>> {
    let mut wallet_id = None;
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "wallet_id" => {
                let id = value.parse::<i64>().ok().filter(|id| *id > 0);
                wallet_id =
                    Some(id.ok_or_else(|| {
                        FieldError::new("wallet_id", "wallet_id must be a positive integer wallet id")
                    })?);
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    Ok(wallet_id)
}

/// `GET /v1/rules/decisions?transaction_id=10003&limit=5`: the optional
/// transaction and the page.
pub fn decisions_query(query: Option<&str>) -> Checked<(Option<i64>, ListParams)> {
    let (mut transaction_id, mut page) = (None, ListParams::default());
    for (key, value) in query_pairs(query) {
        if let Some(taken) = page.take(&key, &value) {
            taken?;
            continue;
        }
        match key.as_str() {
            "transaction_id" => {
                let id = value.parse::<i64>().ok().filter(|id| *id > 0);
                transaction_id = Some(id.ok_or_else(|| {
                    FieldError::new(
                        "transaction_id",
                        "transaction_id must be a transaction id such as 10056",
                    )
                })?);
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    Ok((transaction_id, page))
}

/// The routes the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Transfer,
    Balances,
    Decisions,
    OpenApi,
    PayoutCreate,
    PayoutList,
    PayoutRetrieve,
    PayoutCancel,
    /// Daraja's asynchronous B2C result (unsigned by nature: a secret path token).
    MpesaB2cResult,
    /// Daraja's queue time-out notice for a B2C request.
    MpesaB2cTimeout,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointRetrieve,
    WebhookEndpointUpdate,
    WebhookEndpointReplace,
    WebhookEndpointDelete,
    WebhookEndpointRotate,
    WebhookAttempts,
    EventList,
    EventRetrieve,
    EventResend,
    AccountCreate,
    AccountList,
    AccountMe,
    AccountRetrieve,
    AccountUpdate,
    TransactionList,
    TransactionExport,
    TransactionRetrieve,
    /// Deposit (M-Pesa STK push) or withdrawal (M-Pesa or bank).
    PaymentTransact,
    /// A payment's current status by transaction id.
    PaymentRetrieve,
    AsyncPaymentCreate,
    AsyncPaymentRetrieve,
    /// Daraja's STK push result (a secret path token, like the B2C ones).
    MpesaStkCallback,
    ReviewList,
    ReviewRetrieve,
    ReviewApprove,
    ReviewDecline,
}

/// A route: method, path and the key scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub id: RouteId,
    pub method: &'static str,
    pub path: &'static str,
    pub scope: &'static str,
    /// In the OpenAPI document (provider callbacks are not part of the API).
    pub documented: bool,
}

/// The scope of routes anyone may call without a key (the API document).
pub const PUBLIC: &str = "";

/// Every public route. A key's scopes are a subset of the scopes named here.
pub const ROUTES: [Route; 38] = [
    Route {
        id: RouteId::Transfer,
        method: "POST",
        path: "/v1/payments/transfer",
        scope: "transfers:write",
        documented: true,
    },
    Route {
        id: RouteId::Balances,
        method: "GET",
        path: "/v1/balances",
        scope: "balances:read",
        documented: true,
    },
    Route {
        id: RouteId::Decisions,
        method: "GET",
        path: "/v1/rules/decisions",
        scope: "decisions:read",
        documented: true,
    },
    Route {
        id: RouteId::OpenApi,
        method: "GET",
        path: "/v1/openapi.json",
        scope: PUBLIC,
        documented: true,
    },
    Route {
        id: RouteId::PayoutCreate,
        method: "POST",
        path: "/v1/payouts",
        scope: "payouts:write",
        documented: true,
    },
    Route {
        id: RouteId::PayoutList,
        method: "GET",
        path: "/v1/payouts",
        scope: "payouts:read",
        documented: true,
    },
    Route {
        id: RouteId::PayoutRetrieve,
        method: "GET",
        path: "/v1/payouts/{id}",
        scope: "payouts:read",
        documented: true,
    },
    Route {
        id: RouteId::PayoutCancel,
        method: "DELETE",
        path: "/v1/payouts/{id}/cancel",
        scope: "payouts:write",
        documented: true,
    },
    Route {
        id: RouteId::MpesaB2cResult,
        method: "POST",
        path: MPESA_B2C_RESULT_PATH,
        scope: PUBLIC,
        documented: false,
    },
    Route {
        id: RouteId::MpesaB2cTimeout,
        method: "POST",
        path: MPESA_B2C_TIMEOUT_PATH,
        scope: PUBLIC,
        documented: false,
    },
    Route {
        id: RouteId::WebhookEndpointCreate,
        method: "POST",
        path: "/v1/webhook_endpoints",
        scope: "webhooks:write",
        documented: true,
    },
    Route {
        id: RouteId::WebhookEndpointList,
        method: "GET",
        path: "/v1/webhook_endpoints",
        scope: "webhooks:read",
        documented: true,
    },
    Route {
        id: RouteId::WebhookEndpointRetrieve,
        method: "GET",
        path: "/v1/webhook_endpoints/{id}",
        scope: "webhooks:read",
        documented: true,
    },
    Route {
        id: RouteId::WebhookEndpointUpdate,
        method: "POST",
        path: "/v1/webhook_endpoints/{id}",
        scope: "webhooks:write",
        documented: true,
    },
    Route {
        id: RouteId::WebhookEndpointReplace,
        method: "PUT",
        path: "/v1/webhook_endpoints/{id}",
        scope: "webhooks:write",
        documented: true,
    },
    Route {
        id: RouteId::WebhookEndpointDelete,
        method: "DELETE",
        path: "/v1/webhook_endpoints/{id}",
        scope: "webhooks:write",
        documented: true,
    },
    Route {
        id: RouteId::WebhookEndpointRotate,
        method: "POST",
        path: "/v1/webhook_endpoints/{id}/rotate_secret",
        scope: "webhooks:write",
        documented: true,
    },
    Route {
        id: RouteId::WebhookAttempts,
        method: "GET",
        path: "/v1/webhook_endpoints/{id}/attempts",
        scope: "webhooks:read",
        documented: true,
    },
    Route {
        id: RouteId::EventList,
        method: "GET",
        path: "/v1/events",
        scope: "events:read",
        documented: true,
    },
    Route {
        id: RouteId::EventRetrieve,
        method: "GET",
        path: "/v1/events/{id}",
        scope: "events:read",
        documented: true,
    },
    Route {
        id: RouteId::EventResend,
        method: "POST",
        path: "/v1/events/{id}/resend",
        scope: "webhooks:write",
        documented: true,
    },
    Route {
        id: RouteId::AccountCreate,
        method: "POST",
        path: "/v1/accounts",
        scope: "accounts:write",
        documented: true,
    },
    Route {
        id: RouteId::AccountList,
        method: "GET",
        path: "/v1/accounts",
        scope: "accounts:read",
        documented: true,
    },
    // Before `{id}`: `me` is the key's own account, not an id.
    Route {
        id: RouteId::AccountMe,
        method: "GET",
        path: "/v1/accounts/me",
        scope: "accounts:read",
        documented: true,
    },
    Route {
        id: RouteId::AccountRetrieve,
        method: "GET",
        path: "/v1/accounts/{id}",
        scope: "accounts:read",
        documented: true,
    },
    Route {
        id: RouteId::AccountUpdate,
        method: "PUT",
        path: "/v1/accounts/{id}",
        scope: "accounts:write",
        documented: true,
    },
    Route {
        id: RouteId::TransactionList,
        method: "GET",
        path: "/v1/transactions",
        scope: "transactions:read",
        documented: true,
    },
    Route {
        id: RouteId::TransactionExport,
        method: "GET",
        path: "/v1/transactions/export",
        scope: "transactions:read",
        documented: true,
    },
    Route {
        id: RouteId::TransactionRetrieve,
        method: "GET",
        path: "/v1/transactions/{id}",
        scope: "transactions:read",
        documented: true,
    },
    Route {
        id: RouteId::PaymentTransact,
        method: "POST",
        path: "/v1/payments/transact",
        scope: "payments:write",
        documented: true,
    },
    Route {
        id: RouteId::AsyncPaymentCreate,
        method: "POST",
        path: "/v1/payments/async",
        scope: "transfers:write",
        documented: true,
    },
    Route {
        id: RouteId::AsyncPaymentRetrieve,
        method: "GET",
        path: "/v1/payments/async/{job_id}",
        scope: "payments:read",
        documented: true,
    },
    // After the literal payment paths (`transfer`, `transact`, `async`).
    Route {
        id: RouteId::PaymentRetrieve,
        method: "GET",
        path: "/v1/payments/{tx_id}",
        scope: "payments:read",
        documented: true,
    },
    Route {
        id: RouteId::ReviewList,
        method: "GET",
        path: "/v1/reviews",
        scope: "reviews:read",
        documented: true,
    },
    Route {
        id: RouteId::ReviewRetrieve,
        method: "GET",
        path: "/v1/reviews/{id}",
        scope: "reviews:read",
        documented: true,
    },
    Route {
        id: RouteId::ReviewApprove,
        method: "POST",
        path: "/v1/reviews/{id}/approve",
        scope: "reviews:write",
        documented: true,
    },
    Route {
        id: RouteId::ReviewDecline,
        method: "POST",
        path: "/v1/reviews/{id}/decline",
        scope: "reviews:write",
        documented: true,
    },
    Route {
        id: RouteId::MpesaStkCallback,
        method: "POST",
        path: MPESA_STK_CALLBACK_PATH,
        scope: PUBLIC,
        documented: false,
    },
];

/// Where Daraja posts B2C results and queue time-outs; `{token}` is a
/// secret only Nixo and Daraja know.
pub const MPESA_B2C_RESULT_PATH: &str = "/callbacks/mpesa/b2c/result/{token}";
pub const MPESA_B2C_TIMEOUT_PATH: &str = "/callbacks/mpesa/b2c/timeout/{token}";
/// Where Daraja posts STK push results (deposits).
pub const MPESA_STK_CALLBACK_PATH: &str = "/callbacks/mpesa/stk/{token}";
/// Longest path parameter (an id or a token).
pub const PATH_PARAM_LEN_MAX: usize = 64;

/// Whether `path` is an instance of the route template `template`
/// (`{name}` matches one segment of letters, digits, `_` and `-`).
pub fn path_matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                let ok = !ps.is_empty()
                    && ps.len() <= PATH_PARAM_LEN_MAX
                    && ps.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok && ps != ts {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

impl Route {
    /// Whether the answer is relayed as it streams (an export of any size)
    /// instead of read whole.
    pub fn streams_response(&self) -> bool {
        self.id == RouteId::TransactionExport
    }

    /// Callable without a key.
    pub fn is_public(&self) -> bool {
        self.scope == PUBLIC
    }
}

/// Every scope a key can hold.
pub fn all_scopes() -> impl Iterator<Item = &'static str> {
    let mut scopes: Vec<&'static str> = Vec::new();
    for route in ROUTES.iter().filter(|r| !r.is_public()) {
        if !scopes.contains(&route.scope) {
            scopes.push(route.scope);
        }
    }
    scopes.into_iter()
}

/// Why a method and path match no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    MethodNotAllowed,
}

pub fn find_route(method: &str, path: &str) -> Result<&'static Route, RouteMiss> {
    // A literal path (`/v1/accounts/me`) is never an instance of a template
    // beside it (`/v1/accounts/{id}`): only its own methods.
    if ROUTES.iter().any(|r| r.path == path) {
        return ROUTES
            .iter()
            .find(|r| r.path == path && r.method == method)
            .ok_or(RouteMiss::MethodNotAllowed);
    }
    let mut path_known = false;
    for route in &ROUTES {
        if path_matches(route.path, path) {
            if route.method == method {
                return Ok(route);
            }
            path_known = true;
        }
    }
    Err(if path_known {
        RouteMiss::MethodNotAllowed
    } else {
        RouteMiss::NotFound
    })
}

/// The methods a path allows, for an `Allow` header (`"GET, POST"`).
pub fn allowed_methods(path: &str) -> String {
    let literal = ROUTES.iter().any(|r| r.path == path);
    let methods: Vec<&str> = ROUTES
        .iter()
        .filter(|r| {
            if literal {
                r.path == path
            } else {
                path_matches(r.path, path)
            }
        })
        .map(|r| r.method)
        .collect();
    methods.join(", ")
}

/// Validates a request for `route` (query and body) without acting on it.
pub fn validate(route: &Route, query: Option<&str>, body: &[u8]) -> Checked<()> {
    match route.id {
        RouteId::Transfer => {
            if let Some((name, _)) = query_pairs(query).next() {
                return Err(unknown_parameter(&name));
            }
            transfer_request(body).map(drop)
        }
        RouteId::Balances => balances_query(query).map(drop).and_then(|_| no_body(body)),
        RouteId::Decisions => decisions_query(query).map(drop).and_then(|_| no_body(body)),
        RouteId::OpenApi
        | RouteId::PayoutRetrieve
        | RouteId::PayoutCancel
        | RouteId::WebhookEndpointRetrieve
        | RouteId::WebhookEndpointDelete
        | RouteId::EventRetrieve
        | RouteId::AccountMe
        | RouteId::AccountRetrieve
        | RouteId::TransactionRetrieve
        | RouteId::PaymentRetrieve
        | RouteId::AsyncPaymentRetrieve
        | RouteId::ReviewRetrieve => match query_pairs(query).next() {
            Some((name, _)) => Err(unknown_parameter(&name)),
            None => no_body(body),
        },
        RouteId::PayoutCreate => {
            if let Some((name, _)) = query_pairs(query).next() {
                return Err(unknown_parameter(&name));
            }
            crate::payouts::payout_request(body).map(drop)
        }
        RouteId::PayoutList => crate::payouts::payouts_query(query)
            .map(drop)
            .and_then(|_| no_body(body)),
        RouteId::WebhookEndpointCreate
        | RouteId::WebhookEndpointUpdate
        | RouteId::WebhookEndpointReplace
        | RouteId::WebhookEndpointRotate
        | RouteId::EventResend => {
            if let Some((name, _)) = query_pairs(query).next() {
                return Err(unknown_parameter(&name));
            }
            use crate::webhooks;
            match route.id {
                RouteId::WebhookEndpointCreate => webhooks::endpoint_request(body, false).map(drop),
                RouteId::WebhookEndpointRotate => webhooks::rotate_request(body).map(drop),
                RouteId::EventResend => webhooks::resend_request(body).map(drop),
                _ => webhooks::endpoint_request(body, true).map(drop),
            }
        }
        RouteId::WebhookEndpointList | RouteId::WebhookAttempts => {
            crate::webhooks::list_query(query).map(drop).and_then(|_| no_body(body))
        }
        RouteId::EventList => crate::webhooks::events_query(query)
            .map(drop)
            .and_then(|_| no_body(body)),
        RouteId::AccountCreate | RouteId::AccountUpdate => {
            if let Some((name, _)) = query_pairs(query).next() {
                return Err(unknown_parameter(&name));
            }
            if route.id == RouteId::AccountCreate {
                crate::accounts::create_request(body).map(drop)
            } else {
                crate::accounts::update_request(body).map(drop)
            }
        }
        RouteId::TransactionList => crate::transactions::transactions_query(query)
            .map(drop)
            .and_then(|_| no_body(body)),
        RouteId::TransactionExport => crate::transactions::export_query(query)
            .map(drop)
            .and_then(|_| no_body(body)),
        RouteId::AccountList => crate::accounts::accounts_query(query)
            .map(drop)
            .and_then(|_| no_body(body)),
        RouteId::ReviewList => crate::reviews::reviews_query(query)
            .map(drop)
            .and_then(|_| no_body(body)),
        RouteId::ReviewApprove | RouteId::ReviewDecline => match query_pairs(query).next() {
            Some((name, _)) => Err(unknown_parameter(&name)),
            None => crate::reviews::decision_request(body).map(drop),
        },
        RouteId::PaymentTransact | RouteId::AsyncPaymentCreate => {
            if let Some((name, _)) = query_pairs(query).next() {
                return Err(unknown_parameter(&name));
            }
            if route.id == RouteId::PaymentTransact {
                crate::payments::transact_request(body).map(drop)
            } else {
                transfer_request(body).map(drop)
            }
        }
        RouteId::MpesaB2cResult | RouteId::MpesaB2cTimeout | RouteId::MpesaStkCallback => {
            match query_pairs(query).next() {
                Some((name, _)) => Err(unknown_parameter(&name)),
                None => parse_object(body).map(drop),
            }
        }
    }
}

fn no_body(body: &[u8]) -> Checked<()> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(())
    } else {
        Err(FieldError::new("body", "This route takes no request body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for body in [
            r#"{"amount":"1.00","amount":"90000.00"}"#,
            r#"{"metadata":{"a":"1","a":"2"}}"#,
            r#"{"list":[{"x":1},{"y":2,"y":3}]}"#,
        ] {
            let err = parse_object(body.as_bytes()).unwrap_err();
            assert_eq!(err.field, "body");
            assert!(err.message.contains("repeats the key"), "{body}: {}", err.message);
        }
        // The same key in sibling objects, and numbers of any precision, are fine.
        let ok = parse_object(br#"{"a":{"k":1},"b":{"k":12345678901234567890.123456789}}"#).unwrap();
        assert_eq!(ok.len(), 2);
    }

    fn kes() -> Currency {
        Currency::from_code("KES").unwrap()
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(kes().exponent, 2);
        assert_eq!(Currency::from_code("JPY").unwrap().exponent, 0);
        assert_eq!(Currency::from_code("BHD").unwrap().exponent, 3);
        assert!(Currency::from_code("kes").is_none());
        assert!(Currency::from_code("XXX").is_none());
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(amount_minor(Some(&json!("50.00")), kes(), "amount"), Ok(5_000));
        assert_eq!(amount_minor(Some(&json!(2500)), kes(), "amount"), Ok(250_000));
        let n: Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(amount_minor(Some(&n), kes(), "amount"), Ok(10));
        // 0.30000000000000004 as f64 would be 0.30; exact parsing refuses it.
        let n: Value = serde_json::from_str("0.30000000000000004").unwrap();
        assert!(amount_minor(Some(&n), kes(), "amount").is_err());
        assert_eq!(amount_minor(Some(&json!("1.500")), kes(), "amount"), Ok(150));
        assert_eq!(amount_minor(Some(&json!("007.5")), kes(), "amount"), Ok(750));
    }

    #[test]
    fn bad_amounts_name_the_field_and_the_problem() {
        let message = |v: Value, c: Currency| amount_minor(Some(&v), c, "amount").unwrap_err().message;
        assert_eq!(message(json!("0"), kes()), "Amount must be greater than 0");
        assert_eq!(message(json!("-1"), kes()), "Amount must be greater than 0");
        assert_eq!(message(json!("0.000"), kes()), "Amount must be greater than 0");
        assert_eq!(message(json!("1.234"), kes()), "KES allows at most 2 decimal places");
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(message(json!("10.5"), jpy), "JPY allows at most 0 decimal places");
        assert_eq!(
            message(json!("99999999999999999999"), kes()),
            "Amount is larger than the largest allowed"
        );
        for bad in [
            json!("1e3"),
            json!(""),
            json!("1."),
            json!(".5"),
            json!("1-2"),
            json!("--1"),
        ] {
            assert!(message(bad.clone(), kes()).contains("plain decimal"), "{bad}");
        }
        assert_eq!(
            amount_minor(Some(&json!(true)), kes(), "amount").unwrap_err().field,
            "amount"
        );
        assert_eq!(amount_minor(None, kes(), "amount"), Err(FieldError::missing("amount")));
    }

    #[test]
    fn minor_units_and_text_round_trip() {
        let bhd = Currency::from_code("BHD").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(kes().minor_to_text(1_250_050), "12500.50");
        assert_eq!(kes().minor_to_text(5), "0.05");
        assert_eq!(kes().minor_to_text(-5), "-0.05");
        assert_eq!(bhd.minor_to_text(1), "0.001");
        assert_eq!(jpy.minor_to_text(7), "7");
        for minor in [0, 1, 99, 100, 12_345_678, -42, AMOUNT_MINOR_MAX] {
            for c in [kes(), bhd, jpy] {
                assert_eq!(
                    c.text_to_minor(&c.minor_to_text(minor)),
                    Some(minor),
                    "{minor} {}",
                    c.code
                );
            }
        }
        assert_eq!(kes().text_to_minor("12500.5"), Some(1_250_050));
        assert_eq!(kes().text_to_minor("1.001"), None);
        assert_eq!(kes().text_to_minor("1e2"), None);
    }

    #[test]
    fn transfer_bodies() {
        let ok = br#"{"from_wallet":101,"to_wallet":102,"amount":"50.00","currency":"KES","metadata":{"note":"x"}}"#;
        let parsed = transfer_request(ok).unwrap();
        assert_eq!(
            (parsed.from_wallet, parsed.to_wallet, parsed.amount_minor),
            (101, 102, 5000)
        );
        let field = |body: &str| transfer_request(body.as_bytes()).unwrap_err().field;
        assert_eq!(
            field(r#"{"to_wallet":102,"amount":"1","currency":"KES"}"#),
            "from_wallet"
        );
        assert_eq!(
            field(r#"{"from_wallet":"101","to_wallet":102,"amount":"1","currency":"KES"}"#),
            "from_wallet"
        );
        assert_eq!(
            field(r#"{"from_wallet":101,"to_wallet":101,"amount":"1","currency":"KES"}"#),
            "to_wallet"
        );
        assert_eq!(
            field(r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"kes"}"#),
            "currency"
        );
        assert_eq!(
            field(r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"KES","x":1}"#),
            "x"
        );
        assert_eq!(
            field(r#"{"from_wallet":101,"to_wallet":102,"amount":"1","currency":"KES","metadata":{"n":1}}"#),
            "metadata.n"
        );
        assert_eq!(field("[]"), "body");
        let whole = br#"{"from_wallet":101.0,"to_wallet":102.00,"amount":"1","currency":"KES"}"#;
        assert_eq!(transfer_request(whole).unwrap().to_wallet, 102);
        assert_eq!(
            field(r#"{"from_wallet":101.5,"to_wallet":102,"amount":"1","currency":"KES"}"#),
            "from_wallet"
        );
        assert_eq!(field(""), "body");
    }

    #[test]
    fn queries() {
        assert_eq!(balances_query(None), Ok(None));
        assert_eq!(balances_query(Some("wallet_id=101")), Ok(Some(101)));
        assert_eq!(balances_query(Some("wallet_id=x")).unwrap_err().field, "wallet_id");
        assert_eq!(balances_query(Some("limit=5")).unwrap_err().field, "limit");
        assert_eq!(decisions_query(Some("limit=5")).unwrap().1.limit, 5);
        assert_eq!(decisions_query(Some("limit=101")).unwrap_err().field, "limit");
        assert_eq!(
            decisions_query(Some("transaction_id=0")).unwrap_err().field,
            "transaction_id"
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let pairs: Vec<(String, String)> =
            query_pairs(Some("type=%2A&created%5Bgte%5D=1&q=a+b&bad=%zz&x=%4")).collect();
        assert_eq!(
            pairs,
            [
                ("type", "*"),
                ("created[gte]", "1"),
                ("q", "a b"),
                ("bad", "%zz"),
                ("x", "%4")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn routes_and_scopes() {
        assert_eq!(
            find_route("POST", "/v1/payments/transfer").unwrap().scope,
            "transfers:write"
        );
        assert_eq!(
            find_route("GET", "/v1/payments/transfer"),
            Err(RouteMiss::MethodNotAllowed)
        );
        assert_eq!(find_route("GET", "/v1/nothing"), Err(RouteMiss::NotFound));
        assert_eq!(all_scopes().count(), 15);
        // The literal payment paths are not instances of `/v1/payments/{tx_id}`.
        assert_eq!(
            find_route("GET", "/v1/payments/10057").unwrap().id,
            RouteId::PaymentRetrieve
        );
        for literal in ["/v1/payments/transact", "/v1/payments/async", "/v1/payments/transfer"] {
            assert_eq!(
                find_route("GET", literal),
                Err(RouteMiss::MethodNotAllowed),
                "{literal}"
            );
        }
        assert_eq!(
            find_route("GET", "/v1/payments/async/job_a1b2c3d4e5f6").unwrap().id,
            RouteId::AsyncPaymentRetrieve
        );
        assert!(find_route("POST", "/callbacks/mpesa/stk/abc").unwrap().is_public());
        assert_eq!(
            find_route("GET", "/v1/transactions/export").unwrap().id,
            RouteId::TransactionExport
        );
        assert_eq!(
            find_route("GET", "/v1/transactions/10001").unwrap().id,
            RouteId::TransactionRetrieve
        );
        assert_eq!(find_route("GET", "/v1/accounts/me").unwrap().id, RouteId::AccountMe);
        assert_eq!(
            find_route("PUT", "/v1/accounts/acct_1").unwrap().id,
            RouteId::AccountUpdate
        );
        let one = find_route("GET", "/v1/payouts/pyt_1A2B").unwrap();
        assert_eq!((one.id, one.scope), (RouteId::PayoutRetrieve, "payouts:read"));
        assert_eq!(
            find_route("DELETE", "/v1/payouts/pyt_1A2B/cancel").unwrap().id,
            RouteId::PayoutCancel
        );
        assert_eq!(
            find_route("POST", "/v1/payouts/pyt_1A2B"),
            Err(RouteMiss::MethodNotAllowed)
        );
        assert_eq!(find_route("GET", "/v1/payouts/a.b"), Err(RouteMiss::NotFound));
        assert_eq!(find_route("GET", "/v1/payouts//cancel"), Err(RouteMiss::NotFound));
        assert_eq!(allowed_methods("/v1/payouts"), "POST, GET");
        assert!(
            find_route("POST", "/callbacks/mpesa/b2c/result/abc")
                .unwrap()
                .is_public()
        );
        let balances = find_route("GET", "/v1/balances").unwrap();
        assert_eq!(validate(balances, None, b"{}").unwrap_err().field, "body");
        assert_eq!(validate(balances, Some("wallet_id=101"), b""), Ok(()));
    }
}
