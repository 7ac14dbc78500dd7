//! Direct SQLite connections, used on the calling thread: the ledger
//! writer's (`ledger::writer`), and a few readers for the reads on a
//! request's path. Through sqlx every statement is a round trip to the
//! driver's own thread — two thread wake-ups that cost more than the
//! statement (≈ 60 µs each on the 2-core machine); here a statement costs
//! what SQLite takes to run it. A WAL reader never waits for the writer, so
//! a read runs on the async worker that asks for it, like any short
//! computation.

use crate::db::Bind;
use crate::sql_exec::{Cell, Exec, SqlRow};
use rusqlite::ffi;
use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Prepared statements each direct connection keeps (the ledger's own, the
/// services' effects, events, jobs and reads: a few dozen distinct ones).
pub const STATEMENT_CACHE_LEN: usize = 128;
/// How long a direct connection sleeps between tries of a database another
/// connection holds (for the writer: the decision log's and idempotency
/// records' batches). SQLite's own busy handler sleeps 1 ms, then 2, 5,
/// 10 …, which holds every waiting transfer for at least that long; the
/// other writers' transactions last tens of microseconds.
pub const BUSY_RETRY_US: u64 = 50;
/// How long a reader waits, at most, on a database it cannot read for now
/// (only a recovery or an exclusive lock does that in WAL mode) before the
/// request fails as unavailable.
pub const READER_BUSY_TIMEOUT_MS: u64 = 200;
/// Database pages the writer keeps in memory, in KiB (SQLite's default is
/// 2,000 KiB). A transfer inserts into indexes with random keys (the
/// idempotency identity, event ids); with a million rows their leaf pages
/// no longer fit the default, and each insert read its page back from the
/// file.
pub const WRITER_PAGE_CACHE_KIB: u64 = 32_768;
/// The writer's statement journals (one per operation's savepoint) stay
/// in memory: SQLite spills one larger than 64 KiB to a temporary file,
/// and an operation that dirties a few dozen pages did so every time —
/// a file created, written and deleted per transfer.
const WRITER_TEMP_STORE: &str = "PRAGMA temp_store = MEMORY";
/// Idle reader connections kept (about one per thread that reads at once).
pub const READERS_IDLE_MAX: usize = 8;

/// The writer's busy handler: tries again every [`BUSY_RETRY_US`]
/// for as long as any connection waits on a locked database
/// ([`crate::db::SQLITE_BUSY_TIMEOUT_MS`]), then gives up (`SQLITE_BUSY`).
fn writer_retry_when_busy(tries: i32) -> bool {
    metrics::counter!("nixo_ledger_writer_busy_waits_total").increment(1);
    retry_when_busy(tries, crate::db::SQLITE_BUSY_TIMEOUT_MS)
}

/// How long a WAL restart waits, at most, for readers still on old frames
/// (it holds the write lock meanwhile, so every commit waits as long):
/// a reader holding a snapshot for longer (an export) makes that round's
/// restart give up, and a later round tries again.
pub const WAL_RESTART_WAIT_MS: u64 = 10;

fn checkpointer_retry_when_busy(tries: i32) -> bool {
    retry_when_busy(tries, WAL_RESTART_WAIT_MS)
}

fn reader_retry_when_busy(tries: i32) -> bool {
    retry_when_busy(tries, READER_BUSY_TIMEOUT_MS)
}

fn retry_when_busy(tries: i32, timeout_ms: u64) -> bool {
    let waited_us = u64::try_from(tries).unwrap_or(0) * BUSY_RETRY_US;
    if waited_us >= timeout_ms * 1_000 {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_micros(BUSY_RETRY_US));
    true
}

/// Reader connections to one database file, opened when needed and kept
/// while idle (up to [`READERS_IDLE_MAX`]).
#[derive(Debug)]
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Direct>>,
}

impl Readers {
    pub fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs one read on this thread; answers its rows.
    pub fn read(&self, sql: &str, binds: &[Bind]) -> Result<Vec<SqlRow>, sqlx::Error> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => Direct::open_reader(&self.path)?,
        };
        let result = conn.run(sql, binds).map(|(rows, _)| rows);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < READERS_IDLE_MAX {
            idle.push(conn);
        }
        result
    }
}

/// A connection to the database file, used on the calling thread.
pub struct Direct(rusqlite::Connection);

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

