//! Request and response types of the API: what the core serialises, and
//! (with the `openapi` feature) what the OpenAPI document is generated from.
//!
//! Requests are parsed by the exact functions of [`crate::schema`] (money
//! must never pass through a float), so the request types here describe the
//! body for the document; a test checks their fields against the parsers'.

use serde::Serialize;
use serde_json::{Number, Value};
#[cfg(feature = "openapi")]
use utoipa::{IntoParams, ToSchema};

/// `{"error":{"code":…,"message":…,"field":…}}`
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    /// Stable machine code: invalid_request, invalid_api_key,
    /// permission_denied, resource_not_found, insufficient_funds,
    /// idempotency_key_in_use, idempotency_key_reused, rate_limit_exceeded,
    /// internal_error.
    #[cfg_attr(feature = "openapi", schema(example = "invalid_request"))]
    pub code: String,
    #[cfg_attr(feature = "openapi", schema(example = "Amount must be greater than 0"))]
    pub message: String,
    /// The offending parameter or header, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "amount"))]
    pub field: Option<String>,
}

/// `POST /v1/payments/transact`: a deposit or a withdrawal (hand-written
/// schema below: which fields apply depends on `type`).
#[derive(Debug, Clone)]
pub struct TransactBody;

/// `POST /v1/payments/transfer` (the Nexbit document's example). Its
/// document schema is written out in full below: the amount's decimals
/// depend on the currency, which derives cannot say.
#[derive(Debug, Clone)]
pub struct TransferBody;

/// The fields `POST /v1/payments/transfer` takes, and which are required
/// (the parser and the document both use these lists).
pub const TRANSFER_FIELDS: [&str; 5] = ["from_wallet", "to_wallet", "amount", "currency", "metadata"];
pub const TRANSFER_REQUIRED: [&str; 4] = ["from_wallet", "to_wallet", "amount", "currency"];

/// An amount as a client sends it (the document's `Amount` schema).
#[derive(Debug, Clone)]
pub struct Amount;

/// A supported ISO 4217 currency code (the document's `CurrencyCode`).
#[derive(Debug, Clone)]
pub struct CurrencyCode;

/// Your own key-value pairs (the document's `Metadata`).
#[derive(Debug, Clone)]
pub struct Metadata;

/// The Nexbit envelope's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeStatus {
    Success,
    Failed,
}

/// What became of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[allow(clippy::upper_case_acronyms)]
pub enum TransferStatus {
    /// Posted: the source was debited and the destination credited.
    #[serde(rename = "SETTLED")]
    Settled,
    /// Held for review: reserved at the source, pending at the destination.
    #[serde(rename = "PENDING_REVIEW")]
    PendingReview,
    /// Refused by the risk rules; nothing moved.
    #[serde(rename = "DECLINED")]
    Declined,
    /// A hold released without settling.
    #[serde(rename = "VOIDED")]
    Voided,
    /// A hold that passed its expiry.
    #[serde(rename = "EXPIRED")]
    Expired,
    /// Money in flight on a rail (a withdrawal the rail has not confirmed,
    /// a deposit the payer has not approved yet): held, not final.
    #[serde(rename = "PROCESSING")]
    Processing,
    /// The rail refused or the payer did not pay: the hold was released
    /// (`error.code` says why).
    #[serde(rename = "FAILED")]
    Failed,
}

/// `{"status": …, "data": {…}}` (the Nexbit document's shape).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "status": "success",
    "data": {"tx_id": "10056", "status": "SETTLED", "risk_score": 0.05,
             "rules_applied": ["FraudCheck: ALLOW"], "error": null,
             "timestamp": "2025-10-26T12:00:00+03:00"}
})))]
pub struct TransferResponse {
    pub status: EnvelopeStatus,
    pub data: TransferData,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TransferData {
    /// The transaction's id (digits).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+$", example = "10056"))]
    pub tx_id: String,
    pub status: TransferStatus,
    /// The highest score any fraud rule gave, 0 to 1.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, minimum = 0, maximum = 1, example = 0.05))]
    pub risk_score: Number,
    /// `"<rule>: <VERDICT>"` for every fraud rule that decided.
    pub rules_applied: Vec<String>,
    /// Why the transfer did not settle; null when it did or is held.
    pub error: Option<TransferError>,
    /// When the transaction was recorded (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime, example = "2025-10-26T12:00:00+00:00"))]
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TransferError {
    /// `transfer_declined` or `transfer_voided`.
    pub code: String,
    pub message: String,
    /// Reason codes the rules gave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A 402 answer: a transfer declined by the risk rules (the envelope), or
/// insufficient funds (an error).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(untagged)]
pub enum TransferRefused {
    Declined(TransferResponse),
    Error(ErrorBody),
}

/// The answer to a deposit (the Nexbit document's shape): the STK push
/// was sent; the money arrives when the payer approves it on their phone.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "success": true, "status": "initiated", "provider_ref": "ws_CO_26012025120001234567",
    "redirect_url": null,
    "message": "Deposit initiated successfully. Please complete the payment on your device."
})))]
pub struct DepositResponse {
    pub success: bool,
    /// `initiated` (waiting for the payer), then, on `GET /v1/payments/{tx_id}`, SETTLED or FAILED.
    #[cfg_attr(feature = "openapi", schema(example = "initiated"))]
    pub status: String,
    /// M-Pesa's `CheckoutRequestID` of the STK push.
    pub provider_ref: Option<String>,
    /// Always null for M-Pesa (the payer approves on their phone).
    pub redirect_url: Option<String>,
    pub message: String,
    /// The pending transaction to follow on `GET /v1/payments/{tx_id}`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+$", example = "10058"))]
    pub tx_id: String,
}

/// `200` to `POST /v1/payments/transact`: a deposit's answer, or a
/// withdrawal's payment envelope.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(untagged)]
pub enum TransactResponse {
    Deposit(DepositResponse),
    Withdrawal(TransferResponse),
}

/// `202` to `POST /v1/payments/async` (the Nexbit document's shape).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "status": "accepted", "job_id": "job_a1b2c3d4e5f6", "message": "Transaction queued for processing."
})))]
pub struct AsyncAccepted {
    /// Always `accepted`.
    pub status: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^job_[0-9a-f]{12}$"))]
    pub job_id: String,
    pub message: String,
}

