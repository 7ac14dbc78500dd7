//! The ledger's promises, on SQLite and on PostgreSQL: money is never lost
//! or invented, holds resolve once, retries apply once, rejected operations
//! change nothing, and `verify` finds corruption.

use nixo_core::db::Db;
use nixo_core::ledger::{
    AccountKind, Effect, Environment, FxApplied, Ledger, LedgerError, Leg, Resolution, Statement, TxStatus, Velocity,
    fx, velocity_window_starts, verify,
};
use nixo_core::money::Currency;
use nixo_tests::PgDatabase;
use nixo_tests::ledger_kit::{fixture, movement};
use proptest::prelude::*;
use rust_decimal::Decimal;
use sqlx::Row;
use std::str::FromStr;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Keeps a test database alive while its ledger is in use.
#[allow(dead_code)]
enum Guard {
    Dir(tempfile::TempDir),
    Pg(PgDatabase),
}

async fn open(backend: Backend, label: &str) -> Option<(Ledger, Guard)> {
    let (url, guard) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (
                nixo_core::db::sqlite_url(&dir.path().join("ledger.db")),
                Guard::Dir(dir),
            )
        }
        Backend::Postgres => {
            let pg = PgDatabase::create(label).await?;
            (pg.url.clone(), Guard::Pg(pg))
        }
    };
    let db = Db::open(&url).await.expect("database opens");
    Some((Ledger::new(db).await.expect("ledger starts"), guard))
}

fn kes() -> Currency {
    Currency::from_code("KES").unwrap()
}

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `(debits_pending, debits_posted, credits_pending, credits_posted)` of every account.
async fn snapshot(ledger: &Ledger) -> Vec<(i64, i64, i64, i64, i64)> {
    sqlx::query(
        "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted FROM ledger_accounts ORDER BY id",
    )
    .fetch_all(&ledger.db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// Available balance of a wallet: credits posted − debits posted − debits pending.
async fn available(ledger: &Ledger, wallet: i64) -> i64 {
    let row = sqlx::query("SELECT credits_posted - debits_posted - debits_pending FROM ledger_accounts WHERE id = $1")
        .bind(wallet)
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    row.get(0)
}

async fn assert_sound(ledger: &Ledger) {
    let report = verify::verify(&ledger.db, now_ms(), 60_000).await.unwrap();
    assert!(report.is_sound(), "{report}");
}

macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::Backend::Postgres).await;
            }
        }
    };
}

on_both!(retried_transfers_apply_exactly_once, retries_apply_once);
async fn retries_apply_once(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "retries").await else {
        return;
    };
    let f = fixture(&ledger, kes(), 2, 10_000).await;
    let mut m = movement(
        &f.account_id,
        "transfer",
        f.wallets[0],
        f.wallets[1],
        2_500,
        kes(),
        None,
    );
    m.idempotency_id = Some("retry-1".into());
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (ledger, m) = (ledger.clone(), m.clone());
            tokio::spawn(async move { ledger.record(m).await })
        })
        .collect();
    let mut results = Vec::new();
    for attempt in attempts {
        results.push(attempt.await.unwrap().unwrap());
    }
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1, "exactly one applies");
    assert!(results.iter().all(|r| r.tx_id == results[0].tx_id));
    assert_eq!(available(&ledger, f.wallets[0]).await, 7_500);
    assert_eq!(available(&ledger, f.wallets[1]).await, 12_500);

    // The same identity for another operation is refused and changes nothing.
    let before = snapshot(&ledger).await;
    let mut other = m.clone();
    other.amount_minor = 100;
    other.legs[0].amount_minor = 100;
    assert!(matches!(
        ledger.record(other).await,
        Err(LedgerError::IdempotencyConflict(_))
    ));
    assert_eq!(snapshot(&ledger).await, before);
    assert_sound(&ledger).await;
}

/// `n` transfers of 100 from the fixture's first wallet to its second,
/// each on its own task (in flight while a test does something else).
fn spawn_transfers(
    ledger: &Ledger,
    f: &nixo_tests::ledger_kit::Fixture,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<nixo_core::ledger::Recorded, LedgerError>>> {
    (0..n)
        .map(|_| {
            let m = movement(&f.account_id, "transfer", f.wallets[0], f.wallets[1], 100, kes(), None);
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.record(m).await })
        })
        .collect()
}

