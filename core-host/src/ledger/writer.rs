//! Group commit for SQLite: one thread owns the only ledger-writing
//! connection, takes every operation that is waiting (up to a bound), runs
//! each inside its own savepoint, and commits them together with one fsync.
//! A failed operation rolls back to its savepoint and fails alone; callers
//! hear back only after the commit that made their operation durable.
//!
//! The thread talks to SQLite directly (prepared statements cached on its
//! connection), so a statement costs what SQLite takes to run it: through
//! an async driver each one was a round trip to the driver's own thread,
//! two thread wake-ups that cost more than the statement. The operations
//! are the same code as on PostgreSQL ([`apply`], over [`Exec`]); on this
//! connection every statement answers at once, so each operation runs to
//! its end in one poll.

use super::{Faults, LedgerError, Reply, WriteOp, WriteOutcome, apply};
use crate::db::Bind;
use crate::sql_exec::{Cell, Exec, SqlRow};
use rusqlite::ffi;
use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

/// Operations committed together at most.
pub const GROUP_COMMIT_OPS_MAX: usize = 256;
/// Operations waiting for the writer at most (back-pressure beyond).
pub const WRITE_QUEUE_LEN_MAX: usize = 4_096;
/// Prepared statements the writer's connection keeps (the ledger's own, the
/// services' effects, events and jobs: a few dozen distinct statements).
pub const WRITER_STATEMENT_CACHE_LEN: usize = 128;

/// Opens the writer's connection to `path` and starts its thread; the
/// thread ends when every sender is gone.
pub(super) fn spawn(path: &Path, faults: Faults) -> anyhow::Result<mpsc::Sender<(WriteOp, Reply)>> {
    let conn = Direct::open(path)?;
    let (sender, receiver) = mpsc::channel(WRITE_QUEUE_LEN_MAX);
    std::thread::Builder::new()
        .name("nixo-ledger-writer".into())
        .spawn(move || run(conn, receiver, faults))?;
    Ok(sender)
}

fn run(mut conn: Direct, mut queue: mpsc::Receiver<(WriteOp, Reply)>, faults: Faults) {
    let mut batch: Vec<(WriteOp, Reply)> = Vec::with_capacity(GROUP_COMMIT_OPS_MAX);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < GROUP_COMMIT_OPS_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let results = commit_batch(&mut conn, &batch, &faults);
        for ((_, reply), result) in batch.drain(..).zip(results) {
            // The caller may have gone away; its operation is durable anyway.
            let _ = reply.send(result);
        }
    }
}

fn commit_batch(
    conn: &mut Direct,
    batch: &[(WriteOp, Reply)],
    faults: &Faults,
) -> Vec<Result<WriteOutcome, LedgerError>> {
    let refuse_all = |conn: &mut Direct, err: sqlx::Error| -> Vec<Result<WriteOutcome, LedgerError>> {
        conn.rollback();
        batch.iter().map(|_| Err(LedgerError::Db(clone_error(&err)))).collect()
    };
    if let Err(err) = conn.control("BEGIN IMMEDIATE") {
        return refuse_all(conn, err);
    }
    let mut results = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        if let Err(err) = conn.control("SAVEPOINT ledger_op") {
            return refuse_all(conn, err);
        }
        let result = run_ready(apply::apply(conn, op));
        let end = if result.is_ok() {
            "RELEASE ledger_op"
        } else {
            "ROLLBACK TO ledger_op; RELEASE ledger_op"
        };
        if let Err(err) = conn.control(end) {
            // SQLite rolled the whole transaction back by itself (a full
            // disk, failing I/O): nothing of the batch is kept, and every
            // caller hears so.
            return refuse_all(conn, err);
        }
        results.push(result);
    }
    if faults.take_for(batch.iter().map(|(op, _)| op)) {
        conn.rollback();
        return batch.iter().map(|_| Err(super::injected_fault())).collect();
    }
    match conn.control("COMMIT") {
        Ok(()) => results,
        Err(err) => {
            tracing::error!(error = %err, "ledger group commit failed; every operation in it is refused");
            refuse_all(conn, err)
        }
    }
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

/// The writer's own connection to the database file.
pub(crate) struct Direct(rusqlite::Connection);

