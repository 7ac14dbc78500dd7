//! `/v1/accounts`: create, list, retrieve and update customer accounts, and
//! `me` (the key's own account, or the `Nixo-Account` one). Parse, call the
//! accounts service, render the account object.

use super::{AppState, Caller, with_version};
use crate::error::ApiError;
use crate::services::accounts;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use nixo_api::types::{
    Account, AccountCreateBody, AccountList, AccountUpdateBody, AccountsQuery, ErrorBody, ObjectType,
};

async fn render(state: &AppState, caller: &Caller, row: &crate::accounts::AccountRow) -> Result<Response, ApiError> {
    let account = accounts::render(&state.services, row).await?;
    Ok(with_version(caller, axum::Json(account).into_response()))
}

/// Create a customer account.
///
/// An individual or business under your platform, with its KYC data. With
/// complete data, verification starts at once (`pending`); the account can
/// receive money at once and send it once `verified` (`account.verified`).
/// One wallet per currency in `currencies` (default USD).
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "Accounts",
    operation_id = "create_account",
    request_body = AccountCreateBody,
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 403, description = "permission_denied: only a platform's own key creates accounts", body = ErrorBody),
        (status = 409, description = "idempotency_key_in_use: a request with this key is still running", body = ErrorBody),
        (status = 422, description = "idempotency_key_reused: the key was used with another request", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = nixo_api::accounts::create_request(&body)?;
    let (platform, on_behalf) = caller.platform();
    let row = accounts::create(&state.services, &platform, on_behalf, request).await?;
    render(&state, &caller, &row).await
}

/// List customer accounts.
///
/// Your platform's customer accounts, newest first, in cursor pages; filter
/// by `verification_status` and creation time.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "Accounts",
    operation_id = "list_accounts",
    params(AccountsQuery),
    responses(
        (status = 200, description = "A page of accounts", body = AccountList),
        (status = 404, description = "resource_not_found: the starting_after or ending_before account is not in this list", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, page) = nixo_api::accounts::accounts_query(query.as_deref())?;
    let (platform, _) = caller.platform();
    let (rows, has_more) = accounts::list(&state.services, &platform, &filter, &page).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        data.push(accounts::render(&state.services, row).await?);
    }
    let body = AccountList {
        object: ObjectType::List,
        url: "/v1/accounts".into(),
        has_more,
        data,
    };
    Ok(with_version(&caller, axum::Json(body).into_response()))
}

/// Retrieve your own account.
///
/// The key's account — or, with `Nixo-Account`, that customer account —
/// with its verification status, limits and balances.
#[utoipa::path(
    get,
    path = "/v1/accounts/me",
    tag = "Accounts",
    operation_id = "retrieve_own_account",
    responses((status = 200, description = "The account", body = Account))
)]
pub async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    let row = accounts::me(&state.services, &caller.actor()).await?;
    render(&state, &caller, &row).await
}

/// Retrieve an account.
///
/// Your platform's account or one of its customer accounts: verification
/// status and history, requirements, limits with today's use, balances.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    tag = "Accounts",
    operation_id = "retrieve_account",
    params(("id" = String, Path, description = "The account's id", pattern = "^acct_[A-Za-z0-9]+$", example = "acct_1A2B3C4D5E6F7G8H")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 404, description = "resource_not_found: no such account of your platform", body = ErrorBody),
    )
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (platform, _) = caller.platform();
    let row = accounts::retrieve(&state.services, &platform, &id).await?;
    render(&state, &caller, &row).await
}

/// Update a customer account.
///
/// Contact details, business information, KYC data or documents: what you
/// give replaces what was there. New KYC data or documents restart
/// verification (`pending`).
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}",
    tag = "Accounts",
    operation_id = "update_account",
    params(("id" = String, Path, description = "The account's id", pattern = "^acct_[A-Za-z0-9]+$", example = "acct_1A2B3C4D5E6F7G8H")),
    request_body = AccountUpdateBody,
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 403, description = "permission_denied: a platform's own account, or a request with Nixo-Account", body = ErrorBody),
        (status = 404, description = "resource_not_found: no such account of your platform", body = ErrorBody),
        (status = 409, description = "account_changed: another update landed at the same time", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = nixo_api::accounts::update_request(&body)?;
    let (platform, on_behalf) = caller.platform();
    let row = accounts::update(&state.services, &platform, on_behalf, &id, request).await?;
    render(&state, &caller, &row).await
}
