//! The coordinator's clock in a simulation: wall time is the epoch plus simulated time.

use baton_coordinator::clock::{Clock, Sleep};

/// Unix milliseconds at which every simulation starts (2024-01-01T00:00:00Z).
pub const EPOCH_MS: i64 = 1_704_067_200_000;

/// Simulated time since [`EPOCH_MS`]; timers on the host's (paused, simulation-driven) tokio
/// clock. Only meaningful inside a simulated host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        EPOCH_MS + i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let wait = u64::try_from(at_ms.saturating_sub(self.now_ms())).unwrap_or(0);
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}
