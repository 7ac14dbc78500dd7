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

    #[test]
    fn a_string_expiry_reads() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"c9SQ","expires_in":"3599"}"#).unwrap();
        assert_eq!(t.expires_in_s(), Some(3599));
    }
}