impl Direct {
    fn open(path: &Path) -> anyhow::Result<Direct> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(&crate::db::sqlite_pragmas())?;
        conn.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE_LEN);
        Ok(Direct(conn))
    }

    /// A statement that binds nothing and answers nothing (transaction
    /// control).
    fn control(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.0.execute_batch(sql).map_err(db_error)
    }

    /// Ends whatever transaction is open, after a failure.
    fn rollback(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }

    /// Runs one statement; answers its rows and the rows it changed.
    fn run(&mut self, sql: &str, binds: &[Bind]) -> Result<(Vec<SqlRow>, u64), sqlx::Error> {
        let mut statement = self.0.prepare_cached(sql).map_err(db_error)?;
        for index in 1..=statement.parameter_count() {
            // `$N` (or `?N`) takes the Nth bind wherever it appears.
            let position = match statement.parameter_name(index) {
                Some(name) => name.get(1..).and_then(|n| n.parse::<usize>().ok()),
                None => Some(index),
            };
            let bind = position
                .and_then(|p| p.checked_sub(1))
                .and_then(|p| binds.get(p))
                .ok_or_else(|| sqlx::Error::Protocol(format!("statement parameter {index} has no value: {sql}")))?;
            match bind {
                Bind::Int(v) => statement.raw_bind_parameter(index, v),
                Bind::Text(v) => statement.raw_bind_parameter(index, v.as_str()),
                Bind::NullInt | Bind::NullText | Bind::ThisTransaction => {
                    statement.raw_bind_parameter(index, rusqlite::types::Null)
                }
            }
            .map_err(db_error)?;
        }
        let columns = statement.column_count();
        let mut found = Vec::new();
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(db_error)? {
            let mut cells = Vec::with_capacity(columns);
            for column in 0..columns {
                cells.push(match row.get_ref(column).map_err(db_error)? {
                    rusqlite::types::ValueRef::Null => Cell::Null,
                    rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                    rusqlite::types::ValueRef::Real(v) => Cell::Real(v),
                    rusqlite::types::ValueRef::Text(v) | rusqlite::types::ValueRef::Blob(v) => {
                        Cell::Text(String::from_utf8_lossy(v).into_owned())
                    }
                });
            }
            found.push(SqlRow(cells));
        }
        drop(rows);
        Ok((found, self.0.changes()))
    }
}

impl Exec for Direct {
    fn execute(&mut self, sql: &str, binds: &[Bind]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send {
        std::future::ready(self.run(sql, binds).map(|(_, changed)| changed))
    }

    fn fetch_optional(
        &mut self,
        sql: &str,
        binds: &[Bind],
    ) -> impl Future<Output = Result<Option<SqlRow>, sqlx::Error>> + Send {
        std::future::ready(self.run(sql, binds).map(|(rows, _)| rows.into_iter().next()))
    }

    fn fetch_all(
        &mut self,
        sql: &str,
        binds: &[Bind],
    ) -> impl Future<Output = Result<Vec<SqlRow>, sqlx::Error>> + Send {
        std::future::ready(self.run(sql, binds).map(|(rows, _)| rows))
    }
}

/// A SQLite failure on the writer's connection, as the rest of the program
/// sees database errors: by (extended) result code and constraint kind.
#[derive(Debug)]
struct DirectError {
    extended_code: i32,
    message: String,
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLite code {})", self.message, self.extended_code)
    }
}

impl std::error::Error for DirectError {}

impl sqlx::error::DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.extended_code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        match self.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                sqlx::error::ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => sqlx::error::ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => sqlx::error::ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

fn db_error(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => sqlx::Error::Database(Box::new(DirectError {
            extended_code: failure.extended_code,
            message: message.unwrap_or_else(|| failure.to_string()),
        })),
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Direct) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Direct::open(&dir.path().join("writer.db")).unwrap();
        (dir, conn)
    }

    #[test]
    fn numbered_placeholders_take_their_own_bind_wherever_they_appear() {
        let (_dir, mut conn) = open();
        let (rows, _) = conn
            .run(
                "SELECT $2, $1, $2 + 1, $3",
                &[Bind::Text("first".into()), Bind::Int(41), Bind::NullText],
            )
            .unwrap();
        assert_eq!(
            rows,
            vec![SqlRow(vec![
                Cell::Int(41),
                Cell::Text("first".into()),
                Cell::Int(42),
                Cell::Null
            ])]
        );
        let missing = conn.run("SELECT $2", &[Bind::Int(1)]).unwrap_err();
        assert!(missing.to_string().contains("has no value"), "{missing}");
    }

    #[test]
    fn constraint_failures_keep_their_kind_and_code() {
        let (_dir, mut conn) = open();
        conn.control("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE NOT NULL)")
            .unwrap();
        assert_eq!(
            conn.run("INSERT INTO t (k) VALUES ($1)", &[Bind::from("a")]).unwrap().1,
            1
        );
        let sqlx::Error::Database(duplicate) = conn
            .run("INSERT INTO t (k) VALUES ($1)", &[Bind::from("a")])
            .unwrap_err()
        else {
            panic!("a database error")
        };
        assert!(duplicate.is_unique_violation());
        assert_eq!(duplicate.code().as_deref(), Some("2067"));
        let sqlx::Error::Database(null) = conn
            .run("INSERT INTO t (k) VALUES ($1)", &[Bind::NullText])
            .unwrap_err()
        else {
            panic!("a database error")
        };
        assert_eq!(null.kind(), sqlx::error::ErrorKind::NotNullViolation);
    }

    #[test]
    fn an_operation_that_would_wait_is_refused_not_hung() {
        let waits = async {
            tokio::task::yield_now().await;
            Ok::<(), LedgerError>(())
        };
        assert!(matches!(run_ready(waits), Err(LedgerError::Invalid(_))));
    }
}