on_both!(
    statements_of_other_subsystems_commit_all_or_nothing_beside_transfers,
    statements_all_or_nothing
);
async fn statements_all_or_nothing(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "statements").await else {
        return;
    };
    let f = fixture(&ledger, kes(), 2, 10_000).await;
    // Transfers in flight meanwhile: on SQLite they share group commits with
    // the statements, and a failed call of statements must not undo them.
    let transfers = spawn_transfers(&ledger, &f, 16);
    let cursor = |rail: &str| {
        Statement::new(
            "INSERT INTO rail_cursors (rail, cursor) VALUES ($1, 'c-1') RETURNING rail",
            vec![rail.into()],
        )
    };
    let answers = ledger.write_statements(vec![cursor("kept")]).await.unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].len(), 1, "the inserted row is returned");
    assert_eq!(answers[0][0].text(0).unwrap(), "kept");
    // The second statement fails (the rail exists): the first is undone too.
    let failed = ledger.write_statements(vec![cursor("undone"), cursor("kept")]).await;
    assert!(matches!(failed, Err(LedgerError::Db(_))), "{failed:?}");
    let count = |rail: &'static str| {
        let db = ledger.db.clone();
        async move {
            sqlx::query("SELECT COUNT(*) FROM rail_cursors WHERE rail = $1")
                .bind(rail)
                .fetch_one(&db.pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    assert_eq!(count("undone").await, 0, "nothing of a failed call is kept");
    assert_eq!(count("kept").await, 1);
    for transfer in transfers {
        transfer.await.unwrap().unwrap();
    }
    assert_eq!(available(&ledger, f.wallets[0]).await, 10_000 - 1_600);
    assert_eq!(available(&ledger, f.wallets[1]).await, 10_000 + 1_600);
    assert_sound(&ledger).await;
}

on_both!(
    retention_purges_delete_in_chunks_beside_transfers_and_keep_what_the_windows_read,
    purges_in_chunks
);
async fn purges_in_chunks(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "purges").await else {
        return;
    };
    let f = fixture(&ledger, kes(), 2, 100_000).await;
    let old_buckets = 2 * nixo_core::ledger::PURGE_CHUNK_ROWS_MAX + 7;
    let long_ago = now_ms() - 30 * 86_400_000;
    for i in 0..old_buckets as i64 {
        sqlx::query(
            "INSERT INTO velocity_buckets (wallet_id, width_ms, start_ms, count, sum_minor) VALUES ($1, 60000, $2, 1, 5)",
        )
        .bind(f.wallets[1])
        .bind(long_ago + i * 60_000)
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO outgoing_daily (account_id, currency, day_start_ms, sum_minor) VALUES ($1, 'KES', $2, 9)")
        .bind(&f.account_id)
        .bind(long_ago - long_ago % 86_400_000)
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    // Transfers meanwhile: they commit between the purge's chunks, and their
    // own buckets (this minute, this hour, today) are not purged.
    let transfers = spawn_transfers(&ledger, &f, 32);
    let purged = ledger.purge_velocity(now_ms()).await.unwrap();
    for transfer in transfers {
        transfer.await.unwrap().unwrap();
    }
    assert_eq!(
        purged,
        old_buckets as u64 + 1,
        "every old bucket and day, over three chunks"
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM velocity_buckets WHERE start_ms < $1")
        .bind(long_ago + old_buckets as i64 * 60_000)
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        ledger.purge_velocity(now_ms()).await.unwrap(),
        0,
        "nothing left to purge"
    );
    // The job queue's sweep goes the same way (a finished job, an old one).
    sqlx::query(
        "INSERT INTO jobs (kind, payload, state, attempt, max_attempts, run_at_ms, created_at_ms, finished_at_ms)
         VALUES ('old', '{}', 'succeeded', 1, 1, $1, $1, $1), ('new', '{}', 'succeeded', 1, 1, $2, $2, $2)",
    )
    .bind(long_ago)
    .bind(now_ms())
    .execute(&ledger.db.pool)
    .await
    .unwrap();
    assert_eq!(nixo_core::jobs::purge_finished(&ledger, long_ago + 1).await.unwrap(), 1);
    assert_velocity_exact(&ledger, f.wallets[0]).await;
    assert_velocity_exact(&ledger, f.wallets[1]).await;
    assert_daily_outgoing_exact(&ledger, &f.account_id).await;
    assert_eq!(available(&ledger, f.wallets[0]).await, 100_000 - 3_200);
    assert_sound(&ledger).await;
}

on_both!(holds_post_partially_void_and_expire, holds_resolve_once);
async fn holds_resolve_once(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "holds").await else {
        return;
    };
    let f = fixture(&ledger, kes(), 2, 10_000).await;
    let (a, b) = (f.wallets[0], f.wallets[1]);
    let later = now_ms() + 3_600_000;

    // Hold 30.00, post 20.00 of it: 10.00 goes back.
    let held = ledger
        .record(movement(&f.account_id, "transfer", a, b, 3_000, kes(), Some(later)))
        .await
        .unwrap();
    assert_eq!(available(&ledger, a).await, 7_000);
    assert_eq!(
        available(&ledger, b).await,
        10_000,
        "a hold is not yet available to the receiver"
    );
    assert_eq!(
        ledger.resolve(held.tx_id, Resolution::Post(Some(2_000))).await.unwrap(),
        TxStatus::Settled
    );
    assert_eq!(available(&ledger, a).await, 8_000);
    assert_eq!(available(&ledger, b).await, 12_000);
    assert!(matches!(
        ledger.resolve(held.tx_id, Resolution::Void).await,
        Err(LedgerError::NotPending(_))
    ));
    assert!(matches!(
        ledger.resolve(held.tx_id, Resolution::Post(None)).await,
        Err(LedgerError::NotPending(_))
    ));

    // A hold voided releases everything.
    let held = ledger
        .record(movement(&f.account_id, "transfer", a, b, 500, kes(), Some(later)))
        .await
        .unwrap();
    assert_eq!(
        ledger.resolve(held.tx_id, Resolution::Void).await.unwrap(),
        TxStatus::Voided
    );
    assert_eq!(available(&ledger, a).await, 8_000);

    // Over-posting is refused.
    let held = ledger
        .record(movement(&f.account_id, "transfer", a, b, 500, kes(), Some(later)))
        .await
        .unwrap();
    assert!(matches!(
        ledger.resolve(held.tx_id, Resolution::Post(Some(501))).await,
        Err(LedgerError::Invalid(_))
    ));
    ledger.resolve(held.tx_id, Resolution::Void).await.unwrap();

    // A hold past its expiry cannot be posted, and the sweeper voids it.
    let soon = now_ms() + 50;
    let held = ledger
        .record(movement(&f.account_id, "transfer", a, b, 1_000, kes(), Some(soon)))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert!(matches!(
        ledger.resolve(held.tx_id, Resolution::Post(None)).await,
        Err(LedgerError::PendingExpired(_))
    ));
    assert_eq!(ledger.expire_due(now_ms(), 100).await.unwrap(), 1);
    assert_eq!(available(&ledger, a).await, 8_000);
    let status: String = sqlx::query("SELECT status FROM transactions WHERE id = $1")
        .bind(held.tx_id)
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "EXPIRED");
    assert_sound(&ledger).await;
}

