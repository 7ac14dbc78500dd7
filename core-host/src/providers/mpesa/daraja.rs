//! Daraja's wire format: the JSON bodies of the OAuth token, the B2C
//! payment request and its answers, the asynchronous result, and the
//! Transaction Status query. Read strictly where Daraja is firm (required
//! fields, their types) and leniently where it is known to vary (numbers
//! as strings, `100` / `100.0` / `"100.00"` for amounts).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /oauth/v1/generate?grant_type=client_credentials` answer
/// (`expires_in` comes as a string).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: Value,
}

impl TokenResponse {
    /// Seconds the token lives.
    pub fn expires_in_s(&self) -> Option<i64> {
        match &self.expires_in {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }
}

/// `POST /mpesa/b2c/v3/paymentrequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct B2cRequest {
    #[serde(rename = "OriginatorConversationID")]
    pub originator_conversation_id: String,
    pub initiator_name: String,
    pub security_credential: String,
    #[serde(rename = "CommandID")]
    pub command_id: String,
    pub amount: i64,
    pub party_a: String,
    pub party_b: String,
    pub remarks: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_time_out_url: String,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    pub occasion: String,
}

/// The synchronous acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct B2cResponse {
    #[serde(rename = "ConversationID")]
    pub conversation_id: String,
    #[serde(rename = "OriginatorConversationID")]
    pub originator_conversation_id: String,
    #[serde(rename = "ResponseCode")]
    pub response_code: String,
    #[serde(rename = "ResponseDescription")]
    pub response_description: String,
}

/// The synchronous error envelope (HTTP 4xx/5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    #[serde(rename = "requestId")]
    pub request_id: String,
    #[serde(rename = "errorCode")]
    pub error_code: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

/// `POST /mpesa/transactionstatus/v1/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StatusQueryRequest {
    pub initiator: String,
    pub security_credential: String,
    #[serde(rename = "CommandID")]
    pub command_id: String,
    #[serde(rename = "TransactionID")]
    pub transaction_id: String,
    #[serde(rename = "OriginalConversationID")]
    pub original_conversation_id: String,
    pub party_a: String,
    pub identifier_type: String,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_time_out_url: String,
    pub remarks: String,
    pub occasion: String,
}

/// A `{Key, Value}` item of `ResultParameters` / `ReferenceData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value", default)]
    pub value: Value,
}

/// What a callback posts to `ResultURL`: `{"Result": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultEnvelope {
    #[serde(rename = "Result")]
    pub result: ResultBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultBody {
    #[serde(rename = "ResultType")]
    pub result_type: Value,
    #[serde(rename = "ResultCode")]
    pub result_code: Value,
    #[serde(rename = "ResultDesc")]
    pub result_desc: String,
    #[serde(rename = "OriginatorConversationID")]
    pub originator_conversation_id: String,
    #[serde(rename = "ConversationID")]
    pub conversation_id: String,
    #[serde(rename = "TransactionID", default)]
    pub transaction_id: Option<String>,
    #[serde(rename = "ResultParameters", default, skip_serializing_if = "Option::is_none")]
    pub result_parameters: Option<Parameters>,
    #[serde(rename = "ReferenceData", default, skip_serializing_if = "Option::is_none")]
    pub reference_data: Option<Value>,
}

/// `{"ResultParameter": [...]}` (a single item may come unwrapped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    #[serde(rename = "ResultParameter")]
    pub items: OneOrMany,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    Many(Vec<KeyValue>),
    One(KeyValue),
}

impl ResultBody {
    /// A parameter's value by key.
    pub fn parameter(&self, key: &str) -> Option<&Value> {
        let items = self.result_parameters.as_ref()?;
        match &items.items {
            OneOrMany::Many(list) => list.iter().find(|kv| kv.key == key).map(|kv| &kv.value),
            OneOrMany::One(kv) => (kv.key == key).then_some(&kv.value),
        }
    }
}

/// An integer sent as a number or a string (`0`, `"0"`).
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.to_string().parse::<i64>().ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whole shillings from `100`, `100.0`, `"100.00"`; `None` for cents or
/// anything else.
pub fn whole_shillings(value: &Value) -> Option<i64> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b == b'0') {
        return None;
    }
    whole.parse().ok()
}

/// A parsed result, or why it is not one.
pub fn parse_result(body: &[u8]) -> Result<ResultBody, String> {
    let envelope: ResultEnvelope = serde_json::from_slice(body).map_err(|e| format!("not a Daraja result: {e}"))?;
    let result = envelope.result;
    if integer(&result.result_code).is_none() {
        return Err("ResultCode is not an integer".into());
    }
    if result.originator_conversation_id.is_empty() || result.conversation_id.is_empty() {
        return Err("OriginatorConversationID and ConversationID are required".into());
    }
    Ok(result)
}

