//! The SQL that applies ledger operations, inside a transaction the caller
//! owns (a savepoint of the SQLite group commit, or a PostgreSQL
//! transaction). On any error the caller rolls back: nothing half-applied.

use super::{
    Effect, Environment, FxApplied, LedgerError, Movement, Recorded, Resolution, Statement, TxStatus, WriteOp,
    WriteOutcome,
};
use crate::db::Bind;
use crate::money::Currency;
use crate::sql_exec::{Exec, SqlRow};
use std::collections::BTreeMap;

/// Changes to one account's four totals.
#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    currency: &'static str,
    debits_pending: i64,
    debits_posted: i64,
    credits_pending: i64,
    credits_posted: i64,
}

type Deltas = BTreeMap<i64, Delta>;

fn delta(deltas: &mut Deltas, account: i64, currency: Currency) -> Result<&mut Delta, LedgerError> {
    let entry = deltas.entry(account).or_insert(Delta {
        currency: currency.code,
        ..Delta::default()
    });
    if entry.currency != currency.code {
        return Err(LedgerError::CurrencyMismatch {
            account,
            currency: currency.code,
        });
    }
    Ok(entry)
}

pub(super) async fn apply<C: Exec>(conn: &mut C, op: &WriteOp) -> Result<WriteOutcome, LedgerError> {
    match op {
        WriteOp::Record(movement) => record(conn, movement).await.map(WriteOutcome::Recorded),
        WriteOp::Resolve {
            tx_id,
            resolution,
            effects,
            now_ms,
        } => {
            let status = match resolution {
                Resolution::Post(_) => TxStatus::Settled,
                Resolution::Void => TxStatus::Voided,
            };
            let status = resolve(conn, *tx_id, *resolution, status, *now_ms).await?;
            apply_effects(conn, effects, *now_ms, None).await?;
            Ok(WriteOutcome::Resolved(status))
        }
        WriteOp::Effects { effects, now_ms } => {
            let rows = apply_effects(conn, effects, *now_ms, None).await?;
            Ok(WriteOutcome::Rows(rows))
        }
        WriteOp::ExpireDue { now_ms, limit } => expire_due(conn, *now_ms, *limit).await.map(WriteOutcome::Expired),
    }
}

/// Runs the caller's effects, in order, on the operation's transaction;
/// `this_tx` is the transaction a movement just recorded (for
/// [`Bind::ThisTransaction`] and [`Effect::EventOfTransaction`]). Answers
/// the rows of each statement among them, in order (a guarded statement
/// answers none).
async fn apply_effects<C: Exec>(
    conn: &mut C,
    effects: &[Effect],
    now_ms: i64,
    this_tx: Option<i64>,
) -> Result<Vec<Vec<SqlRow>>, LedgerError> {
    let mut answers = Vec::new();
    for effect in effects {
        match effect {
            Effect::Sql(Statement {
                sql,
                binds,
                must_change,
            }) => {
                let bound: Vec<Bind>;
                let binds = if this_tx.is_some() && binds.iter().any(|b| matches!(b, Bind::ThisTransaction)) {
                    bound = binds
                        .iter()
                        .map(|b| match (b, this_tx) {
                            (Bind::ThisTransaction, Some(id)) => Bind::Int(id),
                            (other, _) => other.clone(),
                        })
                        .collect();
                    &bound
                } else {
                    binds
                };
                match must_change {
                    Some(refusal) => {
                        if conn.execute(sql, binds).await? == 0 {
                            return Err(LedgerError::EffectRefused(refusal));
                        }
                        answers.push(Vec::new());
                    }
                    None => answers.push(conn.fetch_all(sql, binds).await?),
                }
            }
            Effect::Event {
                event_type,
                account_id,
                environment,
                object,
            } => {
                crate::events::emit(conn, event_type, account_id, *environment, object, now_ms).await?;
            }
            Effect::EventOfTransaction {
                event_type,
                account_id,
                environment,
                object,
                field,
            } => {
                let mut object = object.clone();
                object[*field] = serde_json::json!(this_tx.map(|id| id.to_string()));
                crate::events::emit(conn, event_type, account_id, *environment, &object, now_ms).await?;
            }
            Effect::Job(job) => {
                crate::jobs::enqueue(conn, job, now_ms).await?;
            }
        }
    }
    Ok(answers)
}

