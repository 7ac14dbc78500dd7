//! Group commit for SQLite: one thread owns the only ledger-writing
//! connection, takes every operation that is waiting (up to a bound), runs
//! them in one transaction and commits them together with one fsync.
//! A failed operation fails alone: the batch is rolled back and run again
//! with each operation in its own savepoint (the failed one rolls back to
//! it); callers hear back only after the commit that made their operation
//! durable.
//!
//! The thread talks to SQLite directly ([`Direct`]), so a statement costs
//! what SQLite takes to run it. The operations are the same code as on
//! PostgreSQL ([`apply`], over [`crate::sql_exec::Exec`]); on this
//! connection every statement answers at once, so each operation runs to
//! its end in one poll.

use super::{Faults, LedgerError, Queued, Reply, WriteOp, WriteOutcome, apply};
use crate::metrics::Stage;
use crate::sqlite_direct::Direct;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::sync::mpsc;

/// Operations committed together at most.
pub const GROUP_COMMIT_OPS_MAX: usize = 256;
/// After a batch with a failed operation (it ran twice: all together, then
/// each in its savepoint), how many batches go straight to savepoints: a
/// run of failures (a drained wallet under load) does not pay twice each.
pub const CAREFUL_BATCHES_AFTER_FAILURE: u32 = 16;
/// Operations waiting for the writer at most (back-pressure beyond).
pub const WRITE_QUEUE_LEN_MAX: usize = 4_096;
/// WAL pages past which the writer, right after a commit, copies the log
/// back into the database file itself (SQLite's passive autocheckpoint:
/// it never waits on a reader, and copies what no reader still needs).
/// Having copied everything, it starts the log over at its next
/// transaction, for free, when no reader is still on the old frames — so
/// under steady load the WAL stays at about this size and in the page
/// cache. A checkpoint from another thread never catches up with a writer
/// that commits without pause: the log grew until the restart below, and
/// that restart held every commit for 5–35 ms every ~400 ms at 2,500
/// transfers/s (open-loop p99 15–25 ms). Here each checkpoint copies at
/// most this much and costs the commit after it ≈ 1–4 ms (one fsync of the
/// database file); 256 pages cost 5 % of the throughput, 1,000 pages a
/// longer pause each.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 512;
/// How often the checkpointer thread runs its round (a passive checkpoint,
/// then the restart below when the log is still too long).
pub const WAL_CHECKPOINT_INTERVAL_MS: u64 = 200;
/// WAL size, in bytes of frames, past which the checkpointer restarts the
/// log: the backstop for when a reader keeps an old snapshot (a long
/// export) and the writer's own checkpoints cannot start the log over. A
/// restart waits for the writer's current commit and for readers on old
/// frames (at most [`crate::sqlite_direct::WAL_RESTART_WAIT_MS`], else it
/// gives up until the next round), copies the frames left, and the log
/// starts over — and is cut back to this size.
pub const WAL_RESTART_BYTES: i64 = 64 * 1024 * 1024;
/// Opens the writer's connection to `path` and starts its thread; the
/// thread ends when every sender is gone.
pub(super) fn spawn(path: &Path, faults: Faults, reruns: Arc<AtomicU64>) -> anyhow::Result<mpsc::Sender<Queued>> {
    let mut conn = Direct::open_writer(path)?;
    conn.control(&format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}"))
        .map_err(anyhow::Error::from)?;
    conn.control(&format!("PRAGMA journal_size_limit = {WAL_RESTART_BYTES}"))
        .map_err(anyhow::Error::from)?;
    let mut checkpointer = Direct::open_checkpointer(path)?;
    checkpointer
        .control(&format!("PRAGMA journal_size_limit = {WAL_RESTART_BYTES}"))
        .map_err(anyhow::Error::from)?;
    let (sender, receiver) = mpsc::channel(WRITE_QUEUE_LEN_MAX);
    std::thread::Builder::new()
        .name("nixo-ledger-writer".into())
        .spawn(move || run(conn, receiver, faults, reruns))?;
    let writer = sender.downgrade();
    std::thread::Builder::new()
        .name("nixo-wal-checkpointer".into())
        .spawn(move || {
            while writer.upgrade().is_some() {
                std::thread::sleep(std::time::Duration::from_millis(WAL_CHECKPOINT_INTERVAL_MS));
                if let Err(err) = checkpoint(&mut checkpointer) {
                    tracing::warn!(error = %err, "WAL checkpoint failed; trying again later");
                }
            }
        })?;
    Ok(sender)
}

/// One round of the checkpointer: a passive checkpoint (copies what no
/// reader still needs, never waits on the writer); when the log holds more
/// than [`WAL_RESTART_BYTES`], a restart after it.
fn checkpoint(conn: &mut Direct) -> Result<(), sqlx::Error> {
    let (rows, _) = conn.run("PRAGMA wal_checkpoint(PASSIVE)", &[])?;
    let frames = rows.first().map(|row| row.int(1)).transpose()?.unwrap_or(0);
    let (page, _) = conn.run("PRAGMA page_size", &[])?;
    let page_bytes = page.first().map(|row| row.int(0)).transpose()?.unwrap_or(4096);
    if frames.saturating_mul(page_bytes) > WAL_RESTART_BYTES {
        // (busy, frames, copied): busy when a reader kept an old snapshot
        // past the wait; this round's restart then gave up.
        let (rows, _) = conn.run("PRAGMA wal_checkpoint(RESTART)", &[])?;
        let outcome = match rows.first().map(|row| row.int(0)).transpose()? {
            Some(0) => "restarted",
            _ => "deferred",
        };
        metrics::counter!("nixo_ledger_wal_restarts_total", "outcome" => outcome).increment(1);
    }
    Ok(())
}

