//! A Daraja sandbox that speaks Daraja's protocol: OAuth client
//! credentials, B2C payment requests validated field by field (Daraja's
//! error envelope for a bad one), a synchronous acceptance, and the result
//! posted later to the request's `ResultURL`, the way Daraja does it —
//! late, sometimes twice, sometimes not at all (then a Transaction Status
//! query tells). A repeated `OriginatorConversationID` is the same payment.
//!
//! Outcomes by recipient MSISDN (the README lists them as magic values):
//!
//! | PartyB | result |
//! |---|---|
//! | `254700000001` | ResultCode 2001, the initiator information is invalid |
//! | `254700000002` | ResultCode 1, the balance is insufficient |
//! | `254700000017` | ResultCode 17, rule limited |
//! | `254700002040` | ResultCode 2040, the recipient is not a registered customer |
//! | `254700000007` | success, after the slow delay (a late result) |
//! | `254700000008` | success, the result posted twice |
//! | `254700000009` | success, but the result is never posted (a status query finds it) |
//! | anything else | success after the result delay |
//!
//! STK pushes (deposits) by `PhoneNumber`; the callback goes to the push's
//! `CallBackURL`, and a query answers "being processed" (HTTP 500,
//! `500.001.1001`) until the payer's answer is due, then the final code:
//!
//! | PhoneNumber | result |
//! |---|---|
//! | `254708001032` | ResultCode 1032, cancelled by the payer |
//! | `254708001037` | ResultCode 1037, the payer's phone cannot be reached |
//! | `254708000001` | ResultCode 1, the payer's balance is insufficient |
//! | `254708002001` | ResultCode 2001, the payer entered a wrong PIN |
//! | `254708000007` | paid, after the slow delay (a late callback) |
//! | `254708000008` | paid, the callback posted twice |
//! | `254708000009` | paid, but the callback is never posted (a query finds it) |
//! | anything else | paid after the result delay |

use super::client::{B2C_PATH, STATUS_PATH, STK_PUSH_PATH, STK_QUERY_PATH, TOKEN_PATH};
use super::daraja::{
    self, B2cRequest, B2cResponse, ErrorResponse, KeyValue, OneOrMany, Parameters, ResultBody, ResultEnvelope,
    StatusQueryRequest, StkCallback, StkCallbackBody, StkCallbackEnvelope, StkItem, StkMetadata, StkPushRequest,
    StkPushResponse, StkQueryRequest, StkQueryResponse, TokenResponse,
};
use crate::providers::journal::{self, Journaled};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct SandboxDarajaConfig {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub shortcode: String,
    /// Delay before an ordinary result is posted.
    pub result_delay_ms: u64,
    /// Delay before a late (`…0007`) result is posted.
    pub slow_delay_ms: u64,
    /// Where Daraja keeps its payments across restarts; in memory when `None`.
    pub state_file: Option<std::path::PathBuf>,
    /// The Lipa na M-Pesa Online shortcode and its passkey.
    pub stk_shortcode: String,
    pub passkey: String,
}

pub const MAGIC_INITIATOR_INVALID: &str = "254700000001";
pub const MAGIC_BALANCE_INSUFFICIENT: &str = "254700000002";
pub const MAGIC_RULE_LIMITED: &str = "254700000017";
pub const MAGIC_NOT_REGISTERED: &str = "254700002040";
pub const MAGIC_LATE: &str = "254700000007";
pub const MAGIC_DUPLICATE: &str = "254700000008";
pub const MAGIC_LOST: &str = "254700000009";
pub const STK_MAGIC_CANCELLED: &str = "254708001032";
pub const STK_MAGIC_UNREACHABLE: &str = "254708001037";
pub const STK_MAGIC_INSUFFICIENT: &str = "254708000001";
pub const STK_MAGIC_WRONG_PIN: &str = "254708002001";
pub const STK_MAGIC_LATE: &str = "254708000007";
pub const STK_MAGIC_DUPLICATE: &str = "254708000008";
pub const STK_MAGIC_LOST: &str = "254708000009";
/// Longest `AccountReference` and `TransactionDesc` Daraja takes.
pub const STK_ACCOUNT_REFERENCE_LEN_MAX: usize = 12;
pub const STK_DESCRIPTION_LEN_MAX: usize = 13;
/// Lifetime of a sandbox token.
pub const TOKEN_LIFETIME_S: i64 = 3599;
/// Times a callback is tried when the receiver does not answer 2xx.
pub const CALLBACK_ATTEMPTS_MAX: u32 = 5;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Payment {
    request: B2cRequest,
    answer: B2cResponse,
    result: ResultEnvelope,
}

