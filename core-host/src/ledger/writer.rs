//! Group commit for SQLite: one task owns the only ledger-writing
//! connection, takes every operation that is waiting (up to a bound), runs
//! each inside its own savepoint, and commits them together with one fsync.
//! A failed operation rolls back to its savepoint and fails alone; callers
//! hear back only after the commit that made their operation durable.

use super::{Faults, LedgerError, Reply, WriteOp, apply};
use sqlx::{AnyConnection, Executor};
use tokio::sync::mpsc;

/// Operations committed together at most.
pub const GROUP_COMMIT_OPS_MAX: usize = 256;
/// Operations waiting for the writer at most (back-pressure beyond).
pub const WRITE_QUEUE_LEN_MAX: usize = 4_096;

pub(super) fn spawn(conn: AnyConnection, faults: Faults) -> mpsc::Sender<(WriteOp, Reply)> {
    let (sender, receiver) = mpsc::channel(WRITE_QUEUE_LEN_MAX);
    tokio::spawn(run(conn, receiver, faults));
    sender
}

async fn run(mut conn: AnyConnection, mut queue: mpsc::Receiver<(WriteOp, Reply)>, faults: Faults) {
    let mut batch: Vec<(WriteOp, Reply)> = Vec::with_capacity(GROUP_COMMIT_OPS_MAX);
    while queue.recv_many(&mut batch, GROUP_COMMIT_OPS_MAX).await > 0 {
        let results = commit_batch(&mut conn, &batch, &faults).await;
        for ((_, reply), result) in batch.drain(..).zip(results) {
            // The caller may have gone away; its operation is durable anyway.
            let _ = reply.send(result);
        }
    }
}

async fn commit_batch(
    conn: &mut AnyConnection,
    batch: &[(WriteOp, Reply)],
    faults: &Faults,
) -> Vec<Result<super::WriteOutcome, LedgerError>> {
    // Each statement is a round trip to the connection's worker thread (two
    // thread wake-ups, most of a statement's cost here), so the control
    // statements that need no answer of their own travel with their
    // neighbour: the transaction's start with the first savepoint, one
    // operation's end with the next one's savepoint, the last one's with
    // the commit.
    let refuse_all = |err: &sqlx::Error| -> Vec<Result<super::WriteOutcome, LedgerError>> {
        batch.iter().map(|_| Err(LedgerError::Db(clone_error(err)))).collect()
    };
    if let Err(err) = conn.execute("BEGIN IMMEDIATE; SAVEPOINT ledger_op").await {
        let _ = conn.execute("ROLLBACK").await;
        return refuse_all(&err);
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut end = String::new();
    for (i, (op, _)) in batch.iter().enumerate() {
        let result = apply::apply(conn, op).await;
        end = if result.is_ok() {
            "RELEASE ledger_op".to_string()
        } else {
            "ROLLBACK TO ledger_op; RELEASE ledger_op".to_string()
        };
        results.push(result);
        if i + 1 < batch.len() {
            end.push_str("; SAVEPOINT ledger_op");
            if let Err(err) = conn.execute(end.as_str()).await {
                // Which of the two failed is unknown: nothing of the batch
                // is kept, and every caller hears so.
                let _ = conn.execute("ROLLBACK").await;
                return refuse_all(&err);
            }
        }
    }
    if faults.take_for(batch.iter().map(|(op, _)| op)) {
        let _ = conn.execute("ROLLBACK").await;
        return batch.iter().map(|_| Err(super::injected_fault())).collect();
    }
    end.push_str("; COMMIT");
    match conn.execute(end.as_str()).await {
        Ok(_) => results,
        Err(err) => {
            let _ = conn.execute("ROLLBACK").await;
            tracing::error!(error = %err, "ledger group commit failed; every operation in it is refused");
            refuse_all(&err)
        }
    }
}

/// The commit's error, once per operation of the batch; a database that
/// cannot be written for now (full, failing I/O) stays recognisable as such.
fn clone_error(err: &sqlx::Error) -> sqlx::Error {
    let message = format!("ledger commit failed: {err}");
    if crate::db::unavailable(err) {
        sqlx::Error::Io(std::io::Error::other(message))
    } else {
        sqlx::Error::Protocol(message)
    }
}
