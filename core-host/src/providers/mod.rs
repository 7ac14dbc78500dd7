//! External rails, each a trait with one implementation per file, the wire
//! format kept apart from the mapping, and a sandbox beside it that speaks
//! the same protocol (so that pointing Nixo at the real endpoint is
//! configuration, not code).
//!
//! - [`bank`]: ISO 20022 credit transfers (`pain.001` out, `pain.002` back).
//! - [`mpesa`]: Safaricom Daraja B2C (OAuth, payment request, async result).
//! - [`kyc`]: an identity-verification provider (checks, polled to completion).

pub mod bank;
pub(crate) mod journal;
pub mod kyc;
pub mod mpesa;
pub mod xml;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for rails used as trait objects.
pub type RailFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RailError>> + Send + 'a>>;

/// How a rail call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RailError {
    /// The rail could not be reached or answered with a server error: try
    /// again later with the same reference.
    #[error("rail unavailable: {0}")]
    Transient(String),
    /// The rail refused the request for good (`code` is the rail's own).
    #[error("rail refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
}

/// Largest body read from a rail, in bytes.
pub const RAIL_BODY_LEN_MAX_BYTES: usize = 1024 * 1024;
/// How long one rail HTTP call may take.
pub const RAIL_TIMEOUT_MS: u64 = 15_000;

/// The HTTP client rails share (TLS with the web PKI roots for real
/// endpoints, plain HTTP for local sandboxes).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(RAIL_TIMEOUT_MS))
        .tcp_nodelay(true)
        .build()
        .expect("the HTTP client builds")
}

/// The ISO 13616 check: letters and digits, country and check digits, and
/// mod 97 of the rearranged number equal to 1.
pub fn iban_ok(iban: &str) -> bool {
    let iban = iban.trim();
    if !(15..=34).contains(&iban.len()) || !iban.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return false;
    }
    let b = iban.as_bytes();
    if !(b[0].is_ascii_uppercase() && b[1].is_ascii_uppercase() && b[2].is_ascii_digit() && b[3].is_ascii_digit()) {
        return false;
    }
    let rearranged = iban[4..].bytes().chain(iban[..4].bytes());
    let mut remainder: u32 = 0;
    for byte in rearranged {
        let value = if byte.is_ascii_digit() {
            u32::from(byte - b'0')
        } else {
            u32::from(byte - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn ibans() {
        assert!(super::iban_ok("MA64011519000001205000534921"));
        assert!(super::iban_ok("GB82WEST12345698765432"));
        assert!(!super::iban_ok("GB82WEST12345698765431"));
        assert!(!super::iban_ok("MA64000..."));
    }
}
