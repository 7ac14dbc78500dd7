//! Webhooks in the contract: the request rules of the webhook endpoint and
//! event routes, and the `Nixo-Signature` scheme — signing (the core) and
//! verifying (any receiver; `nixo webhooks verify` uses it).
//!
//! ```text
//! Nixo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>[,v1=…]
//! ```
//!
//! During a secret rotation a delivery carries one `v1` per live secret. A
//! receiver recomputes the HMAC over `"{t}.{raw body}"` with its secret,
//! compares it in constant time with each `v1`, and refuses a `t` more than
//! [`SIGNATURE_TOLERANCE_SECS`] from its own clock (replays).

use crate::pagination::{CreatedRange, ListParams};
use crate::schema::{self, Checked, FieldError};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The header every delivery carries.
pub const SIGNATURE_HEADER: &str = "Nixo-Signature";
/// How old (or how far ahead) a signature's timestamp may be.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Event types an endpoint may subscribe to (`*`: all of them).
/// (The document's `EventTypeName` lists the same; a test compares them.)
pub const EVENT_TYPES: [&str; 14] = [
    "payout.created",
    "payout.processing",
    "payout.succeeded",
    "payout.failed",
    "payout.canceled",
    "balance.updated",
    "account.verified",
    "webhook_endpoint.disabled",
    "deposit.succeeded",
    "deposit.failed",
    "async_payment.succeeded",
    "async_payment.failed",
    "review.opened",
    "review.closed",
];
/// Longest endpoint URL.
pub const URL_LEN_MAX: usize = 2_048;
/// Longest description.
pub const DESCRIPTION_LEN_MAX: usize = 500;
/// Longest rotation grace period (`expires_in`), in seconds.
pub const ROTATION_GRACE_MAX_SECS: i64 = 7 * 86_400;

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac accepts any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `t`, signed with every secret.
pub fn sign(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, t, body).finalize().into_bytes()));
    }
    header
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// No `t=` or no `v1=`, or not hex.
    Malformed,
    /// `t` is further than the tolerance from now.
    Stale,
    /// No `v1` matches.
    Mismatch,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifyError::Malformed => "the Nixo-Signature header is malformed",
            VerifyError::Stale => "the signature's timestamp is outside the tolerance",
            VerifyError::Mismatch => "no signature matches the secret",
        })
    }
}

/// Checks a delivery as a receiver should: recompute, constant-time compare
/// with every `v1`, and a timestamp within `tolerance_secs` of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => candidates.push(hex::decode(value).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let expected = mac(secret, t, body);
    if candidates.iter().any(|c| expected.clone().verify_slice(c).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// A `POST /v1/webhook_endpoints` or update body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointRequest {
    pub url: Option<String>,
    /// `["*"]` or event types.
    pub enabled_events: Option<Vec<String>>,
    pub description: Option<String>,
    pub api_version: Option<String>,
    /// Update only: `true` turns the endpoint off, `false` back on.
    pub disabled: Option<bool>,
    pub metadata: Option<Map<String, Value>>,
}

pub const CREATE_FIELDS: [&str; 5] = ["url", "enabled_events", "description", "api_version", "metadata"];
pub const UPDATE_FIELDS: [&str; 6] = [
    "url",
    "enabled_events",
    "description",
    "api_version",
    "metadata",
    "disabled",
];

