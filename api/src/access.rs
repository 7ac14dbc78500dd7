//! Who may call, how often: API key records cached at the edge, scopes,
//! environments and fixed-window rate limits. Pure logic; the component
//! does the key/value and HTTP calls.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How long a key record read from the core is trusted at the edge. A
/// revoked or expired key stops working at most this long after the change.
pub const KEY_CACHE_TTL_S: i64 = 5;
/// Default limits when the deployment sets none: requests per window.
pub const RATE_LIMIT_SANDBOX_DEFAULT: RateLimit = RateLimit { limit: 50, window_s: 1 };
pub const RATE_LIMIT_LIVE_DEFAULT: RateLimit = RateLimit {
    limit: 100,
    window_s: 1,
};
/// Largest window a limit may use (one day).
pub const RATE_WINDOW_MAX_S: u64 = 86_400;
/// How long the edge remembers that a key is unknown (or revoked), so a
/// repeated bad key costs a key/value read instead of a core lookup.
pub const NEGATIVE_KEY_CACHE_TTL_S: i64 = 30;
/// Default limit of failed authentications (no key, a malformed or unknown
/// key) per client address: past it, requests from that address without a
/// cached valid key get 429 before any core lookup.
pub const AUTH_FAILURES_PER_ADDRESS_DEFAULT: RateLimit = RateLimit {
    limit: 20,
    window_s: 60,
};
/// Default limit per client address on the routes that take no key
/// (provider callbacks, the API document).
pub const RATE_LIMIT_PUBLIC_DEFAULT: RateLimit = RateLimit {
    limit: 100,
    window_s: 1,
};
/// Client addresses are counted in this many slots (a keyed hash of the
/// address picks one), so the counters' space stays bounded however many
/// addresses a caller uses.
pub const ADDRESS_SLOTS: u64 = 65_536;
/// Path of the core's key resolution endpoint (signed, never public).
pub const RESOLVE_PATH: &str = "/internal/v1/keys/resolve";

/// The environment an API key belongs to, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnvironment {
    Sandbox,
    Live,
}

/// An API key as the edge knows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub account_id: String,
    pub environment: KeyEnvironment,
    pub scopes: Vec<String>,
    /// The key's own limit; `None`: the environment's default.
    pub rate_limit: Option<RateLimit>,
    pub expires_at_ms: Option<i64>,
    /// The account's pinned API version.
    pub api_version: Option<String>,
    /// When the core vouched for this record (Unix seconds).
    pub checked_at_s: i64,
}

impl KeyEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnvironment::Sandbox => "sandbox",
            KeyEnvironment::Live => "live",
        }
    }

    pub fn parse(text: &str) -> Option<KeyEnvironment> {
        match text {
            "sandbox" => Some(KeyEnvironment::Sandbox),
            "live" => Some(KeyEnvironment::Live),
            _ => None,
        }
    }
}

impl KeyRecord {
    /// The JSON the core answers and the edge caches.
    pub fn to_json(&self) -> Value {
        json!({
            "key_id": self.key_id,
            "account_id": self.account_id,
            "environment": self.environment.as_str(),
            "scopes": self.scopes,
            "rate_limit": self.rate_limit.map(|r| r.to_string()),
            "expires_at_ms": self.expires_at_ms,
            "api_version": self.api_version,
            "checked_at_s": self.checked_at_s,
        })
    }

