//! Edge decisions that need no I/O: routing, credential format, error bodies.

/// Largest request body the gateway forwards.
pub const BODY_LEN_MAX_BYTES: usize = 64 * 1024;
/// Shortest and longest random part of an API key after its prefix.
pub const KEY_SECRET_LEN_MIN: usize = 16;
pub const KEY_SECRET_LEN_MAX: usize = 128;

/// The environment an API key belongs to, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnvironment {
    Sandbox,
    Live,
}

/// An error the edge answers itself, in the Nixo error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
    pub field: Option<&'static str>,
}

impl EdgeError {
    const fn new(status: u16, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            field: None,
        }
    }

    /// `{"error":{"code":…,"message":…,"field":…}}`
    pub fn body(&self) -> String {
        let field = match self.field {
            Some(f) => format!(",\"field\":\"{f}\""),
            None => String::new(),
        };
        // Codes, messages and fields are static ASCII without quotes.
        format!(
            "{{\"error\":{{\"code\":\"{}\",\"message\":\"{}\"{field}}}}}",
            self.code, self.message
        )
    }
}

pub const ERR_NOT_FOUND: EdgeError = EdgeError::new(404, "resource_not_found", "Unrecognized request URL");
pub const ERR_NO_KEY: EdgeError = EdgeError::new(
    401,
    "invalid_api_key",
    "No API key provided: send Authorization: Bearer sk_sandbox_...",
);
pub const ERR_BAD_KEY: EdgeError = EdgeError::new(401, "invalid_api_key", "Invalid API key format");
pub const ERR_BODY_TOO_LARGE: EdgeError = EdgeError {
    status: 413,
    code: "invalid_request",
    message: "Request body is larger than 65536 bytes",
    field: Some("body"),
};
pub const ERR_CORE_UNAVAILABLE: EdgeError = EdgeError::new(
    502,
    "internal_error",
    "The payments core is unavailable; retry with backoff",
);
pub const ERR_MISCONFIGURED: EdgeError = EdgeError::new(500, "internal_error", "The gateway is misconfigured");

/// API versions served; the first is the default.
pub const SUPPORTED_VERSIONS: [&str; 1] = ["2025-01-01"];
/// Longest `Idempotency-Key` accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;
/// Deepest nesting of arrays and objects accepted in a JSON body.
pub const JSON_DEPTH_MAX: usize = 16;

pub const ERR_UNKNOWN_VERSION: EdgeError = EdgeError {
    status: 400,
    code: "invalid_request",
    message: "Unknown API version; supported: 2025-01-01",
    field: Some("Nixo-Version"),
};
pub const ERR_IDEMPOTENCY_KEY: EdgeError = EdgeError {
    status: 400,
    code: "invalid_request",
    message: "Idempotency-Key must be 1 to 255 printable ASCII characters",
    field: Some("Idempotency-Key"),
};
pub const ERR_JSON_TOO_DEEP: EdgeError = EdgeError {
    status: 400,
    code: "invalid_request",
    message: "JSON body is nested deeper than 16 levels",
    field: Some("body"),
};

/// The version a request asks for (`None`: the default applies).
pub fn check_version(header: Option<&str>) -> Result<(), EdgeError> {
    match header.map(str::trim) {
        None => Ok(()),
        Some(asked) if SUPPORTED_VERSIONS.contains(&asked) => Ok(()),
        Some(_) => Err(ERR_UNKNOWN_VERSION),
    }
}

/// An `Idempotency-Key`, when present, is 1 to 255 printable ASCII characters.
pub fn idempotency_key_ok(key: &str) -> bool {
    let key = key.trim();
    !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_LEN_MAX && key.bytes().all(|b| b.is_ascii_graphic())
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

/// Only the versioned API is served.
pub fn route(path: &str) -> Result<(), EdgeError> {
    if path.starts_with("/v1/") {
        Ok(())
    } else {
        Err(ERR_NOT_FOUND)
    }
}

/// Checks the shape of `Authorization: Bearer sk_{sandbox|live}_…`. Whether
/// the key exists is decided by the core from its keyed hash.
pub fn check_key_format(authorization: Option<&str>) -> Result<KeyEnvironment, EdgeError> {
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
    Ok(environment)
}

/// A request id: `req_` and 24 lower-case hex digits from 12 random bytes.
pub fn request_id(random: [u8; 12]) -> String {
    format!("req_{}", hex::encode(random))
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

/// Joins the core's base URL and the client's path with query.
pub fn forward_url(core_url: &str, path_and_query: &str) -> String {
    format!("{}{}", core_url.trim_end_matches('/'), path_and_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_v1_routes_pass() {
        assert_eq!(route("/v1/payments/transfer"), Ok(()));
        assert_eq!(route("/"), Err(ERR_NOT_FOUND));
        assert_eq!(route("/v2/x"), Err(ERR_NOT_FOUND));
        assert_eq!(route("/v1"), Err(ERR_NOT_FOUND));
    }

    #[test]
    fn key_formats() {
        let good = "Bearer sk_sandbox_0123456789abcdefABCD";
        assert_eq!(check_key_format(Some(good)), Ok(KeyEnvironment::Sandbox));
        assert_eq!(
            check_key_format(Some("bearer sk_live_0123456789abcdef")),
            Ok(KeyEnvironment::Live)
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
        assert_eq!(check_version(None), Ok(()));
        assert_eq!(check_version(Some("2025-01-01")), Ok(()));
        assert_eq!(check_version(Some("2019-01-01")), Err(ERR_UNKNOWN_VERSION));
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
    fn urls_join_without_double_slash() {
        assert_eq!(forward_url("http://core/", "/v1/x?a=1"), "http://core/v1/x?a=1");
    }
}