on_both!(concurrent_writers_conserve_money, concurrent_conservation);
async fn concurrent_conservation(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "concurrency").await else {
        return;
    };
    const WALLETS: usize = 4;
    const FUNDS: i64 = 100_000;
    const TASKS: usize = 32;
    const TRANSFERS_PER_TASK: usize = 25;
    let f = fixture(&ledger, kes(), WALLETS, FUNDS).await;
    let transactions = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM transactions")
            .fetch_one(&ledger.db.pool)
            .await
            .unwrap()
    };
    let before = transactions().await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let ledger = ledger.clone();
        let wallets = f.wallets.clone();
        let account_id = f.account_id.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0, 0);
            let mut seed = t as u64 * 7919 + 1;
            for _ in 0..TRANSFERS_PER_TASK {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let from = wallets[(seed >> 33) as usize % WALLETS];
                let to = wallets[((seed >> 40) as usize + 1 + (seed >> 33) as usize) % WALLETS];
                let amount = 1 + ((seed >> 20) % 60_000) as i64;
                if from == to {
                    continue;
                }
                match ledger
                    .record(movement(&account_id, "transfer", from, to, amount, kes(), None))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(LedgerError::InsufficientFunds { .. }) => refused += 1,
                    Err(other) => panic!("unexpected ledger error: {other}"),
                }
            }
            (ok, refused)
        }));
    }
    let (mut total_ok, mut total_refused) = (0, 0);
    for task in tasks {
        let (ok, refused) = task.await.unwrap();
        total_ok += ok;
        total_refused += refused;
    }
    assert!(
        total_ok > 0 && total_refused > 0,
        "{total_ok} recorded, {total_refused} refused"
    );
    // A refused transfer leaves nothing behind, even when it shared a
    // commit with recorded ones (SQLite's group commit: such a commit runs
    // again, each operation in its own savepoint).
    assert_eq!(transactions().await - before, total_ok as i64);
    if let Backend::Sqlite = backend {
        assert!(ledger.batches_rerun() > 0, "no group commit held a refused transfer");
    }
    let mut sum = 0;
    for w in &f.wallets {
        let balance = available(&ledger, *w).await;
        assert!(balance >= 0, "wallet {w} went negative: {balance}");
        sum += balance;
    }
    assert_eq!(sum, FUNDS * WALLETS as i64, "money is conserved exactly");
    assert_sound(&ledger).await;
}

// On PostgreSQL every recording and resolution on one wallet takes the
// same rows (its velocity buckets, its daily total, its balance) in the
// same order, so none of them deadlocks the others: a deadlock costs a
// second of PostgreSQL's detection and, three times running, a failed
// request. Each round writes at its own minute and hour (the order a hash
// aggregate emits buckets in depends on their keys).
/// On PostgreSQL a wallet's transfers queue on its balance row only, which
/// a movement updates last: while one of them holds that row, the others
/// still insert their transactions (their velocity buckets and daily totals
/// are striped) and wait at the balance update, so the row is held from
/// there to the commit, not from the transaction's insert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallets_transfers_on_postgres_wait_only_at_its_balance_row() {
    let Some((ledger, _guard)) = open(Backend::Postgres, "hotrow").await else {
        return;
    };
    const WAITING: usize = 3;
    let f = fixture(&ledger, kes(), 2, 1_000_000).await;
    let (from, to) = (f.wallets[0], f.wallets[1]);
    // Another transaction holds the wallet's balance row.
    let mut holder = ledger.db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_accounts WHERE id = $1 FOR NO KEY UPDATE")
        .bind(from)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let transfers: Vec<_> = (0..WAITING)
        .map(|_| {
            let mut m = movement(&f.account_id, "transfer", from, to, 100, kes(), None);
            m.from_wallet = Some(from);
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.record(m).await })
        })
        .collect();
    let waiting_at = |query: &'static str| {
        let pool = ledger.db.pool.clone();
        async move {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1",
            )
            .bind(query)
            .fetch_one(&pool)
            .await
            .unwrap();
            count
        }
    };
    let mut at_balances = 0;
    for _ in 0..200 {
        at_balances = waiting_at("UPDATE ledger_accounts%").await;
        if at_balances == WAITING as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let at_insert = waiting_at("INSERT INTO transactions%").await;
    assert_eq!(
        (at_balances, at_insert),
        (WAITING as i64, 0),
        "transfers waiting at the balance update and at the transaction's insert"
    );
    holder.rollback().await.unwrap();
    for transfer in transfers {
        transfer.await.unwrap().unwrap();
    }
    assert_eq!(available(&ledger, from).await, 1_000_000 - WAITING as i64 * 100);
    assert_velocity_exact(&ledger, from).await;
    assert_sound(&ledger).await;
}

