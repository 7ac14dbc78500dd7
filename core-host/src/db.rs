//! The database handle: SQLite by default, PostgreSQL at scale, chosen by
//! the URL (`sqlite://path` or `postgres://…`). One code path for both,
//! through sqlx's `Any` driver; SQL uses `$N` placeholders, which both
//! backends accept.

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// How long a SQLite connection waits on a locked database before failing.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;
/// Connections in the pool (readers and non-ledger writes on SQLite).
pub const POOL_CONNECTIONS_MAX: u32 = 8;
/// How long to wait for a pooled connection. Also how long a request
/// waits when the database is down before its 503 `service_unavailable`
/// (the pool keeps trying to connect until then), so it is kept short.
pub const POOL_ACQUIRE_TIMEOUT_MS: u64 = 3_000;

/// Durable and safe settings applied to every SQLite connection: WAL with
/// `synchronous = FULL` (an acknowledged commit survives power loss).
pub(crate) fn sqlite_pragmas() -> String {
    sqlite_pragmas_with("FULL")
}

fn sqlite_pragmas_with(synchronous: &str) -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"
    )
}

/// Connections in the relaxed pool.
pub const RELAXED_POOL_CONNECTIONS_MAX: u32 = 4;

/// Migrations, embedded from `migrations/<backend>/<version>_<description>.sql`
/// by sqlx at build time; a new file there is a new migration.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    /// Connections whose commits do not wait for the disk flush (SQLite
    /// `synchronous = NORMAL` in WAL mode: durable across a process crash,
    /// not across power loss; PostgreSQL `synchronous_commit = off`). Only
    /// for records a lost commit cannot make wrong: idempotency records,
    /// whose loss only lets a retry run again into the ledger's own dedupe.
    pub relaxed: AnyPool,
    pub backend: Backend,
    url: String,
    /// Direct readers of the SQLite file, for the reads on a request's path
    /// ([`Db::read_all`]); `None` on PostgreSQL.
    readers: Option<std::sync::Arc<crate::sqlite_direct::Readers>>,
}

/// The file of a `sqlite://<path>[?…]` URL (`None` for other databases and
/// in-memory SQLite).
/// Whether a database error means the database cannot be reached or
/// written for now (rather than a bug or a constraint): connection and I/O
/// failures, an exhausted pool, PostgreSQL shutting down, restarting or out
/// of resources (SQLSTATE classes 08, 53, 57P, 58), SQLite full, busy,
/// unable to open or failing I/O.
pub fn unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.len() == 5 {
                // A PostgreSQL SQLSTATE.
                return ["08", "53", "57P", "58"].iter().any(|class| code.starts_with(class));
            }
            // A SQLite (extended) result code; the primary code is its low
            // byte: BUSY 5, LOCKED 6, IOERR 10, FULL 13, CANTOPEN 14.
            code.parse::<i64>()
                .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14))
        }
        _ => false,
    }
}

pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// `sqlite://<path>` for a file path.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