/// An STK push and the payer's answer, due at `due_ms`.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Push {
    request: StkPushRequest,
    callback: StkCallback,
    due_ms: i64,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Books {
    payments: HashMap<String, Payment>,
    #[serde(default)]
    pushes: HashMap<String, Push>,
    next: u64,
}

/// What moves Daraja's books on (see [`journal`]).
#[derive(serde::Serialize, serde::Deserialize)]
enum Change {
    /// A B2C payment accepted under its `OriginatorConversationID`, numbered `n`.
    Paid { id: String, n: u64, payment: Box<Payment> },
    /// An STK push sent under its `CheckoutRequestID`, numbered `n`.
    Pushed { id: String, n: u64, push: Box<Push> },
}

impl journal::Books for Books {
    type Change = Change;

    fn apply(&mut self, change: Change) {
        match change {
            Change::Paid { id, n, payment } => {
                self.next = self.next.max(n);
                self.payments.insert(id, *payment);
            }
            Change::Pushed { id, n, push } => {
                self.next = self.next.max(n);
                self.pushes.insert(id, *push);
            }
        }
    }
}

/// The books this sandbox keeps in `state_file`, as JSON.
pub fn books_on_disk(state_file: &std::path::Path) -> serde_json::Value {
    journal::read_json::<Books>(state_file, "daraja")
}

#[derive(Clone)]
struct Daraja {
    config: SandboxDarajaConfig,
    books: Arc<Mutex<Journaled<Books>>>,
    /// Access tokens and when each expires (kept in memory only).
    tokens: Arc<Mutex<HashMap<String, i64>>>,
    client: reqwest::Client,
}

pub fn router(config: SandboxDarajaConfig) -> Router {
    let books = Journaled::open(config.state_file.as_deref(), "daraja");
    let daraja = Daraja {
        config,
        books: Arc::new(Mutex::new(books)),
        tokens: Arc::default(),
        client: crate::providers::http_client(),
    };
    Router::new()
        .route(TOKEN_PATH, get(token))
        .route(B2C_PATH, post(b2c))
        .route("/mpesa/b2c/v1/paymentrequest", post(b2c))
        .route(STATUS_PATH, post(status_query))
        .route(STK_PUSH_PATH, post(stk_push))
        .route(STK_QUERY_PATH, post(stk_query))
        .with_state(daraja)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorResponse {
        request_id: format!("{}-{}", rand::random::<u16>(), rand::random::<u32>()),
        error_code: code.to_string(),
        error_message: message.to_string(),
    };
    (status, Json(body)).into_response()
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn token(State(daraja): State<Daraja>, headers: HeaderMap) -> Response {
    use base64::Engine as _;
    let decode = |text: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(decode);
    let expected = format!("{}:{}", daraja.config.consumer_key, daraja.config.consumer_secret);
    if credentials.as_deref() != Some(expected.as_str()) {
        return error(StatusCode::BAD_REQUEST, "400.008.01", "Invalid Authentication passed");
    }
    let token: String = (0..28).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
    let mut tokens = daraja.tokens.lock().expect("daraja tokens");
    let now = now_s();
    tokens.retain(|_, until| *until > now);
    tokens.insert(token.clone(), now + TOKEN_LIFETIME_S);
    drop(tokens);
    Json(TokenResponse {
        access_token: token,
        expires_in: Value::String(TOKEN_LIFETIME_S.to_string()),
    })
    .into_response()
}

fn authorised(daraja: &Daraja, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let tokens = daraja.tokens.lock().expect("daraja tokens");
    token.and_then(|t| tokens.get(t)).is_some_and(|until| *until > now_s())
}

fn url_ok(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2048
}

fn msisdn_ok(msisdn: &str) -> bool {
    msisdn.len() == 12 && msisdn.starts_with("254") && msisdn.bytes().all(|b| b.is_ascii_digit())
}

/// Daraja's check of a B2C request, field by field.
fn check(daraja: &Daraja, r: &B2cRequest) -> Result<(), &'static str> {
    if r.initiator_name.is_empty() {
        return Err("Bad Request - Invalid InitiatorName");
    }
    if r.security_credential.is_empty() {
        return Err("Bad Request - Invalid SecurityCredential");
    }
    if !["BusinessPayment", "SalaryPayment", "PromotionPayment"].contains(&r.command_id.as_str()) {
        return Err("Bad Request - Invalid CommandID");
    }
    if r.amount < 10 || r.amount > 250_000 {
        return Err("Bad Request - Invalid Amount");
    }
    if r.party_a != daraja.config.shortcode {
        return Err("Bad Request - Invalid PartyA");
    }
    if !msisdn_ok(&r.party_b) {
        return Err("Bad Request - Invalid PartyB");
    }
    if !url_ok(&r.result_url) {
        return Err("Bad Request - Invalid ResultURL");
    }
    if !url_ok(&r.queue_time_out_url) {
        return Err("Bad Request - Invalid QueueTimeOutURL");
    }
    if r.originator_conversation_id.is_empty() || r.originator_conversation_id.len() > 64 {
        return Err("Bad Request - Invalid OriginatorConversationID");
    }
    Ok(())
}