on_both!(one_wallet_writers_never_deadlock, one_wallet_no_deadlock);
async fn one_wallet_no_deadlock(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "lockorder").await else {
        return;
    };
    const TASKS: usize = 8;
    const ROUNDS: usize = 60;
    let f = fixture(&ledger, kes(), 2, 10_000_000).await;
    let (from, to) = (f.wallets[0], f.wallets[1]);
    let first_ms = now_ms() - 30 * 86_400_000;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (ledger, account_id) = (ledger.clone(), f.account_id.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS as i64 {
                let at_ms = first_ms + round * 3_661_000;
                // A held payment (counted in the velocity windows), a
                // settled transfer, and the hold declined (uncounted).
                let mut held = movement(&account_id, "transfer", from, to, 700, kes(), Some(at_ms + 60_000));
                held.from_wallet = Some(from);
                held.now_ms = at_ms;
                let held = ledger.record(held).await.unwrap();
                let mut settled = movement(&account_id, "transfer", from, to, 300, kes(), None);
                settled.from_wallet = Some(from);
                settled.now_ms = at_ms;
                ledger.record(settled).await.unwrap();
                ledger.resolve(held.tx_id, Resolution::Void).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(ledger.write_conflicts(), 0, "writers on one wallet deadlocked");
    assert_eq!(
        available(&ledger, from).await,
        10_000_000 - (TASKS * ROUNDS) as i64 * 300
    );
    assert_velocity_exact(&ledger, from).await;
    assert_sound(&ledger).await;
}

on_both!(verify_finds_corruption, verify_detects);
async fn verify_detects(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "verify").await else {
        return;
    };
    let f = fixture(&ledger, kes(), 2, 10_000).await;
    assert_sound(&ledger).await;
    sqlx::query("UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE id = $1")
        .bind(f.wallets[0])
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    let report = verify::verify(&ledger.db, now_ms(), 60_000).await.unwrap();
    assert!(!report.is_sound());
    assert!(report.problems.iter().any(|p| p.contains("posted debits")), "{report}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("account {}", f.wallets[0]))),
        "{report}"
    );
    // On SQLite the totals kept per account follow any change of a wallet
    // (the corruption above too); a change of the kept totals alone is found.
    if matches!(backend, Backend::Postgres) {
        return;
    }
    assert!(!report.problems.iter().any(|p| p.contains("kept")), "{report}");
    sqlx::query("UPDATE account_balances SET reserved_minor = reserved_minor + 1 WHERE account_id = $1")
        .bind(&f.account_id)
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    let report = verify::verify(&ledger.db, now_ms(), 60_000).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("account {}: kept KES balances differ", f.account_id))),
        "{report}"
    );
}

/// One random ledger operation.
#[derive(Debug, Clone)]
enum Op {
    /// `ago_min` minutes before now (velocity windows see its creation time).
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
        ago_min: i64,
    },
    /// In review (counted by velocity) or, when `!review`, a payout-style
    /// hold (`PENDING`, not counted).
    Hold {
        from: usize,
        to: usize,
        amount: i64,
        ago_min: i64,
        review: bool,
    },
    Post {
        hold: usize,
        partial: Option<i64>,
    },
    Void {
        hold: usize,
    },
    /// A review approving a held payout: PENDING_REVIEW -> PENDING, money untouched.
    Review {
        hold: usize,
    },
    Fx {
        from: usize,
        to: usize,
        amount: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..3usize, 1..4_000i64, 0..1_600i64).prop_map(|(from, to, amount, ago_min)| Op::Transfer {
            from,
            to,
            amount,
            ago_min
        }),
        (0..3usize, 0..3usize, 1..4_000i64, 0..1_600i64, any::<bool>()).prop_map(
            |(from, to, amount, ago_min, review)| Op::Hold {
                from,
                to,
                amount,
                ago_min,
                review
            }
        ),
        (0..8usize, proptest::option::of(1..4_000i64)).prop_map(|(hold, partial)| Op::Post { hold, partial }),
        (0..8usize).prop_map(|hold| Op::Void { hold }),
        (0..8usize).prop_map(|hold| Op::Review { hold }),
        (0..3usize, 0..2usize, 1..4_000i64).prop_map(|(from, to, amount)| Op::Fx { from, to, amount }),
    ]
}

