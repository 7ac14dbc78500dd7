//! One statement interface for the write path, so that the SQL that applies
//! ledger operations, emits events and enqueues jobs is written once and
//! runs on two kinds of connection: a sqlx connection (PostgreSQL, and the
//! SQLite pool), and the SQLite ledger writer's direct connection, which
//! answers without leaving its thread (`ledger::writer`).
//!
//! Statements use `$N` placeholders and [`Bind`] values; answers come back
//! as [`SqlRow`]s of plain [`Cell`]s.

use crate::db::{Bind, bind_all};
use sqlx::{AnyConnection, Row};
use std::future::Future;

/// One value of an answer row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// One answer row.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow(pub Vec<Cell>);

fn decode_error(column: usize, wanted: &str, found: &Cell) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!("expected {wanted}, found {found:?}").into(),
    }
}

impl SqlRow {
    fn cell(&self, column: usize) -> Result<&Cell, sqlx::Error> {
        self.0.get(column).ok_or(sqlx::Error::ColumnIndexOutOfBounds {
            index: column,
            len: self.0.len(),
        })
    }

    pub fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(decode_error(column, "an integer", other)),
        }
    }

    pub fn int(&self, column: usize) -> Result<i64, sqlx::Error> {
        self.opt_int(column)?
            .ok_or_else(|| decode_error(column, "an integer", &Cell::Null))
    }

    pub fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            other => Err(decode_error(column, "text", other)),
        }
    }

    pub fn text(&self, column: usize) -> Result<String, sqlx::Error> {
        self.opt_text(column)?
            .ok_or_else(|| decode_error(column, "text", &Cell::Null))
    }
}

/// A connection the write path runs statements on. Every method runs one
/// statement with `binds` for `$1…$n`.
pub trait Exec: Send {
    /// Runs a statement; answers the rows it changed.
    fn execute(&mut self, sql: &str, binds: &[Bind]) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
    /// Runs a query; answers its first row, if any.
    fn fetch_optional(
        &mut self,
        sql: &str,
        binds: &[Bind],
    ) -> impl Future<Output = Result<Option<SqlRow>, sqlx::Error>> + Send;
    /// Runs a query; answers all its rows.
    fn fetch_all(&mut self, sql: &str, binds: &[Bind])
    -> impl Future<Output = Result<Vec<SqlRow>, sqlx::Error>> + Send;
    /// The rowid of the row the last INSERT on this connection added, where
    /// the connection can tell it without a statement. Where it can, the
    /// write path asks it (and runs a plain SELECT after an UPDATE) instead
    /// of a `RETURNING` clause: SQLite answers `RETURNING` through a
    /// temporary table it opens, fills and frees each time (a page cache
    /// made and dropped per statement, ≈ 8 per transfer in the ledger
    /// writer). PostgreSQL answers `RETURNING` for nothing and has no rowid.
    fn last_insert_rowid(&self) -> Option<i64> {
        None
    }
}

/// A sqlx row as plain cells: each column is read as the first of integer,
/// text, real or boolean that its type allows (NULL reads as any).
fn cells(row: &sqlx::any::AnyRow) -> Result<SqlRow, sqlx::Error> {
    (0..row.len())
        .map(|i| {
            if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                return Ok(v.map_or(Cell::Null, Cell::Int));
            }
            if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                return Ok(v.map_or(Cell::Null, Cell::Text));
            }
            if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                return Ok(v.map_or(Cell::Null, Cell::Real));
            }
            row.try_get::<Option<bool>, _>(i)
                .map(|v| v.map_or(Cell::Null, |b| Cell::Int(i64::from(b))))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SqlRow)
}

impl Exec for AnyConnection {
    async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, sqlx::Error> {
        Ok(bind_all(sqlx::query(sql), binds).execute(self).await?.rows_affected())
    }

    async fn fetch_optional(&mut self, sql: &str, binds: &[Bind]) -> Result<Option<SqlRow>, sqlx::Error> {
        bind_all(sqlx::query(sql), binds)
            .fetch_optional(self)
            .await?
            .as_ref()
            .map(cells)
            .transpose()
    }

    async fn fetch_all(&mut self, sql: &str, binds: &[Bind]) -> Result<Vec<SqlRow>, sqlx::Error> {
        bind_all(sqlx::query(sql), binds)
            .fetch_all(self)
            .await?
            .iter()
            .map(cells)
            .collect()
    }
}