fn outcome(msisdn: &str) -> (i64, &'static str) {
    match msisdn {
        MAGIC_INITIATOR_INVALID => (2001, "The initiator information is invalid."),
        MAGIC_BALANCE_INSUFFICIENT => (1, "The balance is insufficient for the transaction."),
        MAGIC_RULE_LIMITED => (17, "Rule limited."),
        MAGIC_NOT_REGISTERED => (
            2040,
            "Credit Party customer type (Unregistered or Registered Customer) can't be supported by the service.",
        ),
        _ => (0, "The service request is processed successfully."),
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
    }
}

fn result_for(r: &B2cRequest, conversation_id: &str, transaction_id: &str) -> ResultEnvelope {
    let (code, description) = outcome(&r.party_b);
    let parameters = (code == 0).then(|| Parameters {
        items: OneOrMany::Many(vec![
            kv("TransactionAmount", json!(r.amount)),
            kv("TransactionReceipt", json!(transaction_id)),
            kv("B2CRecipientIsRegisteredCustomer", json!("Y")),
            kv("B2CChargesPaidAccountAvailableFunds", json!(0.0)),
            kv(
                "ReceiverPartyPublicName",
                json!(format!("{} - Sandbox Customer", r.party_b)),
            ),
            kv(
                "TransactionCompletedDateTime",
                json!(chrono::Utc::now().format("%d.%m.%Y %H:%M:%S").to_string()),
            ),
        ]),
    });
    ResultEnvelope {
        result: ResultBody {
            result_type: json!(0),
            result_code: json!(code),
            result_desc: description.to_string(),
            originator_conversation_id: r.originator_conversation_id.clone(),
            conversation_id: conversation_id.to_string(),
            transaction_id: Some(transaction_id.to_string()),
            result_parameters: parameters,
            reference_data: Some(
                json!({ "ReferenceItem": { "Key": "QueueTimeoutURL", "Value": r.queue_time_out_url } }),
            ),
        },
    }
}

/// Posts a callback, retrying a few times while the receiver fails.
async fn deliver(client: reqwest::Client, url: String, body: Value, delay_ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
    for attempt in 0..CALLBACK_ATTEMPTS_MAX {
        match client.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::info!(status = %r.status(), attempt, "sandbox Daraja callback refused; retrying"),
            Err(e) => tracing::info!(error = %e, attempt, "sandbox Daraja callback failed; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
    }
}

async fn b2c(State(daraja): State<Daraja>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorised(&daraja, &headers) {
        return error(StatusCode::UNAUTHORIZED, "404.001.03", "Invalid Access Token");
    }
    let request: B2cRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid JSON"),
    };
    if let Err(message) = check(&daraja, &request) {
        return error(StatusCode::BAD_REQUEST, "400.002.02", message);
    }
    let mut books = daraja.books.lock().expect("daraja books");
    if let Some(seen) = books.payments.get(&request.originator_conversation_id) {
        // The same request again: the same answer, no second payment.
        return Json(seen.answer.clone()).into_response();
    }
    let n = books.next + 1;
    let conversation_id = format!("AG_{}_{:016x}", chrono::Utc::now().format("%Y%m%d"), n);
    let transaction_id = format!("SBX{:07}", n);
    let answer = B2cResponse {
        conversation_id: conversation_id.clone(),
        originator_conversation_id: request.originator_conversation_id.clone(),
        response_code: "0".into(),
        response_description: "Accept the service request successfully.".into(),
    };
    let result = result_for(&request, &conversation_id, &transaction_id);
    books.record(Change::Paid {
        id: request.originator_conversation_id.clone(),
        n,
        payment: Box::new(Payment {
            request: request.clone(),
            answer: answer.clone(),
            result: result.clone(),
        }),
    });
    drop(books);
    let body = serde_json::to_value(&result).expect("a result serialises");
    let (delay, times) = match request.party_b.as_str() {
        MAGIC_LOST => (0, 0),
        MAGIC_LATE => (daraja.config.slow_delay_ms, 1),
        MAGIC_DUPLICATE => (daraja.config.result_delay_ms, 2),
        _ => (daraja.config.result_delay_ms, 1),
    };
    for _ in 0..times {
        tokio::spawn(deliver(
            daraja.client.clone(),
            request.result_url.clone(),
            body.clone(),
            delay,
        ));
    }
    Json(answer).into_response()
}

