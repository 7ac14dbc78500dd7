//! Idempotency records: the lock a request holds while it runs, then the
//! answer its retries get back.
//!
//! One row per (environment, account, key). [`begin`] inserts it with
//! `ON CONFLICT DO NOTHING` — whoever inserts holds the key under a lease;
//! everyone else reads the row and is told to replay, to wait (in progress),
//! or that the key was used for another request. A request that died holding
//! the key leaves a lease that runs out; the next retry takes the key over
//! (fenced on the old lease), and the ledger's own transaction identity
//! (derived from the same key) still stops a second application. The row
//! lives [`RETENTION_MS`] and is then purged by a job.
//!
//! Nothing here knows HTTP: the API layer hands in a request hash and hands
//! back a status, headers and body to store.
//!
//! On SQLite, [`Store`] puts an in-process front before the table
//! ([`front`]): the server is the database's only user, so it decides keys
//! in memory and writes answers behind. On PostgreSQL (replicas) the table
//! row is the lock.
//!
//! The rows are written through the database's relaxed pool (commits that
//! do not wait for the disk flush): a record lost to a power cut only lets
//! a retry run again, and the ledger recognises the retry by the identity it
//! derives from the same key. That keeps the layer off the fsync path.

mod front;

use crate::db::{Backend, Db};
use crate::ledger::Environment;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::sync::Arc;

/// How long a stored answer is replayed (Stripe keeps keys 24 h).
pub const RETENTION_MS: i64 = 24 * 3_600_000;
/// How long a request holds its key in the in-process front (SQLite)
/// before a retry may take it over (a holder there dies only with its
/// process, and a restart frees every key the process held).
pub const LEASE_MS: i64 = 60_000;
/// How long a request holds its key in the table (PostgreSQL, replicas)
/// without renewing it: a replica killed mid-request frees its keys this
/// soon, so clients retrying the request elsewhere are not kept waiting.
pub const TABLE_LEASE_MS: i64 = 10_000;
/// How often a running request renews its lease in the table.
pub const TABLE_LEASE_RENEW_MS: u64 = 2_500;
/// Rows deleted by one purge statement at most.
pub const PURGE_BATCH_MAX: i64 = 5_000;
/// The job that purges expired records, and how often it runs.
pub const PURGE_JOB: &str = "idempotency.purge";
pub const PURGE_INTERVAL_MS: i64 = 3_600_000;

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub environment: Environment,
    pub account_id: String,
    pub key: String,
}

/// An answer as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Proof of holding a key: completing or releasing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    scope: Scope,
    token: String,
}