fn run(mut conn: Direct, mut queue: mpsc::Receiver<Queued>, faults: Faults, reruns: Arc<AtomicU64>) {
    let mut batch: Vec<(WriteOp, Reply)> = Vec::with_capacity(GROUP_COMMIT_OPS_MAX);
    // Batches left to commit the careful way after one whose operation failed.
    let mut careful_batches: u32 = 0;
    let take = |batch: &mut Vec<(WriteOp, Reply)>, (op, reply, queued_at): Queued| {
        Stage::LedgerQueue.done(queued_at);
        batch.push((op, reply));
    };
    while let Some(first) = queue.blocking_recv() {
        take(&mut batch, first);
        while batch.len() < GROUP_COMMIT_OPS_MAX {
            match queue.try_recv() {
                Ok(next) => take(&mut batch, next),
                Err(_) => break,
            }
        }
        let careful = careful_batches > 0;
        careful_batches = careful_batches.saturating_sub(1);
        let results = match commit(&mut conn, &batch, &faults, careful) {
            Ok(results) => results,
            // Not committed, and every operation would fail the same way.
            Err(Some(err)) if careful => refuse_all(&batch, &err),
            // The fast way did not commit: an operation failed (`None`), or
            // the transaction did (a full disk, failing I/O). The careful way
            // runs the batch again; the failed operation fails alone, and a
            // failed transaction is told to every caller.
            Err(_) => {
                reruns.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("nixo_ledger_batches_rerun_total").increment(1);
                careful_batches = CAREFUL_BATCHES_AFTER_FAILURE;
                match commit(&mut conn, &batch, &faults, true) {
                    Ok(results) => results,
                    Err(err) => refuse_all(&batch, &err.expect("the careful way fails only as a whole")),
                }
            }
        };
        metrics::counter!("nixo_ledger_group_commits_total").increment(1);
        metrics::counter!("nixo_ledger_group_commit_ops_total").increment(batch.len() as u64);
        for ((_, reply), result) in batch.drain(..).zip(results) {
            // The caller may have gone away; its operation is durable anyway.
            let _ = reply.send((result, Instant::now()));
        }
    }
}

/// Commits a batch in one transaction; answers each operation's result.
///
/// The fast way (`careful` false) runs the operations without savepoints (a
/// savepoint copies each page an operation changes into a statement journal
/// first); when one fails, nothing of the batch is kept and the answer is
/// `Err(None)`: the caller runs it again the careful way. An operation is a
/// function of the database it runs on, so running the others again gives
/// what they would have given. The careful way runs each operation in its
/// own savepoint, so that one that fails rolls back alone and the others
/// commit. Either way `Err(Some(error))` when the transaction itself failed
/// and nothing was kept.
fn commit(
    conn: &mut Direct,
    batch: &[(WriteOp, Reply)],
    faults: &Faults,
    careful: bool,
) -> Result<Vec<Result<WriteOutcome, LedgerError>>, Option<sqlx::Error>> {
    let abandon = |conn: &mut Direct, err: Option<sqlx::Error>| {
        // SQLite may have rolled the whole transaction back by itself
        // already (a full disk, failing I/O); this makes sure.
        conn.rollback();
        err
    };
    let began = Instant::now();
    conn.control("BEGIN IMMEDIATE")
        .map_err(|err| abandon(conn, Some(err)))?;
    let mut results = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        if careful {
            conn.control("SAVEPOINT ledger_op")
                .map_err(|err| abandon(conn, Some(err)))?;
        }
        let result = run_ready(apply::apply(conn, op));
        if careful {
            let end = if result.is_ok() {
                "RELEASE ledger_op"
            } else {
                "ROLLBACK TO ledger_op; RELEASE ledger_op"
            };
            conn.control(end).map_err(|err| abandon(conn, Some(err)))?;
        } else if result.is_err() {
            return Err(abandon(conn, None));
        }
        results.push(result);
    }
    if faults.take_for(batch.iter().map(|(op, _)| op)) {
        conn.rollback();
        return Ok(batch.iter().map(|_| Err(super::injected_fault())).collect());
    }
    Stage::LedgerApply.done(began);
    let committing = Instant::now();
    conn.control("COMMIT").map_err(|err| abandon(conn, Some(err)))?;
    Stage::LedgerCommit.done(committing);
    Ok(results)
}

/// Every operation of a batch that could not be committed hears why.
fn refuse_all(batch: &[(WriteOp, Reply)], err: &sqlx::Error) -> Vec<Result<WriteOutcome, LedgerError>> {
    tracing::error!(error = %err, "ledger group commit failed; every operation in it is refused");
    batch.iter().map(|_| Err(LedgerError::Db(clone_error(err)))).collect()
}

/// Runs an operation whose every statement answers at once (they all go to
/// [`Direct`]) to its end.
fn run_ready<T>(operation: impl Future<Output = Result<T, LedgerError>>) -> Result<T, LedgerError> {
    let mut operation = std::pin::pin!(operation);
    match operation.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(LedgerError::Invalid(
            "a ledger operation waited on the writer's connection",
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_that_would_wait_is_refused_not_hung() {
        let waits = async {
            tokio::task::yield_now().await;
            Ok::<(), LedgerError>(())
        };
        assert!(matches!(run_ready(waits), Err(LedgerError::Invalid(_))));
    }
}
