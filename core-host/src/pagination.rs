//! Cursor pages for every list: keyset on (created, id), newest first.
//!
//! A page after an object is `WHERE (created, id) < (its created, its id)
//! ORDER BY created DESC, id DESC LIMIT n + 1`, so page 1,000 costs what
//! page 1 costs (an index on the scope's columns, `created` and `id` serves
//! it); the extra row tells `has_more`. A page before an object runs the
//! other way and is reversed. Cursors are object ids (as Stripe's are): the
//! object's `created` is looked up within the same scope, so a cursor from
//! another account's list finds nothing.

use crate::db::Db;
use crate::services::{ServiceError, ServiceResult};
use nixo_api::pagination::{Cursor, ListParams};
use serde_json::{Value, json};
use sqlx::any::AnyRow;

/// A value bound to a list query's filter.
#[derive(Debug, Clone)]
pub enum Bind {
    Int(i64),
    Text(String),
}

/// What to list: `SELECT {columns} FROM {from} WHERE {filter}`, where the
/// filter uses `$1…$n` for `binds`.
#[derive(Debug, Clone)]
pub struct Listing<'a> {
    pub columns: &'a str,
    pub from: &'a str,
    pub filter: String,
    pub binds: Vec<Bind>,
    /// Column names of the keyset.
    pub created_column: &'a str,
    pub id_column: &'a str,
    /// Integer ids (transactions) compare as numbers, others as text.
    pub id_is_integer: bool,
}

/// One page of rows, in list order (newest first).
pub struct PageRows {
    pub rows: Vec<AnyRow>,
    pub has_more: bool,
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(v) => query.bind(v.as_str()),
        };
    }
    query
}

/// Reads the page `params` asks for.
pub async fn fetch(db: &Db, listing: &Listing<'_>, params: &ListParams) -> ServiceResult<PageRows> {
    let n = listing.binds.len();
    let (field, cursor_id) = match &params.cursor {
        Cursor::First => ("", None),
        Cursor::StartingAfter(id) => ("starting_after", Some(id)),
        Cursor::EndingBefore(id) => ("ending_before", Some(id)),
    };
    let mut binds = listing.binds.clone();
    let keyset = match cursor_id {
        None => None,
        Some(id) => {
            let id_bind = if listing.id_is_integer {
                Bind::Int(id.parse().map_err(|_| no_such_cursor(field, id))?)
            } else {
                Bind::Text(id.clone())
            };
            let sql = format!(
                "SELECT {} FROM {} WHERE {} AND {} = ${}",
                listing.created_column,
                listing.from,
                listing.filter,
                listing.id_column,
                n + 1
            );
            let mut lookup_binds = binds.clone();
            lookup_binds.push(id_bind.clone());
            let row = bind_all(sqlx::query(&sql), &lookup_binds)
                .fetch_optional(&db.pool)
                .await?;
            let row = row.ok_or_else(|| no_such_cursor(field, id))?;
            let created: i64 = sqlx::Row::try_get(&row, 0)?;
            Some((created, id_bind))
        }
    };
    let (comparison, order) = match &params.cursor {
        Cursor::EndingBefore(_) => (">", "ASC"),
        _ => ("<", "DESC"),
    };
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {}",
        listing.columns, listing.from, listing.filter
    );
    if let Some((created, id_bind)) = keyset {
        sql.push_str(&format!(
            " AND ({}, {}) {comparison} (${}, ${})",
            listing.created_column,
            listing.id_column,
            n + 1,
            n + 2
        ));
        binds.push(Bind::Int(created));
        binds.push(id_bind);
    }
    sql.push_str(&format!(
        " ORDER BY {c} {order}, {i} {order} LIMIT ${}",
        binds.len() + 1,
        c = listing.created_column,
        i = listing.id_column
    ));
    binds.push(Bind::Int(params.limit + 1));
    let mut rows = bind_all(sqlx::query(&sql), &binds).fetch_all(&db.pool).await?;
    let has_more = rows.len() as i64 > params.limit;
    rows.truncate(params.limit as usize);
    if order == "ASC" {
        rows.reverse();
    }
    Ok(PageRows { rows, has_more })
}

fn no_such_cursor(field: &'static str, id: &str) -> ServiceError {
    ServiceError::invalid(field, format!("{field}: no object '{id}' in this list"))
}

/// The list envelope every list route answers.
pub fn render(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({ "object": "list", "url": url, "has_more": has_more, "data": data })
}
