//! Helpers for the execution-policy scenarios (auto-cancel, approvals, retry).

use std::sync::Arc;

use baton_coordinator::clock::ManualClock;

use crate::TestCluster;

impl TestCluster {
    /// Starts a coordinator on `clock` (approval timeouts follow it) and `workers` workers.
    /// Worker leases are set to a day so that jumps of the clock do not lose workers.
    pub async fn start_with_test_clock(workers: usize, clock: Arc<ManualClock>) -> TestCluster {
        Self::start_on(workers, Some(clock)).await
    }
}