/// The URL's shape: http(s), a host name (dot-separated labels of letters,
/// digits and inner hyphens) or an IPv4 address, an optional port, then a
/// path or query of visible ASCII; no credentials, no fragment, no IPv6
/// literal. Whether it may be called (https, public addresses in live
/// mode) is decided by the core.
pub fn url_ok(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host_ok = host.len() <= 253 && host.split('.').all(label_ok);
    let port_ok = port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    url.len() <= URL_LEN_MAX && host_ok && port_ok && tail.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

fn events(value: &Value) -> Checked<Vec<String>> {
    let bad = || {
        FieldError::new(
            "enabled_events",
            format!(
                "enabled_events must be [\"*\"] or a list of: {}",
                EVENT_TYPES.join(", ")
            ),
        )
    };
    let list = value.as_array().ok_or_else(bad)?;
    if list.is_empty() || list.len() > EVENT_TYPES.len() {
        return Err(bad());
    }
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let name = item.as_str().ok_or_else(bad)?;
        if name != "*" && !EVENT_TYPES.contains(&name) {
            return Err(FieldError::new(
                "enabled_events",
                format!("'{name}' is not an event type"),
            ));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    // `*` covers every type: a list naming it too is just `*`.
    if out.iter().any(|o| o == "*") {
        return Ok(vec!["*".to_string()]);
    }
    Ok(out)
}

/// Parses a create (`update = false`) or update body.
pub fn endpoint_request(body: &[u8], update: bool) -> Checked<EndpointRequest> {
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, if update { &UPDATE_FIELDS } else { &CREATE_FIELDS })?;
    let text = |key: &str| -> Checked<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(FieldError::new(key, format!("{key} must be a string"))),
        }
    };
    let url = text("url")?;
    if let Some(url) = &url
        && !url_ok(url)
    {
        return Err(FieldError::new(
            "url",
            format!("url must be an http(s) URL of at most {URL_LEN_MAX} characters, without credentials"),
        ));
    }
    if !update && url.is_none() {
        return Err(FieldError::missing("url"));
    }
    let enabled_events = match map.get("enabled_events") {
        None | Some(Value::Null) if update => None,
        None | Some(Value::Null) => return Err(FieldError::missing("enabled_events")),
        Some(value) => Some(events(value)?),
    };
    let description = text("description")?;
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > DESCRIPTION_LEN_MAX)
    {
        return Err(FieldError::new(
            "description",
            format!("description is at most {DESCRIPTION_LEN_MAX} characters"),
        ));
    }
    let api_version = text("api_version")?;
    if let Some(version) = &api_version
        && crate::versions::supported(version).is_none()
    {
        return Err(FieldError::new(
            "api_version",
            format!(
                "api_version must be one of {}",
                crate::versions::SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let disabled = match map.get("disabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(FieldError::new("disabled", "disabled must be true or false")),
    };
    let metadata = match map.get("metadata") {
        None => None,
        value => Some(schema::metadata(value)?),
    };
    Ok(EndpointRequest {
        url,
        enabled_events,
        description,
        api_version,
        disabled,
        metadata,
    })
}

/// `POST /v1/webhook_endpoints/{id}/rotate_secret`: the old secret's grace
/// period in seconds (default 24 h; 0 ends it at once).
pub fn rotate_request(body: &[u8]) -> Checked<i64> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(86_400);
    }
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &["expires_in"])?;
    match map.get("expires_in") {
        None | Some(Value::Null) => Ok(86_400),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|s| (0..=ROTATION_GRACE_MAX_SECS).contains(s))
            .ok_or_else(|| {
                FieldError::new(
                    "expires_in",
                    format!("expires_in is 0 to {ROTATION_GRACE_MAX_SECS} seconds"),
                )
            }),
        Some(_) => Err(FieldError::new("expires_in", "expires_in must be a number of seconds")),
    }
}

/// `POST /v1/events/{id}/resend`: the endpoint to send it to.
pub fn resend_request(body: &[u8]) -> Checked<String> {
    let map = schema::parse_object(body)?;
    schema::reject_unknown(&map, &["endpoint"])?;
    match map.get("endpoint") {
        Some(Value::String(id)) if id_ok(id, "we_") => Ok(id.clone()),
        None | Some(Value::Null) => Err(FieldError::missing("endpoint")),
        Some(_) => Err(FieldError::new(
            "endpoint",
            "endpoint must be a webhook endpoint id (we_…)",
        )),
    }
}

