//! The in-process front of the idempotency records on SQLite.
//!
//! A SQLite database is served by one process (the server takes a lock
//! file), so that process can know every live key: it loads them at start
//! and keeps each key it sees. Taking a key, finding a request in progress
//! or a different request under the key, and replaying a fresh answer are
//! then decided in memory; finished answers are written to the
//! `idempotency_keys` table behind the request, in batches (each one more
//! operation in the ledger writer's group commit), and a replay of
//! an older answer reads it back from there. A crash loses at most the
//! answers not yet written and the keys in progress — exactly what a crash
//! before the answer would lose — and the ledger recognises the retry.

use super::{Begin, Lease, RETENTION_MS, Scope, StoredResponse, new_token};
use crate::ledger::{Effect, Ledger, Statement};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Answers written by one transaction at most.
pub const WRITE_BATCH_MAX: usize = 512;

type Key = (&'static str, String, String);

fn key_of(scope: &Scope) -> Key {
    (scope.environment.as_str(), scope.account_id.clone(), scope.key.clone())
}

#[derive(Debug, Clone)]
enum Entry {
    InFlight {
        hash: String,
        token: String,
        lease_until_ms: i64,
        created_at_ms: i64,
    },
    Done {
        hash: String,
        created_at_ms: i64,
        /// Kept until written; then read back from the table when needed.
        response: Option<Arc<StoredResponse>>,
    },
}

impl Entry {
    fn created_at_ms(&self) -> i64 {
        match self {
            Entry::InFlight { created_at_ms, .. } | Entry::Done { created_at_ms, .. } => *created_at_ms,
        }
    }
}

enum Write {
    Done {
        scope: Scope,
        hash: String,
        created_at_ms: i64,
        response: Arc<StoredResponse>,
    },
    Flush(oneshot::Sender<()>),
}

pub(super) struct Front {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    writes: mpsc::UnboundedSender<Write>,
}

/// What `begin` decided, or that the answer must be read from the table.
pub(super) enum Decision {
    Now(Begin),
    ReadStored,
}

impl Front {
    /// Loads the live keys of the table and starts the writer.
    pub(super) async fn start(ledger: &Ledger, now_ms: i64, lease_ms: i64) -> Result<Front, sqlx::Error> {
        let db = &ledger.db;
        let rows = sqlx::query(
            "SELECT environment, account_id, idempotency_key, request_hash, state, lease_until_ms, created_at_ms
             FROM idempotency_keys WHERE created_at_ms > $1",
        )
        .bind(now_ms - RETENTION_MS)
        .fetch_all(&db.relaxed)
        .await?;
        let mut entries = HashMap::with_capacity(rows.len());
        for row in rows {
            let environment: String = row.try_get(0)?;
            let Some(environment) = crate::ledger::Environment::parse(&environment) else {
                continue;
            };
            let key = (environment.as_str(), row.try_get(1)?, row.try_get(2)?);
            let hash: String = row.try_get(3)?;
            let state: String = row.try_get(4)?;
            let created_at_ms: i64 = row.try_get(6)?;
            let entry = if state == "done" {
                Entry::Done {
                    hash,
                    created_at_ms,
                    response: None,
                }
            } else {
                // A holder from before this process: its lease decides.
                Entry::InFlight {
                    hash,
                    token: String::new(),
                    lease_until_ms: row.try_get::<Option<i64>, _>(5)?.unwrap_or(0).min(now_ms + lease_ms),
                    created_at_ms,
                }
            };
            entries.insert(key, entry);
        }
        let entries = Arc::new(Mutex::new(entries));
        let (writes, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(ledger.clone(), entries.clone(), queue));
        Ok(Front { entries, writes })
    }

    pub(super) fn begin(&self, scope: &Scope, request_hash: &str, now_ms: i64, lease_ms: i64) -> Decision {
        let mut entries = self.entries.lock().expect("idempotency front");
        let key = key_of(scope);
        let take = |entries: &mut HashMap<Key, Entry>, created_at_ms: i64| {
            let token = new_token();
            entries.insert(
                key.clone(),
                Entry::InFlight {
                    hash: request_hash.to_string(),
                    token: token.clone(),
                    lease_until_ms: now_ms + lease_ms,
                    created_at_ms,
                },
            );
            Decision::Now(Begin::Proceed(Lease {
                scope: scope.clone(),
                token,
            }))
        };
        let Some(entry) = entries.get(&key).cloned() else {
            return take(&mut entries, now_ms);
        };
        if entry.created_at_ms() <= now_ms - RETENTION_MS {
            // Past retention but not purged yet: as good as absent.
            return take(&mut entries, now_ms);
        }
        match entry {
            Entry::InFlight { hash, .. } | Entry::Done { hash, .. } if hash != request_hash => {
                Decision::Now(Begin::Reused)
            }
            Entry::Done {
                response: Some(response),
                ..
            } => Decision::Now(Begin::Replay((*response).clone())),
            Entry::Done { response: None, .. } => Decision::ReadStored,
            Entry::InFlight { lease_until_ms, .. } if lease_until_ms > now_ms => Decision::Now(Begin::InProgress),
            // The holder stopped (its request was dropped) without answering.
            Entry::InFlight { created_at_ms, .. } => take(&mut entries, created_at_ms),
        }
    }

    pub(super) fn complete(&self, lease: &Lease, response: &StoredResponse) -> bool {
        let mut entries = self.entries.lock().expect("idempotency front");
        let key = key_of(&lease.scope);
        let (hash, created_at_ms) = match entries.get(&key) {
            Some(Entry::InFlight {
                hash,
                token,
                created_at_ms,
                ..
            }) if *token == lease.token => (hash.clone(), *created_at_ms),
            _ => return false,
        };
        let response = Arc::new(response.clone());
        entries.insert(
            key,
            Entry::Done {
                hash: hash.clone(),
                created_at_ms,
                response: Some(response.clone()),
            },
        );
        let _ = self.writes.send(Write::Done {
            scope: lease.scope.clone(),
            hash,
            created_at_ms,
            response,
        });
        true
    }

    pub(super) fn release(&self, lease: &Lease) {
        let mut entries = self.entries.lock().expect("idempotency front");
        let key = key_of(&lease.scope);
        if matches!(entries.get(&key), Some(Entry::InFlight { token, .. }) if *token == lease.token) {
            entries.remove(&key);
        }
    }

    pub(super) fn purge(&self, now_ms: i64) {
        let mut entries = self.entries.lock().expect("idempotency front");
        entries.retain(|_, entry| match entry {
            Entry::Done { created_at_ms, .. } => *created_at_ms > now_ms - RETENTION_MS,
            Entry::InFlight {
                created_at_ms,
                lease_until_ms,
                ..
            } => *created_at_ms > now_ms - RETENTION_MS || *lease_until_ms >= now_ms,
        });
    }

    /// Waits until every answer stored so far is written.
    pub(super) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.writes.send(Write::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(
    ledger: Ledger,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    mut queue: mpsc::UnboundedReceiver<Write>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH_MAX);
    while queue.recv_many(&mut batch, WRITE_BATCH_MAX).await > 0 {
        let mut answers = Vec::new();
        let mut flushes = Vec::new();
        for write in batch.drain(..) {
            match write {
                Write::Done {
                    scope,
                    hash,
                    created_at_ms,
                    response,
                } => answers.push((scope, hash, created_at_ms, response)),
                Write::Flush(done) => flushes.push(done),
            }
        }
        loop {
            match write_answers(&ledger, &answers).await {
                Ok(()) => break,
                Err(err) => {
                    // Until written, the answers stay in memory and are replayed from there.
                    tracing::warn!(error = %err, answers = answers.len(), "writing idempotent answers failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
        {
            let mut entries = entries.lock().expect("idempotency front");
            for (scope, _, created, _) in &answers {
                if let Some(Entry::Done {
                    created_at_ms,
                    response,
                    ..
                }) = entries.get_mut(&key_of(scope))
                    && created_at_ms == created
                {
                    *response = None;
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_answers(
    ledger: &Ledger,
    answers: &[(Scope, String, i64, Arc<StoredResponse>)],
) -> Result<(), crate::ledger::LedgerError> {
    if answers.is_empty() {
        return Ok(());
    }
    let writes = answers
        .iter()
        .map(|(scope, hash, created_at_ms, response)| {
            Effect::Sql(Statement::new(
                "INSERT INTO idempotency_keys (environment, account_id, idempotency_key, request_hash, state,
                      response_status, response_headers, response_body, created_at_ms)
                  VALUES ($1, $2, $3, $4, 'done', $5, $6, $7, $8)
                  ON CONFLICT (environment, account_id, idempotency_key) DO UPDATE SET
                      request_hash = excluded.request_hash, state = 'done', lock_token = NULL, lease_until_ms = NULL,
                      response_status = excluded.response_status, response_headers = excluded.response_headers,
                      response_body = excluded.response_body, created_at_ms = excluded.created_at_ms",
                vec![
                    scope.environment.as_str().into(),
                    scope.account_id.as_str().into(),
                    scope.key.as_str().into(),
                    hash.as_str().into(),
                    i64::from(response.status).into(),
                    serde_json::to_string(&response.headers)
                        .expect("strings serialise")
                        .into(),
                    response.body.clone().into(),
                    (*created_at_ms).into(),
                ],
            ))
        })
        .collect();
    ledger
        .apply_effects(writes, chrono::Utc::now().timestamp_millis())
        .await
}
