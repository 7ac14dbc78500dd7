//! The events outbox: `events` rows written inside the database transaction
//! of the change they describe, so an event exists exactly when its change
//! committed. Webhook delivery reads from here.
//!
//! An event: `id` (`evt_…`), `type`, `created`, `api_version` (the version
//! `data.object` is rendered in), `livemode`, and `data.object`, a snapshot
//! of the resource after the change.

use crate::db::Db;
use crate::ledger::Environment;
use nixo_api::versions;
use serde_json::{Value, json};
use sqlx::Row;

/// Event types emitted today.
pub const BALANCE_UPDATED: &str = "balance.updated";

/// An event id: `evt_`, a per-process sequence number (so that events of
/// one millisecond list in the order they were emitted: lists order by
/// creation time, then id) and 14 random base-62 characters.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
    let suffix: String = rand::random::<[u8; 14]>()
        .iter()
        .map(|b| BASE62[usize::from(*b) % BASE62.len()] as char)
        .collect();
    format!("evt_{n:010}{suffix}")
}

/// An event's stored `data`: `{"object": …}`, serialised straight from the
/// resource (no JSON value tree built and copied on the ledger writer).
#[derive(serde::Serialize)]
struct Data<'a, T: serde::Serialize + ?Sized> {
    object: &'a T,
}

/// Writes one event on `conn` (the transaction of the change); `object` is
/// the resource as the API renders it.
pub async fn emit<C: crate::sql_exec::Exec, T: serde::Serialize + ?Sized>(
    conn: &mut C,
    event_type: &str,
    account_id: &str,
    environment: Environment,
    object: &T,
    now_ms: i64,
) -> Result<String, sqlx::Error> {
    let id = new_id();
    let data = serde_json::to_string(&Data { object }).map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
    conn.execute(
        "INSERT INTO events (id, type, account_id, environment, api_version, data, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            id.as_str().into(),
            event_type.into(),
            account_id.into(),
            environment.as_str().into(),
            versions::CURRENT.into(),
            data.into(),
            now_ms.into(),
        ],
    )
    .await?;
    Ok(id)
}

/// An event as the API shows it.
pub fn render(row: &EventRow) -> Value {
    json!({
        "id": row.id,
        "object": "event",
        "type": row.event_type,
        "created": row.created_at_ms / 1000,
        "api_version": row.api_version,
        "livemode": row.environment == "live",
        "data": serde_json::from_str::<Value>(&row.data).unwrap_or(Value::Null),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: String,
    pub event_type: String,
    pub account_id: String,
    pub environment: String,
    pub api_version: String,
    pub data: String,
    pub created_at_ms: i64,
}

/// A row of `SELECT id, type, account_id, environment, api_version, data, created_at_ms`.
pub fn from_row(r: &sqlx::any::AnyRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: r.try_get(0)?,
        event_type: r.try_get(1)?,
        account_id: r.try_get(2)?,
        environment: r.try_get(3)?,
        api_version: r.try_get(4)?,
        data: r.try_get(5)?,
        created_at_ms: r.try_get(6)?,
    })
}

/// An account's events, oldest first (for delivery and tests).
pub async fn for_account(db: &Db, account_id: &str) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, type, account_id, environment, api_version, data, created_at_ms FROM events
         WHERE account_id = $1 ORDER BY created_at_ms, id",
    )
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}
