//! What the chaos clients send: random money operations over HTTP through
//! the gateway, each POST with its own `Idempotency-Key`, retried with that
//! same key (on any replica) after a timeout, a refused connection, a 5xx,
//! a 429 or a 409 `idempotency_key_in_use`, until an answer comes. Then each
//! acknowledged operation is followed to its end (payouts, deposits,
//! withdrawals and async payments finish in the background).

use crate::money::Currency;
use crate::services::payouts::{FEE_BANK_BP, FEE_MPESA_BP, fee_minor};
use rand::Rng;
use rand::rngs::StdRng;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long one attempt may take before it is retried (a withdrawal waits
/// for its rail for a few seconds before answering).
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;
/// How long an operation is retried before it counts as never answered.
pub const ANSWER_DEADLINE_MS: u64 = 180_000;
/// How long the acknowledged operations may take to finish once the load
/// has stopped (one deadline for all of them).
pub const FINISH_DEADLINE_MS: u64 = 180_000;
/// First retry delay; doubles up to [`RETRY_DELAY_MAX_MS`].
const RETRY_DELAY_MS: u64 = 50;
const RETRY_DELAY_MAX_MS: u64 = 1_000;

/// The sandbox account's wallets (created on a first start).
pub const KES_WALLETS: [i64; 2] = [101, 102];
pub const USD_WALLET: i64 = 103;
/// The rates the run sets (quote units per base unit) and their fees.
pub const KES_USD_RATE: &str = "0.0077";
pub const KES_USD_FEE_BP: u16 = 25;
pub const USD_KES_RATE: &str = "129.50";
pub const USD_KES_FEE_BP: u16 = 0;

/// M-Pesa numbers the sandbox Daraja answers in every way it can: paid,
/// refused, late, twice, never (then a status query tells).
const B2C_NUMBERS: [&str; 6] = [
    "254712345678",
    "254722000111",
    "254700000002",
    "254700000007",
    "254700000008",
    "254700000009",
];
const STK_NUMBERS: [&str; 5] = [
    "254711000222",
    "254708001032",
    "254708000007",
    "254708000008",
    "254708000009",
];
/// An IBAN the sandbox bank settles, and one it rejects (closed account),
/// with their countries.
const IBANS: [(&str, &str); 2] = [("MA64011519000001205000534921", "MA"), ("GB25NWBK60161331920004", "GB")];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Transfer,
    CrossCurrency,
    Payout,
    Deposit,
    Withdrawal,
    Async,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Transfer,
        Kind::CrossCurrency,
        Kind::Payout,
        Kind::Deposit,
        Kind::Withdrawal,
        Kind::Async,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Transfer => "transfer",
            Kind::CrossCurrency => "cross-currency transfer",
            Kind::Payout => "payout",
            Kind::Deposit => "deposit",
            Kind::Withdrawal => "withdrawal",
            Kind::Async => "async payment",
        }
    }

    /// The operation mix, in percent.
    fn pick(rng: &mut StdRng) -> Kind {
        match rng.random_range(0..100) {
            0..40 => Kind::Transfer,
            40..55 => Kind::CrossCurrency,
            55..70 => Kind::Payout,
            70..80 => Kind::Deposit,
            80..90 => Kind::Withdrawal,
            _ => Kind::Async,
        }
    }
}

/// One operation as sent.
#[derive(Debug, Clone)]
pub struct Op {
    pub n: usize,
    pub kind: Kind,
    pub path: &'static str,
    pub body: Value,
    pub key: String,
    /// What it moves if it succeeds: (currency, minor units) per side.
    pub debit: Option<(Currency, i64)>,
    pub credit: Option<(Currency, i64)>,
}

/// An operation and what became of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub op: Op,
    /// The answer's status and body; `None`: never answered.
    pub answer: Option<(u16, Value)>,
    pub attempts: u32,
    /// The final state once followed to its end: `settled`, `failed`
    /// (nothing moved), or `unfinished`.
    pub end: End,
    /// The id of the money movement it created (a transaction or payout).
    pub created: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Settled,
    NothingMoved,
    Unfinished,
}