/// What a request with a key should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run the request; this lease holds the key.
    Proceed(Lease),
    /// The request was answered before: send this again.
    Replay(StoredResponse),
    /// The same request is running now.
    InProgress,
    /// The key was used for a different request.
    Reused,
}

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// What identifies a request under a key: its method, path with query and body.
pub fn request_hash(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path_and_query.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// The idempotency records of one database.
#[derive(Clone)]
pub struct Store {
    db: Db,
    front: Option<Arc<front::Front>>,
}

impl Store {
    /// Opens the store of `ledger`'s database; on SQLite, loads the live
    /// keys into the front, whose answers are written through the ledger's
    /// writer (one more operation in its group commit).
    pub async fn open(ledger: &crate::ledger::Ledger, now_ms: i64) -> Result<Store, sqlx::Error> {
        let db = ledger.db.clone();
        let front = match db.backend {
            Backend::Sqlite => Some(Arc::new(front::Front::start(ledger, now_ms, LEASE_MS).await?)),
            Backend::Postgres => None,
        };
        Ok(Store { db, front })
    }

    /// Takes the key, or says why not.
    pub async fn begin(&self, scope: &Scope, request_hash: &str, now_ms: i64) -> Result<Begin, sqlx::Error> {
        let Some(front) = &self.front else {
            return begin_in_db(&self.db, scope, request_hash, now_ms).await;
        };
        match front.begin(scope, request_hash, now_ms, LEASE_MS) {
            front::Decision::Now(begun) => Ok(begun),
            front::Decision::ReadStored => read_stored(&self.db, scope, request_hash).await,
        }
    }

    /// Stores the answer; `false` when the lease was lost.
    pub async fn complete(&self, lease: &Lease, response: &StoredResponse) -> Result<bool, sqlx::Error> {
        match &self.front {
            Some(front) => Ok(front.complete(lease, response)),
            None => complete_in_db(&self.db, lease, response).await,
        }
    }

    /// Whether leases must be renewed while their request runs (the
    /// table's are short; the front's last while the process does).
    pub fn renews_leases(&self) -> bool {
        self.front.is_none()
    }

    /// Extends a running request's lease in the table; `false` when it was
    /// lost (the request ran past its lease and a retry took the key).
    pub async fn renew(&self, lease: &Lease, now_ms: i64) -> Result<bool, sqlx::Error> {
        if self.front.is_some() {
            return Ok(true);
        }
        let renewed = sqlx::query(
            "UPDATE idempotency_keys SET lease_until_ms = $1
             WHERE environment = $2 AND account_id = $3 AND idempotency_key = $4 AND lock_token = $5
               AND state = 'in_progress'",
        )
        .bind(now_ms + TABLE_LEASE_MS)
        .bind(lease.scope.environment.as_str())
        .bind(lease.scope.account_id.as_str())
        .bind(lease.scope.key.as_str())
        .bind(lease.token.as_str())
        .execute(&self.db.relaxed)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives the key back unused.
    pub async fn release(&self, lease: &Lease) -> Result<(), sqlx::Error> {
        match &self.front {
            Some(front) => {
                front.release(lease);
                Ok(())
            }
            None => release_in_db(&self.db, lease).await,
        }
    }

    /// Deletes records past retention; returns how many rows.
    pub async fn purge(&self, now_ms: i64) -> Result<u64, sqlx::Error> {
        if let Some(front) = &self.front {
            front.purge(now_ms);
        }
        purge_in_db(&self.db, now_ms).await
    }

    /// Waits until every stored answer is in the table.
    pub async fn flush(&self) {
        if let Some(front) = &self.front {
            front.flush().await;
        }
    }
}

/// A finished answer from the table (the front knows the key is done).
async fn read_stored(db: &Db, scope: &Scope, request_hash: &str) -> Result<Begin, sqlx::Error> {
    let Some(row) = fetch_row(db, scope).await? else {
        return Ok(Begin::InProgress);
    };
    let stored_hash: String = row.try_get(0)?;
    if stored_hash != request_hash {
        return Ok(Begin::Reused);
    }
    if row.try_get::<String, _>(1)? != "done" {
        return Ok(Begin::InProgress);
    }
    stored_answer(&row, 3)
}

/// A key's row: request_hash, state, lease_until_ms, response_status,
/// response_headers, response_body, created_at_ms.
async fn fetch_row(db: &Db, scope: &Scope) -> Result<Option<sqlx::any::AnyRow>, sqlx::Error> {
    sqlx::query(
        "SELECT request_hash, state, lease_until_ms, response_status, response_headers, response_body, created_at_ms
         FROM idempotency_keys WHERE environment = $1 AND account_id = $2 AND idempotency_key = $3",
    )
    .bind(scope.environment.as_str())
    .bind(scope.account_id.as_str())
    .bind(scope.key.as_str())
    .fetch_optional(&db.relaxed)
    .await
}

/// The answer in a row, from column `at` on (status, headers, body).
fn stored_answer(row: &sqlx::any::AnyRow, at: usize) -> Result<Begin, sqlx::Error> {
    let status: i64 = row.try_get(at)?;
    let headers: String = row.try_get(at + 1)?;
    let body: Vec<u8> = row.try_get(at + 2)?;
    Ok(Begin::Replay(StoredResponse {
        status: u16::try_from(status).unwrap_or(500),
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body,
    }))
}

/// Takes the key in the table, or says why not.
async fn begin_in_db(db: &Db, scope: &Scope, request_hash: &str, now_ms: i64) -> Result<Begin, sqlx::Error> {
    let token = new_token();
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (environment, account_id, idempotency_key, request_hash, state, lock_token,
             lease_until_ms, created_at_ms)
         VALUES ($1, $2, $3, $4, 'in_progress', $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(scope.environment.as_str())
    .bind(scope.account_id.as_str())
    .bind(scope.key.as_str())
    .bind(request_hash)
    .bind(token.as_str())
    .bind(now_ms + TABLE_LEASE_MS)
    .bind(now_ms)
    .execute(&db.relaxed)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Begin::Proceed(Lease {
            scope: scope.clone(),
            token,
        }));
    }
    // Purged between the two statements: the key is free; the retry takes it.
    let Some(row) = fetch_row(db, scope).await? else {
        return Ok(Begin::InProgress);
    };
    let created_at_ms: i64 = row.try_get(6)?;
    let expired = created_at_ms <= now_ms - RETENTION_MS;
    if expired {
        // Past retention but not purged yet: as good as absent.
        let fence = Fence {
            condition: "created_at_ms = $7",
            value: created_at_ms,
        };
        return take_over(db, scope, &token, request_hash, now_ms, fence).await;
    }
    let stored_hash: String = row.try_get(0)?;
    if stored_hash != request_hash {
        return Ok(Begin::Reused);
    }
    let state: String = row.try_get(1)?;
    if state == "done" {
        return stored_answer(&row, 3);
    }
    let lease_until_ms: i64 = row.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
    if lease_until_ms > now_ms {
        return Ok(Begin::InProgress);
    }
    // The holder stopped (crashed) without answering: take the key over.
    let fence = Fence {
        condition: "state = 'in_progress' AND lease_until_ms = $7",
        value: lease_until_ms,
    };
    take_over(db, scope, &token, request_hash, now_ms, fence).await
}

/// The state a row must still be in for a take-over (`$7` is `value`).
struct Fence {
    condition: &'static str,
    value: i64,
}

/// Re-arms a row for a new holder, if it is still in the state it was read in.
async fn take_over(
    db: &Db,
    scope: &Scope,
    token: &str,
    request_hash: &str,
    now_ms: i64,
    fence: Fence,
) -> Result<Begin, sqlx::Error> {
    let sql = format!(
        "UPDATE idempotency_keys SET state = 'in_progress', lock_token = $4, lease_until_ms = $5, request_hash = $6,
             response_status = NULL, response_headers = NULL, response_body = NULL,
             created_at_ms = CASE WHEN created_at_ms <= $8 THEN $9 ELSE created_at_ms END
         WHERE environment = $1 AND account_id = $2 AND idempotency_key = $3 AND {}",
        fence.condition
    );
    let done = sqlx::query(&sql)
        .bind(scope.environment.as_str())
        .bind(scope.account_id.as_str())
        .bind(scope.key.as_str())
        .bind(token)
        .bind(now_ms + TABLE_LEASE_MS)
        .bind(request_hash)
        .bind(fence.value)
        .bind(now_ms - RETENTION_MS)
        .bind(now_ms)
        .execute(&db.relaxed)
        .await?;
    Ok(if done.rows_affected() == 1 {
        Begin::Proceed(Lease {
            scope: scope.clone(),
            token: token.to_string(),
        })
    } else {
        Begin::InProgress
    })
}

/// Stores the answer; retries replay it from now on. `false` when the lease
/// was lost (another retry took the key over after it ran out).
async fn complete_in_db(db: &Db, lease: &Lease, response: &StoredResponse) -> Result<bool, sqlx::Error> {
    let headers = serde_json::to_string(&response.headers).expect("strings serialise");
    let done = sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $1, response_headers = $2, response_body = $3,
             lock_token = NULL, lease_until_ms = NULL
         WHERE environment = $4 AND account_id = $5 AND idempotency_key = $6 AND lock_token = $7",
    )
    .bind(i64::from(response.status))
    .bind(headers)
    .bind(response.body.clone())
    .bind(lease.scope.environment.as_str())
    .bind(lease.scope.account_id.as_str())
    .bind(lease.scope.key.as_str())
    .bind(lease.token.as_str())
    .execute(&db.relaxed)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the key back unused (the request was refused before it ran, or
/// failed in a way a retry should run again).
async fn release_in_db(db: &Db, lease: &Lease) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys
         WHERE environment = $1 AND account_id = $2 AND idempotency_key = $3 AND lock_token = $4
           AND state = 'in_progress'",
    )
    .bind(lease.scope.environment.as_str())
    .bind(lease.scope.account_id.as_str())
    .bind(lease.scope.key.as_str())
    .bind(lease.token.as_str())
    .execute(&db.relaxed)
    .await?;
    Ok(())
}

/// Deletes records past retention (finished ones, and abandoned locks);
/// returns how many.
async fn purge_in_db(db: &Db, now_ms: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (environment, account_id, idempotency_key) IN (
                 SELECT environment, account_id, idempotency_key FROM idempotency_keys
                 WHERE created_at_ms <= $1 AND (state = 'done' OR lease_until_ms < $2) LIMIT $3)",
        )
        .bind(now_ms - RETENTION_MS)
        .bind(now_ms)
        .bind(PURGE_BATCH_MAX)
        .execute(&db.relaxed)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < PURGE_BATCH_MAX as u64 {
            return Ok(total);
        }
    }
}