/// Where an async payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AsyncPaymentStatus {
    Queued,
    Running,
    /// The transfer was recorded: `result` is its answer (SETTLED, or
    /// PENDING_REVIEW with the funds held).
    Succeeded,
    /// No transfer moved money: `result` is a DECLINED answer, or `error`
    /// the structured error (insufficient funds, a wallet not found …).
    Failed,
}

/// `GET /v1/payments/async/{job_id}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "job_id": "job_a1b2c3d4e5f6", "status": "succeeded", "created": 1761469200, "updated": 1761469200,
    "result": {"status": "success", "data": {"tx_id": "10059", "status": "SETTLED", "risk_score": 0.05,
        "rules_applied": ["FraudCheck: ALLOW"], "error": null, "timestamp": "2025-10-26T12:00:00+03:00"}},
    "error": null
})))]
pub struct AsyncPayment {
    pub job_id: String,
    pub status: AsyncPaymentStatus,
    /// Unix seconds.
    pub created: i64,
    pub updated: i64,
    /// The transfer's answer, once it ran (as stored when it ran).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<TransferResponse>))]
    pub result: Option<Value>,
    /// Why no transfer was recorded.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ErrorDetail>))]
    pub error: Option<Value>,
}

/// Marks a constant `object` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    Balance,
    List,
    RuleDecision,
    Payout,
    WebhookEndpoint,
    WebhookAttempt,
    Event,
    Account,
    Transaction,
    Review,
}

/// Balances per currency (the Nixo document's shape).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "object": "balance", "livemode": false,
    "available": [{"currency": "USD", "amount": 12500.50}],
    "pending": [{"currency": "USD", "amount": 0.00}],
    "reserved": [{"currency": "USD", "amount": 0.00}]
})))]
pub struct BalanceObject {
    /// Always `balance`.
    pub object: ObjectType,
    pub livemode: bool,
    /// Posted funds not held: what can be spent.
    pub available: Vec<BalanceAmount>,
    /// Incoming, not settled yet.
    pub pending: Vec<BalanceAmount>,
    /// Outgoing, held (reviews, payouts in flight).
    pub reserved: Vec<BalanceAmount>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BalanceAmount {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$", example = "USD"))]
    pub currency: String,
    /// A JSON number with exactly the currency's decimals (12500.50).
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 12500.50))]
    pub amount: Number,
}

/// `GET /v1/balances` query.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct BalancesQuery {
    /// Only this wallet (one of yours).
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64, example = 101)
    )]
    pub wallet_id: Option<i64>,
}

/// `GET /v1/rules/decisions` query.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct DecisionsQuery {
    /// Only the decisions of this transaction.
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64, example = 10056)
    )]
    pub transaction_id: Option<i64>,
    /// Page size, 1 to 100 (default 10).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    /// The id of the last object of a page: the next (older) page. With
    /// `ending_before` too, the objects between the two.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    /// The id of the first object of a page: the page before it (newer).
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// One rule call from the decision log.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RuleDecision {
    #[cfg_attr(feature = "openapi", schema(pattern = "^dec_[A-Za-z0-9]+$"))]
    pub id: String,
    /// Always `rule_decision`.
    pub object: ObjectType,
    pub transaction_id: Option<String>,
    pub plugin: PluginIdentity,
    /// What the rule saw (personal data masked).
    pub input: Value,
    /// The rule's answer; null when it failed.
    pub output: Option<Value>,
    /// out_of_fuel, deadline_exceeded, trap, memory_exceeded, …; null when it answered.
    pub failure: Option<String>,
    /// The failure policy applied (fail_closed, fail_open).
    pub policy: Option<String>,
    pub fuel_used: i64,
    pub latency_us: i64,
    /// Unix seconds.
    pub created: i64,
    /// What a WASI plugin printed (bounded).
    pub stdio: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PluginIdentity {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// A page of decisions.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RuleDecisionList {
    /// Always `list`.
    pub object: ObjectType,
    pub url: String,
    /// More objects beyond this page in the direction asked.
    pub has_more: bool,
    pub data: Vec<RuleDecision>,
}

/// Where a payout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Accepted, funds held; not yet on its way (held for review when
    /// `status_history` says `review`).
    Pending,
    /// On its way to the recipient through its rail.
    Processing,
    /// Delivered: the held funds were posted.
    Succeeded,
    /// Not delivered (`failure_code` says why): the held funds were released.
    Failed,
    /// Canceled before the rail accepted it: the held funds were released.
    Canceled,
}

/// The recipient of a payout; the account number is masked but for its
/// last four characters.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PayoutRecipient {
    #[cfg_attr(feature = "openapi", schema(example = "Test User"))]
    pub full_name: String,
    /// Bank payouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "************************4921"))]
    pub account_iban: Option<String>,
    /// M-Pesa payouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "********5678"))]
    pub phone_number: Option<String>,
}

/// One step of a payout's life.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PayoutStatusChange {
    pub status: PayoutStatus,
    /// Unix seconds.
    pub at: i64,
    /// Why (review, a rail's failure code, canceled_by_client …); null when plain.
    pub reason: Option<String>,
}

/// A payout (the Nixo document's shape, with what a client needs to follow it).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "pyt_1A2B3C4D5E6F", "object": "payout", "amount": 250.00, "currency": "USD",
    "status": "processing", "created": 1737849600, "destination_country": "MA",
    "destination_currency": "USD", "destination_amount": 250.00, "exchange_rate": null,
    "method": "bank", "recipient": {"full_name": "Test User", "account_iban": "************************4921"},
    "fee": 1.25, "failure_code": null, "failure_message": null,
    "status_history": [{"status": "pending", "at": 1737849600, "reason": null},
                       {"status": "processing", "at": 1737849600, "reason": null}],
    "description": null, "metadata": {}, "livemode": false
})))]
pub struct Payout {
    #[cfg_attr(feature = "openapi", schema(pattern = "^pyt_[A-Za-z0-9]+$"))]
    pub id: String,
    /// Always `payout`.
    pub object: ObjectType,
    /// In `currency`, as a JSON number with the currency's decimals.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 250.00))]
    pub amount: Number,
    pub currency: String,
    pub status: PayoutStatus,
    /// Unix seconds.
    pub created: i64,
    /// ISO 3166-1 alpha-2.
    pub destination_country: String,
    /// What the recipient receives.
    pub destination_currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 250.00))]
    pub destination_amount: Number,
    /// Destination units per unit of `currency`, when the payout converts.
    pub exchange_rate: Option<String>,
    /// `bank` (ISO 20022 credit transfer) or `mpesa` (M-Pesa B2C).
    pub method: String,
    pub recipient: PayoutRecipient,
    /// Nixo's fee, in `currency`, charged besides `amount`.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 1.25))]
    pub fee: Number,
    /// Why it failed: invalid_account_number, account_closed, insufficient_funds,
    /// recipient_not_registered, risk_declined, rail_rejected, …
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub status_history: Vec<PayoutStatusChange>,
    pub description: Option<String>,
    pub metadata: serde_json::Map<String, Value>,
    pub livemode: bool,
}