fn kes() -> Currency {
    Currency::from_code("KES").expect("ISO 4217")
}
fn usd() -> Currency {
    Currency::from_code("USD").expect("ISO 4217")
}

/// What the receiver of a cross-currency transfer gets, by the documented
/// rule: fee = floor(amount × fee_bp / 10000) in the sender's currency,
/// received = truncate((amount − fee) × rate) in the receiver's minor unit.
pub fn converted_minor(amount_minor: i64, rate: &str, fee_bp: u16, from: Currency, to: Currency) -> i64 {
    let fee = amount_minor * i64::from(fee_bp) / 10_000;
    let rate = Decimal::from_str_exact(rate).expect("a decimal rate");
    let scale = Decimal::from(10_i64.pow(to.exponent)) / Decimal::from(10_i64.pow(from.exponent));
    let received = Decimal::from(amount_minor - fee) * rate * scale;
    received.trunc().to_i64().expect("an amount that fits")
}

/// A money amount in a currency's major units, exactly (`12.34`).
fn major(currency: Currency, minor: i64) -> String {
    currency.minor_to_text(minor)
}

/// A random operation, numbered `n`, with its key.
pub fn make(n: usize, run: &str, rng: &mut StdRng) -> Op {
    let kind = Kind::pick(rng);
    let key = format!("chaos-{run}-{n}");
    let meta = json!({ "chaos_op": n.to_string() });
    let (kes, usd) = (kes(), usd());
    let pick_kes_wallets = |rng: &mut StdRng| {
        let from = KES_WALLETS[rng.random_range(0..2)];
        (from, if from == 101 { 102 } else { 101 })
    };
    match kind {
        Kind::Transfer | Kind::Async => {
            let (from, to) = pick_kes_wallets(rng);
            let amount = rng.random_range(100..2_000);
            let body = json!({
                "from_wallet": from, "to_wallet": to, "amount": major(kes, amount), "currency": "KES", "metadata": meta,
            });
            let path = if kind == Kind::Async {
                "/v1/payments/async"
            } else {
                "/v1/payments/transfer"
            };
            Op {
                n,
                kind,
                path,
                body,
                key,
                debit: None,
                credit: None,
            }
        }
        Kind::CrossCurrency => {
            if rng.random_bool(0.5) {
                let (from, _) = pick_kes_wallets(rng);
                let amount = rng.random_range(10_000..100_000);
                let got = converted_minor(amount, KES_USD_RATE, KES_USD_FEE_BP, kes, usd);
                Op {
                    n,
                    kind,
                    path: "/v1/payments/transfer",
                    body: json!({"from_wallet": from, "to_wallet": USD_WALLET, "amount": major(kes, amount), "currency": "KES", "metadata": meta}),
                    key,
                    debit: Some((kes, amount)),
                    credit: Some((usd, got)),
                }
            } else {
                let (_, to) = pick_kes_wallets(rng);
                let amount = rng.random_range(100..1_000);
                let got = converted_minor(amount, USD_KES_RATE, USD_KES_FEE_BP, usd, kes);
                Op {
                    n,
                    kind,
                    path: "/v1/payments/transfer",
                    body: json!({"from_wallet": USD_WALLET, "to_wallet": to, "amount": major(usd, amount), "currency": "USD", "metadata": meta}),
                    key,
                    debit: Some((usd, amount)),
                    credit: Some((kes, got)),
                }
            }
        }
        Kind::Payout => {
            if rng.random_bool(0.5) {
                let shillings = rng.random_range(10..200);
                let amount = shillings * 100;
                let phone = B2C_NUMBERS[rng.random_range(0..B2C_NUMBERS.len())];
                Op {
                    n,
                    kind,
                    path: "/v1/payouts",
                    body: json!({"amount": shillings, "currency": "KES",
                        "recipient": {"full_name": "Chaos Recipient", "phone_number": phone}, "metadata": meta}),
                    key,
                    debit: Some((kes, amount + fee_minor(amount, FEE_MPESA_BP))),
                    credit: None,
                }
            } else {
                let amount = rng.random_range(100..3_000);
                let (iban, country) = IBANS[rng.random_range(0..IBANS.len())];
                let text = major(usd, amount);
                let number: serde_json::Number = text.parse().expect("a JSON number");
                Op {
                    n,
                    kind,
                    path: "/v1/payouts",
                    body: json!({"amount": number, "currency": "USD", "destination_country": country,
                        "recipient": {"full_name": "Chaos Recipient", "account_iban": iban}, "metadata": meta}),
                    key,
                    debit: Some((usd, amount + fee_minor(amount, FEE_BANK_BP))),
                    credit: None,
                }
            }
        }
        Kind::Deposit => {
            let shillings = rng.random_range(10..500);
            let phone = STK_NUMBERS[rng.random_range(0..STK_NUMBERS.len())];
            Op {
                n,
                kind,
                path: "/v1/payments/transact",
                body: json!({"type": "deposit", "amount": shillings, "currency": "KES", "phone_number": phone, "metadata": meta}),
                key,
                debit: None,
                credit: Some((kes, shillings * 100)),
            }
        }
        Kind::Withdrawal => {
            let (from, _) = pick_kes_wallets(rng);
            let shillings = rng.random_range(10..300);
            let amount = shillings * 100;
            let phone = B2C_NUMBERS[rng.random_range(0..B2C_NUMBERS.len())];
            Op {
                n,
                kind,
                path: "/v1/payments/transact",
                body: json!({"type": "withdrawal", "from_wallet": from, "amount": shillings, "currency": "KES",
                    "destination": phone, "metadata": {"gateway": "mpesa", "chaos_op": n.to_string()}}),
                key,
                debit: Some((kes, amount + fee_minor(amount, FEE_MPESA_BP))),
                credit: None,
            }
        }
    }
}