    /// Reads what [`KeyRecord::to_json`] wrote (the core's answer, the
    /// edge's cache): `None` for anything else. The edge does this on every
    /// request with a cached key, so the fields are read straight into their
    /// types, not through a JSON value tree (a map, its hashing, a string
    /// copied per field).
    pub fn from_json(bytes: &[u8]) -> Option<KeyRecord> {
        #[derive(serde::Deserialize)]
        struct Wire {
            key_id: String,
            account_id: String,
            environment: String,
            scopes: Vec<String>,
            #[serde(default)]
            rate_limit: Option<String>,
            #[serde(default)]
            expires_at_ms: Option<i64>,
            #[serde(default)]
            api_version: Option<String>,
            #[serde(default)]
            checked_at_s: Option<i64>,
        }
        let wire: Wire = serde_json::from_slice(bytes).ok()?;
        let rate_limit = match wire.rate_limit {
            Some(text) => Some(RateLimit::parse(&text)?),
            None => None,
        };
        Some(KeyRecord {
            key_id: wire.key_id,
            account_id: wire.account_id,
            environment: KeyEnvironment::parse(&wire.environment)?,
            scopes: wire.scopes,
            rate_limit,
            expires_at_ms: wire.expires_at_ms,
            api_version: wire.api_version,
            checked_at_s: wire.checked_at_s.unwrap_or(0),
        })
    }

    /// Still within the time the edge may trust it without asking the core.
    pub fn fresh(&self, now_s: i64) -> bool {
        (0..KEY_CACHE_TTL_S).contains(&(now_s - self.checked_at_s))
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == "*")
    }

    /// The principal the core acts for: `key_id account_id environment`.
    pub fn principal(&self) -> String {
        format!("{} {} {}", self.key_id, self.account_id, self.environment.as_str())
    }
}

/// Where the edge caches the record of an API key: a keyed hash of the key,
/// so the store never holds a key in clear.
pub fn cache_key(secret: &[u8], api_key: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(b"nixo-edge-key-cache\0");
    mac.update(api_key.as_bytes());
    format!("apikey:{}", hex::encode(mac.finalize().into_bytes()))
}

/// What the edge caches for a key the core does not know.
pub fn negative_record(now_s: i64) -> String {
    format!("unknown:{now_s}")
}

/// Whether `cached` is a negative record still fresh at `now_s`.
pub fn negative_fresh(cached: &[u8], now_s: i64) -> bool {
    std::str::from_utf8(cached)
        .ok()
        .and_then(|text| text.strip_prefix("unknown:"))
        .and_then(|at| at.parse::<i64>().ok())
        .is_some_and(|at| now_s - at < NEGATIVE_KEY_CACHE_TTL_S && at <= now_s)
}

/// The client's address: the connecting peer (`peer`, as `ip:port` or an
/// IP), or, when the peer is one of `trusted_proxies`, the nearest address
/// in `X-Forwarded-For` that is not a trusted proxy. `None` when the peer is
/// unknown.
pub fn client_address(
    peer: Option<&str>,
    forwarded_for: Option<&str>,
    trusted_proxies: &[std::net::IpAddr],
) -> Option<std::net::IpAddr> {
    let peer = peer.and_then(parse_address)?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let Some(forwarded_for) = forwarded_for else {
        return Some(peer);
    };
    let mut nearest = peer;
    for hop in forwarded_for.rsplit(',') {
        match parse_address(hop.trim()) {
            Some(ip) if trusted_proxies.contains(&ip) => nearest = ip,
            Some(ip) => return Some(ip),
            // A malformed entry: nothing beyond it can be believed.
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

/// An IP from `ip`, `ip:port` or `[ipv6]:port`.
fn parse_address(text: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// `trusted_proxies` as configured: comma-separated IPs (bad entries are
/// ignored).
pub fn parse_proxies(text: &str) -> Vec<std::net::IpAddr> {
    text.split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

/// The counter of a client address (`None`: unknown peer) for `purpose`
/// (`authfail`, `public`) in one window: the address is hashed with the
/// deployment's secret into one of [`ADDRESS_SLOTS`] slots.
pub fn address_counter_key(
    secret: &[u8],
    purpose: &str,
    address: Option<std::net::IpAddr>,
    limit: RateLimit,
    index: u64,
) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(b"nixo-edge-address\0");
    mac.update(address.map(|a| a.to_string()).unwrap_or_default().as_bytes());
    let digest = mac.finalize().into_bytes();
    let slot = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % ADDRESS_SLOTS;
    format!("{purpose}:{slot}:{}:{index}", limit.window_s)
}

/// `limit` requests per `window_s` seconds; written `"100/1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub window_s: u64,
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.limit, self.window_s)
    }
}

impl RateLimit {
    pub fn parse(text: &str) -> Option<RateLimit> {
        let (limit, window_s) = text.trim().split_once('/')?;
        let limit: u64 = limit.trim().parse().ok().filter(|l| *l > 0)?;
        let window_s: u64 = window_s
            .trim()
            .parse()
            .ok()
            .filter(|w| (1..=RATE_WINDOW_MAX_S).contains(w))?;
        Some(RateLimit { limit, window_s })
    }
}

/// The fixed window a moment falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub index: u64,
    /// Seconds until the next window starts (at least 1).
    pub reset_s: u64,
}

