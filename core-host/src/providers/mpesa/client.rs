//! [`MobileMoneyRail`] against Daraja: an OAuth client-credentials token
//! (cached until shortly before it expires, renewed on a 401), the B2C
//! payment request and the Transaction Status query.

use super::daraja::{
    self, B2cRequest, B2cResponse, ErrorResponse, StatusQueryRequest, StkPushRequest, StkPushResponse, StkQueryRequest,
    StkQueryResponse, TokenResponse,
};
use super::{B2cAccepted, B2cPayment, MobileMoneyRail, StatusQuery, StkAccepted, StkPush, StkStatus};
use crate::providers::{RailError, RailFuture};
use std::sync::Mutex;

/// A token is renewed this long before Daraja says it expires.
pub const TOKEN_RENEW_MARGIN_S: i64 = 60;
pub const B2C_PATH: &str = "/mpesa/b2c/v3/paymentrequest";
pub const STATUS_PATH: &str = "/mpesa/transactionstatus/v1/query";
pub const TOKEN_PATH: &str = "/oauth/v1/generate";
pub const STK_PUSH_PATH: &str = "/mpesa/stkpush/v1/processrequest";
pub const STK_QUERY_PATH: &str = "/mpesa/stkpushquery/v1/query";

/// Credentials and identity of a Daraja B2C integration.
#[derive(Debug, Clone)]
pub struct DarajaConfig {
    pub base_url: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// `PartyA`: the B2C shortcode.
    pub shortcode: String,
    pub initiator_name: String,
    /// The initiator password encrypted with Safaricom's public
    /// certificate, base64 (made once with the certificate, kept as a secret).
    pub security_credential: String,
    /// `CommandID`: BusinessPayment, SalaryPayment or PromotionPayment.
    pub command_id: String,
    /// The Lipa na M-Pesa Online shortcode (paybill or till) deposits are paid to.
    pub stk_shortcode: String,
    /// Its passkey (from Safaricom; a secret).
    pub passkey: String,
}

pub struct Daraja {
    config: DarajaConfig,
    client: reqwest::Client,
    /// (token, expires at, unix seconds).
    token: Mutex<Option<(String, i64)>>,
}

fn transient(err: impl std::fmt::Display) -> RailError {
    RailError::Transient(err.to_string())
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Daraja {
    pub fn new(mut config: DarajaConfig) -> Daraja {
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        Daraja {
            config,
            client: crate::providers::http_client(),
            token: Mutex::new(None),
        }
    }

    async fn token(&self) -> Result<String, RailError> {
        if let Some((token, until)) = self.token.lock().expect("token cache").clone()
            && until > now_s()
        {
            return Ok(token);
        }
        let response = self
            .client
            .get(format!("{}{TOKEN_PATH}", self.config.base_url))
            .query(&[("grant_type", "client_credentials")])
            .basic_auth(&self.config.consumer_key, Some(&self.config.consumer_secret))
            .send()
            .await
            .map_err(transient)?;
        if !response.status().is_success() {
            return Err(transient(format!(
                "Daraja refused the token request: HTTP {}",
                response.status()
            )));
        }
        let token: TokenResponse = response.json().await.map_err(transient)?;
        let lifetime = token
            .expires_in_s()
            .ok_or_else(|| transient("Daraja's expires_in is not a number"))?;
        let until = now_s() + lifetime - TOKEN_RENEW_MARGIN_S;
        *self.token.lock().expect("token cache") = Some((token.access_token.clone(), until));
        Ok(token.access_token)
    }

    fn forget_token(&self) {
        *self.token.lock().expect("token cache") = None;
    }

    /// Posts a JSON body with the token; maps Daraja's answer.
    async fn post<T: serde::Serialize>(&self, path: &str, body: &T) -> Result<bytes::Bytes, RailError> {
        let (status, bytes) = self.post_raw(path, body).await?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(transient(format!("Daraja answered HTTP {status}")));
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorResponse>(&bytes) {
                Ok(e) => RailError::Rejected {
                    code: e.error_code,
                    message: e.error_message,
                },
                Err(_) => RailError::Rejected {
                    code: format!("HTTP{}", status.as_u16()),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            });
        }
        Ok(bytes)
    }

    /// Posts with the token (forgotten on a 401); any other status is the caller's.
    async fn post_raw<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), RailError> {
        let token = self.token().await?;
        let response = self
            .client
            .post(format!("{}{path}", self.config.base_url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(transient)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transient)?;
        if status.as_u16() == 401 {
            self.forget_token();
            return Err(transient(
                "Daraja refused the access token; a new one is fetched next time",
            ));
        }
        Ok((status, bytes))
    }

    /// (timestamp, password) for an STK request made now.
    fn stk_credentials(&self) -> (String, String) {
        let timestamp = daraja::eat_timestamp(chrono::Utc::now());
        let password = daraja::stk_password(&self.config.stk_shortcode, &self.config.passkey, &timestamp);
        (timestamp, password)
    }
}

