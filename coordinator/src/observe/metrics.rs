//! Prometheus metrics: what the coordinator counts, and how `/metrics` is written.
//!
//! Three sources feed them. Counters and histograms about executions, stages and jobs follow the
//! event hub (every event is published after its change is durable, so reading the store on an
//! event sees that change). The store's writer and the gRPC layer observe directly. Gauges that
//! describe "now" (jobs by status, queue depth, workers by state) are read at scrape time from
//! the same API the CLI uses, so they are right after a restart too.
//!
//! This module only reads: it never changes a pipeline, a stage or a job.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use baton_proto::v1 as pb;
use baton_proto::v1::pipeline_service_server::PipelineService;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::pipeline_server::PipelineApi;
use crate::events::{Change, Event, EventHub};
use crate::store::records::{ExecutionRecord, ExecutionStatus, JobRecord, StageStatus};
use crate::store::{Store, Tree};

/// Labels `pipeline`, `stage`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// Pipeline name.
    pub pipeline: String,
    /// Stage name (with `@lane` when the stage has lanes).
    pub stage: String,
}

/// Label `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// A status as DESIGN.md spells it (`Superseded`, `Abandoned`, ...).
    pub status: String,
}

/// Labels `pipeline`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineStatusLabels {
    /// Pipeline name.
    pub pipeline: String,
    /// The execution's final status.
    pub status: String,
}

/// Labels `pipeline`, `reason` (`superseded` or `cancelled`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SavedLabels {
    /// Pipeline name.
    pub pipeline: String,
    /// Why the work did not run.
    pub reason: String,
}

/// Label `state` (a worker's state).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// `Connected`, `Draining`, `Lost`, ...
    pub state: String,
}

/// Labels `method` (the gRPC path) and `code` (the gRPC status code, `0` = OK).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// `/baton.v1.PipelineService/GetPipelineState`, or `other` for unknown paths.
    pub method: String,
    /// gRPC status code as a number; `0` when the call has not failed by its response headers.
    pub code: String,
}

type FloatCounter = Counter<f64, AtomicU64>;

/// The store writer's view: one observation per committed batch.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Operations per committed batch.
    pub batch_ops: Histogram,
    /// Seconds to make one batch durable and apply it (the name is kept from when that was a flush).
    pub flush_seconds: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            batch_ops: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            flush_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

/// The gRPC layer's view: one observation per request.
#[derive(Clone)]
pub struct GrpcMetrics {
    /// Requests by method and code.
    pub requests: Family<GrpcLabels, Counter>,
    /// Seconds until the response headers (for streams: until the stream opened).
    pub latency: Family<GrpcLabels, Histogram>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        }
    }
}

