//! Double-entry ledger on SQLite or PostgreSQL.
//!
//! Every movement of money is a client-visible *transaction* made of
//! *transfers*. A transfer debits one ledger account and credits another by
//! the same positive integer amount of one currency, so debits equal credits
//! by construction. Transfers are immutable: a pending transfer (a hold) is
//! resolved by a later `post_pending` or `void_pending` transfer naming it,
//! at most once (a unique index), or voided by expiry.
//!
//! Account totals (debits/credits × pending/posted) change in the same
//! database transaction as the transfer rows. The no-overdraft rule is part
//! of the update's own `WHERE`, so it holds under any concurrency; accounts
//! are always updated in ascending id order, so writers on PostgreSQL cannot
//! deadlock each other. On SQLite all ledger writes go through one writer
//! task that commits many operations per fsync ([`writer`], group commit).

mod apply;
pub mod fx;
pub mod verify;
mod writer;

pub use writer::{WAL_AUTOCHECKPOINT_PAGES, WAL_RESTART_BYTES};

use crate::db::{Backend, Bind, Db};
use crate::money::Currency;
use sqlx::Row;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

pub(crate) fn injected_fault() -> LedgerError {
    LedgerError::Db(sqlx::Error::Protocol(
        "injected fault: the commit did not happen".into(),
    ))
}

/// Times a PostgreSQL ledger write runs when it keeps losing a deadlock or
/// a serialization conflict.
pub const CONFLICT_ATTEMPTS_MAX: u32 = 3;

/// Ledger account flag: debits may never exceed credits (no overdraft).
pub const FLAG_NO_OVERDRAFT: i64 = 1;
/// Rows one purge statement deletes at most ([`Ledger::purge`]): a purge is
/// a series of such deletes through the writer, so commits of transfers run
/// between them. (One `DELETE` of an hour of events — millions of rows under
/// sustained load — held SQLite's write lock, and every commit, for seconds.)
pub const PURGE_CHUNK_ROWS_MAX: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// A customer wallet (the API's integer wallet ids).
    Wallet,
    /// Source of sandbox money.
    Funding,
    /// Per-currency liquidity that cross-currency transfers pass through.
    FxLiquidity,
    /// Fees earned, per currency.
    Fees,
    /// Money in flight on the M-Pesa rail.
    MpesaClearing,
    /// Money in flight on bank rails.
    BankClearing,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::Funding => "funding",
            AccountKind::FxLiquidity => "fx_liquidity",
            AccountKind::Fees => "fees",
            AccountKind::MpesaClearing => "mpesa_clearing",
            AccountKind::BankClearing => "bank_clearing",
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
    /// Funds held while the money is on its way (a payout on its rail).
    Pending,
    Settled,
    PendingReview,
    Declined,
    Voided,
    Expired,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "PENDING",
            TxStatus::Settled => "SETTLED",
            TxStatus::PendingReview => "PENDING_REVIEW",
            TxStatus::Declined => "DECLINED",
            TxStatus::Voided => "VOIDED",
            TxStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<TxStatus> {
        [
            Self::Pending,
            Self::Settled,
            Self::PendingReview,
            Self::Declined,
            Self::Voided,
            Self::Expired,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One leg: move `amount_minor` of `currency` from `debit` to `credit`.
/// With `pending_timeout_at_ms` the leg is a hold that must be posted or
/// voided before that time, or it voids itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub debit: i64,
    pub credit: i64,
    pub amount_minor: i64,
    pub currency: Currency,
    pub pending_timeout_at_ms: Option<i64>,
}

/// The cross-currency part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FxApplied {
    pub to_amount_minor: i64,
    pub to_currency: Currency,
    /// Exact decimal text: destination units per source unit.
    pub rate: String,
    pub fee_minor: i64,
}

/// A client-visible transaction and the legs that carry it out; all legs
/// apply atomically or none does.
#[derive(Debug, Clone)]
pub struct Movement {
    /// Client-derivable identity: a second movement with the same id is not
    /// applied again (the first is returned as a replay).
    pub idempotency_id: Option<String>,
    pub environment: Environment,
    pub account_id: String,
    pub kind: &'static str,
    pub status: TxStatus,
    pub amount_minor: i64,
    pub currency: Currency,
    pub fx: Option<FxApplied>,
    pub from_wallet: Option<i64>,
    pub to_wallet: Option<i64>,
    pub risk_score_bp: Option<u16>,
    pub rules_applied: Vec<String>,
    pub metadata_json: String,
    pub error_code: Option<&'static str>,
    pub legs: Vec<Leg>,
    /// The caller's own rows, written in the same database transaction
    /// (skipped when the movement is a replay).
    pub effects: Vec<Effect>,
    pub now_ms: i64,
}