/// The balance update of one account: the no-overdraft rule in its `WHERE`.
const UPDATE_TOTALS_SQL: &str = "UPDATE ledger_accounts SET
         debits_pending = debits_pending + $1, debits_posted = debits_posted + $2,
         credits_pending = credits_pending + $3, credits_posted = credits_posted + $4
     WHERE id = $5 AND currency = $6
       AND ((flags & 1) = 0
            OR (debits_posted + $2) + (debits_pending + $1) <= credits_posted + $4)";

/// Whether `conn` tells rowids itself: then it is SQLite, where a
/// `RETURNING` clause costs a temporary table (see [`Exec::last_insert_rowid`])
/// and an account's balances are kept (`account_balances`).
fn answers_rowids<C: Exec>(conn: &C) -> bool {
    conn.last_insert_rowid().is_some()
}

/// Who owns the accounts `deltas` move money on, read before their rows are
/// updated: those customer wallets with their owners, and the customer
/// accounts (and environment) they belong to. A missing account is refused
/// here.
async fn owners_of<C: Exec>(conn: &mut C, deltas: &Deltas) -> Result<(Owners, Wallets), LedgerError> {
    let mut owners = Owners::new();
    let mut wallets = Wallets::new();
    for account in deltas.keys() {
        let row = conn
            .fetch_optional(
                "SELECT kind, owner_account_id, environment FROM ledger_accounts WHERE id = $1",
                &[(*account).into()],
            )
            .await?
            .ok_or(LedgerError::AccountNotFound { account: *account })?;
        let kind = row.text(0)?;
        let owner = row.opt_text(1)?;
        if let (true, Some(owner)) = (kind == "wallet", owner) {
            let environment = row.text(2)?;
            let environment =
                Environment::parse(&environment).ok_or(LedgerError::Invalid("unknown stored environment"))?;
            wallets.push((*account, owner.clone()));
            owners.insert((owner, environment));
        }
    }
    Ok((owners, wallets))
}

/// Applies deltas in ascending account order (no deadlocks between writers),
/// each update carrying the no-overdraft rule in its `WHERE`. On PostgreSQL
/// an updated row stays locked until the commit, and every transfer from
/// the wallet waits for it: callers update balances last.
async fn apply_deltas<C: Exec>(conn: &mut C, deltas: &Deltas) -> Result<(), LedgerError> {
    for (account, d) in deltas {
        let binds = [
            d.debits_pending.into(),
            d.debits_posted.into(),
            d.credits_pending.into(),
            d.credits_posted.into(),
            (*account).into(),
            d.currency.into(),
        ];
        if conn.execute(UPDATE_TOTALS_SQL, &binds).await? > 0 {
            continue;
        }
        let found = conn
            .fetch_optional(
                "SELECT currency FROM ledger_accounts WHERE id = $1",
                &[(*account).into()],
            )
            .await?;
        return Err(match found {
            None => LedgerError::AccountNotFound { account: *account },
            Some(row) if row.text(0)? != d.currency => LedgerError::CurrencyMismatch {
                account: *account,
                currency: d.currency,
            },
            Some(_) => LedgerError::InsufficientFunds { account: *account },
        });
    }
    Ok(())
}

/// Customer wallets a change touched, with the account that owns each.
type Wallets = Vec<(i64, String)>;

/// Customer accounts (and their environment) whose wallets a change touched.
type Owners = std::collections::BTreeSet<(String, Environment)>;

