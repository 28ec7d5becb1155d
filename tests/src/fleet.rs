//! Taking workers away, for tests of what the coordinator does when they do not come back.

use crate::{DEADLINE, TestCluster};

impl TestCluster {
    /// Abandons and stops every worker (their jobs are killed) and waits until they are gone.
    /// Stop the coordinator first for workers that vanish without a word.
    pub async fn stop_workers(&mut self) {
        for (shutdown, _) in &self.workers {
            shutdown.abandon.cancel();
            shutdown.drain.cancel();
        }
        for (_, handle) in self.workers.drain(..) {
            let _ = tokio::time::timeout(DEADLINE, handle).await;
        }
    }
}