/// A page of payouts.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PayoutList {
    /// Always `list`.
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<Payout>,
}

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    /// The money is held, waiting for a reviewer.
    Open,
    /// The held money moved on (a transfer settled, a payout submitted).
    Approved,
    /// The held money was released; the operation failed with `declined_by_review`.
    Declined,
    /// Nobody decided in time: the hold was released (`review_expired`).
    Expired,
}

/// Who the held money is between (personal data masked).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReviewParties {
    pub from_wallet: Option<i64>,
    /// A transfer's destination wallet.
    pub to_wallet: Option<i64>,
    /// A payout's recipient account, masked (`************5678`).
    pub recipient: Option<String>,
}

/// Money held by a `review` verdict, and what became of it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "rev_7Hc2K9dQ", "object": "review", "subject": "transfer", "transaction_id": "10021",
    "payout": null, "amount": 50.00, "currency": "KES",
    "parties": {"from_wallet": 101, "to_wallet": 102, "recipient": null},
    "rules_applied": ["FraudCheck: REVIEW"], "reasons": ["velocity_1h"], "risk_score": 0.6,
    "status": "open", "created": 1796200000, "expires_at": 1796459200, "closed_at": null,
    "closed_by": null, "note": null, "on_expiry": "void", "livemode": false
})))]
pub struct Review {
    pub id: String,
    /// Always `review`.
    pub object: ObjectType,
    /// `transfer` or `payout` (withdrawals are payouts).
    pub subject: String,
    /// The held transaction (see `GET /v1/payments/{tx_id}`).
    pub transaction_id: String,
    /// The payout, when the subject is one.
    pub payout: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub amount: Number,
    pub currency: String,
    pub parties: ReviewParties,
    pub rules_applied: Vec<String>,
    /// Reason codes the rules gave.
    pub reasons: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, minimum = 0, maximum = 1))]
    pub risk_score: Number,
    pub status: ReviewStatus,
    /// Unix seconds.
    pub created: i64,
    /// When an open review expires (its hold is released).
    pub expires_at: i64,
    pub closed_at: Option<i64>,
    /// The key that closed it, or `system` for an expiry.
    pub closed_by: Option<String>,
    pub note: Option<String>,
    /// What an expiry does, by the rules' policy: `void` (release) or
    /// `approve` (move on).
    #[cfg_attr(feature = "openapi", schema(example = "void"))]
    pub on_expiry: String,
    pub livemode: bool,
}

/// A page of reviews.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ReviewList {
    /// Always `list`.
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<Review>,
}

/// `POST /v1/reviews/{id}/approve` and `/decline` (the body may be empty).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, ToSchema))]
#[cfg_attr(feature = "openapi", serde(deny_unknown_fields))]
pub struct ReviewDecisionBody {
    /// Why (kept with the review).
    #[cfg_attr(feature = "openapi", schema(max_length = 500, min_length = 1, pattern = "\\S"))]
    pub note: Option<String>,
}

/// `GET /v1/reviews` query.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ReviewsQuery {
    /// `true`: open reviews only; `false`: closed ones only.
    pub open: Option<bool>,
    /// Reviews with this reason code.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^[A-Za-z0-9_]{1,64}$", example = "velocity_1h")
    )]
    pub reason: Option<String>,
    /// Created at or after this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[gte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_gte: Option<i64>,
    /// Created at or before this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[lte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_lte: Option<i64>,
    /// Page size, 1 to 100 (default 10).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    /// The id of the last review of a page: the next (older) page.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    /// The id of the first review of a page: the page before it (newer).
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// `POST /v1/payouts` body (its document schema is written out below).
#[derive(Debug, Clone)]
pub struct PayoutBody;

/// `GET /v1/payouts` query.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PayoutsQuery {
    /// Only payouts in this status.
    #[cfg_attr(feature = "openapi", param(inline, value_type = Option<PayoutStatus>))]
    pub status: Option<String>,
    /// Only payouts in this currency (ISO 4217).
    #[cfg_attr(feature = "openapi", param(value_type = Option<CurrencyCode>))]
    pub currency: Option<String>,
    /// Created at or after this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[gte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_gte: Option<i64>,
    /// Created at or before this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[lte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_lte: Option<i64>,
    /// Page size, 1 to 100 (default 10).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    /// The id of the last payout of a page: the next (older) page.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    /// The id of the first payout of a page: the page before it (newer).
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// A postal address.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Address {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// An individual's profile. `id_number` is shown masked (all but the last 4).
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountIndividual {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// YYYY-MM-DD.
    pub date_of_birth: Option<String>,
    pub address: Option<Address>,
    /// `national_id` or `passport`.
    pub id_type: Option<String>,
    /// Masked: `•••••6789`.
    pub id_number: Option<String>,
    pub nationality: Option<String>,
}

/// A person who represents a business.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Representative {
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: Option<String>,
    pub role: Option<String>,
}

/// A business's profile.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountBusiness {
    pub legal_name: Option<String>,
    pub registration_number: Option<String>,
    pub country: Option<String>,
    pub address: Option<Address>,
    pub representatives: Vec<Representative>,
}

/// A verification document the platform collected.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountDocument {
    /// passport, national_id, driving_license, certificate_of_incorporation, proof_of_address.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id in your file store.
    pub reference: String,
}

/// One step of an account's verification.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VerificationChange {
    /// unverified, pending, verified, rejected.
    pub status: String,
    /// Codes: document_missing, identity_mismatch, watchlist_match, …
    pub reasons: Vec<String>,
    /// Unix seconds.
    pub at: i64,
}

