//! Webhook endpoints: their rows, their sealed signing secrets, and the API
//! objects. Delivery (from the events outbox, signed, retried) is in
//! [`delivery`].

pub mod delivery;

use crate::db::{Bind, Db};
use crate::ledger::Environment;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use nixo_api::types::{EndpointStatus, ObjectType, WebhookEndpoint};
use serde_json::{Map, Value};
use sha2::Sha256;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Seals secrets at rest — webhook signing secrets, identity numbers —
/// (ChaCha20-Poly1305, a fresh random nonce per seal, the owner's id as
/// associated data so a sealed value cannot be moved to another row).
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The webhook secrets' sealer: its key is derived from the
    /// installation's pepper (never stored).
    pub fn from_pepper(pepper: &[u8; 32]) -> Sealer {
        Sealer::for_purpose(pepper, "nixo webhook secret sealing key v1")
    }

    /// A sealer whose key is derived from the pepper for one purpose (each
    /// purpose its own key: identity numbers, webhook secrets, …).
    pub fn for_purpose(pepper: &[u8; 32], purpose: &str) -> Sealer {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper).expect("any key length");
        mac.update(purpose.as_bytes());
        let key = mac.finalize().into_bytes();
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    pub fn seal(&self, endpoint_id: &str, secret: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                chacha20poly1305::aead::Payload {
                    msg: secret.as_bytes(),
                    aad: endpoint_id.as_bytes(),
                },
            )
            .expect("sealing a short secret cannot fail");
        format!("{}{}", hex::encode(nonce_bytes), hex::encode(sealed))
    }

    pub fn open(&self, endpoint_id: &str, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                chacha20poly1305::aead::Payload {
                    msg: body,
                    aad: endpoint_id.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

pub fn new_endpoint_id() -> String {
    format!("we_{}", crate::ids::base62(20))
}

pub fn new_attempt_id() -> String {
    format!("wha_{}", crate::ids::base62(20))
}

/// A new signing secret (shown to the client once).
pub fn new_secret() -> String {
    format!("whsec_{}", crate::ids::base62(32))
}

/// An endpoint as stored (secrets still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub account_id: String,
    pub environment: Environment,
    pub url: String,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    pub api_version: Option<String>,
    pub metadata: Map<String, Value>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_expires_at_ms: Option<i64>,
    pub failing_since_ms: Option<i64>,
    pub deleted: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

pub const COLUMNS: &str =
    "id, account_id, environment, url, description, enabled_events, api_version, metadata, status,
    disabled_reason, secret_sealed, previous_secret_sealed, previous_secret_expires_at_ms, failing_since_ms,
    deleted_at_ms, created_at_ms, updated_at_ms";

impl Endpoint {
    pub fn from_row(row: &AnyRow) -> Result<Endpoint, sqlx::Error> {
        let environment: String = row.try_get(2)?;
        let events: String = row.try_get(5)?;
        let metadata: String = row.try_get(7)?;
        let status: String = row.try_get(8)?;
        Ok(Endpoint {
            id: row.try_get(0)?,
            account_id: row.try_get(1)?,
            environment: Environment::parse(&environment)
                .ok_or_else(|| sqlx::Error::Protocol("unknown stored environment".into()))?,
            url: row.try_get(3)?,
            description: row.try_get(4)?,
            enabled_events: serde_json::from_str(&events).unwrap_or_default(),
            api_version: row.try_get(6)?,
            metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            enabled: status == "enabled",
            disabled_reason: row.try_get(9)?,
            secret_sealed: row.try_get(10)?,
            previous_secret_sealed: row.try_get(11)?,
            previous_secret_expires_at_ms: row.try_get(12)?,
            failing_since_ms: row.try_get(13)?,
            deleted: row.try_get::<Option<i64>, _>(14)?.is_some(),
            created_at_ms: row.try_get(15)?,
            updated_at_ms: row.try_get(16)?,
        })
    }

    /// Whether the endpoint wants events of this type.
    pub fn subscribes(&self, event_type: &str) -> bool {
        self.enabled_events.iter().any(|e| e == "*" || e == event_type)
    }

    /// The API object; `secret` only when it was just made.
    pub fn render(&self, secret: Option<&str>) -> WebhookEndpoint {
        WebhookEndpoint {
            id: self.id.clone(),
            object: ObjectType::WebhookEndpoint,
            url: self.url.clone(),
            description: self.description.clone(),
            enabled_events: self.enabled_events.clone(),
            api_version: self.api_version.clone(),
            status: if self.enabled {
                EndpointStatus::Enabled
            } else {
                EndpointStatus::Disabled
            },
            disabled_reason: self.disabled_reason.clone(),
            metadata: self.metadata.clone(),
            livemode: self.environment == Environment::Live,
            created: self.created_at_ms / 1000,
            secret: secret.map(str::to_string),
        }
    }
}

/// An endpoint by id, deleted ones too.
pub async fn load(db: &Db, id: &str) -> Result<Option<Endpoint>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    row.as_ref().map(Endpoint::from_row).transpose()
}

/// The live endpoints of an account that existed when an event was made.
pub async fn subscribed(
    db: &Db,
    account_id: &str,
    environment: &str,
    event_type: &str,
    created_at_ms: i64,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_endpoints
         WHERE account_id = $1 AND environment = $2 AND status = 'enabled' AND deleted_at_ms IS NULL
           AND created_at_ms <= $3"
    );
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .bind(environment)
        .bind(created_at_ms)
        .fetch_all(&db.pool)
        .await?;
    let endpoints = rows.iter().map(Endpoint::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(endpoints.into_iter().filter(|e| e.subscribes(event_type)).collect())
}

/// Binds for an `INSERT` of every column but the deleted mark.
pub fn insert_binds(e: &Endpoint) -> Vec<Bind> {
    vec![
        e.id.clone().into(),
        e.account_id.clone().into(),
        e.environment.as_str().into(),
        e.url.clone().into(),
        e.description.clone().into(),
        Value::from(e.enabled_events.clone()).to_string().into(),
        e.api_version.clone().into(),
        Value::Object(e.metadata.clone()).to_string().into(),
        (if e.enabled { "enabled" } else { "disabled" }).into(),
        e.disabled_reason.clone().into(),
        e.secret_sealed.clone().into(),
        e.previous_secret_sealed.clone().into(),
        e.previous_secret_expires_at_ms.into(),
        e.failing_since_ms.into(),
        e.created_at_ms.into(),
        e.updated_at_ms.into(),
    ]
}

pub const INSERT_SQL: &str = "INSERT INTO webhook_endpoints (id, account_id, environment, url, description,
        enabled_events, api_version, metadata, status, disabled_reason, secret_sealed, previous_secret_sealed,
        previous_secret_expires_at_ms, failing_since_ms, created_at_ms, updated_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Writes every mutable column of `e`.
pub async fn save(db: &Db, e: &Endpoint) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $2, description = $3, enabled_events = $4, api_version = $5,
             metadata = $6, status = $7, disabled_reason = $8, secret_sealed = $9, previous_secret_sealed = $10,
             previous_secret_expires_at_ms = $11, failing_since_ms = $12, updated_at_ms = $13
         WHERE id = $1",
    )
    .bind(e.id.as_str())
    .bind(e.url.as_str())
    .bind(e.description.as_deref())
    .bind(Value::from(e.enabled_events.clone()).to_string())
    .bind(e.api_version.as_deref())
    .bind(Value::Object(e.metadata.clone()).to_string())
    .bind(if e.enabled { "enabled" } else { "disabled" })
    .bind(e.disabled_reason.as_deref())
    .bind(e.secret_sealed.as_str())
    .bind(e.previous_secret_sealed.as_deref())
    .bind(e.previous_secret_expires_at_ms)
    .bind(e.failing_since_ms)
    .bind(e.updated_at_ms)
    .execute(&db.pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_endpoint() {
        let sealer = Sealer::from_pepper(&[7; 32]);
        let sealed = sealer.seal("we_1", "whsec_abc");
        assert!(!sealed.contains("whsec"));
        assert_eq!(sealer.open("we_1", &sealed).as_deref(), Some("whsec_abc"));
        assert_eq!(sealer.open("we_2", &sealed), None, "bound to its endpoint");
        assert_eq!(Sealer::from_pepper(&[8; 32]).open("we_1", &sealed), None);
        assert_ne!(sealer.seal("we_1", "whsec_abc"), sealed, "a fresh nonce each time");
    }
}
