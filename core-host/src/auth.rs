//! API keys: generated at random, stored only as a keyed hash.
//!
//! `key_hash = HMAC-SHA256(pepper, key)`, where the pepper lives in the data
//! directory's secrets file, not in the database: a stolen database alone
//! does not allow offline guessing. Only a short display prefix is kept in
//! clear so people can tell keys apart.

use crate::db::Db;
use crate::error::ApiError;
use crate::ledger::{Environment, Ledger, Statement};
use hmac::{Hmac, Mac};
use nixo_api::access::KeyEnvironment;
use nixo_api::access::{KeyRecord, RateLimit};
use nixo_api::{schema, versions};
use rand::Rng;
use sha2::Sha256;
use sqlx::Row;

/// Random characters after `sk_sandbox_` / `sk_live_` (≈ 190 bits, base62).
pub const KEY_RANDOM_LEN: usize = 32;
/// Characters of the random part shown in listings.
pub const KEY_DISPLAY_LEN: usize = 4;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Who is calling, resolved from a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: String,
    pub environment: Environment,
    pub key_id: String,
    /// A customer account of the key's platform the request acts for (the
    /// `Nixo-Account` header); the core checks it belongs to the platform.
    pub on_behalf: Option<String>,
}

/// Computes keyed hashes of API keys.
#[derive(Clone)]
pub struct KeyHasher {
    pepper: [u8; 32],
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

impl KeyHasher {
    pub fn new(pepper: [u8; 32]) -> Self {
        Self { pepper }
    }

    pub fn hash(&self, key: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.pepper).expect("any key length");
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn prefix(environment: Environment) -> &'static str {
    match environment {
        Environment::Sandbox => "sk_sandbox_",
        Environment::Live => "sk_live_",
    }
}

/// A new key in clear: shown once to its owner, then only its hash is kept.
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub display_prefix: String,
}

fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect()
}

/// What a key may do and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAccess {
    /// Route scopes (`transfers:write`, `balances:read`, …); `["*"]`: all.
    pub scopes: Vec<String>,
    /// The key's own limit; `None`: the edge's default for its environment.
    pub rate_limit: Option<RateLimit>,
}

impl Default for KeyAccess {
    fn default() -> Self {
        Self {
            scopes: vec!["*".to_string()],
            rate_limit: None,
        }
    }
}

impl KeyAccess {
    /// Checks scope names against the routes' scopes.
    pub fn new(scopes: Vec<String>, rate_limit: Option<RateLimit>) -> anyhow::Result<KeyAccess> {
        if scopes.is_empty() {
            return Ok(KeyAccess {
                rate_limit,
                ..KeyAccess::default()
            });
        }
        if let Some(unknown) = scopes
            .iter()
            .find(|s| *s != "*" && !schema::all_scopes().any(|k| k == s.as_str()))
        {
            let known: Vec<&str> = schema::all_scopes().collect();
            anyhow::bail!("unknown scope '{unknown}'; scopes are * or {}", known.join(", "));
        }
        Ok(KeyAccess { scopes, rate_limit })
    }
}

/// Creates and stores a key for `account_id`.
pub async fn create_key(
    db: &Db,
    hasher: &KeyHasher,
    account_id: &str,
    environment: Environment,
    access: &KeyAccess,
) -> anyhow::Result<NewKey> {
    let random = random_base62(KEY_RANDOM_LEN);
    let key = format!("{}{random}", prefix(environment));
    let display_prefix = format!("{}{}…", prefix(environment), &random[..KEY_DISPLAY_LEN]);
    let id = format!("key_{}", random_base62(16));
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, environment, key_hash, display_prefix, created_at_ms, scopes, rate_limit)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(environment.as_str())
    .bind(hasher.hash(&key).to_vec())
    .bind(&display_prefix)
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(access.scopes.join(" "))
    .bind(access.rate_limit.map(|r| r.to_string()))
    .execute(&db.pool)
    .await?;
    Ok(NewKey {
        id,
        key,
        display_prefix,
    })
}

