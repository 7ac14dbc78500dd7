//! Edge decisions that need no I/O: routing, credential format, error bodies.

pub use nixo_api::access::KeyEnvironment;
pub use nixo_api::headers::{IDEMPOTENCY_KEY_LEN_MAX, idempotency_key_ok, request_id};
use nixo_api::schema::{FieldError, RouteMiss};
use std::borrow::Cow;

/// The Spin variables the component reads (declared in `spin.toml`).
pub mod variables {
    /// Base URL of the core (`http://127.0.0.1:8081`). Required.
    pub const CORE_URL: &str = "core_url";
    /// HMAC key shared with the core. Required, secret.
    pub const SIGNING_SECRET: &str = "gateway_signing_secret";
    /// Key/value store label (default `default`).
    pub const KV_STORE: &str = "kv_store";
    /// Key environments this endpoint serves (`sandbox,live`).
    pub const ENVIRONMENTS: &str = "environments";
    /// Default rate limits per environment (`"50/1"`: 50 per second).
    pub const RATE_LIMIT_SANDBOX: &str = "rate_limit_sandbox";
    pub const RATE_LIMIT_LIVE: &str = "rate_limit_live";
    /// Failed authentications allowed per client address (`"20/60"`).
    pub const AUTH_FAILURES_PER_ADDRESS: &str = "auth_failures_per_address";
    /// Requests per client address on the routes that take no key (`"100/1"`).
    pub const RATE_LIMIT_PUBLIC: &str = "rate_limit_public";
    /// Proxies (comma-separated IPs) whose `X-Forwarded-For` is believed.
    pub const TRUSTED_PROXIES: &str = "trusted_proxies";
    pub const ALL: [&str; 9] = [
        CORE_URL,
        SIGNING_SECRET,
        KV_STORE,
        ENVIRONMENTS,
        RATE_LIMIT_SANDBOX,
        RATE_LIMIT_LIVE,
        AUTH_FAILURES_PER_ADDRESS,
        RATE_LIMIT_PUBLIC,
        TRUSTED_PROXIES,
    ];
}

/// Largest request body the gateway forwards.
pub const BODY_LEN_MAX_BYTES: usize = 64 * 1024;
/// Most of an oversized request body read and dropped after answering 413,
/// so that a client still sending it reads the answer instead of a broken
/// pipe (a body larger than this is cut off).
pub const DRAIN_LEN_MAX_BYTES: usize = 16 << 20;
/// Shortest and longest random part of an API key after its prefix.
pub const KEY_SECRET_LEN_MIN: usize = 16;
pub const KEY_SECRET_LEN_MAX: usize = 128;

/// An error the edge answers itself, in the Nixo error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    pub status: u16,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub field: Option<Cow<'static, str>>,
}

impl EdgeError {
    const fn new(status: u16, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message: Cow::Borrowed(message),
            field: None,
        }
    }

    const fn with_field(status: u16, code: &'static str, message: &'static str, field: &'static str) -> Self {
        Self {
            status,
            code,
            message: Cow::Borrowed(message),
            field: Some(Cow::Borrowed(field)),
        }
    }

    /// 400 `invalid_request` naming the field.
    pub fn invalid(err: FieldError) -> Self {
        Self {
            status: 400,
            code: "invalid_request",
            message: Cow::Owned(err.message),
            field: Some(Cow::Owned(err.field)),
        }
    }

    /// `{"error":{"code":…,"message":…,"field":…}}`
    pub fn body(&self) -> String {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.as_ref().into());
        if let Some(field) = &self.field {
            error.insert("field".into(), field.as_ref().into());
        }
        serde_json::json!({ "error": error }).to_string()
    }
}

pub const ERR_NOT_FOUND: EdgeError = EdgeError::new(404, "resource_not_found", "Unrecognized request URL");
pub const ERR_NO_KEY: EdgeError = EdgeError::new(
    401,
    "invalid_api_key",
    "No API key provided: send Authorization: Bearer sk_sandbox_...",
);
pub const ERR_BAD_KEY: EdgeError = EdgeError::new(401, "invalid_api_key", "Invalid API key format");
pub const ERR_BODY_TOO_LARGE: EdgeError = EdgeError::with_field(
    413,
    "invalid_request",
    "Request body is larger than 65536 bytes",
    "body",
);
pub const ERR_CORE_UNAVAILABLE: EdgeError = EdgeError::new(
    502,
    "internal_error",
    "The payments core is unavailable; retry with backoff",
);
/// The core answered that a service it depends on (its database) is down.
pub const ERR_SERVICE_UNAVAILABLE: EdgeError = EdgeError::new(
    503,
    "service_unavailable",
    "The database is unavailable; retry with backoff (with the same Idempotency-Key)",
);
pub const ERR_MISCONFIGURED: EdgeError = EdgeError::new(500, "internal_error", "The gateway is misconfigured");