/// Limits in one currency at the account's level, in that currency's units.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CurrencyLimits {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{3}$", example = "USD"))]
    pub currency: String,
    /// Most one transaction may send; null: no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, example = 1000.00))]
    pub per_transaction: Option<Value>,
    /// Most that may be sent in a UTC day; null: no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, example = 2500.00))]
    pub daily: Option<Value>,
    /// Sent today (UTC), held for review or on its way included.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 0.00))]
    pub used_today: Value,
}

/// What the account may send, by its KYC level.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountLimits {
    /// KYC level: 0 none, 1 basic, 2 verified, 3 enhanced.
    pub level: u8,
    /// False at level 0: the account receives but cannot send.
    pub outgoing_enabled: bool,
    pub currencies: Vec<CurrencyLimits>,
}

/// A wallet of the account (its integer id addresses it in transfers).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WalletRef {
    pub id: i64,
    pub currency: String,
}

/// An account: a platform (the key's owner) or a customer account under it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Account {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^acct_[A-Za-z0-9]+$", example = "acct_1A2B3C4D5E6F7G8H")
    )]
    pub id: String,
    /// Always `account`.
    pub object: ObjectType,
    /// `platform`, `individual` or `business`.
    #[serde(rename = "type")]
    pub account_type: String,
    /// The platform a customer account belongs to (null for a platform).
    pub platform: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub individual: Option<AccountIndividual>,
    pub business: Option<AccountBusiness>,
    pub documents: Vec<AccountDocument>,
    /// unverified, pending, verified, rejected.
    pub verification_status: String,
    /// Why it was rejected, or what the provider still needs.
    pub verification_reasons: Vec<String>,
    pub verification_history: Vec<VerificationChange>,
    /// What is still missing for verification (`individual.id_number`, `documents`, …).
    pub requirements: Vec<String>,
    pub limits: AccountLimits,
    pub wallets: Vec<WalletRef>,
    pub balances: BalanceObject,
    pub metadata: serde_json::Map<String, Value>,
    pub livemode: bool,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountList {
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<Account>,
}

/// `POST /v1/accounts` body (its document schema is written out below).
#[derive(Debug, Clone)]
pub struct AccountCreateBody;

/// `PUT /v1/accounts/{id}` body (written out below).
#[derive(Debug, Clone)]
pub struct AccountUpdateBody;

/// `GET /v1/accounts` query.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AccountsQuery {
    /// Only accounts in this verification status.
    #[cfg_attr(feature = "openapi", param(pattern = "^(unverified|pending|verified|rejected)$"))]
    pub verification_status: Option<String>,
    /// Created at or after this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[gte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_gte: Option<i64>,
    /// Created at or before this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[lte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_lte: Option<i64>,
    /// Page size, 1 to 100 (default 10).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    /// The id of the last account of a page: the next (older) page.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    /// The id of the first account of a page: the page before it (newer).
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// A conversion a transaction made.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TransactionExchange {
    /// Target units per source unit, exact decimal text, fixed when the transaction was made.
    #[cfg_attr(feature = "openapi", schema(example = "10.05"))]
    pub rate: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 250.00))]
    pub source_amount: Number,
    pub source_currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 2512.50))]
    pub target_amount: Number,
    pub target_currency: String,
    /// When the rate was fixed (the transaction's creation), Unix seconds.
    pub fixed_at: i64,
}

/// One double-entry leg of a transaction.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TransactionLeg {
    /// `posted`, `pending` (a hold), `post_pending` or `void_pending` (its resolution).
    pub kind: String,
    /// Ledger account debited: a wallet id, or a system account (`fees`, `fx_liquidity`, …).
    pub debit: String,
    pub credit: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 50.00))]
    pub amount: Number,
    pub currency: String,
}

/// A movement of money an account sees.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Transaction {
    #[cfg_attr(feature = "openapi", schema(example = 10001))]
    pub id: i64,
    /// Always `transaction`.
    pub object: ObjectType,
    /// transfer, payout, deposit, withdrawal, funding.
    #[serde(rename = "type")]
    pub kind: String,
    /// pending, settled, pending_review, declined, voided, expired.
    pub status: String,
    /// `out` when the account made it, `in` when it received it.
    pub direction: String,
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 50.00))]
    pub amount: Number,
    pub currency: String,
    /// Nixo's fees on it, in `currency`.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, example = 0.00))]
    pub fee: Number,
    pub exchange: Option<TransactionExchange>,
    pub from_wallet: Option<i64>,
    pub to_wallet: Option<i64>,
    pub metadata: serde_json::Map<String, Value>,
    /// Only when retrieving one transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legs: Option<Vec<TransactionLeg>>,
    pub livemode: bool,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TransactionList {
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<Transaction>,
}

/// `GET /v1/transactions` query (the export takes the same filters and `format`).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TransactionsQuery {
    /// Only this kind.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(transfer|payout|deposit|withdrawal|funding)$")
    )]
    #[cfg_attr(feature = "openapi", serde(rename = "type"))]
    pub kind: Option<String>,
    /// Only this status.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(pending|settled|pending_review|declined|voided|expired)$")
    )]
    pub status: Option<String>,
    /// Only this currency (ISO 4217); needed by the amount filters.
    #[cfg_attr(feature = "openapi", param(value_type = Option<CurrencyCode>))]
    pub currency: Option<String>,
    /// Only transactions from or to this wallet of yours.
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64))]
    pub wallet: Option<i64>,
    /// At least this amount, in `currency` (decimal text).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "amount[gte]", pattern = "^[0-9]{1,15}(\\.[0-9]{1,4})?$")
    )]
    pub amount_gte: Option<String>,
    /// At most this amount, in `currency`.
    #[cfg_attr(
        feature = "openapi",
        param(rename = "amount[lte]", pattern = "^[0-9]{1,15}(\\.[0-9]{1,4})?$")
    )]
    pub amount_lte: Option<String>,
    /// Created at or after this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[gte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_gte: Option<i64>,
    /// Created at or before this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[lte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_lte: Option<i64>,
    /// Page size, 1 to 100 (default 10).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    /// The id of the last transaction of a page: the next (older) page.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    /// The id of the first transaction of a page: the page before it (newer).
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// `GET /v1/transactions/export` query: `format` and the list's filters.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TransactionsExportQuery {
    /// Only `csv`.
    #[cfg_attr(feature = "openapi", param(pattern = "^csv$"))]
    pub format: String,
    /// Only this kind.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(transfer|payout|deposit|withdrawal|funding)$")
    )]
    #[cfg_attr(feature = "openapi", serde(rename = "type"))]
    pub kind: Option<String>,
    /// Only this status.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = "^(pending|settled|pending_review|declined|voided|expired)$")
    )]
    pub status: Option<String>,
    /// Only this currency (ISO 4217); needed by the amount filters.
    #[cfg_attr(feature = "openapi", param(value_type = Option<CurrencyCode>))]
    pub currency: Option<String>,
    /// Only transactions from or to this wallet of yours.
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64))]
    pub wallet: Option<i64>,
    /// At least this amount, in `currency` (decimal text).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "amount[gte]", pattern = "^[0-9]{1,15}(\\.[0-9]{1,4})?$")
    )]
    pub amount_gte: Option<String>,
    /// At most this amount, in `currency`.
    #[cfg_attr(
        feature = "openapi",
        param(rename = "amount[lte]", pattern = "^[0-9]{1,15}(\\.[0-9]{1,4})?$")
    )]
    pub amount_lte: Option<String>,
    /// Created at or after this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[gte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_gte: Option<i64>,
    /// Created at or before this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[lte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_lte: Option<i64>,
}