impl Db {
    /// Opens the database at `url`, creating a SQLite file if needed, and
    /// applies migrations.
    pub async fn open(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        crate::sqlite_pcache::install();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL (use sqlite://… or postgres://…)");
        };
        let options = AnyConnectOptions::from_str(url).context("parsing the database URL")?;
        // A connection that comes back still in a transaction is closed,
        // not reused (closing rolls the transaction back). SQLite rolls a
        // transaction back by itself on some errors (a full disk); the
        // driver's later ROLLBACK then fails and it still counts the
        // transaction as open, so the next transaction on that connection
        // would be a savepoint whose rollback leaves the write lock held.
        let pool = AnyPoolOptions::new()
            .max_connections(POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_millis(POOL_ACQUIRE_TIMEOUT_MS))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(sqlite_pragmas().as_str()).await?;
                    }
                    Ok(())
                })
            })
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(options)
            .await
            .context("connecting to the database")?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.context("applying database migrations")?;
        let relaxed = AnyPoolOptions::new()
            .max_connections(RELAXED_POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_millis(POOL_ACQUIRE_TIMEOUT_MS))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    let settings = match backend {
                        Backend::Sqlite => sqlite_pragmas_with("NORMAL"),
                        Backend::Postgres => "SET synchronous_commit = off".to_string(),
                    };
                    conn.execute(settings.as_str()).await?;
                    Ok(())
                })
            })
            .after_release(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(AnyConnectOptions::from_str(url).context("parsing the database URL")?)
            .await
            .context("connecting to the database")?;
        let readers = (backend == Backend::Sqlite)
            .then(|| sqlite_path(url))
            .flatten()
            .map(|file| std::sync::Arc::new(crate::sqlite_direct::Readers::new(file)));
        Ok(Db {
            pool,
            relaxed,
            backend,
            url: url.to_string(),
            readers,
        })
    }

    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Db> {
        Self::open(&sqlite_url(path)).await
    }

    /// The database file, on SQLite (`None` on PostgreSQL).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match self.backend {
            Backend::Sqlite => sqlite_path(&self.url),
            Backend::Postgres => None,
        }
    }

    /// A dedicated connection outside the pool.
    pub async fn dedicated_connection(&self) -> anyhow::Result<AnyConnection> {
        let mut conn = AnyConnectOptions::from_str(&self.url)?.connect().await?;
        if self.backend == Backend::Sqlite {
            conn.execute(sqlite_pragmas().as_str()).await?;
        }
        Ok(conn)
    }

    /// Runs one read: on SQLite on this thread through a direct reader (no
    /// hand-off to a driver thread), on PostgreSQL through the pool.
    pub async fn read_all(&self, sql: &str, binds: &[Bind]) -> Result<Vec<crate::sql_exec::SqlRow>, sqlx::Error> {
        match &self.readers {
            Some(readers) => readers.read(sql, binds),
            None => {
                let mut conn = self.pool.acquire().await?;
                crate::sql_exec::Exec::fetch_all(&mut *conn, sql, binds).await
            }
        }
    }

    /// [`Db::read_all`]'s first row, if any.
    pub async fn read_optional(
        &self,
        sql: &str,
        binds: &[Bind],
    ) -> Result<Option<crate::sql_exec::SqlRow>, sqlx::Error> {
        Ok(self.read_all(sql, binds).await?.into_iter().next())
    }

    /// [`Db::read_all`]'s first row; [`sqlx::Error::RowNotFound`] without one.
    pub async fn read_one(&self, sql: &str, binds: &[Bind]) -> Result<crate::sql_exec::SqlRow, sqlx::Error> {
        self.read_optional(sql, binds).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.relaxed.close().await;
        self.pool.close().await;
    }

    /// Embedded migrations not (successfully) applied to this database.
    pub async fn migrations_pending(&self) -> anyhow::Result<usize> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await?;
        Ok(migrator.iter().filter(|m| !applied.contains(&m.version)).count())
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        self.pool.acquire().await?.ping().await?;
        Ok(())
    }
}

/// A value bound to a statement built at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    NullInt,
    NullText,
    /// The id of the transaction a ledger movement records (an effect of
    /// that movement); NULL anywhere else.
    ThisTransaction,
}

impl From<i64> for Bind {
    fn from(v: i64) -> Self {
        Bind::Int(v)
    }
}

impl From<&str> for Bind {
    fn from(v: &str) -> Self {
        Bind::Text(v.to_string())
    }
}

impl From<String> for Bind {
    fn from(v: String) -> Self {
        Bind::Text(v)
    }
}

impl From<Option<String>> for Bind {
    fn from(v: Option<String>) -> Self {
        v.map_or(Bind::NullText, Bind::Text)
    }
}

impl From<Option<&str>> for Bind {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Bind::NullText, |v| Bind::Text(v.to_string()))
    }
}

impl From<Vec<u8>> for Bind {
    fn from(v: Vec<u8>) -> Self {
        Bind::Blob(v)
    }
}

impl From<Option<i64>> for Bind {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Bind::NullInt, Bind::Int)
    }
}

/// Binds `binds` to `query` in order (`$1…$n`).
pub fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(v) => query.bind(v.as_str()),
            Bind::Blob(v) => query.bind(v.as_slice()),
            Bind::NullInt => query.bind(None::<i64>),
            Bind::NullText => query.bind(None::<String>),
            Bind::ThisTransaction => query.bind(None::<i64>),
        };
    }
    query
}
