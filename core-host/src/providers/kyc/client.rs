//! The KYC provider's HTTP client: the wire format of [`super::wire`], its
//! errors mapped to [`RailError`] (5xx and transport: try again; 4xx: refused).

use super::wire::{Applicant, CHECKS_PATH, Check, CheckDocument, CreateCheck, ErrorEnvelope};
use super::{CheckRequest, CheckState, KycProvider};
use crate::providers::{RAIL_BODY_LEN_MAX_BYTES, RailError, RailFuture};

/// Where the provider is and how to authenticate.
#[derive(Clone)]
pub struct IdvClient {
    base_url: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for IdvClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdvClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Reports every check runs.
pub const REPORTS: [&str; 3] = ["identity", "document", "watchlist"];

impl IdvClient {
    pub fn new(base_url: &str, token: &str) -> IdvClient {
        IdvClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: crate::providers::http_client(),
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Check, RailError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, format!("Token token={}", self.token))
            .send()
            .await
            .map_err(|e| RailError::Transient(format!("KYC provider unreachable: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| RailError::Transient(format!("KYC provider answer cut: {e}")))?;
        if body.len() > RAIL_BODY_LEN_MAX_BYTES {
            return Err(RailError::Transient("KYC provider answer too large".into()));
        }
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| RailError::Transient(format!("KYC provider answer unreadable: {e}")));
        }
        let error = serde_json::from_slice::<ErrorEnvelope>(&body).ok();
        let message = error
            .as_ref()
            .map_or_else(|| format!("HTTP {status}"), |e| e.error.message.clone());
        if status.is_server_error() || status.as_u16() == 429 {
            Err(RailError::Transient(message))
        } else {
            Err(RailError::Rejected {
                code: error.map_or_else(|| status.as_u16().to_string(), |e| e.error.kind),
                message,
            })
        }
    }
}

impl KycProvider for IdvClient {
    fn create_check<'a>(&'a self, request: &'a CheckRequest) -> RailFuture<'a, String> {
        Box::pin(async move {
            let body = CreateCheck {
                reference: request.reference.clone(),
                applicant: Applicant {
                    kind: request.applicant_type.clone(),
                    profile: request.applicant.clone(),
                    id_number: request.id_number.clone(),
                },
                documents: request
                    .documents
                    .iter()
                    .map(|(kind, reference)| CheckDocument {
                        kind: kind.clone(),
                        file_id: reference.clone(),
                    })
                    .collect(),
                report_names: REPORTS.iter().map(|r| r.to_string()).collect(),
            };
            let check = self
                .call(self.http.post(format!("{}{CHECKS_PATH}", self.base_url)).json(&body))
                .await?;
            Ok(check.id)
        })
    }

    fn check<'a>(&'a self, id: &'a str) -> RailFuture<'a, CheckState> {
        Box::pin(async move {
            let check = self
                .call(self.http.get(format!("{}{CHECKS_PATH}/{id}", self.base_url)))
                .await?;
            Ok(CheckState {
                id: check.id,
                complete: check.status == "complete",
                reports: check.reports.into_iter().map(|r| (r.name, r.result)).collect(),
            })
        })
    }
}