/// Applies random operations and checks, after each: a refused operation
/// changed nothing; and at the end: balances match a simple model and every
/// invariant holds.
async fn random_operations(ledger: &Ledger, ops: Vec<Op>) {
    let env = Environment::Sandbox;
    let f = fixture(ledger, kes(), 3, 5_000).await;
    let g = fixture(ledger, usd(), 2, 0).await;
    let rate = Decimal::from_str("0.0077").unwrap();
    let kes_pool = ledger
        .system_account(env, AccountKind::FxLiquidity, kes())
        .await
        .unwrap();
    let usd_pool = ledger
        .system_account(env, AccountKind::FxLiquidity, usd())
        .await
        .unwrap();
    let fees = ledger.system_account(env, AccountKind::Fees, kes()).await.unwrap();
    // Model: available balances of the KES wallets and USD wallets.
    let mut kes_model = [5_000i64; 3];
    let mut kes_held = [0i64; 3];
    let mut usd_model = [0i64; 2];
    let mut holds: Vec<(i64, usize, usize, i64)> = Vec::new();
    let later = now_ms() + 3_600_000;

    for op in ops {
        let before = snapshot(ledger).await;
        let result: Result<(), LedgerError> = match op.clone() {
            Op::Transfer { from, to, .. } | Op::Hold { from, to, .. } if from == to => continue,
            Op::Transfer {
                from,
                to,
                amount,
                ago_min,
            } => {
                let mut m = movement(
                    &f.account_id,
                    "transfer",
                    f.wallets[from],
                    f.wallets[to],
                    amount,
                    kes(),
                    None,
                );
                m.from_wallet = Some(f.wallets[from]);
                m.now_ms -= ago_min * 60_000;
                ledger.record(m).await.map(|_| {
                    kes_model[from] -= amount;
                    kes_model[to] += amount;
                })
            }
            Op::Hold {
                from,
                to,
                amount,
                ago_min,
                review,
            } => {
                let mut m = movement(
                    &f.account_id,
                    "transfer",
                    f.wallets[from],
                    f.wallets[to],
                    amount,
                    kes(),
                    Some(later),
                );
                m.from_wallet = Some(f.wallets[from]);
                m.now_ms -= ago_min * 60_000;
                if !review {
                    m.status = TxStatus::Pending;
                }
                ledger.record(m).await.map(|r| {
                    kes_model[from] -= amount;
                    kes_held[to] += amount;
                    holds.push((r.tx_id, from, to, amount));
                })
            }
            Op::Post { hold, partial } => match holds.get(hold).copied() {
                None => continue,
                Some((tx, from, to, amount)) => ledger.resolve(tx, Resolution::Post(partial)).await.map(|_| {
                    let moved = partial.unwrap_or(amount);
                    kes_model[from] += amount - moved;
                    kes_model[to] += moved;
                    kes_held[to] -= amount;
                }),
            },
            Op::Void { hold } => match holds.get(hold).copied() {
                None => continue,
                Some((tx, from, to, amount)) => ledger.resolve(tx, Resolution::Void).await.map(|_| {
                    kes_model[from] += amount;
                    kes_held[to] -= amount;
                }),
            },
            Op::Review { hold } => match holds.get(hold).copied() {
                None => continue,
                Some((tx, ..)) => ledger
                    .apply_effects(
                        vec![Effect::Sql(Statement::new(
                            "UPDATE transactions SET status = 'PENDING' WHERE id = $1 AND status = 'PENDING_REVIEW'",
                            vec![tx.into()],
                        ))],
                        now_ms(),
                    )
                    .await,
            },
            Op::Fx { from, to, amount } => match fx::convert(amount, kes(), usd(), rate, 50) {
                Err(_) => continue,
                Ok(c) => {
                    let mut m = movement(
                        &f.account_id,
                        "transfer",
                        f.wallets[from],
                        kes_pool,
                        c.net_minor,
                        kes(),
                        None,
                    );
                    m.amount_minor = amount;
                    m.from_wallet = Some(f.wallets[from]);
                    m.legs.push(Leg {
                        debit: usd_pool,
                        credit: g.wallets[to],
                        amount_minor: c.to_amount_minor,
                        currency: usd(),
                        pending_timeout_at_ms: None,
                    });
                    if c.fee_minor > 0 {
                        m.legs.push(Leg {
                            debit: f.wallets[from],
                            credit: fees,
                            amount_minor: c.fee_minor,
                            currency: kes(),
                            pending_timeout_at_ms: None,
                        });
                    }
                    m.fx = Some(FxApplied {
                        to_amount_minor: c.to_amount_minor,
                        to_currency: usd(),
                        rate: "0.0077".into(),
                        fee_minor: c.fee_minor,
                    });
                    ledger.record(m).await.map(|_| {
                        kes_model[from] -= amount;
                        usd_model[to] += c.to_amount_minor;
                    })
                }
            },
        };
        match result {
            Ok(()) => {}
            Err(LedgerError::InsufficientFunds { .. } | LedgerError::NotPending(_) | LedgerError::Invalid(_)) => {
                assert_eq!(snapshot(ledger).await, before, "a refused {op:?} changed the ledger");
            }
            Err(other) => panic!("unexpected error for {op:?}: {other}"),
        }
    }
    for (i, w) in f.wallets.iter().enumerate() {
        assert_eq!(available(ledger, *w).await, kes_model[i], "KES wallet {i}");
        assert!(kes_model[i] >= 0);
    }
    for (i, w) in g.wallets.iter().enumerate() {
        assert_eq!(available(ledger, *w).await, usd_model[i], "USD wallet {i}");
    }
    let _ = kes_held;
    assert_sound(ledger).await;
    for wallet in &f.wallets {
        assert_velocity_exact(ledger, *wallet).await;
    }
    assert_daily_outgoing_exact(ledger, &f.account_id).await;
    assert_daily_outgoing_exact(ledger, &g.account_id).await;
}