/// An event type an endpoint can subscribe to, or `*` for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, ToSchema))]
pub enum EventTypeName {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "payout.created")]
    PayoutCreated,
    #[serde(rename = "payout.processing")]
    PayoutProcessing,
    #[serde(rename = "payout.succeeded")]
    PayoutSucceeded,
    #[serde(rename = "payout.failed")]
    PayoutFailed,
    #[serde(rename = "payout.canceled")]
    PayoutCanceled,
    #[serde(rename = "balance.updated")]
    BalanceUpdated,
    #[serde(rename = "account.verified")]
    AccountVerified,
    #[serde(rename = "webhook_endpoint.disabled")]
    WebhookEndpointDisabled,
    #[serde(rename = "deposit.succeeded")]
    DepositSucceeded,
    #[serde(rename = "deposit.failed")]
    DepositFailed,
    #[serde(rename = "async_payment.succeeded")]
    AsyncPaymentSucceeded,
    #[serde(rename = "async_payment.failed")]
    AsyncPaymentFailed,
    #[serde(rename = "review.opened")]
    ReviewOpened,
    #[serde(rename = "review.closed")]
    ReviewClosed,
}

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

/// `POST /v1/webhook_endpoints`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, ToSchema))]
#[cfg_attr(feature = "openapi", serde(deny_unknown_fields))]
pub struct WebhookEndpointCreateBody {
    /// Where deliveries are posted: https (http and local addresses only in sandbox mode).
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2048,
            pattern = "^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?([/?][!-\"$-~]*)?$",
            example = "https://example.com/nixo/webhooks"
        )
    )]
    pub url: String,
    /// `["*"]` or event types.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 14))]
    pub enabled_events: Vec<EventTypeName>,
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub description: Option<String>,
    /// The API version events are rendered in (default: the current one).
    #[cfg_attr(feature = "openapi", schema(pattern = "^(2025-01-01|2024-06-01)$"))]
    pub api_version: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Metadata>))]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// `POST`/`PUT /v1/webhook_endpoints/{id}`: what to change.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, ToSchema))]
#[cfg_attr(feature = "openapi", serde(deny_unknown_fields))]
pub struct WebhookEndpointUpdateBody {
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2048,
            pattern = "^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?([/?][!-\"$-~]*)?$"
        )
    )]
    pub url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 14))]
    pub enabled_events: Option<Vec<EventTypeName>>,
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(pattern = "^(2025-01-01|2024-06-01)$"))]
    pub api_version: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Metadata>))]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// `true` stops deliveries, `false` resumes them (and clears a disable).
    pub disabled: Option<bool>,
}

/// `POST /v1/webhook_endpoints/{id}/rotate_secret`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, ToSchema))]
#[cfg_attr(feature = "openapi", serde(deny_unknown_fields))]
pub struct RotateSecretBody {
    /// Seconds the old secret keeps signing (default 86400; 0 ends it now).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 604_800))]
    pub expires_in: Option<i64>,
}

/// `POST /v1/events/{id}/resend`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, ToSchema))]
#[cfg_attr(feature = "openapi", serde(deny_unknown_fields))]
pub struct ResendBody {
    /// The endpoint to send the event to.
    #[cfg_attr(feature = "openapi", schema(pattern = "^we_[A-Za-z0-9]+$"))]
    pub endpoint: String,
}

/// A webhook endpoint. `secret` appears only in the answers that make one
/// (create, rotate_secret): keep it, Nixo shows it once.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookEndpoint {
    #[cfg_attr(feature = "openapi", schema(pattern = "^we_[A-Za-z0-9]+$"))]
    pub id: String,
    pub object: ObjectType,
    pub url: String,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    pub api_version: Option<String>,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    pub metadata: serde_json::Map<String, Value>,
    pub livemode: bool,
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^whsec_[A-Za-z0-9]+$"))]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookEndpointList {
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<WebhookEndpoint>,
}

/// The answer to a delete.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeletedWebhookEndpoint {
    pub id: String,
    pub object: ObjectType,
    pub deleted: bool,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookAttempt {
    #[cfg_attr(feature = "openapi", schema(pattern = "^wha_[A-Za-z0-9]+$"))]
    pub id: String,
    pub object: ObjectType,
    pub event: String,
    pub endpoint: String,
    /// 1 for the first try.
    pub attempt: i64,
    /// The receiver's status; null when none came (timeout, refused connection, refused address).
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// When the next attempt is due (Unix seconds); null when none is.
    pub next_retry_at: Option<i64>,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookAttemptList {
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<WebhookAttempt>,
}

/// `data` of an event: the object after the change.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventData {
    pub object: Value,
}

/// An event (kept 30 days).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Event {
    #[cfg_attr(feature = "openapi", schema(pattern = "^evt_[A-Za-z0-9]+$"))]
    pub id: String,
    pub object: ObjectType,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub api_version: String,
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventList {
    pub object: ObjectType,
    pub url: String,
    pub has_more: bool,
    pub data: Vec<Event>,
}

