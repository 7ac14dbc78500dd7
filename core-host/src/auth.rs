//! API keys: generated at random, stored only as a keyed hash.
//!
//! `key_hash = HMAC-SHA256(pepper, key)`, where the pepper lives in the data
//! directory's secrets file, not in the database: a stolen database alone
//! does not allow offline guessing. Only a short display prefix is kept in
//! clear so people can tell keys apart.

use crate::db::Db;
use crate::error::ApiError;
use crate::ledger::Environment;
use hmac::{Hmac, Mac};
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

/// Creates and stores a key for `account_id`.
pub async fn create_key(
    db: &Db,
    hasher: &KeyHasher,
    account_id: &str,
    environment: Environment,
) -> anyhow::Result<NewKey> {
    let random = random_base62(KEY_RANDOM_LEN);
    let key = format!("{}{random}", prefix(environment));
    let display_prefix = format!("{}{}…", prefix(environment), &random[..KEY_DISPLAY_LEN]);
    let id = format!("key_{}", random_base62(16));
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, environment, key_hash, display_prefix, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(environment.as_str())
    .bind(hasher.hash(&key).to_vec())
    .bind(&display_prefix)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(&db.pool)
    .await?;
    Ok(NewKey {
        id,
        key,
        display_prefix,
    })
}

/// Resolves `Authorization: Bearer sk_…` to a principal.
pub async fn authenticate(db: &Db, hasher: &KeyHasher, authorization: Option<&str>) -> Result<Principal, ApiError> {
    let key = authorization
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or_else(|| ApiError::invalid_api_key("No API key provided: send Authorization: Bearer sk_sandbox_..."))?;
    let claimed = if key.starts_with("sk_sandbox_") {
        Environment::Sandbox
    } else if key.starts_with("sk_live_") {
        Environment::Live
    } else {
        return Err(ApiError::invalid_api_key("Invalid API key format"));
    };
    let row = sqlx::query(
        "SELECT id, account_id, environment FROM api_keys
             WHERE key_hash = $1 AND revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
    )
    .bind(hasher.hash(key).to_vec())
    .bind(chrono::Utc::now().timestamp_millis())
    .fetch_optional(&db.pool)
    .await?;
    let row = row.ok_or_else(|| ApiError::invalid_api_key("Invalid API key provided"))?;
    let environment: String = row.try_get(2)?;
    let environment = Environment::parse(&environment).filter(|e| *e == claimed);
    let environment = environment.ok_or_else(|| ApiError::invalid_api_key("Invalid API key provided"))?;
    Ok(Principal {
        key_id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        environment,
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
}

pub async fn list_keys(db: &Db) -> Result<Vec<KeyInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, account_id, environment, display_prefix, created_at_ms, revoked_at_ms, expires_at_ms
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
    let row = sqlx::query("SELECT account_id, environment FROM api_keys WHERE id = $1 AND revoked_at_ms IS NULL")
        .bind(key_id)
        .fetch_optional(&db.pool)
        .await?;
    let row = row.ok_or_else(|| anyhow::anyhow!("no active key {key_id}"))?;
    let account_id: String = row.try_get(0)?;
    let environment: String = row.try_get(1)?;
    let environment = Environment::parse(&environment).ok_or_else(|| anyhow::anyhow!("bad stored environment"))?;
    let new_key = create_key(db, hasher, &account_id, environment).await?;
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
