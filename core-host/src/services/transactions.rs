//! Transactions: what an account made and what reached its wallets, in
//! cursor pages with filters, one with its legs, fees and exchange rate,
//! and an export for accounting (CSV, streamed in keyset batches: memory
//! stays flat however many rows).
//!
//! Reads go through `account_transactions` (a row per account that sees a
//! transaction, written with it, its status kept in step), keyed on
//! (created, id) with an index per filter of kind, currency and status; a
//! wallet filter walks `wallet_transactions` (a row per wallet a
//! transaction's legs touch) on its own index.

use super::{Actor, ServiceError, ServiceResult};
use crate::db::{Bind, Db};
use crate::ledger::Environment;
use crate::money::{Currency, MinorUnits};
use crate::pagination::{self, Listing};
use nixo_api::pagination::ListParams;
use nixo_api::transactions::TransactionFilter;
use nixo_api::types::{ObjectType, Transaction, TransactionExchange, TransactionLeg};
use serde_json::{Number, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Rows read per batch of an export.
pub const EXPORT_BATCH_ROWS: i64 = 1_000;
/// The export's header row.
pub const CSV_HEADER: &str = "id,created,type,status,direction,amount,currency,fee,exchange_rate,target_amount,\
target_currency,from_wallet,to_wallet\n";

/// A transaction's columns, its fees last (its legs into a fees account).
const COLUMNS: &str = "t.id, t.kind, t.status, t.amount_minor, t.currency, t.to_amount_minor, t.to_currency, t.fx_rate,
    t.from_wallet, t.to_wallet, t.metadata, t.environment, t.account_id, t.created_at_ms,
    (SELECT CAST(COALESCE(SUM(tr.amount_minor), 0) AS BIGINT) FROM transfers tr
       JOIN ledger_accounts f ON f.id = tr.credit_account_id
      WHERE tr.transaction_id = t.id AND f.kind = 'fees' AND tr.kind IN ('posted', 'pending'))";
/// An export batch's rows, before their fees.
const EXPORT_PAGE_COLUMNS: &str =
    "a.transaction_id AS i, a.created_at_ms AS c, t.kind, t.status, t.account_id AS maker,
    t.amount_minor, t.currency, t.fx_rate, t.to_amount_minor, t.to_currency, t.from_wallet, t.to_wallet";
/// An export row as one text, fields as in [`raw_row`] (ids, codes and
/// integers: no field holds a comma).
const RAW_LINE: &str = "CAST(p.i AS TEXT) || ',' || CAST(p.c AS TEXT) || ',' || p.kind || ',' || p.status || ','
    || p.maker || ',' || CAST(p.amount_minor AS TEXT) || ',' || p.currency || ',' || CAST(COALESCE(fees.fee, 0) AS TEXT)
    || ',' || COALESCE(p.fx_rate, '') || ',' || COALESCE(CAST(p.to_amount_minor AS TEXT), '') || ','
    || COALESCE(p.to_currency, '') || ',' || COALESCE(CAST(p.from_wallet AS TEXT), '') || ','
    || COALESCE(CAST(p.to_wallet AS TEXT), '')";
const FROM: &str = "account_transactions a JOIN transactions t ON t.id = a.transaction_id";
/// With a wallet filter: that wallet's rows lead (their own index).
const FROM_WALLET: &str = "wallet_transactions w
    JOIN account_transactions a ON a.account_id = w.account_id AND a.transaction_id = w.transaction_id
    JOIN transactions t ON t.id = a.transaction_id";

/// A transaction row as read.
#[derive(Debug, Clone, PartialEq)]
pub struct TxRow {
    pub id: i64,
    pub kind: String,
    /// As the API writes it (`settled`).
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub to_amount_minor: Option<i64>,
    pub to_currency: Option<String>,
    pub fx_rate: Option<String>,
    pub from_wallet: Option<i64>,
    pub to_wallet: Option<i64>,
    pub metadata: serde_json::Map<String, Value>,
    pub livemode: bool,
    /// Money leaving the reading account (it made it, and it is not a
    /// funding or deposit to itself).
    pub outgoing: bool,
    pub created_at_ms: i64,
    pub fee_minor: i64,
}

/// (money leaving the reader, fees charged): money in is what someone else
/// made, and funding or deposits to one's own wallets; a declined, voided
/// or expired transaction charged nothing.
fn flow(kind: &str, status: &str, maker: &str, reader: &str) -> (bool, bool) {
    let incoming = maker != reader || matches!(kind, "funding" | "deposit");
    let charged = matches!(status, "SETTLED" | "PENDING" | "PENDING_REVIEW");
    (!incoming, charged)
}

fn from_row(row: &AnyRow, reader: &str) -> Result<TxRow, sqlx::Error> {
    let status: String = row.try_get(2)?;
    let metadata: String = row.try_get(10)?;
    let environment: String = row.try_get(11)?;
    let maker: String = row.try_get(12)?;
    let kind: String = row.try_get(1)?;
    let (outgoing, charged) = flow(&kind, &status, &maker, reader);
    Ok(TxRow {
        id: row.try_get(0)?,
        kind,
        status: status.to_ascii_lowercase(),
        amount_minor: row.try_get(3)?,
        currency: row.try_get(4)?,
        to_amount_minor: row.try_get(5)?,
        to_currency: row.try_get(6)?,
        fx_rate: row.try_get(7)?,
        from_wallet: row.try_get(8)?,
        to_wallet: row.try_get(9)?,
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        livemode: environment == Environment::Live.as_str(),
        outgoing,
        created_at_ms: row.try_get(13)?,
        fee_minor: if charged { row.try_get(14)? } else { 0 },
    })
}

/// The actor's rows, narrowed by the filter.
async fn listing(db: &Db, actor: &Actor, filter: &TransactionFilter) -> ServiceResult<Listing<'static>> {
    let mut scope = pagination::Scope {
        filter: "a.account_id = $1 AND a.environment = $2".into(),
        binds: vec![actor.account_id.clone().into(), actor.environment.as_str().into()],
    };
    if let Some(kind) = filter.kind {
        scope.and("a.kind =", kind.into());
    }
    if let Some(currency) = filter.currency {
        scope.and("a.currency =", currency.code.into());
    }
    if let Some(status) = filter.status {
        scope.and("a.status =", status.to_ascii_uppercase().into());
    }
    if let Some(gte) = filter.amount_gte_minor {
        scope.and("a.amount_minor >=", gte.into());
    }
    if let Some(lte) = filter.amount_lte_minor {
        scope.and("a.amount_minor <=", lte.into());
    }
    if let Some(gte) = filter.created.gte {
        scope.and("a.created_at_ms >=", gte.saturating_mul(1000).into());
    }
    if let Some(lte) = filter.created.lte {
        scope.and(
            "a.created_at_ms <=",
            lte.saturating_mul(1000).saturating_add(999).into(),
        );
    }
    if let Some(wallet) = filter.wallet {
        let owned = sqlx::query(
            "SELECT 1 FROM ledger_accounts WHERE id = $1 AND owner_account_id = $2 AND environment = $3 AND kind = 'wallet'",
        )
        .bind(wallet)
        .bind(actor.account_id.as_str())
        .bind(actor.environment.as_str())
        .fetch_optional(&db.pool)
        .await?;
        if owned.is_none() {
            return Err(ServiceError::not_found("wallet", format!("No such wallet: {wallet}")));
        }
        scope.and("w.wallet_id =", Bind::Int(wallet));
        return Ok(Listing {
            columns: COLUMNS,
            from: FROM_WALLET,
            filter: scope.filter,
            binds: scope.binds,
            created_column: "w.created_at_ms",
            id_column: "w.transaction_id",
            id_is_integer: true,
        });
    }
    Ok(Listing {
        columns: COLUMNS,
        from: FROM,
        filter: scope.filter,
        binds: scope.binds,
        created_column: "a.created_at_ms",
        id_column: "a.transaction_id",
        id_is_integer: true,
    })
}

