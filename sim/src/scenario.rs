//! One simulated run: a coordinator host (real gRPC services and actors, in-memory store, the
//! simulated clock), worker hosts running the real worker session with simulated jobs, and a
//! driver that pushes revisions; the step loop cuts and repairs links and crashes and restarts
//! workers and the coordinator at random (seeded), and reads every fence entry from the store as it happens.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use baton_coordinator::CoordinatorConfig;
use baton_coordinator::clock::SharedClock;
use baton_coordinator::in_process::serve_in_process;
use baton_coordinator::store::records::StageRecord;
use baton_coordinator::store::{Engine, MemoryEngine, Store, Tree};
use baton_proto::v1 as pb;
use baton_proto::v1::pipeline_service_client::PipelineServiceClient;
use baton_worker::{Seams, Shutdown, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::check::Entry;
use crate::clock::SimClock;
use crate::job::{Act, ActEnd, Ledger, SimLauncher};
use crate::net;
use crate::rng::Rng;

/// The coordinator's host name and port.
const COORDINATOR: &str = "coordinator";
const PORT: u16 = 7411;

/// What a run looks like.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Seeds the fault schedule and turmoil's network.
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Duration,
    /// Worker hosts.
    pub workers: usize,
    /// Simulated time per step.
    pub tick: Duration,
    /// Mean time between two fault decisions.
    pub fault_every: Duration,
    /// Time between two pushes of the driver.
    pub push_every: Duration,
}

impl Scenario {
    /// A scenario with the given seed and the defaults used in CI.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            duration: Duration::from_secs(90),
            workers: 4,
            tick: Duration::from_millis(5),
            fault_every: Duration::from_millis(1_500),
            push_every: Duration::from_millis(2_500),
        }
    }
}

/// Counts that show the run tested something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Partitions started (worker <-> coordinator).
    pub partitions: u32,
    /// Held links (messages delayed, then released).
    pub holds: u32,
    /// Worker crashes (restarted later).
    pub crashes: u32,
    /// Worker restarts without a pause.
    pub bounces: u32,
    /// Coordinator restarts (its in-memory store survives them, as a disk would).
    pub coordinator_restarts: u32,
    /// Acts that were running on a worker when it was cut off or crashed.
    pub hits: u32,
    /// Acts cut off by a partition that the worker then abandoned itself.
    pub self_fenced: u32,
    /// Locks that passed to a newer token after an act of an older one was hit.
    pub handovers_after_hit: u32,
    /// Fence entries seen in the store.
    pub entries: u32,
    /// Acts that ran to their end.
    pub finished: u32,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every act, in start order.
    pub acts: Vec<Act>,
    /// Every fence entry, in order.
    pub entries: Vec<Entry>,
    /// Simulated ms at the end.
    pub end_ms: i64,
    /// Evidence that faults met running jobs.
    pub stats: Stats,
    /// Every fault and repair, in order (`ms what worker`), to explain a failure.
    pub faults: Vec<String>,
}

impl Outcome {
    /// The run in words without job ids (which are random), to compare two runs of a seed.
    pub fn trace(&self) -> Vec<String> {
        let acts = self.acts.iter().map(|a| {
            format!(
                "act {} {} token {} {}..{:?} {:?}",
                a.worker, a.lock, a.token, a.start_ms, a.end_ms, a.ended
            )
        });
        let entries = self
            .entries
            .iter()
            .map(|e| format!("entry {} token {} at {}", e.lock, e.token, e.at_ms));
        acts.chain(entries).collect()
    }
}

fn pipelines() -> [&'static str; 2] {
    [
        r#"
name: ship
stages:
  - name: deploy
    actions:
      - name: release
        labels: { role: deploy }
        grace: 500ms
        retry: { lost: 2 }
        run: [ "deploy" ]
"#,
        r#"
name: lanes
lanes: branch
stages:
  - name: deploy
    actions:
      - name: release
        labels: { role: deploy }
        grace: 500ms
        env: { SIM_LANE_BY_BRANCH: "1" }
        run: [ "deploy" ]
"#,
    ]
}

fn coordinator_config() -> CoordinatorConfig {
    let mut config = CoordinatorConfig::new("/nonexistent/in-memory");
    config.heartbeat_interval = Duration::from_secs(1);
    config.lease = Duration::from_secs(4);
    config.lost_margin = Duration::from_secs(2);
    config.offer_timeout = Duration::from_secs(2);
    config
}

fn worker_name(i: usize) -> String {
    format!("worker-{i}")
}

/// A fault that will be undone at `until_ms`.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Partition,
    Hold,
    Crash,
}