/// `GET /v1/events` query.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EventsQuery {
    /// Only events of this type.
    #[cfg_attr(feature = "openapi", param(rename = "type", inline, value_type = Option<EventTypeName>))]
    pub event_type: Option<String>,
    /// Created at or after this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[gte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_gte: Option<i64>,
    /// Created at or before this Unix time (seconds).
    #[cfg_attr(
        feature = "openapi",
        param(rename = "created[lte]", minimum = 0, maximum = 253_402_300_799_i64)
    )]
    pub created_lte: Option<i64>,
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// The list parameters alone.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "openapi", derive(serde::Deserialize, IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 10).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<i64>,
    /// The id of the last object of a page: the next (older) page.
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub starting_after: Option<String>,
    /// The id of the first object of a page: the page before it (newer).
    #[cfg_attr(feature = "openapi", param(pattern = "^[A-Za-z0-9][A-Za-z0-9_]{0,63}$"))]
    pub ending_before: Option<String>,
}

/// Document schemas that derives cannot express (the amount's decimals
/// depend on the currency), as JSON Schema 2020-12. The OpenAPI generator
/// puts them into `components.schemas` under these names.
pub mod document_schemas {
    use crate::schema::{
        EXPONENT_0, EXPONENT_2, EXPONENT_3, EXPONENT_4, METADATA_KEY_LEN_MAX, METADATA_KEYS_MAX, METADATA_VALUE_LEN_MAX,
    };
    use serde_json::{Value, json};

    /// A decimal string greater than 0 with up to `whole_digits` digits
    /// before the point and `decimals` after it (trailing zeros aside), or
    /// a JSON integer below 10^whole_digits.
    fn amount_with(whole_digits: u32, decimals: u32) -> Value {
        let pattern = if decimals == 0 {
            format!("^0{{0,8}}[1-9][0-9]{{0,{}}}(\\.0{{1,20}})?$", whole_digits - 1)
        } else {
            let d = decimals as usize;
            let nonzero_fraction: Vec<String> = (0..d)
                .map(|k| format!("[0-9]{{{k}}}[1-9][0-9]{{0,{}}}", d - 1 - k))
                .collect();
            format!(
                "^(0{{0,8}}[1-9][0-9]{{0,{}}}(\\.[0-9]{{1,{d}}}0{{0,20}})?|0{{1,8}}\\.({})0{{0,20}})$",
                whole_digits - 1,
                nonzero_fraction.join("|")
            )
        };
        json!({
            "oneOf": [
                { "type": "string", "pattern": pattern },
                { "type": "integer", "minimum": 1, "maximum": 10_i64.pow(whole_digits) - 1 }
            ]
        })
    }

    /// An amount in a currency with `decimals` decimals, below 10^15 minor units.
    pub fn amount(decimals: u32) -> Value {
        amount_with(15 - decimals, decimals)
    }

    fn amount_any() -> Value {
        // Any currency's: the body's currency narrows it (see TransferBody).
        let mut any = amount_with(15, 4);
        any["description"] = json!(
            "Exact decimal greater than 0, as a string (\"50.00\") or a JSON number (2500), with at most as \
             many decimals as the currency has (KES 2, JPY 0, BHD 3); read from its text, never through a \
             float. JSON numbers with decimals (12.5) are read exactly too."
        );
        any["example"] = json!("50.00");
        any
    }

    fn currency_code() -> Value {
        let mut codes: Vec<&str> = [EXPONENT_0, EXPONENT_2, EXPONENT_3, EXPONENT_4].concat();
        codes.sort_unstable();
        json!({ "type": "string", "description": "ISO 4217 currency code", "enum": codes, "example": "KES" })
    }

    fn metadata() -> Value {
        json!({
            "type": "object",
            "description": "Your own key-value pairs, kept with the object",
            "maxProperties": METADATA_KEYS_MAX,
            "propertyNames": { "minLength": 1, "maxLength": METADATA_KEY_LEN_MAX },
            "additionalProperties": { "type": "string", "maxLength": METADATA_VALUE_LEN_MAX }
        })
    }

    fn transfer_body() -> Value {
        let by_currency: Vec<Value> = [(EXPONENT_0, 0), (EXPONENT_2, 2), (EXPONENT_3, 3), (EXPONENT_4, 4)]
            .into_iter()
            .map(|(codes, decimals)| {
                json!({
                    "if": { "properties": { "currency": { "enum": codes } }, "required": ["currency"] },
                    "then": { "properties": { "amount": amount(decimals) } }
                })
            })
            .collect();
        json!({
            "type": "object",
            "description": "A transfer from one of your wallets to any other wallet of the same environment \
                            (from_wallet and to_wallet differ). The amount is in the source wallet's currency \
                            with at most that currency's decimals.",
            "additionalProperties": false,
            "required": super::TRANSFER_REQUIRED,
            "properties": {
                "from_wallet": { "type": "integer", "minimum": 1, "maximum": i64::MAX,
                    "description": "One of your wallets", "example": 101 },
                "to_wallet": { "type": "integer", "minimum": 1, "maximum": i64::MAX, "example": 102,
                    "description": "Any wallet of the same environment other than from_wallet; another currency converts at the latest rate" },
                "amount": { "$ref": "#/components/schemas/Amount" },
                "currency": { "$ref": "#/components/schemas/CurrencyCode" },
                "metadata": {
                    "type": ["object", "null"],
                    "description": "Your own key-value pairs, kept with the transaction",
                    "maxProperties": METADATA_KEYS_MAX,
                    "propertyNames": { "minLength": 1, "maxLength": METADATA_KEY_LEN_MAX },
                    "additionalProperties": { "type": "string", "maxLength": METADATA_VALUE_LEN_MAX }
                }
            },
            "allOf": by_currency,
            "example": { "from_wallet": 101, "to_wallet": 102, "amount": "50.00", "currency": "KES",
                         "metadata": { "note": "For lunch" } }
        })
    }