/// Deepest nesting of arrays and objects accepted in a JSON body.
pub const JSON_DEPTH_MAX: usize = 16;

pub const ERR_IDEMPOTENCY_KEY: EdgeError = EdgeError::with_field(
    400,
    "invalid_request",
    "Idempotency-Key must be 1 to 255 printable ASCII characters",
    "Idempotency-Key",
);
pub const ERR_JSON_TOO_DEEP: EdgeError = EdgeError::with_field(
    400,
    "invalid_request",
    "JSON body is nested deeper than 16 levels",
    "body",
);
pub const ERR_CONTENT_TYPE: EdgeError = EdgeError::with_field(
    400,
    "invalid_request",
    "Request bodies are JSON: send Content-Type: application/json",
    "Content-Type",
);
pub const ERR_METHOD_NOT_ALLOWED: EdgeError = EdgeError::new(405, "invalid_request", "Method not allowed for this URL");
pub const ERR_UNKNOWN_KEY: EdgeError = EdgeError::new(401, "invalid_api_key", "Invalid API key provided");
pub const ERR_EXPIRED_KEY: EdgeError =
    EdgeError::new(401, "invalid_api_key", "This API key has expired; use its replacement");
pub const ERR_WRONG_ENVIRONMENT: EdgeError = EdgeError::new(
    401,
    "invalid_api_key",
    "This API key belongs to another environment than this endpoint serves",
);
pub const ERR_SCOPE: EdgeError = EdgeError::new(
    403,
    "permission_denied",
    "This API key does not have the scope this request needs",
);
pub const ERR_RATE_LIMITED: EdgeError = EdgeError::new(
    429,
    "rate_limit_exceeded",
    "Too many requests for this API key; retry after the time in Retry-After",
);
pub const ERR_AUTH_FAILURES: EdgeError = EdgeError::new(
    429,
    "rate_limit_exceeded",
    "Too many failed authentications from this address; retry after the time in Retry-After",
);
pub const ERR_PUBLIC_RATE_LIMITED: EdgeError = EdgeError::new(
    429,
    "rate_limit_exceeded",
    "Too many requests from this address; retry after the time in Retry-After",
);
pub const ERR_KEY_STORE: EdgeError = EdgeError::new(
    503,
    "service_unavailable",
    "The gateway's key/value store is unavailable; retry with backoff",
);

/// 404 for an unknown path, 405 for a known path with another method.
pub fn route_error(miss: RouteMiss) -> EdgeError {
    match miss {
        RouteMiss::NotFound => ERR_NOT_FOUND,
        RouteMiss::MethodNotAllowed => ERR_METHOD_NOT_ALLOWED,
    }
}

/// A body's `Content-Type`, when given, is JSON (parameters such as
/// `charset` aside).
pub fn content_type_ok(header: Option<&str>) -> bool {
    header.is_none_or(|value| {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        media_type.eq_ignore_ascii_case("application/json")
    })
}

/// The deepest nesting of `[`/`{` in a JSON text, ignoring brackets inside
/// strings. Runs in one pass without parsing, so a hostile body cannot make
/// the edge recurse.
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Checks the shape of `Authorization: Bearer sk_{sandbox|live}_…` and
/// returns the environment its prefix claims and the key.
pub fn check_key_format(authorization: Option<&str>) -> Result<(KeyEnvironment, &str), EdgeError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ERR_NO_KEY)?;
    let (scheme, key) = value.split_once(' ').ok_or(ERR_BAD_KEY)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ERR_BAD_KEY);
    }
    let key = key.trim();
    let (environment, secret) = if let Some(s) = key.strip_prefix("sk_sandbox_") {
        (KeyEnvironment::Sandbox, s)
    } else if let Some(s) = key.strip_prefix("sk_live_") {
        (KeyEnvironment::Live, s)
    } else {
        return Err(ERR_BAD_KEY);
    };
    let len_ok = (KEY_SECRET_LEN_MIN..=KEY_SECRET_LEN_MAX).contains(&secret.len());
    if !len_ok || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ERR_BAD_KEY);
    }
    Ok((environment, key))
}

/// Response headers of the core that reach the client: everything but
/// hop-by-hop framing (the edge frames its own response) and the request
/// id (the edge sets its own).
pub fn relay_response_header(name: &str) -> bool {
    const NOT_RELAYED: [&str; 6] = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "request-id",
    ];
    !NOT_RELAYED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Where a request to the core goes, in the parts `wasi:http` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreTarget<'a> {
    pub https: bool,
    pub authority: &'a str,
    pub path_and_query: String,
}

