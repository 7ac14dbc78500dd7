//! `nixo ledger verify`: checks every invariant the ledger promises.

use crate::db::Db;
use sqlx::Row;

/// Problems reported per check at most.
pub const PROBLEMS_PER_CHECK_MAX: i64 = 20;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub accounts: i64,
    pub transfers: i64,
    pub currencies: i64,
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "checked {} ledger accounts, {} transfers, {} currencies",
            self.accounts, self.transfers, self.currencies
        )?;
        if self.problems.is_empty() {
            return writeln!(
                f,
                "ledger is sound: debits = credits per currency, no overdraft, \
                                balances = sums of transfers, no hold past its expiry"
            );
        }
        writeln!(f, "{} problem(s):", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Runs every check. `now_ms` and `grace_ms` decide which holds are overdue.
pub async fn verify(db: &Db, now_ms: i64, grace_ms: i64) -> Result<Report, sqlx::Error> {
    let mut report = Report::default();
    let counts = sqlx::query("SELECT (SELECT COUNT(*) FROM ledger_accounts), (SELECT COUNT(*) FROM transfers)")
        .fetch_one(&db.pool)
        .await?;
    report.accounts = counts.try_get(0)?;
    report.transfers = counts.try_get(1)?;

    // 1. Debits equal credits, posted and pending, in every currency.
    let rows = sqlx::query(
        "SELECT currency, CAST(SUM(debits_posted) AS BIGINT), CAST(SUM(credits_posted) AS BIGINT),
                CAST(SUM(debits_pending) AS BIGINT), CAST(SUM(credits_pending) AS BIGINT)
         FROM ledger_accounts GROUP BY currency ORDER BY currency",
    )
    .fetch_all(&db.pool)
    .await?;
    report.currencies = rows.len() as i64;
    for r in rows {
        let currency: String = r.try_get(0)?;
        let (dpo, cpo, dpe, cpe): (i64, i64, i64, i64) = (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
        if dpo != cpo {
            report
                .problems
                .push(format!("{currency}: posted debits {dpo} ≠ posted credits {cpo}"));
        }
        if dpe != cpe {
            report
                .problems
                .push(format!("{currency}: pending debits {dpe} ≠ pending credits {cpe}"));
        }
    }

    // 2. No account that forbids overdraft is overdrawn.
    let rows = sqlx::query(
        "SELECT id, debits_posted + debits_pending, credits_posted FROM ledger_accounts
         WHERE (flags & 1) = 1 AND debits_posted + debits_pending > credits_posted ORDER BY id LIMIT $1",
    )
    .bind(PROBLEMS_PER_CHECK_MAX)
    .fetch_all(&db.pool)
    .await?;
    for r in rows {
        let (id, debits, credits): (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        report.problems.push(format!(
            "account {id} is overdrawn: debits {debits} > credits {credits}"
        ));
    }

    // 3. Every account's totals are the sums of its transfers: posted and
    //    post_pending count as posted, an unresolved pending as pending.
    let rows = sqlx::query(
        "WITH moves AS (
             SELECT debit_account_id AS d, credit_account_id AS c, amount_minor AS posted, 0 AS held
             FROM transfers WHERE kind IN ('posted', 'post_pending')
             UNION ALL
             SELECT debit_account_id, credit_account_id, 0, amount_minor FROM transfers t
             WHERE kind = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)
         ), sides AS (
             SELECT d AS account, posted AS dpo, held AS dpe, 0 AS cpo, 0 AS cpe FROM moves
             UNION ALL
             SELECT c, 0, 0, posted, held FROM moves
         ), sums AS (
             SELECT account, CAST(SUM(dpo) AS BIGINT) AS dpo, CAST(SUM(dpe) AS BIGINT) AS dpe,
                    CAST(SUM(cpo) AS BIGINT) AS cpo, CAST(SUM(cpe) AS BIGINT) AS cpe
             FROM sides GROUP BY account
         )
         SELECT a.id FROM ledger_accounts a LEFT JOIN sums s ON s.account = a.id
         WHERE a.debits_posted <> COALESCE(s.dpo, 0) OR a.debits_pending <> COALESCE(s.dpe, 0)
            OR a.credits_posted <> COALESCE(s.cpo, 0) OR a.credits_pending <> COALESCE(s.cpe, 0)
         ORDER BY a.id LIMIT $1",
    )
    .bind(PROBLEMS_PER_CHECK_MAX)
    .fetch_all(&db.pool)
    .await?;
    report_ids(&mut report, &rows, |id| {
        format!("account {id}: totals differ from the sum of its transfers")
    })?;

    // 4. Every transfer is in the currency of both its accounts.
    let rows = sqlx::query(
        "SELECT t.id FROM transfers t
         JOIN ledger_accounts a ON a.id = t.debit_account_id
         JOIN ledger_accounts b ON b.id = t.credit_account_id
         WHERE a.currency <> t.currency OR b.currency <> t.currency ORDER BY t.id LIMIT $1",
    )
    .bind(PROBLEMS_PER_CHECK_MAX)
    .fetch_all(&db.pool)
    .await?;
    report_ids(&mut report, &rows, |id| {
        format!("transfer {id}: currency differs from its accounts'")
    })?;

    // 5. On SQLite, every account's kept balances (`account_balances`,
    // what the API and the balance.updated events read) equal the sum over
    // its wallets, with a row for each currency it has a wallet in.
    if db.backend == crate::db::Backend::Sqlite {
        let rows = sqlx::query(
            "WITH scan AS (
                 SELECT owner_account_id AS account_id, currency,
                        SUM(credits_posted - debits_posted - debits_pending) AS available,
                        SUM(credits_pending) AS pending, SUM(debits_pending) AS reserved
                 FROM ledger_accounts WHERE kind = 'wallet' AND owner_account_id IS NOT NULL
                 GROUP BY owner_account_id, currency
             ), kept AS (
                 SELECT account_id, currency, SUM(available_minor) AS available, SUM(pending_minor) AS pending,
                        SUM(reserved_minor) AS reserved
                 FROM account_balances GROUP BY account_id, currency
             )
             SELECT COALESCE(s.account_id, k.account_id), COALESCE(s.currency, k.currency)
             FROM scan s FULL JOIN kept k ON k.account_id = s.account_id AND k.currency = s.currency
             WHERE k.account_id IS NULL
                OR COALESCE(s.available, 0) <> k.available OR COALESCE(s.pending, 0) <> k.pending
                OR COALESCE(s.reserved, 0) <> k.reserved
             ORDER BY 1, 2 LIMIT $1",
        )
        .bind(PROBLEMS_PER_CHECK_MAX)
        .fetch_all(&db.pool)
        .await?;
        for row in &rows {
            let (account, currency): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            report.problems.push(format!(
                "account {account}: kept {currency} balances differ from the sum of its wallets"
            ));
        }
    }

    // 6. No hold outlived its expiry (beyond the sweeper's grace).
    let row = sqlx::query(
        "SELECT COUNT(*) FROM transfers t WHERE t.kind = 'pending' AND t.timeout_at_ms <= $1
           AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)",
    )
    .bind(now_ms - grace_ms)
    .fetch_one(&db.pool)
    .await?;
    let overdue: i64 = row.try_get(0)?;
    if overdue > 0 {
        report
            .problems
            .push(format!("{overdue} hold(s) are past their expiry and still open"));
    }
    Ok(report)
}

/// One problem per offending id (the first column of each row).
fn report_ids(
    report: &mut Report,
    rows: &[sqlx::any::AnyRow],
    describe: impl Fn(i64) -> String,
) -> Result<(), sqlx::Error> {
    for row in rows {
        report.problems.push(describe(row.try_get(0)?));
    }
    Ok(())
}