/// `balance.updated` for every account whose wallets changed, with the
/// account's balances after the change, in the same transaction.
async fn emit_balance_events<C: Exec>(conn: &mut C, owners: &Owners, now_ms: i64) -> Result<(), LedgerError> {
    for (account_id, environment) in owners {
        let rows = if answers_rowids(conn) {
            conn.fetch_all(super::ACCOUNT_BALANCES_SQL, &[account_id.as_str().into()])
                .await?
        } else {
            conn.fetch_all(super::BALANCES_SQL, &[account_id.as_str().into(), 0_i64.into()])
                .await?
        };
        let balances = super::balances_from_rows(&rows)?;
        let object = crate::resources::balance(*environment == Environment::Live, &balances);
        crate::events::emit(
            conn,
            crate::events::BALANCE_UPDATED,
            account_id,
            *environment,
            &object,
            now_ms,
        )
        .await?;
    }
    Ok(())
}

async fn record<C: Exec>(conn: &mut C, m: &Movement) -> Result<Recorded, LedgerError> {
    let rules = serde_json::to_string(&m.rules_applied).expect("strings serialise");
    let fx: Option<&FxApplied> = m.fx.as_ref();
    const INSERT_SQL: &str = "INSERT INTO transactions (idempotency_id, environment, account_id, kind, status,
             amount_minor, currency, to_amount_minor, to_currency, fx_rate, fee_minor, from_wallet, to_wallet,
             risk_score_bp, rules_applied, metadata, error_code, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (idempotency_id) DO NOTHING";
    let binds = [
        m.idempotency_id.as_deref().into(),
        m.environment.as_str().into(),
        m.account_id.as_str().into(),
        m.kind.into(),
        m.status.as_str().into(),
        m.amount_minor.into(),
        m.currency.code.into(),
        fx.map(|f| f.to_amount_minor).into(),
        fx.map(|f| f.to_currency.code).into(),
        fx.map(|f| f.rate.as_str()).into(),
        fx.map_or(0, |f| f.fee_minor).into(),
        m.from_wallet.into(),
        m.to_wallet.into(),
        m.risk_score_bp.map(i64::from).into(),
        rules.into(),
        m.metadata_json.as_str().into(),
        m.error_code.into(),
        m.now_ms.into(),
    ];
    // The new row's id; none when the identity was used before.
    let inserted = if answers_rowids(conn) {
        match conn.execute(INSERT_SQL, &binds).await? {
            0 => None,
            _ => conn.last_insert_rowid(),
        }
    } else {
        conn.fetch_optional(&format!("{INSERT_SQL} RETURNING id"), &binds)
            .await?
            .map(|row| row.int(0))
            .transpose()?
    };
    let Some(tx_id) = inserted else {
        return replay(conn, m).await;
    };

    let mut deltas = Deltas::new();
    for leg in &m.legs {
        if leg.amount_minor <= 0 || leg.debit == leg.credit {
            return Err(LedgerError::Invalid("legs move a positive amount between two accounts"));
        }
        let pending = leg.pending_timeout_at_ms.is_some();
        let d = delta(&mut deltas, leg.debit, leg.currency)?;
        if pending {
            d.debits_pending += leg.amount_minor;
        } else {
            d.debits_posted += leg.amount_minor;
        }
        let c = delta(&mut deltas, leg.credit, leg.currency)?;
        if pending {
            c.credits_pending += leg.amount_minor;
        } else {
            c.credits_posted += leg.amount_minor;
        }
        conn.execute(
            "INSERT INTO transfers (transaction_id, kind, debit_account_id, credit_account_id, amount_minor,
                 currency, timeout_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                tx_id.into(),
                (if pending { "pending" } else { "posted" }).into(),
                leg.debit.into(),
                leg.credit.into(),
                leg.amount_minor.into(),
                leg.currency.code.into(),
                leg.pending_timeout_at_ms.into(),
                m.now_ms.into(),
            ],
        )
        .await?;
    }
    let (owners, wallets) = owners_of(conn, &deltas).await?;
    // Who sees it: its maker and every account whose wallet it touched.
    let seen_by = std::iter::once(m.account_id.as_str())
        .chain(owners.iter().map(|(owner, _)| owner.as_str()))
        .collect::<std::collections::BTreeSet<_>>();
    for account in seen_by {
        conn.execute(
            "INSERT INTO account_transactions (account_id, environment, transaction_id, kind, currency, amount_minor,
                 created_at_ms, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                account.into(),
                m.environment.as_str().into(),
                tx_id.into(),
                m.kind.into(),
                m.currency.code.into(),
                m.amount_minor.into(),
                m.now_ms.into(),
                m.status.as_str().into(),
            ],
        )
        .await?;
    }
    // And every customer wallet its legs touch, for the wallet filter.
    if !wallets.is_empty() {
        let rows = (0..wallets.len())
            .map(|i| format!("(${}, $1, ${}, $2)", 3 + 2 * i, 4 + 2 * i))
            .collect::<Vec<_>>()
            .join(", ");
        let mut binds = vec![tx_id.into(), m.now_ms.into()];
        for (wallet, owner) in &wallets {
            binds.push((*wallet).into());
            binds.push(owner.as_str().into());
        }
        conn.execute(
            &format!(
                "INSERT INTO wallet_transactions (wallet_id, transaction_id, account_id, created_at_ms)
                 VALUES {rows} ON CONFLICT DO NOTHING"
            ),
            &binds,
        )
        .await?;
    }
    apply_effects(conn, &m.effects, m.now_ms, Some(tx_id)).await?;
    // The balances last: on PostgreSQL a wallet's next transfer waits from
    // here to this one's commit (one wallet pair at 16 connections, end to
    // end: 453–529 transfers/s and p99 45–58 ms, against 381–435/s and
    // 82–111 ms with them before the other rows and unstriped velocity
    // buckets; striping alone, 356–407/s).
    apply_deltas(conn, &deltas).await?;
    emit_balance_events(conn, &owners, m.now_ms).await?;
    Ok(Recorded {
        tx_id,
        status: m.status,
        replayed: false,
        created_at_ms: m.now_ms,
        risk_score_bp: m.risk_score_bp,
        rules_applied: m.rules_applied.clone(),
    })
}

