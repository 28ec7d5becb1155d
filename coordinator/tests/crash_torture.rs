//! Crash torture: a real `baton-coordinator` process is SIGKILLed at random moments under a
//! stream of short executions, and started again each time, for many rounds. Then:
//!
//! - every execution whose start was acknowledged exists;
//! - no job runs again after it was reported finished;
//! - no stage lock is held by (and no one waits as) an execution that has ended;
//! - fence tokens never go backwards;
//! - the watcher, resuming with `since` after every kill, saw every event exactly once, in
//!   order, and what it saw is exactly what the store replays.
//!
//! `BATON_TORTURE_ROUNDS` (default 5) and `BATON_TORTURE_SEED` (default: the clock; printed)
//! set the rounds and the random kill moments, e.g.
//! `BATON_TORTURE_ROUNDS=200 BATON_TORTURE_SEED=7 cargo test -p baton-coordinator --test crash_torture -- --nocapture`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use common::Coordinator;
use tokio_util::sync::CancellationToken;

const PIPELINE: &str = "web";
const DEADLINE: Duration = Duration::from_secs(90);

fn pipeline_yaml(runs: &Path) -> String {
    let step = format!(
        "echo \"start $BATON_JOB_ID $(date +%s%N)\" >> {}; sleep 0.03",
        runs.display()
    );
    format!(
        "name: {PIPELINE}\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [{step:?}]\n  - name: deploy\n    mode: queued\n    actions:\n      - name: ship\n        run: [{step:?}]\n"
    )
}

/// xorshift64*: small, seeded, good enough for kill moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[derive(Default)]
struct Seen {
    events: Vec<pb::PipelineEvent>,
    /// Problems the watcher found (gaps, duplicates).
    violations: Vec<String>,
    /// When the watcher learnt that a job had ended (ns since the epoch).
    job_ended_at: HashMap<String, u128>,
    /// Executions the watcher saw end.
    ended: HashSet<String>,
}

fn is_final_execution(status: i32) -> bool {
    use pb::ExecutionStatus as S;
    [
        S::Stopped,
        S::Succeeded,
        S::Failed,
        S::Superseded,
        S::Cancelled,
    ]
    .iter()
    .any(|s| *s as i32 == status)
}

fn is_final_job(status: i32) -> bool {
    use pb::JobStatus as S;
    ![S::Unspecified, S::Queued, S::Running]
        .iter()
        .any(|s| *s as i32 == status)
}

/// Follows the pipeline across kills, resuming with `since` each time it reconnects.
async fn watch(
    addr: String,
    seen: Arc<Mutex<Seen>>,
    progress: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let mut last = 0u64;
    while !stop.is_cancelled() {
        let stream = async {
            let mut client = PipelineServiceClient::connect(addr.clone()).await.ok()?;
            let reply = client
                .watch_pipeline(pb::WatchPipelineRequest {
                    pipeline: PIPELINE.into(),
                    since: Some(last),
                })
                .await
                .ok()?;
            Some(reply.into_inner())
        };
        let Some(mut stream) = stream.await else {
            // The coordinator is down or starting: try again shortly.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
                _ = stop.cancelled() => return,
            }
        };
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                _ = stop.cancelled() => return,
            };
            let Ok(Some(event)) = next else { break };
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if event.seq != last + 1 {
                seen.violations
                    .push(format!("after event {last} the watcher got {}", event.seq));
            }
            last = event.seq;
            match event.change {
                Some(pb::pipeline_event::Change::JobStatus(s)) if is_final_job(s) => {
                    seen.job_ended_at.insert(event.job_id.clone(), now_ns());
                }
                Some(pb::pipeline_event::Change::ExecutionStatus(s)) if is_final_execution(s) => {
                    seen.ended.insert(event.execution_id.clone());
                }
                _ => {}
            }
            seen.events.push(event);
            drop(seen);
            progress.notify_waiters();
        }
    }
}

