//! The database handle: SQLite by default (one writer, several readers).

use anyhow::Context;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

/// How long a connection waits on a locked database before failing.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Readers in the pool. Writes go through a single connection.
pub const READERS_MAX: u32 = 4;

/// SQLite migrations, embedded in the binary: (version, description, sql).
const SQLITE_MIGRATIONS: [(i64, &str, &str); 1] = [(
    1,
    "foundation",
    include_str!("../migrations/sqlite/0001_foundation.sql"),
)];

/// Builds the migrator from the embedded files. (sqlx's `migrate!` macro
/// would pull its whole proc-macro stack and a second SQLite build into the
/// compile; the fields used here are stable in the pinned sqlx version.)
fn sqlite_migrator() -> Migrator {
    let migrations: Vec<Migration> = SQLITE_MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

#[derive(Clone, Debug)]
pub struct Db {
    /// The only connection that writes: SQLite allows one writer at a time,
    /// so writers queue here instead of failing with SQLITE_BUSY.
    pub writer: SqlitePool,
    pub reader: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) the database file and applies migrations.
    /// Every commit is durable: WAL with `synchronous = FULL`.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Db> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        sqlite_migrator()
            .run(&writer)
            .await
            .context("applying database migrations")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS_MAX)
            .connect_with(options.read_only(true))
            .await
            .context("opening database readers")?;
        Ok(Db { writer, reader })
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