/// Runs `scenario`; panics if the simulation itself fails (a host returned an error).
pub fn run(scenario: &Scenario) -> Outcome {
    let ledger = Arc::new(Ledger::default());
    let engine = Arc::new(MemoryEngine::default());
    let mut sim = turmoil::Builder::new()
        .simulation_duration(scenario.duration + Duration::from_secs(60))
        .tick_duration(scenario.tick)
        .rng_seed(scenario.seed)
        .build();

    {
        let engine = engine.clone();
        sim.host(COORDINATOR, move || {
            let store = Store::start_inline(engine.clone());
            async move {
                let incoming = net::incoming(PORT).await?;
                let clock: SharedClock = Arc::new(SimClock);
                serve_in_process(
                    coordinator_config(),
                    store,
                    clock,
                    incoming,
                    CancellationToken::new(),
                )
                .await?;
                Ok(())
            }
        });
    }
    for i in 0..scenario.workers {
        let ledger = ledger.clone();
        sim.host(worker_name(i), move || {
            let name = worker_name(i);
            let config = WorkerConfig {
                coordinator: format!("http://{COORDINATOR}:{PORT}"),
                name: name.clone(),
                labels: BTreeMap::from([("role".to_string(), "deploy".to_string())]),
                slots: 1,
                token: String::new(),
                work_dir: "/nonexistent/sim".into(),
                reconnect_backoff: Duration::from_millis(200),
                ..WorkerConfig::default()
            };
            let seams = Seams {
                launcher: Arc::new(SimLauncher {
                    ledger: ledger.clone(),
                    worker: name,
                }),
                connector: Some(Arc::new(net::connect)),
            };
            async move {
                baton_worker::run_with(config, Shutdown::new(), seams).await?;
                Ok(())
            }
        });
    }
    let push_every = scenario.push_every;
    sim.client("driver", drive(push_every));

    let mut faults = Faults {
        rng: Rng::new(scenario.seed),
        workers: scenario.workers,
        active: BTreeMap::new(),
        hit_by: BTreeMap::new(),
        log: Vec::new(),
        stats: Stats::default(),
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let fault_every = i64::try_from(scenario.fault_every.as_millis()).unwrap_or(i64::MAX);
    let end_ms = i64::try_from(scenario.duration.as_millis()).unwrap_or(i64::MAX);
    // Faults start after the pipelines are in and end a little before the run, so that the
    // last lock handovers can happen.
    let (faults_from, faults_until) = (3_000, end_ms - 15_000);
    let mut next_fault = faults_from;
    loop {
        let now = i64::try_from(sim.elapsed().as_millis()).unwrap_or(i64::MAX);
        if now >= end_ms {
            break;
        }
        ledger.set_now(now);
        faults.undo_due(&mut sim, now);
        if now >= next_fault && now < faults_until {
            next_fault = now + faults.rng.range(fault_every / 2, fault_every * 3 / 2);
            faults.inject(&mut sim, now, &ledger);
        }
        if let Err(e) = sim.step() {
            panic!(
                "the simulation failed at {now} ms (seed {}): {e}",
                scenario.seed
            );
        }
        observe(engine.as_ref(), now, &mut seen, &mut entries);
    }
    let acts = ledger.acts();
    let mut stats = faults.stats;
    stats.entries = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    for act in &acts {
        if act.ended == Some(ActEnd::Finished) {
            stats.finished += 1;
        }
        let Some(fault) = faults.hit_by.get(&act.job_id) else {
            continue;
        };
        if matches!(fault, Fault::Partition) && act.ended == Some(ActEnd::Abandoned) {
            stats.self_fenced += 1;
        }
        if acts
            .iter()
            .any(|b| b.lock == act.lock && b.token > act.token && b.start_ms >= act.start_ms)
        {
            stats.handovers_after_hit += 1;
        }
    }
    Outcome {
        acts,
        entries,
        end_ms,
        stats,
        faults: faults.log,
    }
}

/// The fault schedule and what it has done so far.
struct Faults {
    rng: Rng,
    workers: usize,
    /// Faults in force, by worker, with the simulated ms when they are undone.
    active: BTreeMap<usize, (Fault, i64)>,
    /// The fault that met each job while it acted.
    hit_by: BTreeMap<String, Fault>,
    log: Vec<String>,
    stats: Stats,
}

impl Faults {
    /// Repairs, releases and restarts what is due at `now`.
    fn undo_due(&mut self, sim: &mut turmoil::Sim<'_>, now: i64) {
        let due: Vec<(usize, Fault)> = self
            .active
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(w, (fault, _))| (*w, *fault))
            .collect();
        for (w, fault) in due {
            self.active.remove(&w);
            let name = worker_name(w);
            self.log
                .push(format!("{now} ms: end of {fault:?} of {name}"));
            match fault {
                Fault::Partition => sim.repair(name.as_str(), COORDINATOR),
                Fault::Hold => sim.release(name.as_str(), COORDINATOR),
                Fault::Crash => sim.bounce(name.as_str()),
            }
        }
    }

    /// Picks a worker and maybe a fault for it (none when it is already under one).
    fn inject(&mut self, sim: &mut turmoil::Sim<'_>, now: i64, ledger: &Ledger) {
        let w = usize::try_from(self.rng.below(self.workers as u64)).unwrap_or(0);
        let std::collections::btree_map::Entry::Vacant(slot) = self.active.entry(w) else {
            return;
        };
        let name = worker_name(w);
        let (what, fault) = match self.rng.below(100) {
            0..=39 => {
                sim.partition(name.as_str(), COORDINATOR);
                self.stats.partitions += 1;
                let until = now + self.rng.range(1_000, 25_000);
                ("Partition", Some((Fault::Partition, until)))
            }
            40..=54 => {
                sim.hold(name.as_str(), COORDINATOR);
                self.stats.holds += 1;
                (
                    "Hold",
                    Some((Fault::Hold, now + self.rng.range(300, 3_000))),
                )
            }
            55..=74 => {
                sim.crash(name.as_str());
                self.stats.crashes += 1;
                (
                    "Crash",
                    Some((Fault::Crash, now + self.rng.range(500, 6_000))),
                )
            }
            75..=84 => {
                sim.bounce(name.as_str());
                self.stats.bounces += 1;
                ("Bounce", None)
            }
            85..=89 => {
                sim.bounce(COORDINATOR);
                self.stats.coordinator_restarts += 1;
                self.log
                    .push(format!("{now} ms: restart of the coordinator"));
                return;
            }
            _ => return,
        };
        self.log.push(format!("{now} ms: {what} of {name}"));
        let kind = fault.map_or(Fault::Crash, |(kind, _)| kind);
        if let Some(fault) = fault {
            slot.insert(fault);
        }
        for act in ledger.acts() {
            if act.worker == name && act.end_ms.is_none() {
                self.stats.hits += 1;
                self.hit_by.insert(act.job_id.clone(), kind);
            }
        }
    }
}