/// The earlier transaction with the same identity, if it is the same
/// operation; a different operation under a used identity is refused.
async fn replay<C: Exec>(conn: &mut C, m: &Movement) -> Result<Recorded, LedgerError> {
    let id = m.idempotency_id.clone().expect("only identified movements conflict");
    let row = conn
        .fetch_optional(
            "SELECT id, kind, amount_minor, currency, from_wallet, to_wallet, account_id, status, created_at_ms,
                    risk_score_bp, rules_applied
             FROM transactions WHERE idempotency_id = $1",
            &[id.as_str().into()],
        )
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let same = row.text(1)? == m.kind
        && row.int(2)? == m.amount_minor
        && row.text(3)? == m.currency.code
        && row.opt_int(4)? == m.from_wallet
        && row.opt_int(5)? == m.to_wallet
        && row.text(6)? == m.account_id;
    if !same {
        return Err(LedgerError::IdempotencyConflict(id));
    }
    let status = row.text(7)?;
    let rules = row.text(10)?;
    Ok(Recorded {
        tx_id: row.int(0)?,
        status: TxStatus::parse(&status).ok_or(LedgerError::Invalid("unknown stored status"))?,
        replayed: true,
        created_at_ms: row.int(8)?,
        risk_score_bp: row.opt_int(9)?.and_then(|s| u16::try_from(s).ok()),
        rules_applied: serde_json::from_str(&rules).unwrap_or_default(),
    })
}