/// The Transaction Status query: the payment's result, posted again to the
/// query's `ResultURL` (Nixo reads it as the payment's result).
async fn status_query(State(daraja): State<Daraja>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorised(&daraja, &headers) {
        return error(StatusCode::UNAUTHORIZED, "404.001.03", "Invalid Access Token");
    }
    let query: StatusQueryRequest = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(_) => return error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid JSON"),
    };
    if !url_ok(&query.result_url) || query.party_a != daraja.config.shortcode {
        return error(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid ResultURL or PartyA",
        );
    }
    let payment = daraja
        .books
        .lock()
        .expect("daraja books")
        .payments
        .get(&query.original_conversation_id)
        .cloned();
    let Some(payment) = payment else {
        return error(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid OriginalConversationID",
        );
    };
    let body = serde_json::to_value(&payment.result).expect("a result serialises");
    tokio::spawn(deliver(
        daraja.client.clone(),
        query.result_url.clone(),
        body,
        daraja.config.result_delay_ms,
    ));
    Json(B2cResponse {
        conversation_id: payment.answer.conversation_id.clone(),
        originator_conversation_id: query.original_conversation_id.clone(),
        response_code: "0".into(),
        response_description: "Accept the service request successfully.".into(),
    })
    .into_response()
}

fn stk_outcome(msisdn: &str) -> (i64, &'static str) {
    match msisdn {
        STK_MAGIC_CANCELLED => (1032, "Request cancelled by user"),
        STK_MAGIC_UNREACHABLE => (1037, "DS timeout user cannot be reached"),
        STK_MAGIC_INSUFFICIENT => (1, "The balance is insufficient for the transaction."),
        STK_MAGIC_WRONG_PIN => (2001, "The initiator information is invalid."),
        _ => (0, "The service request is processed successfully."),
    }
}