/// Every metric the coordinator exports, with the registry that writes them.
pub struct Metrics {
    registry: Registry,
    /// Store batches.
    pub store: StoreMetrics,
    /// gRPC requests.
    pub grpc: GrpcMetrics,
    jobs: Family<StatusLabels, Gauge>,
    jobs_ended: Family<StatusLabels, Counter>,
    executions_ended: Family<PipelineStatusLabels, Counter>,
    queue_depth: Family<StageLabels, Gauge>,
    lock_wait: Family<StageLabels, Histogram>,
    saved: Family<SavedLabels, FloatCounter>,
    workers: Family<WorkerLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (names are listed in the README).
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("baton"),
            store: StoreMetrics::default(),
            grpc: GrpcMetrics::default(),
            jobs: Family::default(),
            jobs_ended: Family::default(),
            executions_ended: Family::default(),
            queue_depth: Family::default(),
            lock_wait: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 4.0, 12))
            }),
            saved: Family::default(),
            workers: Family::default(),
        };
        let r = &mut m.registry;
        r.register("jobs", "Jobs in the store by status", m.jobs.clone());
        r.register(
            "jobs_ended",
            "Jobs that reached a final status",
            m.jobs_ended.clone(),
        );
        r.register(
            "executions_ended",
            "Executions that reached a final status (Superseded, Cancelled, Stopped, ...)",
            m.executions_ended.clone(),
        );
        r.register(
            "stage_queue_depth",
            "Executions waiting in front of a stage",
            m.queue_depth.clone(),
        );
        r.register(
            "stage_lock_wait_seconds",
            "Time an execution waited in front of a stage before it entered (0 when it entered at once)",
            m.lock_wait.clone(),
        );
        r.register(
            "worker_seconds_saved",
            "Estimated worker time not spent because executions were superseded or cancelled: each stage they never ran, at that stage's average worker time over successful runs",
            m.saved.clone(),
        );
        r.register("workers", "Workers by state", m.workers.clone());
        r.register(
            "store_batch_ops",
            "Operations per committed store batch",
            m.store.batch_ops.clone(),
        );
        r.register(
            "store_flush_seconds",
            "Time to make one store batch durable and apply it",
            m.store.flush_seconds.clone(),
        );
        r.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            m.grpc.requests.clone(),
        );
        r.register(
            "grpc_request_duration_seconds",
            "gRPC request latency until the response headers",
            m.grpc.latency.clone(),
        );
        m
    }

    /// Refreshes the scrape-time gauges through `api`, then writes every metric as
    /// OpenMetrics text.
    pub async fn render(&self, api: &PipelineApi) -> String {
        self.refresh(api).await;
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        text
    }

    async fn refresh(&self, api: &PipelineApi) {
        let store = &api.registry.shared().store;
        self.jobs.clear();
        match store.scan_json::<JobRecord>(Tree::Jobs, b"") {
            Ok(jobs) => {
                for job in jobs {
                    self.jobs
                        .get_or_create(&StatusLabels {
                            status: format!("{:?}", job.status),
                        })
                        .inc();
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read jobs"),
        }
        self.queue_depth.clear();
        let names = api.registry.list().unwrap_or_default();
        for record in names {
            let request = tonic::Request::new(pb::GetPipelineStateRequest {
                pipeline: record.name.clone(),
            });
            let Ok(state) = api.get_pipeline_state(request).await else {
                continue;
            };
            for stage in state.into_inner().stages {
                let name = if stage.lane.is_empty() {
                    stage.stage
                } else {
                    format!("{}@{}", stage.stage, stage.lane)
                };
                self.queue_depth
                    .get_or_create(&StageLabels {
                        pipeline: record.name.clone(),
                        stage: name,
                    })
                    .set(stage.waiting.len() as i64);
            }
        }
        self.workers.clear();
        if let Ok(listed) = api
            .list_workers(tonic::Request::new(pb::ListWorkersRequest {}))
            .await
        {
            for w in listed.into_inner().workers {
                let state = pb::WorkerState::try_from(w.state)
                    .map(|s| super::enum_word(s.as_str_name(), "WORKER_STATE_"))
                    .unwrap_or_else(|_| w.state.to_string());
                self.workers.get_or_create(&WorkerLabels { state }).inc();
            }
        }
    }

    /// Follows `events` until `shutdown`, counting what ends and timing stage waits.
    pub fn follow(self: &Arc<Self>, events: &EventHub, store: Store, shutdown: CancellationToken) {
        let mut rx = events.subscribe();
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut follower = EventFollower::new(metrics, store);
            follower.measure_history();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = rx.recv() => match event {
                        Ok(event) => follower.on_event(&event),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "metrics fell behind the event hub");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
    }
}

/// The event-driven part: remembers when executions started waiting and what stages cost.
struct EventFollower {
    metrics: Arc<Metrics>,
    store: Store,
    /// `(execution, stage)` -> when it started waiting (Unix ms).
    waiting_since: HashMap<(String, String), i64>,
    /// `(pipeline, stage)` -> (sum of worker ms over successful runs, number of runs).
    stage_cost: BTreeMap<(String, String), (u64, u64)>,
}

impl EventFollower {
    fn new(metrics: Arc<Metrics>, store: Store) -> Self {
        Self {
            metrics,
            store,
            waiting_since: HashMap::new(),
            stage_cost: BTreeMap::new(),
        }
    }

    fn on_event(&mut self, event: &Event) {
        match &event.change {
            Change::Stage(StageStatus::Waiting) => {
                self.waiting_since
                    .entry((event.execution_id.clone(), event.stage.clone()))
                    .or_insert(event.at_ms);
            }
            Change::Stage(StageStatus::InProgress) => {
                let key = (event.execution_id.clone(), event.stage.clone());
                let waited_ms = self
                    .waiting_since
                    .remove(&key)
                    .map(|since| (event.at_ms - since).max(0))
                    .unwrap_or(0);
                self.metrics
                    .lock_wait
                    .get_or_create(&StageLabels {
                        pipeline: event.pipeline.clone(),
                        stage: event.stage.clone(),
                    })
                    .observe(waited_ms as f64 / 1000.0);
            }
            Change::Stage(StageStatus::Succeeded) => self.measure_stage(event),
            Change::Stage(_) => {
                self.waiting_since
                    .remove(&(event.execution_id.clone(), event.stage.clone()));
            }
            Change::Job(status) if status.is_final() => {
                self.metrics
                    .jobs_ended
                    .get_or_create(&StatusLabels {
                        status: format!("{status:?}"),
                    })
                    .inc();
            }
            Change::Job(_) => {}
            Change::Execution(status) => self.on_execution(event, *status),
        }
    }

    fn on_execution(&mut self, event: &Event, status: ExecutionStatus) {
        if !status.is_final() {
            return;
        }
        self.metrics
            .executions_ended
            .get_or_create(&PipelineStatusLabels {
                pipeline: event.pipeline.clone(),
                status: format!("{status:?}"),
            })
            .inc();
        self.waiting_since
            .retain(|(execution, _), _| execution != &event.execution_id);
        let reason = match status {
            ExecutionStatus::Superseded => "superseded",
            ExecutionStatus::Cancelled => "cancelled",
            _ => return,
        };
        let Some(exec) = self.execution(&event.execution_id) else {
            return;
        };
        let saved_ms: u64 = exec
            .stages
            .iter()
            .filter(|run| run.started_at_ms == 0)
            .filter_map(|run| {
                self.stage_cost
                    .get(&(exec.pipeline.clone(), run.stage.clone()))
                    .map(|(sum, n)| sum / n.max(&1))
            })
            .sum();
        self.metrics
            .saved
            .get_or_create(&SavedLabels {
                pipeline: exec.pipeline.clone(),
                reason: reason.into(),
            })
            .inc_by(saved_ms as f64 / 1000.0);
    }

    /// Measures every stage run that succeeded before this start, so estimates survive a
    /// restart.
    fn measure_history(&mut self) {
        let executions = match self
            .store
            .scan_json::<ExecutionRecord>(Tree::Executions, b"")
        {
            Ok(executions) => executions,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read past executions");
                return;
            }
        };
        for exec in &executions {
            for run in &exec.stages {
                if run.status == StageStatus::Succeeded {
                    self.add_stage_cost(exec, &run.stage);
                }
            }
        }
    }

    fn measure_stage(&mut self, event: &Event) {
        if let Some(exec) = self.execution(&event.execution_id) {
            self.add_stage_cost(&exec, &event.stage);
        }
    }

    /// Adds a successful stage run's worker time (the sum of its jobs' run times).
    fn add_stage_cost(&mut self, exec: &ExecutionRecord, stage: &str) {
        let Some(run) = exec.stages.iter().find(|r| r.stage == stage) else {
            return;
        };
        let mut worker_ms = 0u64;
        for id in &run.jobs {
            if let Ok(Some(job)) = self.store.get_json::<JobRecord>(Tree::Jobs, id.as_bytes())
                && job.started_at_ms > 0
                && job.finished_at_ms >= job.started_at_ms
            {
                worker_ms += (job.finished_at_ms - job.started_at_ms) as u64;
            }
        }
        let entry = self
            .stage_cost
            .entry((exec.pipeline.clone(), run.stage.clone()))
            .or_default();
        entry.0 += worker_ms;
        entry.1 += 1;
    }

    fn execution(&self, id: &str) -> Option<ExecutionRecord> {
        self.store
            .get_json(Tree::Executions, id.as_bytes())
            .ok()
            .flatten()
    }
}