/// `POST /mpesa/stkpush/v1/processrequest` (Lipa na M-Pesa Online).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StkPushRequest {
    pub business_short_code: String,
    /// base64(BusinessShortCode + passkey + Timestamp).
    pub password: String,
    /// `YYYYMMDDHHmmss`, East Africa Time.
    pub timestamp: String,
    pub transaction_type: String,
    /// Whole shillings.
    pub amount: i64,
    pub party_a: String,
    pub party_b: String,
    pub phone_number: String,
    #[serde(rename = "CallBackURL")]
    pub call_back_url: String,
    pub account_reference: String,
    pub transaction_desc: String,
}

/// The STK push's synchronous acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StkPushResponse {
    #[serde(rename = "MerchantRequestID")]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    #[serde(rename = "ResponseCode")]
    pub response_code: String,
    #[serde(rename = "ResponseDescription")]
    pub response_description: String,
    #[serde(rename = "CustomerMessage", default)]
    pub customer_message: String,
}

/// `POST /mpesa/stkpushquery/v1/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StkQueryRequest {
    pub business_short_code: String,
    pub password: String,
    pub timestamp: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
}

/// The query's final answer (codes may come as strings or numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StkQueryResponse {
    #[serde(rename = "ResponseCode")]
    pub response_code: Value,
    #[serde(rename = "ResponseDescription", default)]
    pub response_description: String,
    #[serde(rename = "MerchantRequestID", default)]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    #[serde(rename = "ResultCode")]
    pub result_code: Value,
    #[serde(rename = "ResultDesc", default)]
    pub result_desc: String,
}

/// Daraja's error code for "the transaction is being processed" (an STK
/// push query before the payer answered; HTTP 500).
pub const STK_QUERY_PENDING: &str = "500.001.1001";

/// What Daraja posts to `CallBackURL`: `{"Body":{"stkCallback":{…}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StkCallbackEnvelope {
    #[serde(rename = "Body")]
    pub body: StkCallbackBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StkCallbackBody {
    #[serde(rename = "stkCallback")]
    pub stk_callback: StkCallback,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StkCallback {
    #[serde(rename = "MerchantRequestID")]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    #[serde(rename = "ResultCode")]
    pub result_code: Value,
    #[serde(rename = "ResultDesc")]
    pub result_desc: String,
    #[serde(rename = "CallbackMetadata", default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<StkMetadata>,
}

/// `{"Item":[{"Name":…,"Value":…}]}`; an item may have no value (`Balance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StkMetadata {
    #[serde(rename = "Item")]
    pub items: Vec<StkItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StkItem {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl StkCallback {
    /// A metadata item's value by name.
    pub fn item(&self, name: &str) -> Option<&Value> {
        self.metadata
            .as_ref()?
            .items
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.value.as_ref())
    }
}

/// A parsed STK callback, or why it is not one.
pub fn parse_stk_callback(body: &[u8]) -> Result<StkCallback, String> {
    let envelope: StkCallbackEnvelope =
        serde_json::from_slice(body).map_err(|e| format!("not a Daraja STK callback: {e}"))?;
    let callback = envelope.body.stk_callback;
    if integer(&callback.result_code).is_none() {
        return Err("ResultCode is not an integer".into());
    }
    if callback.checkout_request_id.is_empty() {
        return Err("CheckoutRequestID is required".into());
    }
    Ok(callback)
}

/// Daraja's timestamp, `YYYYMMDDHHmmss` in East Africa Time (UTC+3).
pub fn eat_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    let eat = chrono::FixedOffset::east_opt(3 * 3600).expect("UTC+3 is an offset");
    at.with_timezone(&eat).format("%Y%m%d%H%M%S").to_string()
}