on_both!(bulk_history_keeps_velocity_exact, bulk_history);
/// History written by one statement (an import: 20,000 rows, every status,
/// two source wallets, spread over the last 26 hours) leaves the velocity
/// facts equal to a full scan, as single writes do.
async fn bulk_history(backend: Backend) {
    let Some((ledger, _guard)) = open(backend, "bulk_history").await else {
        return;
    };
    let f = fixture(&ledger, kes(), 3, 1_000_000).await;
    let (a, b, c) = (f.wallets[0], f.wallets[1], f.wallets[2]);
    let numbers = nixo_tests::numbers_sql(ledger.db.backend);
    let sql = format!(
        "INSERT INTO transactions (environment, account_id, kind, status, amount_minor, currency, from_wallet,
             to_wallet, created_at_ms)
         SELECT 'sandbox', $2,
                'transfer',
                CASE i % 4 WHEN 0 THEN 'SETTLED' WHEN 1 THEN 'PENDING_REVIEW' WHEN 2 THEN 'DECLINED' ELSE 'PENDING' END,
                (i * 37) % 5000 + 1, 'KES',
                CASE WHEN i % 3 = 0 THEN $3 WHEN i % 3 = 1 THEN $4 ELSE NULL END,
                $5, $6 - (i * 4679) % (26 * 3600000)
         FROM ({numbers}) AS s"
    );
    sqlx::query(&sql)
        .bind(20_000i64)
        .bind(f.account_id.as_str())
        .bind(a)
        .bind(b)
        .bind(c)
        .bind(now_ms())
        .execute(&ledger.db.pool)
        .await
        .unwrap();
    for wallet in [a, b, c] {
        assert_velocity_exact(&ledger, wallet).await;
    }
    assert_daily_outgoing_exact(&ledger, &f.account_id).await;
    let counted = ledger.velocity(a, now_ms()).await.unwrap();
    assert!(counted.last_day.count > 1_000, "{counted:?}");
}

/// What the daily limit reads (kept incrementally) equals a full scan of
/// the account's outgoing transactions today, in each currency.
async fn assert_daily_outgoing_exact(ledger: &Ledger, account_id: &str) {
    let now = now_ms();
    for currency in ["KES", "USD"] {
        let kept = nixo_core::limits::used_today_minor(&ledger.db, account_id, currency, now)
            .await
            .unwrap();
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM transactions
             WHERE account_id = $1 AND currency = $2 AND created_at_ms >= $3
               AND kind IN ({}) AND status IN ('SETTLED', 'PENDING', 'PENDING_REVIEW')",
            nixo_core::limits::OUTGOING_KINDS
        );
        let scanned: i64 = sqlx::query_scalar(&sql)
            .bind(account_id)
            .bind(currency)
            .bind(nixo_core::limits::day_start_ms(now))
            .fetch_one(&ledger.db.pool)
            .await
            .unwrap();
        assert_eq!(kept, scanned, "{currency} sent today by {account_id}");
    }
}

/// The velocity facts the ledger keeps incrementally equal a full scan of
/// the wallet's transactions over the same windows, now and later on.
async fn assert_velocity_exact(ledger: &Ledger, wallet: i64) {
    let now = now_ms();
    for later_ms in [0, 17 * 60_000, 61 * 60_000, 5 * 3_600_000, 25 * 3_600_000] {
        let at = now + later_ms;
        let kept = ledger.velocity(wallet, at).await.unwrap();
        let (hour_from, day_from) = velocity_window_starts(at);
        let scan = |from: i64| {
            sqlx::query(
                "SELECT COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM transactions
                 WHERE from_wallet = $1 AND created_at_ms >= $2 AND status IN ('SETTLED', 'PENDING_REVIEW')",
            )
            .bind(wallet)
            .bind(from)
            .fetch_one(&ledger.db.pool)
        };
        let hour = scan(hour_from).await.unwrap();
        let day = scan(day_from).await.unwrap();
        let counted = |row: &sqlx::any::AnyRow| Velocity {
            count: row.get::<i64, _>(0) as u32,
            sum_minor: row.get(1),
        };
        assert_eq!(
            kept.last_hour,
            counted(&hour),
            "last hour of wallet {wallet}, {later_ms} ms on"
        );
        assert_eq!(
            kept.last_day,
            counted(&day),
            "last day of wallet {wallet}, {later_ms} ms on"
        );
    }
}