    fn payout_body() -> Value {
        use crate::payouts::{
            DESCRIPTION_LEN_MAX, PAYOUT_FIELDS, PAYOUT_REQUIRED, RECIPIENT_ACCOUNT_LEN_MAX, RECIPIENT_NAME_LEN_MAX,
        };
        let mut body = transfer_body();
        let text = |max: usize, example: &str| json!({ "type": "string", "minLength": 1, "maxLength": max, "pattern": "\\S", "example": example });
        body["description"] = json!(
            "A payout from your wallet in `currency` to a bank account (recipient.account_iban) or an M-Pesa \
             number (recipient.phone_number, KES, whole shillings). The amount plus Nixo's fee is held at once \
             and posted when the rail confirms delivery."
        );
        body["required"] = json!(PAYOUT_REQUIRED);
        body["properties"] = json!({
            "amount": { "$ref": "#/components/schemas/Amount" },
            "currency": { "$ref": "#/components/schemas/CurrencyCode" },
            "destination_country": { "type": ["string", "null"], "pattern": "^[A-Z]{2}$", "example": "MA",
                "description": "ISO 3166-1 alpha-2; taken from the IBAN when left out" },
            "destination_currency": { "anyOf": [{ "$ref": "#/components/schemas/CurrencyCode" }, { "type": "null" }],
                "description": "What the recipient receives, when it is not `currency` (bank payouts): converted at the latest rate" },
            "method": { "type": ["string", "null"], "enum": ["bank", "mpesa", null],
                "description": "Chosen from the recipient when left out; must match it when given" },
            "recipient": {
                "type": "object",
                "additionalProperties": false,
                "required": ["full_name"],
                "properties": {
                    "full_name": text(RECIPIENT_NAME_LEN_MAX, "Test User"),
                    "account_iban": text(RECIPIENT_ACCOUNT_LEN_MAX, "MA64011519000001205000534921"),
                    "phone_number": text(RECIPIENT_ACCOUNT_LEN_MAX, "254712345678"),
                },
                "oneOf": [
                    { "required": ["account_iban"], "not": { "required": ["phone_number"] } },
                    { "required": ["phone_number"], "not": { "required": ["account_iban"] } }
                ]
            },
            "description": { "type": ["string", "null"], "minLength": 1, "maxLength": DESCRIPTION_LEN_MAX, "pattern": "\\S" },
            "metadata": body["properties"]["metadata"].clone(),
        });
        let fields: Vec<&str> = body["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        debug_assert_eq!(fields.len(), PAYOUT_FIELDS.len());
        body["example"] = json!({
            "amount": 250.00, "currency": "USD", "destination_country": "MA",
            "recipient": { "full_name": "Test User", "account_iban": "MA64011519000001205000534921" }
        });
        body
    }

    /// Printable text of 1 to `max` characters with something besides spaces.
    fn plain_text(max: usize, example: &str) -> Value {
        json!({ "type": "string", "minLength": 1, "maxLength": max,
                "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$",
                "example": example })
    }

    fn nullable(mut schema: Value) -> Value {
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            schema["type"] = json!([t, "null"]);
        }
        schema
    }

    fn account_schemas() -> (Value, Value) {
        use crate::accounts::{
            ADDRESS_LEN_MAX, CURRENCIES_MAX, DOCUMENT_REFERENCE_LEN_MAX, DOCUMENT_TYPES, DOCUMENTS_MAX, EMAIL_LEN_MAX,
            ID_TYPES, NAME_LEN_MAX, REPRESENTATIVES_MAX,
        };
        let country = json!({ "type": "string", "pattern": "^[A-Z]{2}$", "example": "KE" });
        let date = json!({ "type": "string", "format": "date",
            "pattern": "^(19[0-9]{2}|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", "example": "1990-04-12",
            "description": "A calendar date, YYYY-MM-DD, from 1900 on" });
        let id_number = json!({ "type": "string", "pattern": "^[A-Za-z0-9-]{4,32}$", "example": "A1234567" });
        let address = json!({
            "type": ["object", "null"], "additionalProperties": false, "required": ["line1", "city", "country"],
            "properties": {
                "line1": plain_text(ADDRESS_LEN_MAX, "12 Moi Avenue"),
                "line2": nullable(plain_text(ADDRESS_LEN_MAX, "Floor 3")),
                "city": plain_text(ADDRESS_LEN_MAX, "Nairobi"),
                "postal_code": nullable(plain_text(ADDRESS_LEN_MAX, "00100")),
                "country": country.clone()
            }
        });
        let individual = json!({
            "type": ["object", "null"], "additionalProperties": false,
            "description": "An individual's KYC data; id_number is stored encrypted and shown masked",
            "properties": {
                "first_name": nullable(plain_text(NAME_LEN_MAX, "Ama")),
                "last_name": nullable(plain_text(NAME_LEN_MAX, "Mensah")),
                "date_of_birth": nullable(date.clone()),
                "address": address.clone(),
                "id_type": { "type": ["string", "null"], "enum": [ID_TYPES[0], ID_TYPES[1], null] },
                "id_number": nullable(id_number.clone()),
                "nationality": nullable(country.clone())
            }
        });
        let business = json!({
            "type": ["object", "null"], "additionalProperties": false,
            "properties": {
                "legal_name": nullable(plain_text(ADDRESS_LEN_MAX, "Mensah Traders Ltd")),
                "registration_number": nullable(id_number.clone()),
                "country": nullable(country.clone()),
                "address": address,
                "representatives": {
                    "type": ["array", "null"], "maxItems": REPRESENTATIVES_MAX,
                    "items": {
                        "type": "object", "additionalProperties": false, "required": ["first_name", "last_name"],
                        "properties": {
                            "first_name": plain_text(NAME_LEN_MAX, "Ama"),
                            "last_name": plain_text(NAME_LEN_MAX, "Mensah"),
                            "date_of_birth": nullable(date),
                            "role": nullable(plain_text(NAME_LEN_MAX, "director"))
                        }
                    }
                }
            }
        });
        let documents = json!({
            "type": ["array", "null"], "maxItems": DOCUMENTS_MAX,
            "description": "Documents you collected (the files stay in your store); a new list restarts verification",
            "items": {
                "type": "object", "additionalProperties": false, "required": ["type", "reference"],
                "properties": {
                    "type": { "type": "string", "enum": DOCUMENT_TYPES },
                    "reference": plain_text(DOCUMENT_REFERENCE_LEN_MAX, "file_8Hc2")
                }
            }
        });
        let email = json!({ "type": ["string", "null"], "maxLength": EMAIL_LEN_MAX,
            "pattern": "^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", "example": "ama@example.com" });
        let phone =
            json!({ "type": ["string", "null"], "pattern": "^\\+[1-9][0-9]{7,14}$", "example": "+254708374149" });
        let metadata = json!({ "anyOf": [{ "$ref": "#/components/schemas/Metadata" }, { "type": "null" }] });
        let create = json!({
            "type": "object", "additionalProperties": false, "required": ["type"],
            "description": "A customer account under your platform. KYC data given here starts verification at once; \
                            the account can receive money at once and send it once verified.",
            "properties": {
                "type": { "type": "string", "enum": ["individual", "business"] },
                "email": email, "phone": phone,
                "individual": individual, "business": business, "documents": documents,
                "currencies": { "type": ["array", "null"], "minItems": 1, "maxItems": CURRENCIES_MAX,
                    "items": { "$ref": "#/components/schemas/CurrencyCode" },
                    "description": "Wallets to open, one per currency (default USD)" },
                "metadata": metadata
            },
            "oneOf": [
                { "properties": { "type": { "const": "individual" }, "business": { "type": "null" } } },
                { "properties": { "type": { "const": "business" }, "individual": { "type": "null" } } }
            ],
            "example": { "type": "individual", "email": "ama@example.com",
                "individual": { "first_name": "Ama", "last_name": "Mensah", "date_of_birth": "1990-04-12",
                    "address": { "line1": "12 Moi Avenue", "city": "Nairobi", "country": "KE" },
                    "id_type": "national_id", "id_number": "A1234567" },
                "documents": [{ "type": "national_id", "reference": "file_8Hc2" }], "currencies": ["KES", "USD"] }
        });
        let mut update = create.clone();
        update["required"] = json!([]);
        update["description"] =
            json!("What you give replaces what was there; KYC data or documents restart verification (pending).");
        for gone in ["type", "currencies"] {
            update["properties"].as_object_mut().expect("properties").remove(gone);
        }
        update.as_object_mut().expect("object").remove("oneOf");
        update["example"] =
            json!({ "phone": "+254708374149", "documents": [{ "type": "passport", "reference": "file_9Jd3" }] });
        (create, update)
    }