/// Daraja's check of an STK push, field by field (the password included).
fn check_push(daraja: &Daraja, r: &StkPushRequest) -> Result<(), &'static str> {
    let shortcode = &daraja.config.stk_shortcode;
    if r.business_short_code != *shortcode {
        return Err("Bad Request - Invalid BusinessShortCode");
    }
    let fresh = chrono::NaiveDateTime::parse_from_str(&r.timestamp, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| (t.and_utc().timestamp() - 3 * 3600 - now_s()).abs() <= 3600)
        .unwrap_or(false);
    if !fresh {
        return Err("Bad Request - Invalid Timestamp");
    }
    if r.password != daraja::stk_password(shortcode, &daraja.config.passkey, &r.timestamp) {
        return Err("Bad Request - Invalid Password");
    }
    if !["CustomerPayBillOnline", "CustomerBuyGoodsOnline"].contains(&r.transaction_type.as_str()) {
        return Err("Bad Request - Invalid TransactionType");
    }
    if r.amount < 1 || r.amount > 250_000 {
        return Err("Bad Request - Invalid Amount");
    }
    if !msisdn_ok(&r.party_a) || r.phone_number != r.party_a {
        return Err("Bad Request - Invalid PhoneNumber");
    }
    if r.party_b != *shortcode {
        return Err("Bad Request - Invalid PartyB");
    }
    if !url_ok(&r.call_back_url) {
        return Err("Bad Request - Invalid CallBackURL");
    }
    if r.account_reference.is_empty() || r.account_reference.chars().count() > STK_ACCOUNT_REFERENCE_LEN_MAX {
        return Err("Bad Request - Invalid AccountReference");
    }
    if r.transaction_desc.is_empty() || r.transaction_desc.chars().count() > STK_DESCRIPTION_LEN_MAX {
        return Err("Bad Request - Invalid TransactionDesc");
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn stk_push(State(daraja): State<Daraja>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorised(&daraja, &headers) {
        return error(StatusCode::UNAUTHORIZED, "404.001.03", "Invalid Access Token");
    }
    let request: StkPushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid JSON"),
    };
    if let Err(message) = check_push(&daraja, &request) {
        return error(StatusCode::BAD_REQUEST, "400.002.02", message);
    }
    let (delay_ms, times) = match request.phone_number.as_str() {
        STK_MAGIC_LOST => (daraja.config.result_delay_ms, 0),
        STK_MAGIC_LATE => (daraja.config.slow_delay_ms, 1),
        STK_MAGIC_DUPLICATE => (daraja.config.result_delay_ms, 2),
        _ => (daraja.config.result_delay_ms, 1),
    };
    let mut books = daraja.books.lock().expect("daraja books");
    let n = books.next + 1;
    let eat = daraja::eat_timestamp(chrono::Utc::now());
    let checkout_request_id = format!("ws_CO_{eat}{n:06}");
    let merchant_request_id = format!("{}-{}-1", 29_000 + n % 1_000, 34_000_000 + n);
    let (code, description) = stk_outcome(&request.phone_number);
    let metadata = (code == 0).then(|| StkMetadata {
        items: vec![
            StkItem {
                name: "Amount".into(),
                value: Some(json!(request.amount as f64)),
            },
            StkItem {
                name: "MpesaReceiptNumber".into(),
                value: Some(json!(format!("SBK{n:07}"))),
            },
            StkItem {
                name: "Balance".into(),
                value: None,
            },
            StkItem {
                name: "TransactionDate".into(),
                value: Some(json!(eat.parse::<i64>().unwrap_or_default())),
            },
            StkItem {
                name: "PhoneNumber".into(),
                value: Some(json!(request.phone_number.parse::<i64>().unwrap_or_default())),
            },
        ],
    });
    let callback = StkCallback {
        merchant_request_id: merchant_request_id.clone(),
        checkout_request_id: checkout_request_id.clone(),
        result_code: json!(code),
        result_desc: description.to_string(),
        metadata,
    };
    books.record(Change::Pushed {
        id: checkout_request_id.clone(),
        n,
        push: Box::new(Push {
            request: request.clone(),
            callback: callback.clone(),
            due_ms: now_ms() + i64::try_from(delay_ms).unwrap_or(i64::MAX / 2),
        }),
    });
    drop(books);
    let body = serde_json::to_value(StkCallbackEnvelope {
        body: StkCallbackBody { stk_callback: callback },
    })
    .expect("a callback serialises");
    for _ in 0..times {
        tokio::spawn(deliver(
            daraja.client.clone(),
            request.call_back_url.clone(),
            body.clone(),
            delay_ms,
        ));
    }
    Json(StkPushResponse {
        merchant_request_id,
        checkout_request_id,
        response_code: "0".into(),
        response_description: "Success. Request accepted for processing".into(),
        customer_message: "Success. Request accepted for processing".into(),
    })
    .into_response()
}

async fn stk_query(State(daraja): State<Daraja>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorised(&daraja, &headers) {
        return error(StatusCode::UNAUTHORIZED, "404.001.03", "Invalid Access Token");
    }
    let query: StkQueryRequest = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(_) => return error(StatusCode::BAD_REQUEST, "400.002.02", "Bad Request - Invalid JSON"),
    };
    let shortcode = &daraja.config.stk_shortcode;
    if query.business_short_code != *shortcode
        || query.password != daraja::stk_password(shortcode, &daraja.config.passkey, &query.timestamp)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid BusinessShortCode or Password",
        );
    }
    let push = daraja
        .books
        .lock()
        .expect("daraja books")
        .pushes
        .get(&query.checkout_request_id)
        .cloned();
    let Some(push) = push else {
        return error(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid CheckoutRequestID",
        );
    };
    if now_ms() < push.due_ms {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            daraja::STK_QUERY_PENDING,
            "The transaction is being processed",
        );
    }
    Json(StkQueryResponse {
        response_code: json!("0"),
        response_description: "The service request has been accepted successsfully".into(),
        merchant_request_id: push.callback.merchant_request_id.clone(),
        checkout_request_id: query.checkout_request_id.clone(),
        result_code: json!(daraja::integer(&push.callback.result_code).unwrap_or(0).to_string()),
        result_desc: push.callback.result_desc.clone(),
    })
    .into_response()
}