/// Resolves an API key (in clear, as the edge received it) to what the edge
/// needs to admit requests. An account without a pinned API version is
/// pinned to the current one now: at its first authenticated request,
/// through the ledger's writer (on SQLite a pool connection would wait for
/// the write lock behind the writer's commits: over a second under load).
pub async fn resolve_key(ledger: &Ledger, hasher: &KeyHasher, key: &str) -> Result<KeyRecord, ApiError> {
    let db = &ledger.db;
    let unknown = || ApiError::invalid_api_key("Invalid API key provided");
    let claimed = if key.starts_with("sk_sandbox_") {
        Environment::Sandbox
    } else if key.starts_with("sk_live_") {
        Environment::Live
    } else {
        return Err(unknown());
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let row = sqlx::query(
        "SELECT k.id, k.account_id, k.environment, k.scopes, k.rate_limit, k.expires_at_ms, a.api_version
         FROM api_keys k JOIN accounts a ON a.id = k.account_id
         WHERE k.key_hash = $1 AND k.revoked_at_ms IS NULL AND (k.expires_at_ms IS NULL OR k.expires_at_ms > $2)",
    )
    .bind(hasher.hash(key).to_vec())
    .bind(now_ms)
    .fetch_optional(&db.pool)
    .await?;
    let row = row.ok_or_else(unknown)?;
    let environment: String = row.try_get(2)?;
    if Environment::parse(&environment) != Some(claimed) {
        return Err(unknown());
    }
    let account_id: String = row.try_get(1)?;
    let mut api_version: Option<String> = row.try_get(6)?;
    if api_version.is_none() {
        let pin = Statement::new(
            "UPDATE accounts SET api_version = $1 WHERE id = $2 AND api_version IS NULL RETURNING id",
            vec![versions::CURRENT.into(), account_id.as_str().into()],
        );
        ledger
            .write_statements(vec![pin])
            .await
            .map_err(|err| ApiError::from(crate::services::ServiceError::from(err)))?;
        api_version = pinned_version(db, &account_id).await?;
    }
    let scopes: String = row.try_get(3)?;
    let rate_limit: Option<String> = row.try_get(4)?;
    Ok(KeyRecord {
        key_id: row.try_get(0)?,
        account_id,
        environment: match claimed {
            Environment::Sandbox => KeyEnvironment::Sandbox,
            Environment::Live => KeyEnvironment::Live,
        },
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        rate_limit: rate_limit.as_deref().and_then(RateLimit::parse),
        expires_at_ms: row.try_get(5)?,
        api_version,
        checked_at_s: now_ms / 1000,
    })
}

/// The API version an account is pinned to, if any.
pub async fn pinned_version(db: &Db, account_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT api_version FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.flatten())
}

/// Pins an account to an API version (an upgrade, or a move back).
pub async fn pin_version(db: &Db, account_id: &str, version: &str) -> anyhow::Result<()> {
    let version = versions::supported(version).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown API version '{version}'; supported: {}",
            versions::SUPPORTED_VERSIONS.join(", ")
        )
    })?;
    let done = sqlx::query("UPDATE accounts SET api_version = $1 WHERE id = $2")
        .bind(version)
        .bind(account_id)
        .execute(&db.pool)
        .await?;
    anyhow::ensure!(done.rows_affected() == 1, "no account {account_id}");
    Ok(())
}