/// The STK password: base64(shortcode + passkey + timestamp).
pub fn stk_password(shortcode: &str, passkey: &str, timestamp: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{passkey}{timestamp}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes as Daraja sends them: numbers for codes, parameters by Key,
    // values numbers or strings; a failure without ResultParameters.
    const SUCCESS: &str = r#"{"Result":{"ResultType":0,"ResultCode":0,
        "ResultDesc":"The service request is processed successfully.",
        "OriginatorConversationID":"pyt_1A2B3C4D5E6F","ConversationID":"AG_20250126_2010325b0e34e2a1b0d7",
        "TransactionID":"NLJ41HAY6Q","ResultParameters":{"ResultParameter":[
          {"Key":"TransactionAmount","Value":2500},{"Key":"TransactionReceipt","Value":"NLJ41HAY6Q"},
          {"Key":"B2CRecipientIsRegisteredCustomer","Value":"Y"},
          {"Key":"B2CChargesPaidAccountAvailableFunds","Value":-4510.0},
          {"Key":"ReceiverPartyPublicName","Value":"254712345678 - Jane Doe"},
          {"Key":"TransactionCompletedDateTime","Value":"26.01.2025 12:05:00"}]},
        "ReferenceData":{"ReferenceItem":{"Key":"QueueTimeoutURL","Value":"https://x/timeout/8d2a"}}}}"#;
    const FAILURE: &str = r#"{"Result":{"ResultType":0,"ResultCode":2001,
        "ResultDesc":"The initiator information is invalid.","OriginatorConversationID":"pyt_1A2B3C4D5E6F",
        "ConversationID":"AG_20250126_2010325b0e34e2a1b0d7","TransactionID":"NLJ0000000",
        "ReferenceData":{"ReferenceItem":{"Key":"QueueTimeoutURL","Value":"https://x/timeout/8d2a"}}}}"#;

    #[test]
    fn results_read_with_their_parameters() {
        let ok = parse_result(SUCCESS.as_bytes()).unwrap();
        assert_eq!(integer(&ok.result_code), Some(0));
        assert_eq!(ok.parameter("TransactionAmount").and_then(whole_shillings), Some(2500));
        assert_eq!(
            ok.parameter("TransactionReceipt").and_then(Value::as_str),
            Some("NLJ41HAY6Q")
        );
        let failed = parse_result(FAILURE.as_bytes()).unwrap();
        assert_eq!(integer(&failed.result_code), Some(2001));
        assert!(failed.parameter("TransactionAmount").is_none());
        assert!(parse_result(br#"{"Result":{"ResultCode":"x"}}"#).is_err());
        assert!(parse_result(b"[]").is_err());
    }

    #[test]
    fn amounts_are_whole_shillings() {
        for (text, want) in [
            ("100", Some(100)),
            ("100.0", Some(100)),
            ("\"100.00\"", Some(100)),
            ("100.5", None),
            ("-1", None),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(whole_shillings(&v), want, "{text}");
        }
    }

    // Daraja's public sandbox passkey of shortcode 174379 and the request
    // it signs (a documented example).
    const SANDBOX_PASSKEY: &str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";

    #[test]
    fn the_stk_password_is_base64_of_shortcode_passkey_timestamp() {
        assert_eq!(
            stk_password("174379", SANDBOX_PASSKEY, "20250126120000"),
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjUwMTI2MTIwMDAw"
        );
        let noon_utc = chrono::DateTime::parse_from_rfc3339("2025-01-26T09:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(eat_timestamp(noon_utc), "20250126120000");
    }

    #[test]
    fn stk_callbacks_read_success_and_cancellation() {
        let success = br#"{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1",
            "CheckoutRequestID":"ws_CO_26012025120001234567","ResultCode":0,
            "ResultDesc":"The service request is processed successfully.","CallbackMetadata":{"Item":[
            {"Name":"Amount","Value":100.0},{"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},{"Name":"Balance"},
            {"Name":"TransactionDate","Value":20250126120115},{"Name":"PhoneNumber","Value":254712345678}]}}}}"#;
        let ok = parse_stk_callback(success).unwrap();
        assert_eq!(integer(&ok.result_code), Some(0));
        assert_eq!(ok.item("Amount").and_then(whole_shillings), Some(100));
        assert_eq!(
            ok.item("MpesaReceiptNumber").and_then(Value::as_str),
            Some("NLJ7RT61SV")
        );
        assert_eq!(ok.item("Balance"), None);
        let cancelled = br#"{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1",
            "CheckoutRequestID":"ws_CO_26012025120001234567","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}"#;
        assert_eq!(integer(&parse_stk_callback(cancelled).unwrap().result_code), Some(1032));
        assert!(parse_stk_callback(br#"{"Body":{}}"#).is_err());
        let query: StkQueryResponse = serde_json::from_str(
            r#"{"ResponseCode":"0","ResponseDescription":"The service request has been accepted successsfully",
            "MerchantRequestID":"29115-34620561-1","CheckoutRequestID":"ws_CO_26012025120001234567",
            "ResultCode":"1032","ResultDesc":"Request cancelled by user"}"#,
        )
        .unwrap();
        assert_eq!(integer(&query.result_code), Some(1032));
    }

    #[test]
    fn a_string_expiry_reads() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"c9SQ","expires_in":"3599"}"#).unwrap();
        assert_eq!(t.expires_in_s(), Some(3599));
    }
}