/// An id with `prefix` and letters or digits after it.
pub fn id_ok(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len()
        && id.len() <= 64
        && id.starts_with(prefix)
        && id[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `GET /v1/events` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub created: CreatedRange,
}

/// Parses the `GET /v1/events` query.
pub fn events_query(query: Option<&str>) -> Checked<(EventFilter, ListParams)> {
    let (mut filter, mut page) = (EventFilter::default(), ListParams::default());
    for (key, value) in schema::query_pairs(query) {
        if let Some(taken) = page.take(&key, &value).or_else(|| filter.created.take(&key, &value)) {
            taken?;
            continue;
        }
        match key.as_str() {
            "type" if value == "*" => filter.event_type = None,
            "type" => {
                if !EVENT_TYPES.contains(&value.as_str()) {
                    return Err(FieldError::new(
                        "type",
                        format!("type must be one of {}", EVENT_TYPES.join(", ")),
                    ));
                }
                filter.event_type = Some(value);
            }
            other => return Err(FieldError::new(other, format!("Received unknown parameter: {other}"))),
        }
    }
    Ok((filter, page))
}

/// Parses a list query that takes only the list parameters.
pub fn list_query(query: Option<&str>) -> Checked<ListParams> {
    let mut page = ListParams::default();
    for (key, value) in schema::query_pairs(query) {
        match page.take(&key, &value) {
            Some(taken) => taken?,
            None => {
                return Err(FieldError::new(
                    key.clone(),
                    format!("Received unknown parameter: {key}"),
                ));
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(&["whsec_a"], 1_000, body);
        assert_eq!(verify("whsec_a", &header, body, 1_100, 300), Ok(()));
        assert_eq!(verify("whsec_b", &header, body, 1_100, 300), Err(VerifyError::Mismatch));
        assert_eq!(
            verify("whsec_a", &header, b"{}", 1_100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verify("whsec_a", &header, body, 1_301, 300), Err(VerifyError::Stale));
        assert_eq!(
            verify("whsec_a", "v1=00", body, 1_000, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify("whsec_a", "t=1000,v1=zz", body, 1_000, 300),
            Err(VerifyError::Malformed)
        );
        let both = sign(&["whsec_new", "whsec_old"], 1_000, body);
        assert_eq!(verify("whsec_old", &both, body, 1_000, 300), Ok(()));
        assert_eq!(verify("whsec_new", &both, body, 1_000, 300), Ok(()));
    }

    #[test]
    fn endpoint_bodies() {
        let ok = endpoint_request(
            br#"{"url":"https://example.com/hook","enabled_events":["payout.failed"]}"#,
            false,
        )
        .unwrap();
        assert_eq!(ok.enabled_events, Some(vec!["payout.failed".to_string()]));
        let cases = [
            (r#"{"enabled_events":["*"]}"#, "url"),
            (r#"{"url":"ftp://x","enabled_events":["*"]}"#, "url"),
            (r#"{"url":"https://u:p@x/","enabled_events":["*"]}"#, "url"),
            (r#"{"url":"http://[","enabled_events":["*"]}"#, "url"),
            (r#"{"url":"http://x:80a/","enabled_events":["*"]}"#, "url"),
            (r#"{"url":"http://x/#top","enabled_events":["*"]}"#, "url"),
            (r#"{"url":"https://x/"}"#, "enabled_events"),
            (
                r#"{"url":"https://x/","enabled_events":["payout.lost"]}"#,
                "enabled_events",
            ),
            (
                r#"{"url":"https://x/","enabled_events":["*"],"api_version":"1999-01-01"}"#,
                "api_version",
            ),
            (
                r#"{"url":"https://x/","enabled_events":["*"],"disabled":true}"#,
                "disabled",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(
                endpoint_request(body.as_bytes(), false).unwrap_err().field,
                field,
                "{body}"
            );
        }
        assert_eq!(
            endpoint_request(br#"{"disabled":true}"#, true).unwrap().disabled,
            Some(true)
        );
        assert_eq!(rotate_request(b"").unwrap(), 86_400);
        assert_eq!(rotate_request(br#"{"expires_in":0}"#).unwrap(), 0);
        assert_eq!(
            rotate_request(br#"{"expires_in":9999999}"#).unwrap_err().field,
            "expires_in"
        );
        assert_eq!(resend_request(br#"{"endpoint":"we_1"}"#).unwrap(), "we_1");
    }
}
