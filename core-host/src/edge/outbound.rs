//! Outbound host rules for the gateway, in the form Spin's
//! `allowed_outbound_hosts` uses: `scheme://host[:port]`, where the host may
//! be `*` or start with `*.`, and the port may be `*`. Without a port, the
//! scheme's default port (80, 443) is meant.

use anyhow::bail;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: String,
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

/// The outbound hosts a gateway may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    rules: Vec<Rule>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHosts {
    pub fn parse(patterns: &[String]) -> anyhow::Result<AllowedHosts> {
        let mut rules = Vec::new();
        for pattern in patterns {
            let Some((scheme, rest)) = pattern.split_once("://") else {
                bail!("outbound host '{pattern}' needs a scheme, such as https://api.example.com");
            };
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                bail!("outbound host '{pattern}': only http and https are supported");
            }
            let rest = rest.trim_end_matches('/');
            if rest.contains('/') {
                bail!("outbound host '{pattern}' must not have a path");
            }
            let (host, port) = match rest.rsplit_once(':') {
                Some((host, "*")) => (host, None),
                Some((host, port)) => match port.parse::<u16>() {
                    Ok(port) => (host, Some(port)),
                    Err(_) => bail!("outbound host '{pattern}' has a bad port"),
                },
                None => (rest, default_port(&scheme)),
            };
            if host.is_empty() {
                bail!("outbound host '{pattern}' has no host");
            }
            rules.push(Rule {
                scheme,
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(AllowedHosts { rules })
    }

    /// Whether a request to `uri` may leave.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let scheme = scheme.to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().or_else(|| default_port(&scheme));
        self.rules.iter().any(|rule| {
            let host_ok = match rule.host.as_str() {
                "*" => true,
                pattern => match pattern.strip_prefix("*.") {
                    Some(suffix) => host.ends_with(&format!(".{suffix}")),
                    None => pattern == host,
                },
            };
            rule.scheme == scheme && host_ok && (rule.port.is_none() || rule.port == port)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn uri(text: &str) -> http::Uri {
        text.parse().unwrap()
    }

    #[test]
    fn hosts_schemes_and_ports_must_match() {
        let a = allowed(&[
            "http://nixo-core.internal",
            "https://*.example.com",
            "http://10.0.0.1:*",
        ]);
        assert!(a.allows(&uri("http://nixo-core.internal/v1/balances")));
        assert!(a.allows(&uri("http://nixo-core.internal:80/v1")));
        assert!(!a.allows(&uri("http://nixo-core.internal:8080/v1")));
        assert!(!a.allows(&uri("https://nixo-core.internal/v1")));
        assert!(a.allows(&uri("https://api.example.com/x")));
        assert!(!a.allows(&uri("https://example.com.evil.net/x")));
        assert!(!a.allows(&uri("https://evilexample.com/x")));
        assert!(a.allows(&uri("http://10.0.0.1:9999/x")));
        assert!(!a.allows(&uri("http://10.0.0.2:9999/x")));
        assert!(!a.allows(&uri("/relative")));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["nixo-core", "ftp://x", "http://x/path", "http://x:port", "http://"] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
