//! The time every service reads. Production reads the system clock; tests
//! move it forward (`advance`) to reach expiries without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall-clock time in Unix milliseconds, plus an offset tests may set.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every copy of it) forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_the_offset() {
        let clock = Clock::system();
        let copy = clock.clone();
        let before = copy.now_ms();
        clock.advance(86_400_000);
        assert!(copy.now_ms() - before >= 86_400_000);
    }
}