impl MobileMoneyRail for Daraja {
    fn pay<'a>(&'a self, payment: &'a B2cPayment) -> RailFuture<'a, B2cAccepted> {
        Box::pin(async move {
            let request = B2cRequest {
                originator_conversation_id: payment.originator_id.clone(),
                initiator_name: self.config.initiator_name.clone(),
                security_credential: self.config.security_credential.clone(),
                command_id: self.config.command_id.clone(),
                amount: payment.amount_kes,
                party_a: self.config.shortcode.clone(),
                party_b: payment.msisdn.clone(),
                remarks: payment.remarks.clone(),
                queue_time_out_url: payment.timeout_url.clone(),
                result_url: payment.result_url.clone(),
                occasion: payment.occasion.clone(),
            };
            let bytes = self.post(B2C_PATH, &request).await?;
            let answer: B2cResponse = serde_json::from_slice(&bytes).map_err(transient)?;
            if answer.response_code.trim() != "0" {
                return Err(RailError::Rejected {
                    code: answer.response_code,
                    message: answer.response_description,
                });
            }
            if answer.originator_conversation_id != payment.originator_id {
                return Err(transient("Daraja answered for another OriginatorConversationID"));
            }
            Ok(B2cAccepted {
                conversation_id: answer.conversation_id,
                originator_id: answer.originator_conversation_id,
            })
        })
    }

    fn query_status<'a>(&'a self, query: &'a StatusQuery) -> RailFuture<'a, ()> {
        Box::pin(async move {
            let request = StatusQueryRequest {
                initiator: self.config.initiator_name.clone(),
                security_credential: self.config.security_credential.clone(),
                command_id: "TransactionStatusQuery".into(),
                transaction_id: String::new(),
                original_conversation_id: query.originator_id.clone(),
                party_a: self.config.shortcode.clone(),
                identifier_type: "4".into(),
                result_url: query.result_url.clone(),
                queue_time_out_url: query.timeout_url.clone(),
                remarks: "Payout status".into(),
                occasion: query.originator_id.clone(),
            };
            let bytes = self.post(STATUS_PATH, &request).await?;
            let answer: B2cResponse = serde_json::from_slice(&bytes).map_err(transient)?;
            if answer.response_code.trim() != "0" {
                return Err(RailError::Rejected {
                    code: answer.response_code,
                    message: answer.response_description,
                });
            }
            Ok(())
        })
    }

    fn stk_push<'a>(&'a self, push: &'a StkPush) -> RailFuture<'a, StkAccepted> {
        Box::pin(async move {
            let (timestamp, password) = self.stk_credentials();
            let request = StkPushRequest {
                business_short_code: self.config.stk_shortcode.clone(),
                password,
                timestamp,
                transaction_type: "CustomerPayBillOnline".into(),
                amount: push.amount_kes,
                party_a: push.msisdn.clone(),
                party_b: self.config.stk_shortcode.clone(),
                phone_number: push.msisdn.clone(),
                call_back_url: push.callback_url.clone(),
                account_reference: push.account_reference.clone(),
                transaction_desc: push.description.clone(),
            };
            let bytes = self.post(STK_PUSH_PATH, &request).await?;
            let answer: StkPushResponse = serde_json::from_slice(&bytes).map_err(transient)?;
            if answer.response_code.trim() != "0" {
                return Err(RailError::Rejected {
                    code: answer.response_code,
                    message: answer.response_description,
                });
            }
            if answer.checkout_request_id.is_empty() {
                return Err(transient("Daraja accepted the STK push without a CheckoutRequestID"));
            }
            Ok(StkAccepted {
                checkout_request_id: answer.checkout_request_id,
                merchant_request_id: answer.merchant_request_id,
            })
        })
    }

    fn stk_query<'a>(&'a self, checkout_request_id: &'a str) -> RailFuture<'a, StkStatus> {
        Box::pin(async move {
            let (timestamp, password) = self.stk_credentials();
            let request = StkQueryRequest {
                business_short_code: self.config.stk_shortcode.clone(),
                password,
                timestamp,
                checkout_request_id: checkout_request_id.to_string(),
            };
            let (status, bytes) = self.post_raw(STK_QUERY_PATH, &request).await?;
            if !status.is_success() {
                // "The transaction is being processed" comes as an HTTP 500.
                if let Ok(e) = serde_json::from_slice::<ErrorResponse>(&bytes)
                    && e.error_code == daraja::STK_QUERY_PENDING
                {
                    return Ok(StkStatus::Pending);
                }
                return Err(transient(format!("Daraja answered the STK query with HTTP {status}")));
            }
            let answer: StkQueryResponse = serde_json::from_slice(&bytes).map_err(transient)?;
            if answer.checkout_request_id != checkout_request_id {
                return Err(transient("Daraja answered the query for another CheckoutRequestID"));
            }
            let result_code = daraja::integer(&answer.result_code)
                .ok_or_else(|| transient("the STK query's ResultCode is not an integer"))?;
            Ok(StkStatus::Final {
                result_code,
                description: answer.result_desc,
            })
        })
    }
}