/// Records every fence token the store shows for the first time.
fn observe(
    engine: &dyn Engine,
    now: i64,
    seen: &mut BTreeMap<String, u64>,
    entries: &mut Vec<Entry>,
) {
    let Ok(stages) = engine.scan_prefix(Tree::Stages, b"") else {
        return;
    };
    for (_, value) in stages {
        let Ok(record) = serde_json::from_slice::<StageRecord>(&value) else {
            continue;
        };
        let lock = format!("{}/{}/{}", record.pipeline, record.stage, record.lane);
        let token = record.lock.fence_token;
        let last = seen.entry(lock.clone()).or_insert(0);
        // Tokens only grow; a jump of more than one within a tick records each token.
        for t in (*last + 1)..=token {
            entries.push(Entry {
                lock: lock.clone(),
                token: t,
                at_ms: now,
            });
        }
        *last = (*last).max(token);
    }
}

/// The driver: puts the pipelines, then pushes a revision every `every` (to `ship`, and to one
/// of two branches of `lanes`), retrying across coordinator trouble.
async fn drive(every: Duration) -> turmoil::Result {
    let endpoint = Endpoint::from_shared(format!("http://{COORDINATOR}:{PORT}"))?
        .connect_timeout(Duration::from_secs(2));
    let mut n = 0u64;
    let mut client: Option<PipelineServiceClient<tonic::transport::Channel>> = None;
    let mut put = false;
    loop {
        let c = match client.clone() {
            Some(c) => c,
            None => match net::connect(endpoint.clone()).await {
                Ok(channel) => {
                    let c = PipelineServiceClient::new(channel);
                    client = Some(c.clone());
                    c
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        if !put {
            let mut ok = true;
            for yaml in pipelines() {
                let request = pb::PutPipelineRequest {
                    definition_yaml: yaml.into(),
                    source_name: "sim.yaml".into(),
                };
                ok &= c.clone().put_pipeline(request).await.is_ok();
            }
            put = ok;
            if !ok {
                client = None;
                continue;
            }
        }
        n += 1;
        let branch = if n.is_multiple_of(2) { "a" } else { "b" };
        for (pipeline, branch) in [("ship", "main"), ("lanes", branch)] {
            let request = pb::StartPipelineExecutionRequest {
                pipeline: pipeline.into(),
                revision: Some(pb::SourceRevision {
                    branch: branch.into(),
                    commit: format!("c{n}"),
                    ..Default::default()
                }),
                client_request_token: format!("{pipeline}-{n}"),
            };
            if c.clone().start_pipeline_execution(request).await.is_err() {
                client = None;
            }
        }
        tokio::time::sleep(every).await;
    }
}