impl Direct {
    /// The ledger writer's connection: durable settings, and a busy handler
    /// that waits out another writer for as long as any connection would.
    pub fn open_writer(path: &Path) -> anyhow::Result<Direct> {
        crate::sqlite_pcache::install();
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(&crate::db::sqlite_pragmas())?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_PAGE_CACHE_KIB}"))?;
        conn.execute_batch(WRITER_TEMP_STORE)?;
        conn.busy_handler(Some(writer_retry_when_busy))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_LEN);
        Ok(Direct(conn))
    }

    /// The checkpointer's connection: durable settings, and a busy handler
    /// that gives up after [`WAL_RESTART_WAIT_MS`].
    pub fn open_checkpointer(path: &Path) -> anyhow::Result<Direct> {
        crate::sqlite_pcache::install();
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(&crate::db::sqlite_pragmas())?;
        conn.busy_handler(Some(checkpointer_retry_when_busy))?;
        Ok(Direct(conn))
    }

    /// A reader's connection: it cannot write, and it gives up quickly on a
    /// database it cannot read (it runs on an async worker thread).
    fn open_reader(path: &Path) -> Result<Direct, sqlx::Error> {
        crate::sqlite_pcache::install();
        let open = || -> rusqlite::Result<rusqlite::Connection> {
            let conn = rusqlite::Connection::open(path)?;
            conn.execute_batch("PRAGMA query_only = ON")?;
            conn.busy_handler(Some(reader_retry_when_busy))?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_LEN);
            Ok(conn)
        };
        open().map(Direct).map_err(db_error)
    }

    /// A statement that binds nothing and answers nothing (transaction
    /// control).
    pub fn control(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.0.execute_batch(sql).map_err(db_error)
    }

    /// Ends whatever transaction is open, after a failure.
    pub fn rollback(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }

    /// Runs one statement; answers its rows and the rows it changed.
    pub fn run(&mut self, sql: &str, binds: &[Bind]) -> Result<(Vec<SqlRow>, u64), sqlx::Error> {
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
                Bind::Blob(v) => statement.raw_bind_parameter(index, v.as_slice()),
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

    fn last_insert_rowid(&self) -> Option<i64> {
        Some(self.0.last_insert_rowid())
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
        let conn = Direct::open_writer(&dir.path().join("writer.db")).unwrap();
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
    fn a_reader_locked_out_gives_up_after_its_limit_as_unavailable() {
        let (dir, mut writer) = open();
        writer.control("CREATE TABLE t (v INTEGER)").unwrap();
        drop(writer);
        // Another process holding the file exclusively (the only way a WAL
        // reader is kept out, with a recovery).
        let owner = rusqlite::Connection::open(dir.path().join("writer.db")).unwrap();
        owner
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO t (v) VALUES (1);")
            .unwrap();
        let readers = Readers::new(dir.path().join("writer.db"));
        let started = std::time::Instant::now();
        let err = readers.read("SELECT COUNT(*) FROM t", &[]).unwrap_err();
        let waited = started.elapsed();
        assert!(crate::db::unavailable(&err), "{err}");
        assert!(
            waited >= std::time::Duration::from_millis(READER_BUSY_TIMEOUT_MS),
            "gave up after {waited:?}"
        );
        assert!(waited < std::time::Duration::from_secs(10), "waited {waited:?}");
        owner.execute_batch("COMMIT; PRAGMA locking_mode = NORMAL;").unwrap();
        drop(owner);
        assert_eq!(
            readers.read("SELECT COUNT(*) FROM t", &[]).unwrap(),
            vec![SqlRow(vec![Cell::Int(1)])]
        );
    }

    #[test]
    fn readers_see_commits_and_cannot_write() {
        let (dir, mut writer) = open();
        writer.control("CREATE TABLE t (v INTEGER)").unwrap();
        let readers = Readers::new(dir.path().join("writer.db"));
        assert_eq!(
            readers.read("SELECT COUNT(*) FROM t", &[]).unwrap(),
            vec![SqlRow(vec![Cell::Int(0)])]
        );
        writer.run("INSERT INTO t (v) VALUES ($1)", &[Bind::Int(7)]).unwrap();
        assert_eq!(
            readers.read("SELECT v FROM t", &[]).unwrap(),
            vec![SqlRow(vec![Cell::Int(7)])]
        );
        let refused = readers.read("INSERT INTO t (v) VALUES (8)", &[]).unwrap_err();
        assert!(
            refused.to_string().contains("readonly") || refused.to_string().contains("read"),
            "{refused}"
        );
    }
}