/// Splits the core's base URL (`http://127.0.0.1:8081`, optionally with a
/// path prefix) and joins the client's path with query to it; `None` for a
/// URL that is not `http(s)://authority[/prefix]`.
pub fn core_target<'a>(core_url: &'a str, path_and_query: &str) -> Option<CoreTarget<'a>> {
    let (https, rest) = if let Some(rest) = core_url.strip_prefix("http://") {
        (false, rest)
    } else {
        (true, core_url.strip_prefix("https://")?)
    };
    let (authority, prefix) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['?', '#', '@', ' ']) {
        return None;
    }
    Some(CoreTarget {
        https,
        authority,
        path_and_query: format!("{}{}", prefix.trim_end_matches('/'), path_and_query),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats() {
        let good = "Bearer sk_sandbox_0123456789abcdefABCD";
        assert_eq!(
            check_key_format(Some(good)),
            Ok((KeyEnvironment::Sandbox, "sk_sandbox_0123456789abcdefABCD"))
        );
        assert_eq!(
            check_key_format(Some("bearer sk_live_0123456789abcdef")),
            Ok((KeyEnvironment::Live, "sk_live_0123456789abcdef"))
        );
        assert_eq!(check_key_format(None), Err(ERR_NO_KEY));
        assert_eq!(check_key_format(Some("  ")), Err(ERR_NO_KEY));
        for bad in [
            "sk_sandbox_0123456789abcdef",
            "Basic sk_sandbox_0123456789abcdef",
            "Bearer pk_sandbox_0123456789abcdef",
            "Bearer sk_sandbox_123",
            "Bearer sk_sandbox_0123456789abcdef!",
            "Bearer sk_test_0123456789abcdef",
        ] {
            assert_eq!(check_key_format(Some(bad)), Err(ERR_BAD_KEY), "{bad}");
        }
    }

    #[test]
    fn error_body_is_the_nixo_shape() {
        assert_eq!(
            ERR_BODY_TOO_LARGE.body(),
            r#"{"error":{"code":"invalid_request","message":"Request body is larger than 65536 bytes","field":"body"}}"#
        );
        assert!(ERR_NO_KEY.body().starts_with(r#"{"error":{"code":"invalid_api_key""#));
    }

    #[test]
    fn versions_keys_and_depth() {
        assert!(content_type_ok(None));
        assert!(content_type_ok(Some("application/json")));
        assert!(content_type_ok(Some("Application/JSON; charset=utf-8")));
        assert!(!content_type_ok(Some("application/x-www-form-urlencoded")));
        assert!(!content_type_ok(Some("text/plain")));
        assert!(idempotency_key_ok("order-7781"));
        assert!(!idempotency_key_ok(""));
        assert!(!idempotency_key_ok(&"k".repeat(256)));
        assert!(!idempotency_key_ok("with space"));
        assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(
            json_depth(br#"{"a":"[[[[{{{{"}"#),
            1,
            "brackets in strings do not count"
        );
        assert_eq!(
            json_depth(br#"{"a":"\"[["}"#),
            1,
            "escaped quotes stay inside the string"
        );
        assert_eq!(json_depth(&[b'['; 100]), 100);
    }

    #[test]
    fn hop_by_hop_headers_are_not_relayed() {
        assert!(relay_response_header("content-type"));
        assert!(relay_response_header("Idempotent-Replayed"));
        assert!(!relay_response_header("Transfer-Encoding"));
        assert!(!relay_response_header("request-id"));
    }

    #[test]
    fn core_urls_split_into_scheme_authority_and_path() {
        let target = |https, authority, path: &str| {
            Some(CoreTarget {
                https,
                authority,
                path_and_query: path.to_string(),
            })
        };
        assert_eq!(
            core_target("http://core/", "/v1/x?a=1"),
            target(false, "core", "/v1/x?a=1")
        );
        assert_eq!(
            core_target("http://127.0.0.1:8081", "/v1/balances"),
            target(false, "127.0.0.1:8081", "/v1/balances")
        );
        assert_eq!(
            core_target("https://api.internal:8443/nixo/", "/v1/x"),
            target(true, "api.internal:8443", "/nixo/v1/x")
        );
        for bad in ["core:8081", "ftp://core", "http://", "http:///v1", "http://user@core"] {
            assert_eq!(core_target(bad, "/v1/x"), None, "{bad}");
        }
    }
}
