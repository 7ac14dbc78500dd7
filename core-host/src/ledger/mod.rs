//! Double-entry ledger on the database.
//!
//! Every movement of money is a transaction made of transfers; each transfer
//! debits one ledger account and credits another by the same integer amount
//! in one currency, so debits equal credits by construction. Account totals
//! (posted and pending, debits and credits) are updated in the same database
//! transaction as the transfer rows, with the no-overdraft rule checked in the
//! update itself: either every leg applies or none does.

use crate::db::Db;
use crate::money::Currency;
use sqlx::Row;

/// Ledger account flag: debits may never exceed credits (no overdraft).
pub const FLAG_NO_OVERDRAFT: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Sandbox,
    Live,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Live => "live",
        }
    }

    pub fn parse(s: &str) -> Option<Environment> {
        match s {
            "sandbox" => Some(Environment::Sandbox),
            "live" => Some(Environment::Live),
            _ => None,
        }
    }
}

/// Kinds of ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Wallet,
    /// Source of sandbox money (and of test funding in live bootstrap).
    Funding,
}

impl AccountKind {
    fn as_str(self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::Funding => "funding",
        }
    }
}

/// A customer wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub id: i64,
    pub owner_account_id: String,
    pub environment: Environment,
    pub currency: String,
}

/// Balance of a set of wallets in one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub currency: String,
    /// Posted credits minus posted debits minus outgoing holds.
    pub available_minor: i64,
    /// Incoming, not yet settled.
    pub pending_minor: i64,
    /// Outgoing, held.
    pub reserved_minor: i64,
}

/// Status of a client-visible transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Settled,
    PendingReview,
    Declined,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Settled => "SETTLED",
            TxStatus::PendingReview => "PENDING_REVIEW",
            TxStatus::Declined => "DECLINED",
        }
    }
}

/// One leg: move `amount_minor` from `debit` to `credit`, posted or held.
#[derive(Debug, Clone, Copy)]
pub struct Leg {
    pub debit: i64,
    pub credit: i64,
    pub amount_minor: i64,
    pub pending: bool,
}

/// A client-visible transaction and the legs that carry it out.
#[derive(Debug, Clone)]
pub struct Movement<'a> {
    pub environment: Environment,
    pub account_id: &'a str,
    pub kind: &'static str,
    pub status: TxStatus,
    pub amount_minor: i64,
    pub currency: Currency,
    pub from_wallet: Option<i64>,
    pub to_wallet: Option<i64>,
    pub risk_score_bp: Option<u16>,
    pub rules_applied: &'a [String],
    pub metadata_json: &'a str,
    pub error_code: Option<&'static str>,
    pub legs: &'a [Leg],
    pub now_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger account {account} has insufficient funds")]
    InsufficientFunds { account: i64 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Recent activity of a wallet as a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Velocity {
    pub count: u32,
    pub sum_minor: i64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates a ledger account; `id` pins a wallet id (e.g. 101).
pub async fn create_account(
    db: &Db,
    id: Option<i64>,
    owner_account_id: Option<&str>,
    environment: Environment,
    kind: AccountKind,
    currency: Currency,
    flags: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO ledger_accounts (id, owner_account_id, environment, kind, currency, flags, created_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(id)
    .bind(owner_account_id)
    .bind(environment.as_str())
    .bind(kind.as_str())
    .bind(currency.code)
    .bind(flags)
    .bind(now_ms())
    .fetch_one(&db.writer)
    .await?;
    row.try_get(0)
}

/// Finds a wallet by its public id.
pub async fn wallet(db: &Db, id: i64) -> Result<Option<Wallet>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, owner_account_id, environment, currency FROM ledger_accounts
         WHERE id = ? AND kind = 'wallet'",
    )
    .bind(id)
    .fetch_optional(&db.reader)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let environment: String = row.try_get(2)?;
    Ok(Some(Wallet {
        id: row.try_get(0)?,
        owner_account_id: row.try_get(1)?,
        environment: Environment::parse(&environment).unwrap_or(Environment::Live),
        currency: row.try_get(3)?,
    }))
}

/// Balances of an account's wallets per currency, optionally of one wallet.
pub async fn balances(
    db: &Db,
    account_id: &str,
    wallet_id: Option<i64>,
) -> Result<Vec<Balance>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT currency,
                SUM(credits_posted - debits_posted - debits_pending),
                SUM(credits_pending),
                SUM(debits_pending)
         FROM ledger_accounts
         WHERE owner_account_id = ? AND kind = 'wallet' AND (? IS NULL OR id = ?)
         GROUP BY currency ORDER BY currency",
    )
    .bind(account_id)
    .bind(wallet_id)
    .bind(wallet_id)
    .fetch_all(&db.reader)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Balance {
                currency: r.try_get(0)?,
                available_minor: r.try_get(1)?,
                pending_minor: r.try_get(2)?,
                reserved_minor: r.try_get(3)?,
            })
        })
        .collect()
}