/// Starts executions one after another until `stop` or the coordinator goes away; returns the
/// ids whose start was acknowledged.
async fn push(addr: String, first: u64, stop: CancellationToken) -> Vec<String> {
    let mut acked = Vec::new();
    let Ok(mut client) = PipelineServiceClient::connect(addr).await else {
        return acked;
    };
    let mut n = first;
    while !stop.is_cancelled() {
        n += 1;
        let started = client
            .start_pipeline_execution(pb::StartPipelineExecutionRequest {
                pipeline: PIPELINE.into(),
                revision: Some(pb::SourceRevision {
                    branch: "main".into(),
                    commit: format!("c{n}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        match started {
            Ok(reply) => acked.push(reply.into_inner().execution_id),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    acked
}

async fn stage_state(
    client: &mut PipelineServiceClient<tonic::transport::Channel>,
) -> pb::PipelineState {
    client
        .get_pipeline_state(pb::GetPipelineStateRequest {
            pipeline: PIPELINE.into(),
        })
        .await
        .expect("state")
        .into_inner()
}

/// Executions a stage names (holder and waiters), by stage.
fn named(state: &pb::PipelineState) -> Vec<(String, String)> {
    state
        .stages
        .iter()
        .flat_map(|stage| {
            stage
                .lock
                .iter()
                .map(|l| l.execution_id.clone())
                .chain(stage.waiting.iter().map(|w| w.execution_id.clone()))
                .map(move |id| (stage.stage.clone(), id))
        })
        .collect()
}

/// Checks that no ended execution holds or waits for a stage and that fence tokens only grow.
///
/// The state and the executions are separate reads, so an execution can end between the
/// two: one found ended is checked against a second state read, made after it had ended.
async fn check_stages(
    client: &mut PipelineServiceClient<tonic::transport::Channel>,
    fences: &mut BTreeMap<String, u64>,
    when: &str,
) {
    let state = stage_state(client).await;
    for stage in &state.stages {
        let before = fences.entry(stage.stage.clone()).or_default();
        assert!(
            stage.fence_token >= *before,
            "{when}: fence token of {} went back from {before} to {}",
            stage.stage,
            stage.fence_token
        );
        *before = stage.fence_token;
        if let Some(holder) = &stage.lock {
            assert!(
                !is_final_execution(holder.status),
                "{when}: stage {} is held by #{} which has ended: {stage:#?}",
                stage.stage,
                holder.number
            );
        }
    }
    let mut ended = Vec::new();
    for (stage, id) in named(&state) {
        let exec = client
            .get_pipeline_execution(pb::GetPipelineExecutionRequest {
                execution_id: id.clone(),
            })
            .await
            .expect("execution named by a stage")
            .into_inner();
        if is_final_execution(exec.status) {
            ended.push((stage, id, exec));
        }
    }
    if ended.is_empty() {
        return;
    }
    let after = named(&stage_state(client).await);
    for (stage, id, exec) in ended {
        assert!(
            !after.contains(&(stage.clone(), id)),
            "{when}: stage {stage} still names execution #{} after it ended: {exec:#?}",
            exec.number
        );
    }
}

/// Every start line of a job in `runs` comes before the watcher learnt that the job ended.
fn check_no_rerun(runs: &Path, seen: &Seen, seed: u64) {
    let text = std::fs::read_to_string(runs).expect("runs");
    for line in text.lines() {
        let mut parts = line.split_whitespace().skip(1);
        let (Some(job), Some(at)) = (parts.next(), parts.next()) else {
            continue;
        };
        let at: u128 = at.parse().unwrap_or(0);
        if let Some(ended) = seen.job_ended_at.get(job) {
            assert!(
                at <= *ended,
                "job {job} started again after it was reported finished (seed {seed})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_at_random_moments_loses_nothing_acknowledged() {
    let rounds = env_u64("BATON_TORTURE_ROUNDS").unwrap_or(5);
    let seed = env_u64("BATON_TORTURE_SEED").unwrap_or_else(|| now_ns() as u64 | 1);
    println!("crash torture: BATON_TORTURE_ROUNDS={rounds} BATON_TORTURE_SEED={seed}");
    let mut rng = Rng(seed.max(1));
    let dir = tempfile::tempdir().expect("dir");
    let runs = dir.path().join("runs");
    std::fs::write(&runs, b"").expect("runs file");
    let mut coordinator = Coordinator::new(
        &dir.path().join("store"),
        &["--lease", "2s", "--heartbeat-interval", "200ms"],
    );
    coordinator.start().await;
    coordinator
        .client()
        .await
        .put_pipeline(pb::PutPipelineRequest {
            definition_yaml: pipeline_yaml(&runs),
            source_name: "web.yaml".into(),
        })
        .await
        .expect("put pipeline");

    let mut workers = Vec::new();
    for name in ["w1", "w2"] {
        let config = baton_worker::WorkerConfig {
            coordinator: coordinator.addr.clone(),
            name: name.into(),
            labels: BTreeMap::from([("os".to_string(), "linux".to_string())]),
            slots: 2,
            token: String::new(),
            work_dir: dir.path().join(name),
            reconnect_backoff: Duration::from_millis(50),
            ..Default::default()
        };
        let shutdown = baton_worker::Shutdown::new();
        let s = shutdown.clone();
        workers.push((
            shutdown,
            tokio::spawn(async move {
                let _ = baton_worker::run(config, s).await;
            }),
        ));
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let progress = Arc::new(tokio::sync::Notify::new());
    let stop_watch = CancellationToken::new();
    let watcher = tokio::spawn(watch(
        coordinator.addr.clone(),
        seen.clone(),
        progress.clone(),
        stop_watch.clone(),
    ));

    let mut acked: Vec<String> = Vec::new();
    let mut fences = BTreeMap::new();
    for round in 0..rounds {
        let stop = CancellationToken::new();
        let pusher = tokio::spawn(push(coordinator.addr.clone(), round * 10_000, stop.clone()));
        // The random moment of the kill is the point of the test.
        tokio::time::sleep(Duration::from_millis(50 + rng.below(400))).await;
        coordinator.kill();
        stop.cancel();
        acked.extend(pusher.await.expect("pusher"));
        coordinator.start().await;
        let mut client = coordinator.client().await;
        check_stages(
            &mut client,
            &mut fences,
            &format!("after kill {}", round + 1),
        )
        .await;
    }

    // Quiet: everything acknowledged runs to its end.
    let all_ended = async {
        loop {
            let notified = progress.notified();
            let missing = {
                let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                acked.iter().filter(|id| !seen.ended.contains(*id)).count()
            };
            if missing == 0 {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(DEADLINE, all_ended).await.is_err() {
        panic!("acknowledged executions did not all end (seed {seed})");
    }

    let mut client = coordinator.client().await;
    for id in &acked {
        client
            .get_pipeline_execution(pb::GetPipelineExecutionRequest {
                execution_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged execution {id} is gone (seed {seed}): {e}"));
    }
    check_stages(&mut client, &mut fences, "at the end").await;

    // No job started again after it was reported finished.
    let watched = {
        let seen_now = seen.lock().unwrap_or_else(|p| p.into_inner());
        check_no_rerun(&runs, &seen_now, seed);
        assert!(
            seen_now.violations.is_empty(),
            "watcher saw gaps or duplicates (seed {seed}): {:?}",
            seen_now.violations
        );
        seen_now.events.clone()
    };

    // What the watcher saw across every kill is exactly what the store replays.
    let mut replay = client
        .watch_pipeline(pb::WatchPipelineRequest {
            pipeline: PIPELINE.into(),
            since: Some(0),
        })
        .await
        .expect("replay")
        .into_inner();
    let mut stored = Vec::new();
    while stored.len() < watched.len() {
        match tokio::time::timeout(DEADLINE, replay.message()).await {
            Ok(Ok(Some(event))) => stored.push(event),
            other => panic!("replay ended early: {other:?}"),
        }
    }
    assert_eq!(stored, watched, "seed {seed}");
    println!(
        "crash torture: {rounds} kills, {} executions acknowledged, {} events, all consistent",
        acked.len(),
        watched.len()
    );

    stop_watch.cancel();
    let _ = watcher.await;
    for (shutdown, handle) in workers {
        shutdown.abandon.cancel();
        shutdown.drain.cancel();
        let _ = tokio::time::timeout(DEADLINE, handle).await;
    }
    coordinator.kill();
}