/// The client side of the run: where the replicas are, the key, counters.
pub struct Clients {
    pub http: reqwest::Client,
    pub bases: Vec<String>,
    pub key: String,
    pub retries: AtomicUsize,
    pub answered: AtomicUsize,
    /// Every 5xx answer, by status and error code (retried; a 500 is a
    /// violation, a 503 `service_unavailable` is back-pressure).
    pub server_errors: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

/// A path with its ids replaced, for counting (`/v1/payouts/{id}`).
fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|segment| {
            if segment.chars().any(|c| c.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether an answer is one to retry with the same key.
fn retryable(status: u16, body: &Value) -> bool {
    status >= 500 || status == 429 || (status == 409 && body["error"]["code"] == "idempotency_key_in_use")
}

impl Clients {
    /// Sends one request, retrying as a careful client does, on the
    /// replicas in turn; `None` when no answer came before the deadline.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        first: usize,
    ) -> (Option<(u16, Value)>, u32) {
        let started = Instant::now();
        let mut delay = RETRY_DELAY_MS;
        let mut attempts = 0_u32;
        loop {
            let base = &self.bases[(first + attempts as usize) % self.bases.len()];
            attempts += 1;
            let mut request = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(&self.key)
                .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Ok(response) = request.send().await {
                let status = response.status().as_u16();
                if let Ok(bytes) = response.bytes().await {
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if !retryable(status, &body) {
                        return (Some((status, body)), attempts);
                    }
                    if status >= 500 {
                        let code = body["error"]["code"].as_str().unwrap_or("-");
                        *self
                            .server_errors
                            .lock()
                            .expect("counts")
                            .entry(format!("{status} {code} on {method} {}", route_of(path)))
                            .or_default() += 1;
                    }
                }
            }
            if started.elapsed() > Duration::from_millis(ANSWER_DEADLINE_MS) {
                return (None, attempts);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            delay = (delay * 2).min(RETRY_DELAY_MAX_MS);
        }
    }

    /// Runs one operation to its answer.
    pub async fn run(&self, op: Op) -> Outcome {
        let (answer, attempts) = self
            .send(reqwest::Method::POST, op.path, Some(&op.body), Some(&op.key), op.n)
            .await;
        self.answered.fetch_add(1, Ordering::Relaxed);
        let created = answer.as_ref().and_then(|(_, body)| created_id(op.kind, body));
        Outcome {
            op,
            answer,
            attempts,
            end: End::Unfinished,
            created,
        }
    }

    /// Follows an acknowledged operation to its end.
    pub async fn finish(&self, outcome: &mut Outcome, deadline: Instant) {
        let Some((status, body)) = outcome.answer.clone() else {
            return;
        };
        if !(200..300).contains(&status) {
            outcome.end = End::NothingMoved;
            return;
        }
        let mut body = body;
        loop {
            if let Some(end) = end_of(outcome.op.kind, &body) {
                outcome.end = end;
                if outcome.op.kind == Kind::Async {
                    // The transfer the job made is the movement.
                    outcome.created = body["result"]["data"]["tx_id"].as_str().map(str::to_string);
                }
                return;
            }
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let path = match (outcome.op.kind, &outcome.created) {
                (Kind::Payout, Some(id)) => format!("/v1/payouts/{id}"),
                (Kind::Deposit | Kind::Withdrawal, Some(id)) => format!("/v1/payments/{id}"),
                (Kind::Async, _) => match body["job_id"].as_str().or(outcome_job(outcome)) {
                    Some(job) => format!("/v1/payments/async/{job}"),
                    None => return,
                },
                _ => return,
            };
            let (answer, _) = self.send(reqwest::Method::GET, &path, None, None, outcome.op.n).await;
            match answer {
                Some((200, next)) => body = next,
                _ => return,
            }
        }
    }
}

fn outcome_job(outcome: &Outcome) -> Option<&str> {
    outcome.answer.as_ref().and_then(|(_, body)| body["job_id"].as_str())
}

/// The id of what an answer says was created.
fn created_id(kind: Kind, body: &Value) -> Option<String> {
    match kind {
        Kind::Payout => body["id"].as_str().map(str::to_string),
        Kind::Async => None,
        _ => body["data"]["tx_id"]
            .as_str()
            .or(body["tx_id"].as_str())
            .map(str::to_string),
    }
}

/// Whether a state is final, and what it moved.
fn end_of(kind: Kind, body: &Value) -> Option<End> {
    match kind {
        Kind::Payout => match body["status"].as_str() {
            Some("succeeded") => Some(End::Settled),
            Some("failed" | "canceled" | "returned") => Some(End::NothingMoved),
            _ => None,
        },
        Kind::Async => match body["status"].as_str() {
            Some("succeeded") => end_of(Kind::Transfer, &body["result"]),
            Some("failed") => Some(End::NothingMoved),
            _ => None,
        },
        _ => match body["data"]["status"].as_str().or(body["status"].as_str()) {
            Some("SETTLED") => Some(End::Settled),
            Some("DECLINED" | "FAILED" | "REVERSED") => Some(End::NothingMoved),
            // Held for review: the run declines open reviews before its checks.
            Some("PENDING_REVIEW") => Some(End::NothingMoved),
            _ => None,
        },
    }
}

/// Numbers operations out to the clients until `total` have been taken.
pub struct Counter {
    next: AtomicUsize,
    total: usize,
}

impl Counter {
    pub fn new(total: usize) -> Arc<Counter> {
        Arc::new(Counter {
            next: AtomicUsize::new(0),
            total,
        })
    }

    pub fn take(&self) -> Option<usize> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.total).then_some(n)
    }
}