/// Count and sum of a wallet's outgoing transactions since `since_ms`.
pub async fn velocity(db: &Db, wallet_id: i64, since_ms: i64) -> Result<Velocity, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM transactions
         WHERE from_wallet = ? AND created_at_ms >= ? AND status IN ('SETTLED', 'PENDING_REVIEW')",
    )
    .bind(wallet_id)
    .bind(since_ms)
    .fetch_one(&db.reader)
    .await?;
    let count: i64 = row.try_get(0)?;
    Ok(Velocity {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        sum_minor: row.try_get(1)?,
    })
}

/// Records a transaction and applies all of its legs atomically. Returns the
/// transaction id. On `InsufficientFunds` nothing is written.
pub async fn record(db: &Db, movement: &Movement<'_>) -> Result<i64, LedgerError> {
    assert!(
        movement.amount_minor > 0,
        "movements carry a positive amount"
    );
    let mut tx = db.writer.begin().await?;
    let rules = serde_json::to_string(movement.rules_applied).expect("strings serialise");
    let row = sqlx::query(
        "INSERT INTO transactions (environment, account_id, kind, status, amount_minor, currency,
             from_wallet, to_wallet, risk_score_bp, rules_applied, metadata, error_code, created_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(movement.environment.as_str())
    .bind(movement.account_id)
    .bind(movement.kind)
    .bind(movement.status.as_str())
    .bind(movement.amount_minor)
    .bind(movement.currency.code)
    .bind(movement.from_wallet)
    .bind(movement.to_wallet)
    .bind(movement.risk_score_bp.map(i64::from))
    .bind(rules)
    .bind(movement.metadata_json)
    .bind(movement.error_code)
    .bind(movement.now_ms)
    .fetch_one(&mut *tx)
    .await?;
    let tx_id: i64 = row.try_get(0)?;

    for leg in movement.legs {
        assert!(
            leg.amount_minor > 0 && leg.debit != leg.credit,
            "legs are positive and between two accounts"
        );
        let debit_column = if leg.pending {
            "debits_pending"
        } else {
            "debits_posted"
        };
        let credit_column = if leg.pending {
            "credits_pending"
        } else {
            "credits_posted"
        };
        let debited = sqlx::query(&format!(
            "UPDATE ledger_accounts SET {debit_column} = {debit_column} + ?1
             WHERE id = ?2 AND currency = ?3
               AND ((flags & 1) = 0 OR debits_posted + debits_pending + ?1 <= credits_posted)"
        ))
        .bind(leg.amount_minor)
        .bind(leg.debit)
        .bind(movement.currency.code)
        .execute(&mut *tx)
        .await?;
        if debited.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(LedgerError::InsufficientFunds { account: leg.debit });
        }
        let credited = sqlx::query(&format!(
            "UPDATE ledger_accounts SET {credit_column} = {credit_column} + ?1 WHERE id = ?2 AND currency = ?3"
        ))
        .bind(leg.amount_minor)
        .bind(leg.credit)
        .bind(movement.currency.code)
        .execute(&mut *tx)
        .await?;
        assert_eq!(
            credited.rows_affected(),
            1,
            "credit account {} exists in {}",
            leg.credit,
            movement.currency.code
        );
        sqlx::query(
            "INSERT INTO transfers (transaction_id, debit_account_id, credit_account_id, amount_minor,
                 currency, pending, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tx_id)
        .bind(leg.debit)
        .bind(leg.credit)
        .bind(leg.amount_minor)
        .bind(movement.currency.code)
        .bind(leg.pending)
        .bind(movement.now_ms)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(tx_id)
}

/// Sum of debits and credits over all transfers, per currency: equal in a
/// sound ledger. Used by tests and, later, `nixo ledger verify`.
pub async fn totals(db: &Db) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT currency, SUM(debits_posted + debits_pending), SUM(credits_posted + credits_pending)
         FROM ledger_accounts GROUP BY currency ORDER BY currency",
    )
    .fetch_all(&db.reader)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}