/// The principal the edge vouches for in its signed `nixo-principal`
/// header: `key_id account_id environment [on_behalf_account_id]`.
pub fn parse_principal(header: &str) -> Option<Principal> {
    let mut parts = header.split(' ');
    let (key_id, account_id, environment) = (parts.next()?, parts.next()?, parts.next()?);
    let on_behalf = parts.next().map(str::to_string);
    let on_behalf_ok = on_behalf.as_deref().is_none_or(nixo_api::accounts::account_id_ok);
    if parts.next().is_some() || key_id.is_empty() || account_id.is_empty() || !on_behalf_ok {
        return None;
    }
    Some(Principal {
        key_id: key_id.to_string(),
        account_id: account_id.to_string(),
        environment: Environment::parse(environment)?,
        on_behalf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_the_pepper_and_the_key() {
        let a = KeyHasher::new([1; 32]);
        let b = KeyHasher::new([2; 32]);
        assert_ne!(a.hash("sk_sandbox_x"), b.hash("sk_sandbox_x"));
        assert_ne!(a.hash("sk_sandbox_x"), a.hash("sk_sandbox_y"));
        assert_eq!(a.hash("sk_sandbox_x"), a.hash("sk_sandbox_x"));
        assert_eq!(format!("{a:?}"), "KeyHasher(<redacted>)");
    }

    #[test]
    fn principals_parse_strictly() {
        let p = parse_principal("key_1 acct_1 sandbox").unwrap();
        assert_eq!((p.key_id.as_str(), p.account_id.as_str()), ("key_1", "acct_1"));
        assert_eq!(p.environment, Environment::Sandbox);
        for bad in [
            "",
            "key_1 acct_1",
            "key_1 acct_1 test",
            "key_1 acct_1 live x",
            "key_1 acct_1 live acct_2 acct_3",
            " acct_1 live",
        ] {
            assert_eq!(parse_principal(bad), None, "{bad:?}");
        }
        let acting = parse_principal("key_1 acct_1 live acct_2").unwrap();
        assert_eq!(acting.on_behalf.as_deref(), Some("acct_2"));
    }

    #[test]
    fn scopes_must_name_routes() {
        assert_eq!(KeyAccess::new(vec![], None).unwrap().scopes, vec!["*"]);
        assert!(KeyAccess::new(vec!["balances:read".into()], None).is_ok());
        assert!(KeyAccess::new(vec!["balances:write".into()], None).is_err());
    }

    #[test]
    fn random_keys_are_base62_of_the_right_length() {
        let k = random_base62(KEY_RANDOM_LEN);
        assert_eq!(k.len(), KEY_RANDOM_LEN);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(k, random_base62(KEY_RANDOM_LEN));
    }
}

/// A key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub account_id: String,
    pub environment: String,
    pub display_prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub scopes: String,
    pub rate_limit: Option<String>,
}

pub async fn list_keys(db: &Db) -> Result<Vec<KeyInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, account_id, environment, display_prefix, created_at_ms, revoked_at_ms, expires_at_ms, scopes,
                rate_limit
         FROM api_keys ORDER BY created_at_ms, id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(KeyInfo {
                id: r.try_get(0)?,
                account_id: r.try_get(1)?,
                environment: r.try_get(2)?,
                display_prefix: r.try_get(3)?,
                created_at_ms: r.try_get(4)?,
                revoked_at_ms: r.try_get(5)?,
                expires_at_ms: r.try_get(6)?,
                scopes: r.try_get(7)?,
                rate_limit: r.try_get(8)?,
            })
        })
        .collect()
}

/// Revokes a key at once; `false` when no active key has that id.
pub async fn revoke_key(db: &Db, key_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
        .bind(chrono::Utc::now().timestamp_millis())
        .bind(key_id)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a key: a new key for the same account and environment, and the
/// old one stops working after `grace_ms`.
pub async fn roll_key(db: &Db, hasher: &KeyHasher, key_id: &str, grace_ms: i64) -> anyhow::Result<NewKey> {
    let row = sqlx::query(
        "SELECT account_id, environment, scopes, rate_limit FROM api_keys WHERE id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(key_id)
    .fetch_optional(&db.pool)
    .await?;
    let row = row.ok_or_else(|| anyhow::anyhow!("no active key {key_id}"))?;
    let account_id: String = row.try_get(0)?;
    let environment: String = row.try_get(1)?;
    let environment = Environment::parse(&environment).ok_or_else(|| anyhow::anyhow!("bad stored environment"))?;
    let scopes: String = row.try_get(2)?;
    let rate_limit: Option<String> = row.try_get(3)?;
    let access = KeyAccess {
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        rate_limit: rate_limit.as_deref().and_then(RateLimit::parse),
    };
    let new_key = create_key(db, hasher, &account_id, environment, &access).await?;
    sqlx::query("UPDATE api_keys SET expires_at_ms = $1 WHERE id = $2")
        .bind(chrono::Utc::now().timestamp_millis() + grace_ms.max(0))
        .bind(key_id)
        .execute(&db.pool)
        .await?;
    Ok(new_key)
}

/// The first account of an environment (the sandbox account on a fresh install).
pub async fn default_account(db: &Db, environment: Environment) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT id FROM accounts WHERE environment = $1 ORDER BY created_at_ms, id LIMIT 1")
        .bind(environment.as_str())
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}
