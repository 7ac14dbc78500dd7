//! [`BankRail`] over HTTPS host-to-host: `POST {base}/pain.001` with the
//! XML message (the bank answers with a `pain.002` at once), and
//! `GET {base}/pain.002?after={cursor}` for the next status report of the
//! feed (204 when there is none; the report's feed position in the
//! `Report-Cursor` header). A bearer token authenticates Nixo.

use super::{Acknowledgement, BankRail, CreditTransfer, FeedItem, pain001, pain002, rejected};
use crate::providers::{RAIL_BODY_LEN_MAX_BYTES, RailError, RailFuture};

/// The feed position header of a report.
pub const CURSOR_HEADER: &str = "report-cursor";
pub const XML_CONTENT_TYPE: &str = "application/xml";

#[derive(Clone, Debug)]
pub struct HostToHost {
    pub base_url: String,
    pub token: String,
    client: reqwest::Client,
}

impl HostToHost {
    pub fn new(base_url: &str, token: &str) -> HostToHost {
        HostToHost {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: crate::providers::http_client(),
        }
    }
}

fn transient(err: impl std::fmt::Display) -> RailError {
    RailError::Transient(err.to_string())
}

async fn body_text(response: reqwest::Response) -> Result<String, RailError> {
    let bytes = response.bytes().await.map_err(transient)?;
    if bytes.len() > RAIL_BODY_LEN_MAX_BYTES {
        return Err(transient("the bank's answer is too large"));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| transient("the bank's answer is not UTF-8"))
}

impl BankRail for HostToHost {
    fn submit<'a>(&'a self, transfer: &'a CreditTransfer) -> RailFuture<'a, Acknowledgement> {
        Box::pin(async move {
            let response = self
                .client
                .post(format!("{}/pain.001", self.base_url))
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, XML_CONTENT_TYPE)
                .body(pain001::render(transfer))
                .send()
                .await
                .map_err(transient)?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                return Err(transient(format!("the bank answered HTTP {status}")));
            }
            let text = body_text(response).await?;
            let report = pain002::parse(&text);
            match (status.is_success(), report) {
                (true, Ok(report)) if report.group_status.as_deref() == Some("RJCT") => Err(rejected(
                    report.group_reason.as_deref().unwrap_or("RJCT"),
                    "the bank rejected the message",
                )),
                (true, Ok(report)) => Ok(Acknowledgement { report }),
                (true, Err(err)) => Err(transient(err)),
                (false, Ok(report)) => Err(rejected(
                    report.group_reason.as_deref().unwrap_or("RJCT"),
                    format!("the bank rejected the message (HTTP {status})"),
                )),
                (false, Err(_)) => Err(rejected(
                    &format!("HTTP{}", status.as_u16()),
                    text.chars().take(200).collect::<String>(),
                )),
            }
        })
    }

    fn next_report<'a>(&'a self, cursor: Option<&'a str>) -> RailFuture<'a, Option<FeedItem>> {
        Box::pin(async move {
            let mut request = self
                .client
                .get(format!("{}/pain.002", self.base_url))
                .bearer_auth(&self.token);
            if let Some(cursor) = cursor {
                request = request.query(&[("after", cursor)]);
            }
            let response = request.send().await.map_err(transient)?;
            let status = response.status();
            if status.as_u16() == 204 {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(transient(format!("the bank's report feed answered HTTP {status}")));
            }
            let cursor = response
                .headers()
                .get(CURSOR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| transient("a report came without its Report-Cursor"))?;
            let report = pain002::parse(&body_text(response).await?).map_err(transient)?;
            Ok(Some(FeedItem { cursor, report }))
        })
    }
}