/// A page of the actor's transactions, newest first.
pub async fn list(
    db: &Db,
    actor: &Actor,
    filter: &TransactionFilter,
    page: &ListParams,
) -> ServiceResult<(Vec<TxRow>, bool)> {
    let listing = listing(db, actor, filter).await?;
    let rows = pagination::fetch(db, &listing, page).await?;
    let list = rows
        .rows
        .iter()
        .map(|r| from_row(r, &actor.account_id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((list, rows.has_more))
}

/// One of the actor's transactions, with its legs.
pub async fn retrieve(db: &Db, actor: &Actor, id: &str) -> ServiceResult<(TxRow, Vec<TransactionLeg>)> {
    let missing = || ServiceError::not_found("id", format!("No such transaction: '{id}'"));
    let tx_id = nixo_api::transactions::transaction_id(id).ok_or_else(missing)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE a.account_id = $1 AND a.environment = $2 AND a.transaction_id = $3"
    );
    let row = sqlx::query(&sql)
        .bind(actor.account_id.as_str())
        .bind(actor.environment.as_str())
        .bind(tx_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(missing)?;
    let tx = from_row(&row, &actor.account_id)?;
    let rows = sqlx::query(
        "SELECT tr.kind, d.kind, d.id, c.kind, c.id, tr.amount_minor, tr.currency FROM transfers tr
         JOIN ledger_accounts d ON d.id = tr.debit_account_id
         JOIN ledger_accounts c ON c.id = tr.credit_account_id
         WHERE tr.transaction_id = $1 ORDER BY tr.id",
    )
    .bind(tx_id)
    .fetch_all(&db.pool)
    .await?;
    let side = |kind: String, id: i64| if kind == "wallet" { id.to_string() } else { kind };
    let legs = rows
        .iter()
        .map(|r| {
            let currency: String = r.try_get(6)?;
            Ok(TransactionLeg {
                kind: r.try_get(0)?,
                debit: side(r.try_get(1)?, r.try_get(2)?),
                credit: side(r.try_get(3)?, r.try_get(4)?),
                amount: number(&currency, r.try_get(5)?),
                currency,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((tx, legs))
}

fn number(code: &str, minor: i64) -> Number {
    match Currency::from_code(code).map(|c| c.to_json_number(minor)) {
        Some(Value::Number(n)) => n,
        _ => Number::from(minor),
    }
}

fn decimal(code: &str, minor: i64) -> String {
    Currency::from_code(code).map_or_else(|| minor.to_string(), |c| c.to_decimal(minor).to_string())
}

/// The transaction object.
pub fn render(tx: &TxRow, legs: Option<Vec<TransactionLeg>>) -> Transaction {
    let exchange = match (&tx.fx_rate, tx.to_amount_minor, &tx.to_currency) {
        (Some(rate), Some(target), Some(target_currency)) => Some(TransactionExchange {
            rate: rate.clone(),
            source_amount: number(&tx.currency, tx.amount_minor),
            source_currency: tx.currency.clone(),
            target_amount: number(target_currency, target),
            target_currency: target_currency.clone(),
            fixed_at: tx.created_at_ms / 1000,
        }),
        _ => None,
    };
    Transaction {
        id: tx.id,
        object: ObjectType::Transaction,
        kind: tx.kind.clone(),
        status: tx.status.clone(),
        direction: if tx.outgoing { "out" } else { "in" }.into(),
        amount: number(&tx.currency, tx.amount_minor),
        currency: tx.currency.clone(),
        fee: number(&tx.currency, tx.fee_minor),
        exchange,
        from_wallet: tx.from_wallet,
        to_wallet: tx.to_wallet,
        metadata: tx.metadata.clone(),
        legs,
        livemode: tx.livemode,
        created: tx.created_at_ms / 1000,
    }
}

/// One CSV line: amounts exact decimals, created as RFC 3339 (UTC).
pub fn csv_line(tx: &TxRow, out: &mut String) {
    let created = chrono::DateTime::from_timestamp_millis(tx.created_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let opt = |v: Option<i64>| v.map(|w| w.to_string()).unwrap_or_default();
    let target = match (tx.to_amount_minor, &tx.to_currency) {
        (Some(minor), Some(code)) => decimal(code, minor),
        _ => String::new(),
    };
    // Every field is a number, a code or an id: nothing needs quoting.
    out.push_str(&format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        tx.id,
        created,
        tx.kind,
        tx.status,
        if tx.outgoing { "out" } else { "in" },
        decimal(&tx.currency, tx.amount_minor),
        tx.currency,
        decimal(&tx.currency, tx.fee_minor),
        tx.fx_rate.as_deref().unwrap_or_default(),
        target,
        tx.to_currency.as_deref().unwrap_or_default(),
        opt(tx.from_wallet),
        opt(tx.to_wallet),
    ));
}

/// An export, checked and ready to stream (a filter naming a wallet that is
/// not the actor's fails here, before any byte is sent).
pub struct ExportPlan {
    listing: Listing<'static>,
    reader: String,
}

pub async fn plan_export(db: &Db, actor: &Actor, filter: &TransactionFilter) -> ServiceResult<ExportPlan> {
    Ok(ExportPlan {
        listing: listing(db, actor, filter).await?,
        reader: actor.account_id.clone(),
    })
}

/// A chunk of an export, or the failure that cut it short.
pub type ExportChunk = Result<bytes::Bytes, std::io::Error>;

/// Streams the export as CSV (header first, newest first), a batch at a
/// time, into `sink`; a failure midway is sent as the last item, so the
/// reader sees a cut export fail instead of ending short. Stops early when
/// the sink is closed (the client went away). Returns the rows written.
pub async fn export(db: &Db, plan: ExportPlan, sink: tokio::sync::mpsc::Sender<ExportChunk>) -> u64 {
    let mut written = 0u64;
    if sink
        .send(Ok(bytes::Bytes::from_static(CSV_HEADER.as_bytes())))
        .await
        .is_err()
    {
        return written;
    }
    let mut after: Option<(i64, i64)> = None;
    loop {
        let batch = match export_batch(db, &plan, after).await {
            Ok(batch) => batch,
            Err(err) => {
                let _ = sink.send(Err(std::io::Error::other(err.to_string()))).await;
                return written;
            }
        };
        let Some((text, rows, last)) = batch else {
            return written;
        };
        let mut chunk = String::with_capacity(text.len() + text.len() / 2);
        for line in text.split('\n') {
            match raw_row(line, &plan.reader) {
                Some(tx) => csv_line(&tx, &mut chunk),
                None => {
                    let _ = sink
                        .send(Err(std::io::Error::other(format!("unreadable export row: {line}"))))
                        .await;
                    return written;
                }
            }
        }
        written += rows;
        if sink.send(Ok(bytes::Bytes::from(chunk))).await.is_err() || rows < EXPORT_BATCH_ROWS as u64 {
            return written;
        }
        after = Some(last);
    }
}

/// One batch of an export, built by the database as one text (one row per
/// batch: the driver's per-row cost is paid once per thousand rows), with
/// the row count and the last row's (created, id) to continue from.
async fn export_batch(
    db: &Db,
    plan: &ExportPlan,
    after: Option<(i64, i64)>,
) -> Result<Option<(String, u64, (i64, i64))>, sqlx::Error> {
    let mut binds = plan.listing.binds.clone();
    let mut filter = plan.listing.filter.clone();
    if let Some((created, id)) = after {
        binds.push(Bind::Int(created));
        binds.push(Bind::Int(id));
        filter.push_str(&format!(
            " AND ({}, {}) < (${}, ${})",
            plan.listing.created_column,
            plan.listing.id_column,
            binds.len() - 1,
            binds.len()
        ));
    }
    binds.push(Bind::Int(EXPORT_BATCH_ROWS));
    let limit = binds.len();
    binds.push(Bind::Text("\n".into()));
    let separator = binds.len();
    // The page first, then the fees of just its transactions in one grouped
    // join (a lookup per row costs PostgreSQL more than the rest together).
    let sql = format!(
        "WITH p AS (SELECT {EXPORT_PAGE_COLUMNS} FROM {from}
                    WHERE {filter} ORDER BY {created} DESC, {id} DESC LIMIT ${limit}),
              fees AS (SELECT tr.transaction_id AS i, CAST(SUM(tr.amount_minor) AS BIGINT) AS fee FROM transfers tr
                       JOIN ledger_accounts f ON f.id = tr.credit_account_id
                       WHERE tr.transaction_id IN (SELECT i FROM p) AND f.kind = 'fees'
                         AND tr.kind IN ('posted', 'pending')
                       GROUP BY tr.transaction_id)
         SELECT string_agg({RAW_LINE}, ${separator} ORDER BY p.c DESC, p.i DESC), COUNT(*),
                (SELECT MIN(c) FROM p), (SELECT MIN(i) FROM p WHERE c = (SELECT MIN(c) FROM p))
         FROM p LEFT JOIN fees ON fees.i = p.i",
        from = plan.listing.from,
        created = plan.listing.created_column,
        id = plan.listing.id_column,
    );
    let row = crate::db::bind_all(sqlx::query(&sql), &binds)
        .fetch_one(&db.pool)
        .await?;
    let rows: i64 = row.try_get(1)?;
    if rows == 0 {
        return Ok(None);
    }
    let text: String = row.try_get(0)?;
    Ok(Some((
        text,
        u64::try_from(rows).unwrap_or(0),
        (row.try_get(2)?, row.try_get(3)?),
    )))
}

/// Reads a [`RAW_LINE`].
fn raw_row(line: &str, reader: &str) -> Option<TxRow> {
    let f: Vec<&str> = line.split(',').collect();
    if f.len() != 13 {
        return None;
    }
    let int = |s: &str| s.parse::<i64>().ok();
    let opt_int = |s: &str| if s.is_empty() { Some(None) } else { int(s).map(Some) };
    let opt_text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (outgoing, charged) = flow(f[2], f[3], f[4], reader);
    Some(TxRow {
        id: int(f[0])?,
        created_at_ms: int(f[1])?,
        kind: f[2].to_string(),
        status: f[3].to_ascii_lowercase(),
        outgoing,
        amount_minor: int(f[5])?,
        currency: f[6].to_string(),
        fee_minor: if charged { int(f[7])? } else { 0 },
        fx_rate: opt_text(f[8]),
        to_amount_minor: opt_int(f[9])?,
        to_currency: opt_text(f[10]),
        from_wallet: opt_int(f[11])?,
        to_wallet: opt_int(f[12])?,
        metadata: serde_json::Map::new(),
        livemode: false,
    })
}
