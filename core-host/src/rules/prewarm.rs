//! Pre-warmed instances for rules whose language runtime makes a fresh
//! instance slow (SpiderMonkey, CPython): the first call in an instance
//! runs the runtime's lazy set-up on top of the rule, and instantiating
//! CPython's dozens of core modules costs more than a decision.
//!
//! A plugin whose manifest asks for `prewarmed_instances = N` gets up to N
//! instances made ahead by one background thread, each instantiated in its
//! own store and warmed by one decision on a fixed synthetic input
//! ([`warm_up_transaction`], [`warm_up_payout`]). A real decision takes one, gets the full fuel
//! budget and deadline, and the instance is dropped after it: no instance
//! ever sees two real transactions, so decisions stay as isolated as with a
//! fresh instance each. When none is ready (a burst drained them), the
//! decision makes a fresh instance on its own path, as without pre-warming.
//! A warm-up that fails turns pre-warming off for that plugin version.

use super::{
    AccountFacts, FraudPlugin, Money, PayoutMoney, PayoutPlugin, PayoutRequest, Plugin, Rail, RuleState, Transaction,
    TransactionKind, VelocityFacts,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::Store;

/// The most instances one plugin may keep warm (each holds a pool slot
/// and its memory).
pub const PREWARMED_INSTANCES_MAX: u32 = 4;
/// Used stores waiting for the refiller to release them, at most.
pub const USED_STORES_MAX: usize = 16;
/// How long the refiller sleeps when no decision woke it.
pub const PREWARM_IDLE_WAIT_MS: u64 = 1_000;

/// An instance that has run only the warm-up decision.
pub(super) struct Warm<I> {
    pub store: Store<RuleState>,
    pub instance: I,
    /// Bytes the warm-up wrote to stdout and to stderr: not the decision's.
    pub stdio_skip: (usize, usize),
}

/// One plugin version's ready instances.
pub struct WarmPool<I> {
    ready: Mutex<Vec<Warm<I>>>,
    /// Set when a warm-up failed: this version gets fresh instances.
    off: AtomicBool,
    /// Decisions that found an instance ready, and that did not.
    hits: AtomicU64,
    misses: AtomicU64,
    /// Instances made, and the time spent making them (instantiation and
    /// warm-up), off the request path.
    made: AtomicU64,
    made_ns: AtomicU64,
}

impl<I> Default for WarmPool<I> {
    fn default() -> Self {
        Self {
            ready: Mutex::new(Vec::new()),
            off: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            made: AtomicU64::new(0),
            made_ns: AtomicU64::new(0),
        }
    }
}

impl<I> WarmPool<I> {
    /// A ready instance, if there is one.
    pub(super) fn take(&self) -> Option<Warm<I>> {
        let warm = self.ready.lock().expect("warm pool lock").pop();
        let counter = if warm.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        warm
    }

    pub fn ready_len(&self) -> usize {
        self.ready.lock().expect("warm pool lock").len()
    }

    /// Decisions served by a warm instance, and by a fresh one made on the
    /// decision's path.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Mean cost of making one warm instance (instantiation + warm-up).
    pub fn mean_make_time(&self) -> Option<Duration> {
        let made = self.made.load(Ordering::Relaxed);
        (made > 0).then(|| Duration::from_nanos(self.made_ns.load(Ordering::Relaxed) / made))
    }

    pub fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    /// Makes one instance if the pool is short of `want`; whether it did.
    /// A failed warm-up turns the pool off.
    fn top_up(&self, want: u32, label: &str, make: impl FnOnce() -> anyhow::Result<Warm<I>>) -> bool {
        if self.is_off() || self.ready_len() >= want as usize {
            return false;
        }
        let started = Instant::now();
        match make() {
            Ok(warm) => {
                self.made.fetch_add(1, Ordering::Relaxed);
                self.made_ns
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                self.ready.lock().expect("warm pool lock").push(warm);
                true
            }
            Err(err) => {
                self.off.store(true, Ordering::Relaxed);
                tracing::warn!(
                    plugin = %label, error = %super::failure_kind(&err), detail = %format!("{err:#}"),
                    "the warm-up decision failed; this plugin gets a fresh instance per decision"
                );
                false
            }
        }
    }
}

/// The transaction every warm-up decides: the plugin's first kind, a small
/// amount, a verified account with a little history. Rules must not rely on
/// state kept between calls; this one call is the only one an instance sees
/// before a real decision.
pub fn warm_up_transaction(kind: TransactionKind) -> Transaction {
    Transaction {
        kind,
        amount: Money {
            amount: "10.00".into(),
            currency: "KES".into(),
        },
        source: "100000".into(),
        destination: "100001".into(),
        destination_country: Some("KE".into()),
        account: AccountFacts {
            kyc_level: 2,
            age_days: 30,
            sandbox: true,
        },
        velocity: VelocityFacts {
            count_last_hour: 1,
            sum_last_hour: "10.00".into(),
            count_last_day: 2,
            sum_last_day: "20.00".into(),
        },
        metadata: Vec::new(),
    }
}

/// The payout every warm-up checks: 100.00 KES to a Safaricom number on
/// M-Pesa, 100.00 EUR to a German IBAN on the bank rail.
pub fn warm_up_payout(rail: Rail) -> PayoutRequest {
    let (destination, currency, country) = match rail {
        Rail::Mpesa => ("0712345678", "KES", "KE"),
        Rail::Bank => ("DE89370400440532013000", "EUR", "DE"),
    };
    PayoutRequest {
        rail,
        destination: destination.into(),
        amount: PayoutMoney {
            amount: "100.00".into(),
            currency: currency.into(),
        },
        destination_country: Some(country.into()),
        sent_today: "0".into(),
    }
}

/// What the refiller thread shares with the host.
pub(super) struct Refiller {
    pub plugins: Arc<RwLock<Arc<Vec<Plugin>>>>,
    /// Set by a decision that took an instance; the refiller waits on it.
    pub wanted: Mutex<bool>,
    pub wake: Condvar,
    pub stop: AtomicBool,
    /// Stores of decided instances, released by the refiller.
    pub used: Mutex<Vec<Store<RuleState>>>,
}

impl Refiller {
    /// Hands a decided instance's store over to be released off the
    /// request path (releasing a slot resets its dirtied memory) and wakes
    /// the refiller — after the decision, so making the next instance does
    /// not contend with it. When [`USED_STORES_MAX`] already wait (the
    /// refiller is behind), releases it here, so used stores never hold
    /// many pool slots.
    pub fn dispose(&self, store: Store<RuleState>) {
        let mut used = self.used.lock().expect("refiller lock");
        if used.len() < USED_STORES_MAX {
            used.push(store);
        } else {
            drop(used);
            drop(store);
        }
        self.notify();
    }

    pub fn notify(&self) {
        *self.wanted.lock().expect("refiller lock") = true;
        self.wake.notify_one();
    }

    /// The refiller's loop: top every warm pool up, one instance per
    /// plugin per round, then sleep until a decision takes one.
    pub fn run(
        &self,
        make_fraud: impl Fn(&FraudPlugin) -> anyhow::Result<Warm<super::FraudRule>>,
        make_payout: impl Fn(&PayoutPlugin) -> anyhow::Result<Warm<super::PayoutRule>>,
    ) {
        while !self.stop.load(Ordering::Relaxed) {
            let used = std::mem::take(&mut *self.used.lock().expect("refiller lock"));
            drop(used);
            let plugins = self.plugins.read().expect("rule set lock").clone();
            let mut made_any = false;
            for plugin in plugins.iter() {
                let label = format!("{}@{}", plugin.manifest().name, plugin.manifest().version);
                made_any |= match plugin {
                    Plugin::Fraud(p) => p.warm.top_up(p.limits.prewarmed_instances, &label, || make_fraud(p)),
                    Plugin::Payout(p) => p.warm.top_up(p.limits.prewarmed_instances, &label, || make_payout(p)),
                };
            }
            drop(plugins);
            if made_any {
                continue;
            }
            let wanted = self.wanted.lock().expect("refiller lock");
            let (mut wanted, _) = self
                .wake
                .wait_timeout_while(wanted, Duration::from_millis(PREWARM_IDLE_WAIT_MS), |w| {
                    !*w && !self.stop.load(Ordering::Relaxed)
                })
                .expect("refiller lock");
            *wanted = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_stores_beyond_their_limit_are_released_at_once() {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let refiller = Refiller {
            plugins: Arc::new(RwLock::new(Arc::new(Vec::new()))),
            wanted: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            used: Mutex::new(Vec::new()),
        };
        for _ in 0..USED_STORES_MAX + 3 {
            let store = super::super::new_store(&engine, &super::super::RuleLimits::default(), false).unwrap();
            refiller.dispose(store);
        }
        assert_eq!(refiller.used.lock().unwrap().len(), USED_STORES_MAX);
    }
}