pub fn window(limit: RateLimit, now_s: i64) -> Window {
    let now = now_s.max(0) as u64;
    let index = now / limit.window_s;
    Window {
        index,
        reset_s: ((index + 1) * limit.window_s - now).max(1),
    }
}

/// The counter of a key in one window.
pub fn counter_key(key_id: &str, limit: RateLimit, index: u64) -> String {
    format!("ratelimit:{key_id}:{}:{index}", limit.window_s)
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: RateLimit,
    pub remaining: u64,
    pub reset_s: u64,
}

/// Judges the request that brought the window's count to `count`.
pub fn decide(limit: RateLimit, window: Window, count: i64) -> RateDecision {
    let count = count.max(0) as u64;
    RateDecision {
        allowed: count <= limit.limit,
        limit,
        remaining: limit.limit.saturating_sub(count),
        reset_s: window.reset_s,
    }
}

impl RateDecision {
    /// `RateLimit-*` headers (IETF draft), sent on every response to a known
    /// key, plus `Retry-After` when refused.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("ratelimit-limit", self.limit.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_s.to_string()),
            (
                "ratelimit-policy",
                format!("{};w={}", self.limit.limit, self.limit.window_s),
            ),
        ];
        if !self.allowed {
            headers.push(("retry-after", self.reset_s.to_string()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            key_id: "key_1".into(),
            account_id: "acct_1".into(),
            environment: KeyEnvironment::Sandbox,
            scopes: vec!["balances:read".into()],
            rate_limit: Some(RateLimit { limit: 3, window_s: 60 }),
            expires_at_ms: Some(2_000),
            api_version: Some("2024-06-01".into()),
            checked_at_s: 100,
        }
    }

    #[test]
    fn the_client_address_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        // An untrusted peer's X-Forwarded-For is ignored.
        assert_eq!(
            client_address(Some("203.0.113.9:5000"), Some("1.2.3.4"), &[proxy]),
            ip("203.0.113.9")
        );
        // Behind a trusted proxy: the nearest untrusted hop.
        assert_eq!(
            client_address(Some("10.0.0.1:443"), Some("198.51.100.7, 1.2.3.4, 10.0.0.1"), &[proxy]),
            ip("1.2.3.4")
        );
        assert_eq!(client_address(Some("10.0.0.1:443"), None, &[proxy]), ip("10.0.0.1"));
        // A malformed hop stops the walk at the last believable address.
        assert_eq!(
            client_address(Some("10.0.0.1:443"), Some("1.2.3.4, junk"), &[proxy]),
            ip("10.0.0.1")
        );
        assert_eq!(client_address(Some("[::1]:80"), None, &[]), ip("::1"));
        assert_eq!(client_address(None, Some("1.2.3.4"), &[proxy]), None);
        assert_eq!(parse_proxies("10.0.0.1, bad ,::1"), vec![proxy, "::1".parse().unwrap()]);
    }

    #[test]
    fn negative_records_expire_and_addresses_share_bounded_slots() {
        let record = negative_record(100);
        assert!(negative_fresh(record.as_bytes(), 100 + NEGATIVE_KEY_CACHE_TTL_S - 1));
        assert!(!negative_fresh(record.as_bytes(), 100 + NEGATIVE_KEY_CACHE_TTL_S));
        assert!(!negative_fresh(br#"{"key_id":"k"}"#, 100));
        let limit = AUTH_FAILURES_PER_ADDRESS_DEFAULT;
        let a = address_counter_key(b"s", "authfail", "1.2.3.4".parse().ok(), limit, 7);
        assert_eq!(
            a,
            address_counter_key(b"s", "authfail", "1.2.3.4".parse().ok(), limit, 7)
        );
        assert_ne!(
            a,
            address_counter_key(b"t", "authfail", "1.2.3.4".parse().ok(), limit, 7)
        );
        let slot: u64 = a.split(':').nth(1).unwrap().parse().unwrap();
        assert!(slot < ADDRESS_SLOTS);
    }

    #[test]
    fn records_round_trip_and_age() {
        let r = record();
        assert_eq!(
            KeyRecord::from_json(r.to_json().to_string().as_bytes()),
            Some(r.clone())
        );
        assert!(r.fresh(100) && r.fresh(104));
        assert!(!r.fresh(105) && !r.fresh(99));
        assert!(!r.expired(1_999) && r.expired(2_000));
        assert!(r.has_scope("balances:read") && !r.has_scope("transfers:write"));
        assert_eq!(r.principal(), "key_1 acct_1 sandbox");
        assert_eq!(KeyRecord::from_json(b"{}"), None);
        // What the core leaves out (no limit of its own, no expiry, no pinned
        // version, not yet checked) reads as absent.
        let bare = br#"{"key_id":"key_1","account_id":"acct_1","environment":"live","scopes":["*"]}"#;
        let bare = KeyRecord::from_json(bare).unwrap();
        assert_eq!(
            (bare.rate_limit, bare.expires_at_ms, bare.api_version, bare.checked_at_s),
            (None, None, None, 0)
        );
        // Anything else is not a record: the edge asks the core again.
        for broken in [
            r#"{"key_id":"key_1","account_id":"acct_1","environment":"staging","scopes":[]}"#,
            r#"{"key_id":"key_1","account_id":"acct_1","environment":"live","scopes":"*"}"#,
            r#"{"key_id":"key_1","account_id":"acct_1","environment":"live","scopes":[],"rate_limit":"fast"}"#,
            r#"{"key_id":"key_1","account_id":"acct_1","environment":"live","scopes":[],"expires_at_ms":"soon"}"#,
            r#"unknown:1700000000"#,
        ] {
            assert_eq!(KeyRecord::from_json(broken.as_bytes()), None, "{broken}");
        }
    }

    #[test]
    fn cache_keys_hide_the_key() {
        let a = cache_key(b"secret-a", "sk_sandbox_x");
        assert!(a.starts_with("apikey:") && !a.contains("sk_sandbox"));
        assert_ne!(a, cache_key(b"secret-b", "sk_sandbox_x"));
        assert_eq!(a, cache_key(b"secret-a", "sk_sandbox_x"));
    }

    #[test]
    fn limits_parse_and_windows_count() {
        assert_eq!(
            RateLimit::parse("100/1"),
            Some(RateLimit {
                limit: 100,
                window_s: 1
            })
        );
        for bad in ["0/1", "1/0", "x/1", "1", "1/86401"] {
            assert_eq!(RateLimit::parse(bad), None, "{bad}");
        }
        let l = RateLimit { limit: 2, window_s: 60 };
        let w = window(l, 125);
        assert_eq!(w, Window { index: 2, reset_s: 55 });
        assert!(decide(l, w, 2).allowed);
        let refused = decide(l, w, 3);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.headers().contains(&("retry-after", "55".into())));
        assert!(!decide(l, w, 1).headers().iter().any(|(n, _)| *n == "retry-after"));
        assert_eq!(counter_key("key_1", l, 2), "ratelimit:key_1:60:2");
    }
}