/// A write of the caller's domain (a payout row, its history, an event, a
/// job) that commits or rolls back with a ledger operation. The ledger runs
/// them after its own rows; it knows nothing of what they mean.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A statement (see [`Statement`]).
    Sql(Statement),
    /// An outbox event.
    Event {
        event_type: &'static str,
        account_id: String,
        environment: Environment,
        object: serde_json::Value,
    },
    /// An outbox event about the transaction a movement records: its id
    /// (as text) is set at `object[field]` when the movement is written.
    EventOfTransaction {
        event_type: &'static str,
        account_id: String,
        environment: Environment,
        object: serde_json::Value,
        field: &'static str,
    },
    /// A durable job.
    Job(crate::jobs::NewJob),
}

/// The result of recording a movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub tx_id: i64,
    pub status: TxStatus,
    /// True when this is an earlier transaction with the same identity.
    pub replayed: bool,
    pub created_at_ms: i64,
    pub risk_score_bp: Option<u16>,
    pub rules_applied: Vec<String>,
}

/// How to resolve the holds of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Post the holds; `Some(amount)` posts part of a single-leg hold and
    /// releases the rest.
    Post(Option<i64>),
    Void,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger account {account} has insufficient funds")]
    InsufficientFunds { account: i64 },
    #[error("ledger account {account} does not exist")]
    AccountNotFound { account: i64 },
    #[error("ledger account {account} does not hold {currency}")]
    CurrencyMismatch { account: i64, currency: &'static str },
    #[error("idempotency id {0} was used for a different transaction")]
    IdempotencyConflict(String),
    #[error("transaction {0} has no open hold")]
    NotPending(i64),
    #[error("the hold of transaction {0} has expired")]
    PendingExpired(i64),
    #[error("invalid operation: {0}")]
    Invalid(&'static str),
    /// A guarded effect changed nothing (see [`Effect::Sql`]).
    #[error("refused: {0}")]
    EffectRefused(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Work for the ledger writer.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    Record(Box<Movement>),
    Resolve {
        tx_id: i64,
        resolution: Resolution,
        effects: Vec<Effect>,
        now_ms: i64,
    },
    /// Effects alone (a state change that moves no money).
    Effects {
        effects: Vec<Effect>,
        now_ms: i64,
    },
    ExpireDue {
        now_ms: i64,
        limit: i64,
    },
}

/// A statement of the caller's domain: `$1…$n` bound to `binds`. One that
/// changes rows can say which with `RETURNING` (see
/// [`Ledger::write_statements`]). With `must_change`, a statement that
/// changes no row undoes the whole operation ([`LedgerError::EffectRefused`]
/// with that refusal): a guarded state change that lost a race.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: Cow<'static, str>,
    pub binds: Vec<Bind>,
    pub must_change: Option<&'static str>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, binds: Vec<Bind>) -> Statement {
        Statement {
            sql: sql.into(),
            binds,
            must_change: None,
        }
    }

    /// Makes the statement guarded: changing no row undoes the operation
    /// with `refusal`.
    pub fn must_change(self, refusal: &'static str) -> Statement {
        Statement {
            must_change: Some(refusal),
            ..self
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum WriteOutcome {
    Recorded(Recorded),
    Resolved(TxStatus),
    Expired(u64),
    /// The rows of each statement among the effects, in order.
    Rows(Vec<Vec<crate::sql_exec::SqlRow>>),
}

/// The writer's answer to one operation, and when it sent it.
pub(crate) type Reply = oneshot::Sender<(Result<WriteOutcome, LedgerError>, std::time::Instant)>;
/// An operation for the SQLite writer, with where to answer and when it
/// was queued.
pub(crate) type Queued = (WriteOp, Reply, std::time::Instant);

/// The ledger: reads through the pool; writes through the group-commit
/// writer on SQLite, or in their own transactions on PostgreSQL.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub db: Db,
    writer: Option<mpsc::Sender<Queued>>,
    faults: Faults,
    /// PostgreSQL writes rolled back by a deadlock or a serialization
    /// failure and run again (also `nixo_ledger_write_conflicts_total`).
    conflicts: Arc<AtomicU64>,
    /// SQLite group commits run a second time, each operation in its own
    /// savepoint, because one of their operations failed (also
    /// `nixo_ledger_batches_rerun_total`).
    reruns: Arc<AtomicU64>,
}

/// Fault injection for tests: make the next commit fail after every
/// statement of its operations ran (rows and events written, not committed).
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<AtomicBool>);

impl Faults {
    /// Takes the armed fault, if any, for a commit of `ops`: only a commit
    /// that records a movement takes it (a background sweep committing
    /// meanwhile does not).
    pub(crate) fn take_for<'a>(&self, mut ops: impl Iterator<Item = &'a WriteOp>) -> bool {
        ops.any(|op| matches!(op, WriteOp::Record(_))) && self.0.swap(false, Ordering::SeqCst)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Ledger {
    pub async fn new(db: Db) -> anyhow::Result<Ledger> {
        let faults = Faults::default();
        let reruns = Arc::<AtomicU64>::default();
        let writer = match db.backend {
            Backend::Sqlite => {
                let file = db.sqlite_file().ok_or_else(|| {
                    anyhow::anyhow!("the SQLite ledger needs a database file, not an in-memory database")
                })?;
                Some(writer::spawn(&file, faults.clone(), reruns.clone())?)
            }
            Backend::Postgres => None,
        };
        Ok(Ledger {
            db,
            writer,
            faults,
            conflicts: Arc::default(),
            reruns,
        })
    }

    /// Makes the next ledger commit that records a movement fail after its
    /// operations ran, as a crash between the writes and the commit would
    /// (tests use it).
    pub fn fail_next_commit(&self) {
        self.faults.0.store(true, Ordering::SeqCst);
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, LedgerError> {
        match &self.writer {
            Some(writer) => {
                let (reply, answer) = oneshot::channel();
                writer
                    .send((op, reply, std::time::Instant::now()))
                    .await
                    .map_err(|_| sqlx::Error::PoolClosed)?;
                let (outcome, answered_at) = answer.await.map_err(|_| sqlx::Error::PoolClosed)?;
                crate::metrics::Stage::LedgerReply.done(answered_at);
                outcome
            }
            None => {
                let mut attempt = 1;
                loop {
                    match self.write_once(&op).await {
                        Err(LedgerError::Db(sqlx::Error::Database(e)))
                            if attempt < CONFLICT_ATTEMPTS_MAX
                                && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
                        {
                            // A deadlock or serialization failure rolled the
                            // whole operation back: run it again.
                            tracing::warn!(attempt, error = %e, "ledger write conflicted; running it again");
                            self.conflicts.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("nixo_ledger_write_conflicts_total").increment(1);
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    /// Writes that lost a deadlock or a serialization conflict and ran again
    /// since this ledger started (PostgreSQL; always 0 on SQLite's single
    /// writer).
    pub fn write_conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Group commits (SQLite) that ran again, each operation in its own
    /// savepoint, because one of their operations failed.
    pub fn batches_rerun(&self) -> u64 {
        self.reruns.load(Ordering::Relaxed)
    }

    /// One database transaction for `op` (PostgreSQL).
    async fn write_once(&self, op: &WriteOp) -> Result<WriteOutcome, LedgerError> {
        let mut tx = self.db.pool.begin().await?;
        match apply::apply(&mut *tx, op).await {
            Ok(_) if self.faults.take_for(std::iter::once(op)) => {
                tx.rollback().await?;
                Err(injected_fault())
            }
            Ok(outcome) => {
                tx.commit().await?;
                Ok(outcome)
            }
            Err(err) => {
                tx.rollback().await?;
                Err(err)
            }
        }
    }

    /// Records a transaction and applies its legs atomically.
    pub async fn record(&self, movement: Movement) -> Result<Recorded, LedgerError> {
        if movement.amount_minor <= 0 {
            return Err(LedgerError::Invalid("amounts are positive"));
        }
        let kind = movement.kind;
        match self.write(WriteOp::Record(Box::new(movement))).await? {
            WriteOutcome::Recorded(recorded) => {
                if !recorded.replayed {
                    metrics::counter!("nixo_ledger_transactions_total", "kind" => kind, "status" => recorded.status.as_str())
                        .increment(1);
                }
                Ok(recorded)
            }
            other => unreachable!("record answered {other:?}"),
        }
    }

    /// Posts or voids the open holds of a transaction.
    pub async fn resolve(&self, tx_id: i64, resolution: Resolution) -> Result<TxStatus, LedgerError> {
        self.resolve_with(tx_id, resolution, Vec::new(), now_ms()).await
    }

    /// Posts or voids the open holds of a transaction and applies `effects`
    /// in the same database transaction.
    pub async fn resolve_with(
        &self,
        tx_id: i64,
        resolution: Resolution,
        effects: Vec<Effect>,
        now_ms: i64,
    ) -> Result<TxStatus, LedgerError> {
        let op = WriteOp::Resolve {
            tx_id,
            resolution,
            effects,
            now_ms,
        };
        match self.write(op).await? {
            WriteOutcome::Resolved(status) => Ok(status),
            other => unreachable!("resolve answered {other:?}"),
        }
    }

    /// Applies `effects` atomically through the ledger's writer (on SQLite,
    /// the one writing connection), without moving money.
    pub async fn apply_effects(&self, effects: Vec<Effect>, now_ms: i64) -> Result<(), LedgerError> {
        match self.write(WriteOp::Effects { effects, now_ms }).await? {
            WriteOutcome::Rows(_) => Ok(()),
            other => unreachable!("effects answered {other:?}"),
        }
    }

    /// Runs `statements` in one transaction through the ledger's writer (on
    /// SQLite the one writing connection, so another subsystem's writes never
    /// wait on the ledger's lock, nor it on theirs); answers each statement's
    /// rows. All or nothing: one that fails undoes the others.
    pub async fn write_statements(
        &self,
        statements: Vec<Statement>,
    ) -> Result<Vec<Vec<crate::sql_exec::SqlRow>>, LedgerError> {
        let effects = statements.into_iter().map(Effect::Sql).collect();
        match self
            .write(WriteOp::Effects {
                effects,
                now_ms: now_ms(),
            })
            .await?
        {
            WriteOutcome::Rows(rows) => Ok(rows),
            other => unreachable!("statements answered {other:?}"),
        }
    }

    /// Deletes the rows of `table` that `condition` selects (`$1…` bound to
    /// `binds`), [`PURGE_CHUNK_ROWS_MAX`] at a time, each chunk one write of
    /// its own; `key` names a row (its key's columns: `id`, or `a, b`).
    /// Returns how many rows it deleted. Retention sweeps use it.
    pub async fn purge(
        &self,
        table: &'static str,
        key: &'static str,
        condition: &'static str,
        binds: Vec<Bind>,
    ) -> Result<u64, LedgerError> {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN \
             (SELECT {key} FROM {table} WHERE {condition} LIMIT {PURGE_CHUNK_ROWS_MAX}) RETURNING 1"
        );
        let mut deleted = 0;
        loop {
            let answers = self
                .write_statements(vec![Statement::new(sql.clone(), binds.clone())])
                .await?;
            let chunk = answers.first().map_or(0, Vec::len);
            deleted += chunk as u64;
            if chunk < PURGE_CHUNK_ROWS_MAX {
                return Ok(deleted);
            }
        }
    }

    /// Voids up to `limit` holds whose time is up; returns how many.
    pub async fn expire_due(&self, now_ms: i64, limit: i64) -> Result<u64, LedgerError> {
        match self.write(WriteOp::ExpireDue { now_ms, limit }).await? {
            WriteOutcome::Expired(n) => Ok(n),
            other => unreachable!("expire answered {other:?}"),
        }
    }

    /// Stops the writer after the work already queued.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Creates a ledger account; `id` pins a wallet id (e.g. 101).
    pub async fn create_account(
        &self,
        id: Option<i64>,
        owner_account_id: Option<&str>,
        environment: Environment,
        kind: AccountKind,
        currency: Currency,
        flags: i64,
    ) -> Result<i64, sqlx::Error> {
        // PostgreSQL identity columns take an explicit id only when named.
        let row = match id {
            Some(id) => sqlx::query(
                "INSERT INTO ledger_accounts (id, owner_account_id, environment, kind, currency, flags, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(id),
            None => sqlx::query(
                "INSERT INTO ledger_accounts (owner_account_id, environment, kind, currency, flags, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            ),
        };
        let row = row
            .bind(owner_account_id)
            .bind(environment.as_str())
            .bind(kind.as_str())
            .bind(currency.code)
            .bind(flags)
            .bind(now_ms())
            .fetch_one(&self.db.pool)
            .await?;
        row.try_get(0)
    }

    /// The system account of a kind for a currency, created on first use
    /// (through the writer; found by the direct reader every other time).
    pub async fn system_account(
        &self,
        environment: Environment,
        kind: AccountKind,
        currency: Currency,
    ) -> Result<i64, LedgerError> {
        assert!(kind != AccountKind::Wallet, "wallets are not system accounts");
        let binds = [environment.as_str().into(), kind.as_str().into(), currency.code.into()];
        let find = "SELECT id FROM ledger_accounts WHERE environment = $1 AND kind = $2 AND currency = $3";
        if let Some(row) = self.db.read_optional(find, &binds).await? {
            return Ok(row.int(0)?);
        }
        let mut create_binds = binds.to_vec();
        create_binds.push(now_ms().into());
        let create = Statement::new(
            "INSERT INTO ledger_accounts (environment, kind, currency, flags, created_at_ms)
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING RETURNING id",
            create_binds,
        );
        self.write_statements(vec![create]).await?;
        let row = self
            .db
            .read_optional(find, &binds)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok(row.int(0)?)
    }

    /// Finds a wallet by its public id.
    pub async fn wallet(&self, id: i64) -> Result<Option<Wallet>, sqlx::Error> {
        let row = self
            .db
            .read_optional(
                "SELECT id, owner_account_id, environment, currency FROM ledger_accounts
                 WHERE id = $1 AND kind = 'wallet'",
                &[id.into()],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Wallet {
            id: row.int(0)?,
            owner_account_id: row.text(1)?,
            environment: Environment::parse(&row.text(2)?).unwrap_or(Environment::Live),
            currency: row.text(3)?,
        }))
    }

    /// Balances of an account's wallets per currency, optionally of one wallet.
    pub async fn balances(&self, account_id: &str, wallet_id: Option<i64>) -> Result<Vec<Balance>, sqlx::Error> {
        let rows = match (wallet_id, self.db.backend) {
            (None, crate::db::Backend::Sqlite) => self.db.read_all(ACCOUNT_BALANCES_SQL, &[account_id.into()]).await?,
            _ => {
                self.db
                    .read_all(BALANCES_SQL, &[account_id.into(), wallet_id.unwrap_or(0).into()])
                    .await?
            }
        };
        balances_from_rows(&rows)
    }

    /// Count and sum of a wallet's counted outgoing transactions (settled
    /// or in review) in the last hour and the last day as of `now_ms`, read
    /// from the buckets the database keeps with every change (migration
    /// 0017): at most 60 + 24 rows, whatever the wallet's history (on
    /// PostgreSQL each in up to 8 stripes, migration 0024).
    pub async fn velocity(&self, wallet_id: i64, now_ms: i64) -> Result<VelocityWindows, sqlx::Error> {
        let (hour_from, day_from) = velocity_window_starts(now_ms);
        let row = self
            .db
            .read_one(
                "SELECT CAST(COALESCE(SUM(CASE WHEN width_ms = $2 THEN count ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN width_ms = $2 THEN sum_minor ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN width_ms = $4 THEN count ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN width_ms = $4 THEN sum_minor ELSE 0 END), 0) AS BIGINT)
             FROM velocity_buckets
             WHERE wallet_id = $1 AND ((width_ms = $2 AND start_ms >= $3) OR (width_ms = $4 AND start_ms >= $5))",
                &[
                    wallet_id.into(),
                    VELOCITY_MINUTE_MS.into(),
                    hour_from.into(),
                    VELOCITY_HOUR_MS.into(),
                    day_from.into(),
                ],
            )
            .await?;
        let window = |count: i64, sum_minor: i64| Velocity {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            sum_minor,
        };
        Ok(VelocityWindows {
            last_hour: window(row.int(0)?, row.int(1)?),
            last_day: window(row.int(2)?, row.int(3)?),
        })
    }

    /// Deletes velocity buckets no window reads any more (older than a day
    /// and an hour before `now_ms`) and daily outgoing sums of days before
    /// yesterday (the daily limit reads today's); returns how many.
    pub async fn purge_velocity(&self, now_ms: i64) -> Result<u64, LedgerError> {
        let before = velocity_window_starts(now_ms).1 - VELOCITY_HOUR_MS;
        let buckets = self
            .purge(
                "velocity_buckets",
                "wallet_id, width_ms, start_ms",
                "start_ms < $1",
                vec![before.into()],
            )
            .await?;
        let yesterday = crate::limits::day_start_ms(now_ms) - crate::limits::DAY_MS;
        let days = self
            .purge(
                "outgoing_daily",
                "account_id, currency, day_start_ms",
                "day_start_ms < $1",
                vec![yesterday.into()],
            )
            .await?;
        Ok(buckets + days)
    }
}

/// Width of the buckets of the last-hour window.
pub const VELOCITY_MINUTE_MS: i64 = 60_000;
/// Width of the buckets of the last-day window.
pub const VELOCITY_HOUR_MS: i64 = 3_600_000;
/// The last hour: the current minute and the 59 before it.
pub const VELOCITY_HOUR_WINDOW_MINUTES: i64 = 60;
/// The last day: the current hour and the 23 before it.
pub const VELOCITY_DAY_WINDOW_HOURS: i64 = 24;

/// Where the last-hour and last-day windows start as of `now_ms`: whole
/// buckets, so a window is between one bucket shorter than its name and
/// exactly its name long.
pub fn velocity_window_starts(now_ms: i64) -> (i64, i64) {
    let minute = now_ms - now_ms.rem_euclid(VELOCITY_MINUTE_MS);
    let hour = now_ms - now_ms.rem_euclid(VELOCITY_HOUR_MS);
    (
        minute - (VELOCITY_HOUR_WINDOW_MINUTES - 1) * VELOCITY_MINUTE_MS,
        hour - (VELOCITY_DAY_WINDOW_HOURS - 1) * VELOCITY_HOUR_MS,
    )
}

/// An account's balances per currency on SQLite, from the totals the
/// database keeps with every change of its wallets (migration 0022: one row
/// per currency), whatever the number of wallets. PostgreSQL sums the
/// wallets ([`BALANCES_SQL`]): there, one row per account would make every
/// transfer of the account wait for the one before it to commit, and rows
/// shared by several wallets would be locked out of the wallets' order.
pub(crate) const ACCOUNT_BALANCES_SQL: &str = "SELECT currency, available_minor, pending_minor, reserved_minor
     FROM account_balances WHERE account_id = $1 ORDER BY currency";

/// The balances of one of an account's wallets (`$2`), from its totals;
/// with `$2` = 0 the sum over all of the account's wallets (on SQLite
/// [`ACCOUNT_BALANCES_SQL`] reads it kept; `nixo ledger verify` compares
/// the two).
pub(crate) const BALANCES_SQL: &str = "SELECT currency,
        CAST(SUM(credits_posted - debits_posted - debits_pending) AS BIGINT),
        CAST(SUM(credits_pending) AS BIGINT),
        CAST(SUM(debits_pending) AS BIGINT)
     FROM ledger_accounts
     WHERE owner_account_id = $1 AND kind = 'wallet' AND ($2 = 0 OR id = $2)
     GROUP BY currency ORDER BY currency";

pub(crate) fn balances_from_rows(rows: &[crate::sql_exec::SqlRow]) -> Result<Vec<Balance>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(Balance {
                currency: r.text(0)?,
                available_minor: r.int(1)?,
                pending_minor: r.int(2)?,
                reserved_minor: r.int(3)?,
            })
        })
        .collect()
}

/// Recent activity of a wallet as a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Velocity {
    pub count: u32,
    pub sum_minor: i64,
}

/// A wallet's activity as a source in both windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VelocityWindows {
    pub last_hour: Velocity,
    pub last_day: Velocity,
}