    fn transact_body() -> Value {
        use crate::payments::{DESTINATION_LEN_MAX, STK_AMOUNT_KES_MAX, STK_AMOUNT_KES_MIN};
        let metadata = transfer_body()["properties"]["metadata"].clone();
        let wallet =
            |what: &str| json!({ "type": ["integer", "null"], "minimum": 1, "maximum": i64::MAX, "description": what });
        let deposit = json!({
            "type": "object",
            "title": "Deposit",
            "description": "Money in by M-Pesa STK push: the payer approves on their phone; the wallet is credited \
                            when M-Pesa confirms (pending until then). KES, whole shillings.",
            "additionalProperties": false,
            "required": ["type", "amount", "currency", "phone_number"],
            "properties": {
                "type": { "const": "deposit" },
                "amount": { "type": ["integer", "string"], "minimum": STK_AMOUNT_KES_MIN, "maximum": STK_AMOUNT_KES_MAX,
                    "pattern": "^[0-9]+(\\.0+)?$", "example": 100,
                    "description": "Whole shillings (a number, or its text)" },
                "currency": { "const": "KES" },
                "phone_number": { "type": "string", "pattern": "^(\\+?254|0)[17][0-9]{8}$", "example": "254712345678",
                    "description": "The payer's M-Pesa number: 07…, 01…, +254… or 254…" },
                "wallet": wallet("The wallet to credit (one of yours, KES); your KES wallet when left out"),
                "to_wallet": wallet("The same as wallet"),
                "metadata": metadata.clone(),
            },
            "example": { "type": "deposit", "amount": 100, "currency": "KES", "phone_number": "254712345678" }
        });
        let withdrawal = json!({
            "type": "object",
            "title": "Withdrawal",
            "description": "Money out of one of your wallets to an M-Pesa number (B2C, KES whole shillings) or a \
                            bank account (IBAN, ISO 20022). metadata.gateway (mpesa | bank) must agree with the \
                            destination's form when given. The amount plus the rail's fee is held until the rail \
                            confirms.",
            "additionalProperties": false,
            "required": ["type", "from_wallet", "amount", "currency", "destination"],
            "properties": {
                "type": { "const": "withdrawal" },
                "from_wallet": { "type": "integer", "minimum": 1, "maximum": i64::MAX, "example": 101 },
                "amount": { "$ref": "#/components/schemas/Amount" },
                "currency": { "$ref": "#/components/schemas/CurrencyCode" },
                "destination": { "type": "string", "minLength": 1, "maxLength": DESTINATION_LEN_MAX, "pattern": "\\S",
                    "example": "254712345678", "description": "An M-Pesa number or an IBAN" },
                "metadata": metadata,
            },
            "example": { "type": "withdrawal", "from_wallet": 101, "amount": 2500, "currency": "KES",
                         "destination": "254712345678", "metadata": { "gateway": "mpesa" } }
        });
        json!({
            "description": "A deposit or a withdrawal, by `type`.",
            "oneOf": [deposit, withdrawal],
            "discriminator": { "propertyName": "type" },
            "example": { "type": "deposit", "amount": 100, "currency": "KES", "phone_number": "254712345678" }
        })
    }

    /// (component name, schema)
    pub fn all() -> Vec<(&'static str, Value)> {
        vec![
            ("Amount", amount_any()),
            ("CurrencyCode", currency_code()),
            ("TransferBody", transfer_body()),
            ("PayoutBody", payout_body()),
            ("TransactBody", transact_body()),
            ("Metadata", metadata()),
            ("AccountCreateBody", account_schemas().0),
            ("AccountUpdateBody", account_schemas().1),
        ]
    }
}

/// Placeholders for the generator; `document_schemas` replaces them.
#[cfg(feature = "openapi")]
mod placeholders {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema};

    macro_rules! placeholder {
        ($($ty:ty),*) => {$(
            impl utoipa::PartialSchema for $ty {
                fn schema() -> RefOr<Schema> {
                    ObjectBuilder::new().build().into()
                }
            }
            impl utoipa::ToSchema for $ty {}
        )*};
    }
    placeholder!(
        super::Amount,
        super::CurrencyCode,
        super::TransferBody,
        super::PayoutBody,
        super::TransactBody,
        super::Metadata,
        super::AccountCreateBody,
        super::AccountUpdateBody
    );
}
