//! What a request costs on this machine before Baton does any work of its own: a gRPC round
//! trip to the coordinator that touches no actor and no store (the health check), and one
//! durable flush of a small record by the same store engine on the same disk. Latency rows
//! print these next to Baton's figures, so a reader can tell Baton's share from the machine's.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::cluster::Cluster;

/// The machine's floor, in milliseconds, one value per probe.
#[derive(Default)]
pub struct Floor {
    /// Health check round trip on the bench's shared connection.
    pub rpc: Vec<f64>,
    /// One small insert plus flush in a sled store of the bench's own.
    pub flush: Vec<f64>,
}

/// Takes floor probes at the same moments a scenario takes its measurements.
pub struct FloorProbe {
    store: sled::Db,
    floor: Floor,
    next: u64,
}

impl FloorProbe {
    /// A probe whose store lives in `dir/floor-store`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("floor-store");
        let store = sled::Config::new()
            .path(&path)
            .open()
            .with_context(|| format!("cannot open a probe store in {}", path.display()))?;
        Ok(Self {
            store,
            floor: Floor::default(),
            next: 0,
        })
    }

    /// One health-check round trip and one flush, each timed.
    pub async fn probe(&mut self, cluster: &Cluster) -> anyhow::Result<()> {
        let mut health = HealthClient::new(cluster.channel().await?);
        let t0 = Instant::now();
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .context("health check")?;
        self.floor.rpc.push(t0.elapsed().as_secs_f64() * 1000.0);
        self.next += 1;
        // About the size of an execution record.
        let record = vec![(self.next % 251) as u8; 1024];
        let t0 = Instant::now();
        self.store.insert(self.next.to_be_bytes(), record)?;
        self.store.flush()?;
        self.floor.flush.push(t0.elapsed().as_secs_f64() * 1000.0);
        Ok(())
    }

    /// Lets the machine sit idle for `quiet`, probes, and lets it sit idle for `quiet` again:
    /// the probe is taken as idle as the measurement that follows.
    pub async fn probe_amid_quiet(
        &mut self,
        cluster: &Cluster,
        quiet: std::time::Duration,
    ) -> anyhow::Result<()> {
        tokio::time::sleep(quiet).await;
        self.probe(cluster).await?;
        tokio::time::sleep(quiet).await;
        Ok(())
    }

    /// The probes taken so far.
    pub fn into_floor(self) -> Floor {
        self.floor
    }
}
