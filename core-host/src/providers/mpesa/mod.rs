//! The M-Pesa rail: Safaricom Daraja B2C (business to customer).
//!
//! Also Lipa na M-Pesa Online (STK push) for deposits: Nixo asks Daraja to
//! prompt the payer's phone; the payer's answer is posted to a callback URL
//! (with the same secret path token) and can be asked for with a query.
//!
//! A payment request is accepted synchronously (a `ConversationID`); its
//! result arrives later, posted by Daraja to the `ResultURL` Nixo gave (or
//! a queue time-out to `QueueTimeOutURL`). Those URLs carry a secret path
//! token, since Daraja does not sign its callbacks. [`MobileMoneyRail`] is
//! the contract, [`client`] the Daraja HTTP client, [`daraja`] the wire
//! format alone, [`sandbox`] a Daraja that speaks the same protocol.

pub mod client;
pub mod daraja;
pub mod sandbox;

use super::RailFuture;

/// One B2C payment, as Nixo asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2cPayment {
    /// `OriginatorConversationID`: the payout id, so a retry is the same
    /// request to Daraja and a result names its payout.
    pub originator_id: String,
    /// Canonical MSISDN, `2547XXXXXXXX`.
    pub msisdn: String,
    /// Whole shillings.
    pub amount_kes: i64,
    pub remarks: String,
    pub occasion: String,
    pub result_url: String,
    pub timeout_url: String,
}

/// Daraja's synchronous acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2cAccepted {
    pub conversation_id: String,
    pub originator_id: String,
}

/// A B2C result, read from Daraja's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2cResult {
    pub originator_id: String,
    pub conversation_id: String,
    /// 0 is success; anything else is Daraja's failure code.
    pub result_code: i64,
    pub description: String,
    pub transaction_id: Option<String>,
    /// Whole shillings paid (success only).
    pub amount_kes: Option<i64>,
    pub receipt: Option<String>,
}

/// A Transaction Status query for a payment whose result did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    /// The payment's `OriginatorConversationID`.
    pub originator_id: String,
    /// Where Daraja posts the query's result (its `Occasion` names the payout).
    pub result_url: String,
    pub timeout_url: String,
}

/// One STK push (a payment prompt on the payer's phone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkPush {
    /// Canonical MSISDN, `2547XXXXXXXX`.
    pub msisdn: String,
    /// Whole shillings.
    pub amount_kes: i64,
    /// Shown to the payer (at most 12 characters).
    pub account_reference: String,
    pub description: String,
    pub callback_url: String,
}

/// Daraja's acceptance of an STK push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkAccepted {
    pub checkout_request_id: String,
    pub merchant_request_id: String,
}

/// What an STK push query says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StkStatus {
    /// The payer has not answered yet.
    Pending,
    /// 0 is paid; anything else is Daraja's failure code.
    Final { result_code: i64, description: String },
}

/// A mobile-money provider: B2C payments out, STK push collections in.
pub trait MobileMoneyRail: Send + Sync {
    /// Requests a payment; the result comes to `result_url` later.
    fn pay<'a>(&'a self, payment: &'a B2cPayment) -> RailFuture<'a, B2cAccepted>;

    /// Asks for the status of an earlier payment; the answer comes to the
    /// query's `result_url` (as a B2C result of that payment).
    fn query_status<'a>(&'a self, query: &'a StatusQuery) -> RailFuture<'a, ()>;

    /// Prompts the payer; the answer comes to `push.callback_url` later.
    fn stk_push<'a>(&'a self, push: &'a StkPush) -> RailFuture<'a, StkAccepted>;

    /// Asks where an STK push stands.
    fn stk_query<'a>(&'a self, checkout_request_id: &'a str) -> RailFuture<'a, StkStatus>;
}

/// Daraja STK result codes Nixo maps to a deposit failure code.
pub fn deposit_failure_code(result_code: i64) -> &'static str {
    match result_code {
        1 => "payer_insufficient_funds",
        1032 => "canceled_by_payer",
        1037 => "payer_unreachable",
        1019 => "payment_expired",
        2001 => "payer_wrong_pin",
        _ => "mpesa_failed",
    }
}

/// Daraja result codes Nixo maps to a payout failure code.
pub fn failure_code(result_code: i64) -> &'static str {
    match result_code {
        1 => "rail_insufficient_funds",
        2 | 3 | 4 | 8 => "amount_out_of_range",
        17 => "rail_rule_limited",
        2001 => "rail_credentials_invalid",
        2040 => "recipient_not_registered",
        _ => "rail_failed",
    }
}