async fn resolve<C: Exec>(
    conn: &mut C,
    tx_id: i64,
    resolution: Resolution,
    status: TxStatus,
    now_ms: i64,
) -> Result<TxStatus, LedgerError> {
    let rows = conn
        .fetch_all(
            "SELECT t.id, t.debit_account_id, t.credit_account_id, t.amount_minor, t.currency, t.timeout_at_ms
             FROM transfers t
             WHERE t.transaction_id = $1 AND t.kind = 'pending'
               AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)
             ORDER BY t.id",
            &[tx_id.into()],
        )
        .await?;
    if rows.is_empty() {
        return Err(LedgerError::NotPending(tx_id));
    }
    if let Resolution::Post(Some(amount)) = resolution
        && rows.len() != 1
    {
        let _ = amount;
        return Err(LedgerError::Invalid("a partial post needs a single-leg hold"));
    }
    let mut deltas = Deltas::new();
    for row in &rows {
        let pending_id = row.int(0)?;
        let debit = row.int(1)?;
        let credit = row.int(2)?;
        let held = row.int(3)?;
        let currency_code = row.text(4)?;
        let timeout_at_ms = row.opt_int(5)?;
        let currency = Currency::from_code(&currency_code).ok_or(LedgerError::Invalid("unknown stored currency"))?;
        let (kind, moved) = match resolution {
            Resolution::Post(partial) => {
                if timeout_at_ms.is_some_and(|t| t <= now_ms) {
                    return Err(LedgerError::PendingExpired(tx_id));
                }
                let moved = partial.unwrap_or(held);
                if moved <= 0 || moved > held {
                    return Err(LedgerError::Invalid("a post moves between 1 and the held amount"));
                }
                ("post_pending", moved)
            }
            Resolution::Void => ("void_pending", 0),
        };
        let d = delta(&mut deltas, debit, currency)?;
        d.debits_pending -= held;
        d.debits_posted += moved;
        let c = delta(&mut deltas, credit, currency)?;
        c.credits_pending -= held;
        c.credits_posted += moved;
        let inserted = conn
            .execute(
                "INSERT INTO transfers (transaction_id, kind, debit_account_id, credit_account_id, amount_minor,
                     currency, pending_id, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    tx_id.into(),
                    kind.into(),
                    debit.into(),
                    credit.into(),
                    (if moved > 0 { moved } else { held }).into(),
                    currency.code.into(),
                    pending_id.into(),
                    now_ms.into(),
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            // A concurrent resolution of the same hold won the race.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(LedgerError::NotPending(tx_id));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The transaction's row first (its status change moves the velocity
    // facts), then the balances: the order `record` takes them in (the
    // transaction's insert, then the balances), so that a recording and a
    // resolution on the same wallet cannot deadlock on PostgreSQL.
    conn.execute(
        "UPDATE transactions SET status = $1 WHERE id = $2",
        &[status.as_str().into(), tx_id.into()],
    )
    .await?;
    conn.execute(
        "UPDATE account_transactions SET status = $1 WHERE transaction_id = $2",
        &[status.as_str().into(), tx_id.into()],
    )
    .await?;
    let (owners, _) = owners_of(conn, &deltas).await?;
    apply_deltas(conn, &deltas).await?;
    emit_balance_events(conn, &owners, now_ms).await?;
    Ok(status)
}

async fn expire_due<C: Exec>(conn: &mut C, now_ms: i64, limit: i64) -> Result<u64, LedgerError> {
    let rows = conn
        .fetch_all(
            "SELECT DISTINCT t.transaction_id FROM transfers t
             WHERE t.kind = 'pending' AND t.timeout_at_ms <= $1
               AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)
             ORDER BY t.transaction_id LIMIT $2",
            &[now_ms.into(), limit.into()],
        )
        .await?;
    let mut expired = 0;
    for row in rows {
        let tx_id = row.int(0)?;
        resolve(conn, tx_id, Resolution::Void, TxStatus::Expired, now_ms).await?;
        expired += 1;
    }
    Ok(expired)
}