fn property_on(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some((ledger, _guard)) = runtime.block_on(open(backend, "property")) else {
        return;
    };
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            runtime.block_on(random_operations(&ledger, ops));
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_operations_keep_every_invariant_sqlite() {
    property_on(Backend::Sqlite, 24);
}

#[test]
fn random_operations_keep_every_invariant_postgres() {
    property_on(Backend::Postgres, 16);
}

/// Bytes of each commit in the WAL tests.
const WAL_PAYLOAD_BYTES: usize = 256 * 1024;

/// Back-to-back commits that write three times `WAL_RESTART_BYTES`.
fn wal_commits() -> usize {
    3 * usize::try_from(nixo_core::ledger::WAL_RESTART_BYTES).unwrap() / WAL_PAYLOAD_BYTES
}

async fn create_wal_filler(ledger: &Ledger) {
    sqlx::query("CREATE TABLE wal_filler (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        .execute(&ledger.db.pool)
        .await
        .unwrap();
}

/// Commit `i` of a WAL test: one `WAL_PAYLOAD_BYTES` row, through the writer.
async fn write_wal_filler(ledger: &Ledger, i: usize) {
    let write = Effect::Sql(Statement::new(
        "INSERT INTO wal_filler (payload) VALUES ($1)",
        vec![vec![u8::try_from(i % 251).unwrap(); WAL_PAYLOAD_BYTES].into()],
    ));
    ledger.apply_effects(vec![write], now_ms()).await.unwrap();
}

/// Under writes without pause, the WAL still starts over (the writer's own
/// checkpoints, and behind them the checkpointer's restart past
/// `WAL_RESTART_BYTES`): it never reaches twice that size. (Passive
/// checkpoints from another thread alone never caught up with a writer that
/// commits all the time, and the file grew without bound.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_writes_without_pause() {
    use nixo_core::ledger::WAL_RESTART_BYTES;
    let (ledger, guard) = open(Backend::Sqlite, "wal").await.unwrap();
    let Guard::Dir(dir) = &guard else { unreachable!() };
    let wal = dir.path().join("ledger.db-wal");
    create_wal_filler(&ledger).await;
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // Three times the limit, in commits one after the other.
    let commits = wal_commits();
    let mut largest = 0;
    for i in 0..commits {
        write_wal_filler(&ledger, i).await;
        largest = largest.max(wal_len());
    }
    let limit = u64::try_from(WAL_RESTART_BYTES).unwrap();
    assert!(
        largest < 2 * limit,
        "the WAL grew to {largest} bytes over {commits} commits of {WAL_PAYLOAD_BYTES} bytes (restart past {limit})"
    );
    // Every row is there, and the ledger is sound.
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM wal_filler")
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, i64::try_from(commits).unwrap());
    assert_sound(&ledger).await;
}

/// A reader that keeps an old snapshot (an export, a slow list) does not
/// hold commits up: the WAL restart waits for it at most
/// `WAL_RESTART_WAIT_MS` (with the write lock held), then gives up until a
/// later round. Every commit goes through meanwhile, none waiting long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reader_does_not_hold_commits_up_behind_a_wal_restart() {
    use nixo_core::sqlite_direct::WAL_RESTART_WAIT_MS;
    let (ledger, _guard) = open(Backend::Sqlite, "wal_reader").await.unwrap();
    create_wal_filler(&ledger).await;
    // The reader: a transaction that has read, so it keeps its snapshot.
    let mut reader = ledger.db.pool.begin().await.unwrap();
    let _: i64 = sqlx::query("SELECT COUNT(*) FROM wal_filler")
        .fetch_one(&mut *reader)
        .await
        .unwrap()
        .get(0);
    let commits = wal_commits();
    let started = std::time::Instant::now();
    let mut slowest = std::time::Duration::ZERO;
    for i in 0..commits {
        let t = std::time::Instant::now();
        write_wal_filler(&ledger, i).await;
        slowest = slowest.max(t.elapsed());
    }
    let elapsed = started.elapsed();
    reader.rollback().await.unwrap();
    // A restart blocked on the reader would hold a commit for the whole
    // busy timeout (seconds); the bound is generous for a slow machine.
    assert!(
        slowest < std::time::Duration::from_millis(WAL_RESTART_WAIT_MS * 50),
        "a commit waited {slowest:?} behind the reader ({commits} commits in {elapsed:?})"
    );
}

