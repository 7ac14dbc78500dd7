//! `/v1/transactions`: the account's transactions in pages, one with its
//! legs, and the CSV export. Parse, call the transactions service, render.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::transactions::{self, ExportChunk};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use nixo_api::types::{
    ErrorBody, ObjectType, Transaction, TransactionList, TransactionsExportQuery, TransactionsQuery,
};
use std::pin::Pin;
use std::task::{Context, Poll};

/// List transactions.
///
/// Every movement your account made or received (transfers, payouts,
/// deposits, withdrawals), newest first, in cursor pages. Filters: `type`,
/// `status`, `currency`, `wallet`, `amount[gte]`/`amount[lte]` (with
/// `currency`), `created[gte]`/`created[lte]` (Unix seconds).
#[utoipa::path(
    get,
    path = "/v1/transactions",
    tag = "Transactions",
    operation_id = "list_transactions",
    params(TransactionsQuery),
    responses(
        (status = 200, description = "A page of transactions", body = TransactionList),
        (status = 404, description = "resource_not_found: a cursor or wallet that is not yours", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, page) = nixo_api::transactions::transactions_query(query.as_deref())?;
    let db = &state.services.ledger.db;
    let (rows, has_more) = transactions::list(db, &caller.actor(), &filter, &page).await?;
    let body = TransactionList {
        object: ObjectType::List,
        url: "/v1/transactions".into(),
        has_more,
        data: rows.iter().map(|t| transactions::render(t, None)).collect(),
    };
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

/// Retrieve a transaction, with its legs, fees and exchange rate.
#[utoipa::path(
    get,
    path = "/v1/transactions/{id}",
    tag = "Transactions",
    operation_id = "retrieve_transaction",
    params(("id" = String, Path, description = "The transaction's id", pattern = "^[0-9]{1,18}$", example = "10001")),
    responses(
        (status = 200, description = "The transaction", body = Transaction),
        (status = 404, description = "resource_not_found: no such transaction of yours", body = ErrorBody),
    )
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (tx, legs) = transactions::retrieve(&state.services.ledger.db, &caller.actor(), &id).await?;
    let body = transactions::render(&tx, Some(legs));
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

/// The chunks an export task sends, as a response body stream.
struct Chunks(tokio::sync::mpsc::Receiver<ExportChunk>);

impl futures_core::Stream for Chunks {
    type Item = ExportChunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ExportChunk>> {
        self.0.poll_recv(cx)
    }
}

/// Chunks buffered between the export task and the client at most.
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

/// Export transactions for accounting.
///
/// `format=csv` and the list's filters: every matching transaction, newest
/// first, with a header row; amounts are exact decimals, `created` is RFC
/// 3339 UTC. Streamed: any number of rows.
#[utoipa::path(
    get,
    path = "/v1/transactions/export",
    tag = "Transactions",
    operation_id = "export_transactions",
    params(TransactionsExportQuery),
    responses(
        (status = 200, description = "The CSV file", content_type = "text/csv", body = String),
        (status = 404, description = "resource_not_found: a wallet that is not yours", body = ErrorBody),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let filter = nixo_api::transactions::export_query(query.as_deref())?;
    let db = state.services.ledger.db.clone();
    let plan = transactions::plan_export(&db, &caller.actor(), &filter).await?;
    let (sink, chunks) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        transactions::export(&db, plan, sink).await;
    });
    let response = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"transactions.csv\""),
        ],
        Body::from_stream(Chunks(chunks)),
    )
        .into_response();
    Ok(with_version(&caller, response))
}
