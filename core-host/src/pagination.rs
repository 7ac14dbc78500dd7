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
use nixo_api::pagination::ListParams;
use sqlx::any::AnyRow;

pub use crate::db::Bind;
use crate::db::bind_all;

/// A list's `WHERE`: the actor's rows, then each filter asked for.
#[derive(Debug, Clone)]
pub struct Scope {
    pub filter: String,
    pub binds: Vec<Bind>,
}

impl Scope {
    /// Rows of this account and environment (`account_id`, `environment` columns).
    pub fn owned_by(actor: &crate::services::Actor) -> Scope {
        Scope {
            filter: "account_id = $1 AND environment = $2".into(),
            binds: vec![
                Bind::Text(actor.account_id.clone()),
                Bind::Text(actor.environment.as_str().into()),
            ],
        }
    }

    /// Adds `AND {clause} $n` with `bind` as `$n` (`clause` like `"status ="`).
    pub fn and(&mut self, clause: &str, bind: Bind) -> &mut Self {
        self.binds.push(bind);
        self.filter.push_str(&format!(" AND {clause} ${}", self.binds.len()));
        self
    }

    /// Adds a `created[gte]`/`created[lte]` range (seconds) on `created_at_ms`.
    pub fn created(&mut self, range: nixo_api::pagination::CreatedRange) -> &mut Self {
        if let Some(gte) = range.gte {
            self.and("created_at_ms >=", Bind::Int(gte.saturating_mul(1000)));
        }
        if let Some(lte) = range.lte {
            self.and(
                "created_at_ms <=",
                Bind::Int(lte.saturating_mul(1000).saturating_add(999)),
            );
        }
        self
    }
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

impl<'a> Listing<'a> {
    /// `columns` of `from` within `scope`, keyed on (`created_at_ms`, a text `id`).
    pub fn by_created(columns: &'a str, from: &'a str, scope: Scope) -> Listing<'a> {
        Listing {
            columns,
            from,
            filter: scope.filter,
            binds: scope.binds,
            created_column: "created_at_ms",
            id_column: "id",
            id_is_integer: false,
        }
    }
}

/// One page of rows, in list order (newest first).
pub struct PageRows {
    pub rows: Vec<AnyRow>,
    pub has_more: bool,
}

/// The (created, id) of the object `id` in this listing.
async fn keyset_of(db: &Db, listing: &Listing<'_>, field: &'static str, id: &str) -> ServiceResult<(i64, Bind)> {
    let id_bind = if listing.id_is_integer {
        Bind::Int(id.parse().map_err(|_| no_such_cursor(field, id))?)
    } else {
        Bind::Text(id.to_string())
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {} AND {} = ${}",
        listing.created_column,
        listing.from,
        listing.filter,
        listing.id_column,
        listing.binds.len() + 1
    );
    let mut binds = listing.binds.clone();
    binds.push(id_bind.clone());
    let row = bind_all(sqlx::query(&sql), &binds).fetch_optional(&db.pool).await?;
    let row = row.ok_or_else(|| no_such_cursor(field, id))?;
    Ok((sqlx::Row::try_get(&row, 0)?, id_bind))
}

/// Reads the page `params` asks for.
pub async fn fetch(db: &Db, listing: &Listing<'_>, params: &ListParams) -> ServiceResult<PageRows> {
    let mut binds = listing.binds.clone();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {}",
        listing.columns, listing.from, listing.filter
    );
    let keyset = format!("({}, {})", listing.created_column, listing.id_column);
    let bound = |binds: &mut Vec<Bind>, comparison: &str, (created, id): (i64, Bind)| {
        binds.push(Bind::Int(created));
        binds.push(id);
        format!(" AND {keyset} {comparison} (${}, ${})", binds.len() - 1, binds.len())
    };
    if let Some(id) = &params.starting_after {
        let at = keyset_of(db, listing, "starting_after", id).await?;
        sql.push_str(&bound(&mut binds, "<", at));
    }
    if let Some(id) = &params.ending_before {
        let at = keyset_of(db, listing, "ending_before", id).await?;
        sql.push_str(&bound(&mut binds, ">", at));
    }
    // Only `ending_before`: the page just before it, read upwards.
    let upwards = params.ending_before.is_some() && params.starting_after.is_none();
    let order = if upwards { "ASC" } else { "DESC" };
    binds.push(Bind::Int(params.limit + 1));
    sql.push_str(&format!(
        " ORDER BY {c} {order}, {i} {order} LIMIT ${}",
        binds.len(),
        c = listing.created_column,
        i = listing.id_column
    ));
    let mut rows = bind_all(sqlx::query(&sql), &binds).fetch_all(&db.pool).await?;
    let has_more = rows.len() as i64 > params.limit;
    rows.truncate(params.limit as usize);
    if upwards {
        rows.reverse();
    }
    Ok(PageRows { rows, has_more })
}

fn no_such_cursor(field: &'static str, id: &str) -> ServiceError {
    ServiceError::not_found(field, format!("{field}: no object '{id}' in this list"))
}