/// Under steady transfers from many callers the WAL stays near
/// `WAL_AUTOCHECKPOINT_PAGES`: the writer copies the log back after its
/// commits and starts it over, instead of letting it grow until the
/// checkpointer's restart (which held every commit for milliseconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_near_the_autocheckpoint_size_under_transfers() {
    use nixo_core::ledger::WAL_AUTOCHECKPOINT_PAGES;
    const TASKS: usize = 16;
    const TRANSFERS_PER_TASK: usize = 250;
    let (ledger, guard) = open(Backend::Sqlite, "wal_auto").await.unwrap();
    let Guard::Dir(dir) = &guard else { unreachable!() };
    let wal = std::sync::Arc::new(dir.path().join("ledger.db-wal"));
    let f = fixture(&ledger, kes(), 8, 1_000_000_000).await;
    let page_bytes: i64 = sqlx::query("PRAGMA page_size")
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap()
        .get(0);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (ledger, wallets, account_id, wal) = (ledger.clone(), f.wallets.clone(), f.account_id.clone(), wal.clone());
        tasks.push(tokio::spawn(async move {
            let mut largest = 0;
            for i in 0..TRANSFERS_PER_TASK {
                let from = wallets[(t + i) % wallets.len()];
                let to = wallets[(t + i + 1) % wallets.len()];
                ledger
                    .record(movement(&account_id, "transfer", from, to, 1, kes(), None))
                    .await
                    .unwrap();
                largest = largest.max(std::fs::metadata(&*wal).map(|m| m.len()).unwrap_or(0));
            }
            largest
        }));
    }
    let mut largest = 0;
    for task in tasks {
        largest = largest.max(task.await.unwrap());
    }
    let bound = 4 * u64::from(WAL_AUTOCHECKPOINT_PAGES) * u64::try_from(page_bytes).unwrap();
    assert!(
        largest <= bound,
        "the WAL grew to {largest} bytes over {} transfers (bound {bound})",
        TASKS * TRANSFERS_PER_TASK
    );
    assert_sound(&ledger).await;
}

/// The constant lists of more than two values in a CHECK constraint, by
/// table: SQLite builds a temporary index of such a list every time it
/// checks the constraint (migration 0021 rewrote them as equalities).
fn long_in_lists(table: &str, sql: &str) -> Vec<String> {
    let upper = sql.to_ascii_uppercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = upper[from..].find(" IN (").map(|i| from + i) {
        let list_start = at + " IN (".len();
        let list_end = upper[list_start..].find(')').map_or(upper.len(), |i| list_start + i);
        let list = &sql[list_start..list_end];
        if list.split(',').count() > 2 {
            found.push(format!("{table}: IN ({list})"));
        }
        from = list_end;
    }
    found
}

/// On SQLite no table's CHECK constraint holds a constant `IN` list of more
/// than two values, and the insert of a transfer's rows builds no temporary
/// table (`OpenEphemeral`) for them, while the constraints refuse what they
/// always refused and the database stays sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_check_constraints_build_no_temporary_index() {
    let (ledger, _guard) = open(Backend::Sqlite, "checks").await.unwrap();
    let f = fixture(&ledger, kes(), 2, 1_000).await;
    ledger
        .record(movement(
            &f.account_id,
            "transfer",
            f.wallets[0],
            f.wallets[1],
            7,
            kes(),
            None,
        ))
        .await
        .unwrap();

    let tables: Vec<(String, String)> =
        sqlx::query_as("SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql IS NOT NULL")
            .fetch_all(&ledger.db.pool)
            .await
            .unwrap();
    assert!(tables.iter().any(|(name, _)| name == "transactions"));
    let lists: Vec<String> = tables.iter().flat_map(|(name, sql)| long_in_lists(name, sql)).collect();
    assert!(lists.is_empty(), "CHECK constraints with long IN lists: {lists:?}");
    assert_eq!(
        long_in_lists("t", "CHECK (k IN ('a', 'b', 'c'))").len(),
        1,
        "the scan finds a long list"
    );

    let inserts = [
        "INSERT INTO transactions (environment, account_id, kind, status, amount_minor, currency, created_at_ms)
         VALUES ('sandbox', 'acc', 'transfer', 'SETTLED', 1, 'KES', 0)",
        "INSERT INTO transfers (transaction_id, kind, debit_account_id, credit_account_id, amount_minor, currency,
         created_at_ms) VALUES (1, 'posted', 1, 2, 1, 'KES', 0)",
        "INSERT INTO jobs (kind, state) VALUES ('x', 'available')",
    ];
    for sql in inserts {
        let opcodes: Vec<String> = sqlx::query(&format!("EXPLAIN {sql}"))
            .fetch_all(&ledger.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("opcode"))
            .collect();
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "{sql} builds a temporary table"
        );
    }

    let refused = [
        (
            "INSERT INTO transactions (environment, account_id, kind, status, amount_minor, currency, created_at_ms)
             SELECT 'sandbox', $1, 'gift', 'SETTLED', 1, 'KES', 0",
            "transactions.kind",
        ),
        (
            "INSERT INTO transactions (environment, account_id, kind, status, amount_minor, currency, created_at_ms)
             SELECT 'sandbox', $1, 'transfer', 'LOST', 1, 'KES', 0",
            "transactions.status",
        ),
        (
            "UPDATE transfers SET kind = 'reversed' WHERE transaction_id IN
             (SELECT id FROM transactions WHERE account_id = $1)",
            "transfers.kind",
        ),
    ];
    for (sql, what) in refused {
        let err = sqlx::query(sql)
            .bind(&f.account_id)
            .execute(&ledger.db.pool)
            .await
            .expect_err(what);
        assert!(err.to_string().contains("CHECK constraint failed"), "{what}: {err}");
    }

    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&ledger.db.pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_sound(&ledger).await;
}
