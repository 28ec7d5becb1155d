//! Time, injected: the coordinator asks a [`Clock`] instead of the system, both for the time
//! and for timers (settle windows), so tests can drive it. [`ManualClock`] is a clock that only
//! moves when told to, for tests that must run a ten-minute window in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A future that resolves when a timer is due.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of wall-clock time in Unix milliseconds, and of timers on that time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
    /// Resolves once [`Clock::now_ms`] has reached `at_ms`.
    fn sleep_until(&self, at_ms: i64) -> Sleep;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let wait = u64::try_from(at_ms.saturating_sub(self.now_ms())).unwrap_or(0);
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it; its timers fire then.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
    moved: tokio::sync::watch::Sender<i64>,
}

impl ManualClock {
    /// A clock showing `start_ms`.
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(start_ms),
            moved: tokio::sync::watch::channel(start_ms).0,
        })
    }

    /// Moves the clock forward by `ms` and fires every timer now due.
    pub fn advance(&self, ms: i64) {
        let now = self.now.fetch_add(ms, Ordering::SeqCst) + ms;
        self.moved.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let mut moved = self.moved.subscribe();
        Box::pin(async move {
            // A dropped sender means the clock is gone: nothing will ever be due.
            let _ = moved.wait_for(|now| *now >= at_ms).await;
        })
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_timers_fire_only_when_the_clock_reaches_them() {
        let clock = ManualClock::new(1_000);
        let mut due = clock.sleep_until(1_500);
        clock.advance(499);
        assert!(futures::poll!(&mut due).is_pending(), "not due 1 ms early");
        clock.advance(1);
        tokio::time::timeout(std::time::Duration::from_secs(5), due)
            .await
            .expect("due once the clock reaches it");
        assert_eq!(clock.now_ms(), 1_500);
    }
}
