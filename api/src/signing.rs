//! The signature the gateway puts on every request it forwards to the core.
//!
//! The core refuses any request without a valid, fresh signature, so the only
//! way into the core is through the gateway. The signed text binds the
//! method, the path with query, a digest of the body, the principal the
//! edge authenticated (`key_id account_id environment`, empty for the
//! edge's own key lookups), the request id and a timestamp:
//!
//! ```text
//! nixo-gw-v1\n{unix_seconds}\n{METHOD}\n{path?query}\n{hex sha256(body)}\n{hex sha256(principal)}\n{request_id}
//! ```
//!
//! Header: `Nixo-Gateway-Signature: t=<unix_seconds>,v1=<hex hmac-sha256>`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header carrying the gateway signature.
pub const SIGNATURE_HEADER: &str = "nixo-gateway-signature";
/// Header carrying the request id generated at the edge.
pub const REQUEST_ID_HEADER: &str = "request-id";
/// Header carrying the principal the edge authenticated (signed).
pub const PRINCIPAL_HEADER: &str = "nixo-principal";
/// How far the core accepts a signature's timestamp from its own clock.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Smallest accepted signing secret, in bytes.
pub const SECRET_LEN_MIN_BYTES: usize = 32;

/// What the gateway signs.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    pub principal: &'a str,
    pub request_id: &'a str,
}

fn canonical(parts: &SignedParts<'_>, unix_secs: i64) -> String {
    format!(
        "nixo-gw-v1\n{unix_secs}\n{}\n{}\n{}\n{}\n{}",
        parts.method.to_ascii_uppercase(),
        parts.path_and_query,
        hex::encode(Sha256::digest(parts.body)),
        hex::encode(Sha256::digest(parts.principal.as_bytes())),
        parts.request_id,
    )
}

fn mac(secret: &[u8], text: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts any key");
    mac.update(text.as_bytes());
    mac
}

/// Builds the header value `t=<unix>,v1=<hex>`.
pub fn sign(secret: &[u8], parts: &SignedParts<'_>, unix_secs: i64) -> String {
    let tag = mac(secret, &canonical(parts, unix_secs)).finalize().into_bytes();
    format!("t={unix_secs},v1={}", hex::encode(tag))
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    Missing,
    Malformed,
    Stale,
    Mismatch,
}

/// Checks a header value against the request, in constant time.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    parts: &SignedParts<'_>,
    now_unix_secs: i64,
) -> Result<(), VerifyError> {
    let header = header.ok_or(VerifyError::Missing)?;
    let mut timestamp = None;
    let mut tag = None;
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => tag = hex::decode(v).ok(),
            _ => return Err(VerifyError::Malformed),
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return Err(VerifyError::Malformed);
    };
    if (now_unix_secs - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    mac(secret, &canonical(parts, timestamp))
        .verify_slice(&tag)
        .map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn parts(body: &[u8]) -> SignedParts<'_> {
        SignedParts {
            method: "POST",
            path_and_query: "/v1/payments/transfer",
            body,
            principal: "key_1 acct_1 sandbox",
            request_id: "req_1",
        }
    }

    #[test]
    fn a_signature_verifies_and_binds_every_part() {
        let header = sign(SECRET, &parts(b"{}"), 1_000);
        assert_eq!(verify(SECRET, Some(&header), &parts(b"{}"), 1_010), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&header), &parts(b"{ }"), 1_010),
            Err(VerifyError::Mismatch)
        );
        let mut other = parts(b"{}");
        other.principal = "key_1 acct_2 sandbox";
        assert_eq!(verify(SECRET, Some(&header), &other, 1_010), Err(VerifyError::Mismatch));
        let mut other = parts(b"{}");
        other.path_and_query = "/v1/balances";
        assert_eq!(verify(SECRET, Some(&header), &other, 1_010), Err(VerifyError::Mismatch));
        assert_eq!(
            verify(b"another secret, just as long....", Some(&header), &parts(b"{}"), 1_010),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn stale_missing_and_malformed_are_refused() {
        let header = sign(SECRET, &parts(b""), 1_000);
        assert_eq!(
            verify(SECRET, Some(&header), &parts(b""), 1_000 + SIGNATURE_TOLERANCE_SECS + 1),
            Err(VerifyError::Stale)
        );
        assert_eq!(verify(SECRET, None, &parts(b""), 1_000), Err(VerifyError::Missing));
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "t=1;v1=00"] {
            assert_eq!(
                verify(SECRET, Some(bad), &parts(b""), 1),
                Err(VerifyError::Malformed),
                "{bad:?}"
            );
        }
    }
}
