//! The decision log: every rule call, with the plugin's identity, the input
//! (personal data masked), the output or failure, fuel and latency.
//!
//! Rows are written off the money path by a background task in batches,
//! through the ledger's writer (on SQLite, one more operation in its group
//! commit: no second writer waiting on the database lock, no fsync of its
//! own); [`DecisionLog::flush`] waits for everything queued (the server calls
//! it on stop). Each call is also a structured log line (see `rules`).

use crate::db::Db;
use crate::ledger::{Effect, Ledger, Statement};
use crate::pagination::{self, Bind, Listing};
use crate::services::ServiceResult;
use nixo_api::pagination::ListParams;
use nixo_api::types::{ObjectType, PluginIdentity, RuleDecision};
use serde_json::Value;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

/// Rows waiting for the writer at most; beyond, rows are dropped and counted
/// in the log (the structured log line of each decision remains).
pub const QUEUE_LEN_MAX: usize = 10_000;
/// Rows written per database transaction at most.
pub const BATCH_ROWS_MAX: usize = 512;

/// One rule call, as the rule host saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub plugin_sha256: String,
    /// The rule's answer as JSON; `None` when it failed.
    pub output: Option<Value>,
    pub failure: Option<&'static str>,
    pub policy: Option<&'static str>,
    pub fuel_used: u64,
    pub latency_us: u64,
    /// What a WASI plugin wrote to stdout/stderr (bounded).
    pub stdio: Option<String>,
}

struct Entry {
    record: DecisionRecord,
    transaction_id: Option<i64>,
    account_id: String,
    input: String,
    at_ms: i64,
}

enum Message {
    Rows(Vec<Entry>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub struct DecisionLog {
    sender: mpsc::Sender<Message>,
}

/// Masks an identifier that may be personal data (MSISDN, IBAN, account
/// number): the first and last four characters stay when it is long enough.
pub fn mask(identifier: &str) -> String {
    let chars: Vec<char> = identifier.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len().max(4));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

impl DecisionLog {
    /// Starts the background writer; rows go to the database through
    /// `ledger`'s writer.
    pub fn spawn(ledger: Ledger) -> DecisionLog {
        let (sender, receiver) = mpsc::channel(QUEUE_LEN_MAX);
        tokio::spawn(write_loop(ledger, receiver));
        DecisionLog { sender }
    }

    /// Queues the decisions of one check.
    pub fn record(&self, transaction_id: Option<i64>, account_id: &str, input: &Value, records: &[DecisionRecord]) {
        if records.is_empty() {
            return;
        }
        for record in records {
            let outcome = match (&record.output, record.failure) {
                (_, Some(failure)) => failure.to_string(),
                (Some(output), None) => output
                    .get("verdict")
                    .and_then(Value::as_str)
                    .unwrap_or("answered")
                    .to_ascii_lowercase(),
                (None, None) => "unknown".to_string(),
            };
            let labels = [("plugin", record.plugin_name.clone()), ("outcome", outcome)];
            metrics::counter!("nixo_rule_decisions_total", &labels).increment(1);
            metrics::histogram!("nixo_rule_decision_duration_seconds", &labels)
                .record(record.latency_us as f64 / 1_000_000.0);
        }
        let at_ms = chrono::Utc::now().timestamp_millis();
        let input = input.to_string();
        let rows = records
            .iter()
            .map(|record| Entry {
                record: record.clone(),
                transaction_id,
                account_id: account_id.to_string(),
                input: input.clone(),
                at_ms,
            })
            .collect();
        if self.sender.try_send(Message::Rows(rows)).is_err() {
            tracing::warn!(
                rows = records.len(),
                "decision log queue full; rows dropped (log lines remain)"
            );
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(ledger: Ledger, mut receiver: mpsc::Receiver<Message>) {
    let mut messages = Vec::new();
    while receiver.recv_many(&mut messages, BATCH_ROWS_MAX).await > 0 {
        let mut rows = Vec::new();
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Rows(batch) => rows.extend(batch),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if let Err(err) = write(&ledger, rows.drain(..)).await {
            tracing::warn!(rows = rows.len(), error = %err, "decision log write failed; rows dropped");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(ledger: &Ledger, rows: impl ExactSizeIterator<Item = Entry>) -> Result<(), crate::ledger::LedgerError> {
    if rows.len() == 0 {
        return Ok(());
    }
    let rows: Vec<Effect> = rows
        .map(|row| {
            let r = row.record;
            Effect::Sql(Statement::new(
                "INSERT INTO rule_decisions (id, transaction_id, account_id, plugin_name, plugin_version,
                         plugin_sha256, input, output, failure, policy, fuel_used, latency_us, created_at_ms, stdio)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                vec![
                    r.decision_id.into(),
                    row.transaction_id.into(),
                    row.account_id.into(),
                    r.plugin_name.into(),
                    r.plugin_version.into(),
                    r.plugin_sha256.into(),
                    row.input.into(),
                    r.output.map(|o| o.to_string()).into(),
                    r.failure.into(),
                    r.policy.into(),
                    i64::try_from(r.fuel_used).unwrap_or(i64::MAX).into(),
                    i64::try_from(r.latency_us).unwrap_or(i64::MAX).into(),
                    row.at_ms.into(),
                    r.stdio.into(),
                ],
            ))
        })
        .collect();
    ledger.apply_effects(rows, chrono::Utc::now().timestamp_millis()).await
}

/// A page of an account's decisions, newest first, optionally of one
/// transaction.
pub async fn list(
    db: &Db,
    account_id: &str,
    transaction_id: Option<i64>,
    params: &ListParams,
) -> ServiceResult<(Vec<RuleDecision>, bool)> {
    let listing = Listing {
        columns: "id, transaction_id, plugin_name, plugin_version, plugin_sha256, input, output, failure, policy,
                  fuel_used, latency_us, created_at_ms, stdio",
        from: "rule_decisions",
        filter: "account_id = $1 AND ($2 = 0 OR transaction_id = $2)".into(),
        binds: vec![
            Bind::Text(account_id.to_string()),
            Bind::Int(transaction_id.unwrap_or(0)),
        ],
        created_column: "created_at_ms",
        id_column: "id",
        id_is_integer: false,
    };
    let page = pagination::fetch(db, &listing, params).await?;
    let data = page
        .rows
        .iter()
        .map(|r| {
            let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str::<Value>(&t).ok());
            Ok(RuleDecision {
                id: r.try_get(0)?,
                object: ObjectType::RuleDecision,
                transaction_id: r.try_get::<Option<i64>, _>(1)?.map(|id| id.to_string()),
                plugin: PluginIdentity {
                    name: r.try_get(2)?,
                    version: r.try_get(3)?,
                    sha256: r.try_get(4)?,
                },
                input: parse(Some(r.try_get(5)?)).unwrap_or(Value::Null),
                output: parse(r.try_get(6)?),
                failure: r.try_get(7)?,
                policy: r.try_get(8)?,
                fuel_used: r.try_get(9)?,
                latency_us: r.try_get(10)?,
                created: r.try_get::<i64, _>(11)? / 1000,
                stdio: r.try_get(12)?,
            })
        })
        .collect::<Result<Vec<RuleDecision>, sqlx::Error>>()?;
    Ok((data, page.has_more))
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn identifiers_are_masked_by_length() {
        assert_eq!(mask("254712345678"), "2547****5678");
        assert_eq!(mask("GB82WEST12345698765432"), "GB82**************5432");
        assert_eq!(mask("101"), "****");
        assert_eq!(mask("12345678"), "********");
    }
}
