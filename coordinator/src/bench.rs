//! `baton-coordinator bench`: the store's figures, printed (a benchmark, not a test).
//!
//! 1. Durable state transitions per second with group commit and with one commit per write,
//!    side by side on the same machine in one run, and their ratio.
//! 2. The latency a client sees for StartPipelineExecution (median and 99th percentile), one
//!    client and many at once, against a coordinator on loopback.
//! 3. Coordinator start-up time (until it answers) with many finished executions and
//!    pipelines in the store.
//!
//! Everything runs in a scratch directory that is removed at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use tokio_util::sync::CancellationToken;

use crate::store::records::{
    ExecutionRecord, ExecutionStatus, JobRecord, JobStatus, PipelineRecord, Revision, StageRun,
    StageStatus,
};
use crate::store::{CommitMode, Op, SledEngine, Store, Tree, key_num, key2};

/// What to measure, and how much.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Scratch space (a fresh directory is made inside). Default: the system's temp dir.
    pub dir: PathBuf,
    /// Concurrent writers for the transition figure. Default: 64.
    pub writers: usize,
    /// Transitions per writer. Default: 50.
    pub writes_per_writer: usize,
    /// StartPipelineExecution calls per latency figure. Default: 400.
    pub starts: usize,
    /// Finished executions in the store for the start-up figure. Default: 100,000.
    pub executions: usize,
    /// Pipelines they belong to. Default: 1,000.
    pub pipelines: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            writers: 64,
            writes_per_writer: 50,
            starts: 400,
            executions: 100_000,
            pipelines: 1_000,
        }
    }
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn pipeline_yaml(name: &str) -> String {
    format!(
        "name: {name}\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [\"true\"]\n"
    )
}

fn execution(pipeline: &str, number: u64, status: ExecutionStatus, at_ms: i64) -> ExecutionRecord {
    ExecutionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        pipeline: pipeline.into(),
        pipeline_version: 1,
        number,
        revision: Revision {
            branch: "main".into(),
            commit: format!("{number:040x}"),
            message: "a commit message of ordinary length".into(),
            trigger: "bench".into(),
            order: 0,
            ..Default::default()
        },
        status,
        status_reason: String::new(),
        stage_index: 0,
        stages: vec![StageRun {
            stage: "build".into(),
            status: StageStatus::Succeeded,
            started_at_ms: at_ms,
            finished_at_ms: at_ms,
            fence_token: number,
            run_order: 1,
            jobs: vec![uuid::Uuid::now_v7().to_string()],
        }],
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        cancel: None,
        cancelled_by: None,
    }
}

fn job(exec: &ExecutionRecord) -> JobRecord {
    JobRecord {
        id: exec.stages[0].jobs[0].clone(),
        execution_id: exec.id.clone(),
        pipeline: exec.pipeline.clone(),
        stage: "build".into(),
        action: "compile".into(),
        run_order: 1,
        attempt: 1,
        status: JobStatus::Succeeded,
        worker: "w1".into(),
        exit_code: 0,
        started_at_ms: exec.created_at_ms,
        finished_at_ms: exec.updated_at_ms,
        steps_done: 1,
        steps: vec!["true".into()],
        labels: Default::default(),
        env: Default::default(),
        timeout_ms: 0,
        grace_ms: 10_000,
        fence_token: exec.stages[0].fence_token,
        message: String::new(),
        approval: None,
        cancel_signal: String::new(),
    }
}

/// Transitions per second: `writers` tasks each commit `writes` changes one after another
/// (an execution record, its index entry and its stage record: what one state change of a
/// pipeline writes), all at once.
async fn transitions_per_second(
    dir: &Path,
    mode: CommitMode,
    cfg: &BenchConfig,
) -> BenchResult<f64> {
    let engine = Arc::new(SledEngine::open(dir)?);
    let (store, writer) = Store::start_with(engine, mode)?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..cfg.writers)
        .map(|w| {
            let store = store.clone();
            let writes = cfg.writes_per_writer;
            tokio::spawn(async move {
                let name = format!("p{w}");
                for n in 0..writes as u64 {
                    let exec = execution(&name, n + 1, ExecutionStatus::InProgress, 0);
                    store
                        .write(vec![
                            Op::put_json(Tree::Executions, exec.id.as_bytes(), &exec),
                            Op::Put(
                                Tree::ExecutionIndex,
                                key_num(&name, n + 1),
                                exec.id.clone().into_bytes(),
                            ),
                            Op::Put(Tree::Stages, key2(&name, "build"), vec![b'x'; 200]),
                        ])
                        .await?;
                }
                Ok::<(), crate::store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    drop(store);
    writer.closed().await;
    Ok((cfg.writers * cfg.writes_per_writer) as f64 / elapsed.as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn serve(
    dir: &Path,
) -> BenchResult<(String, CancellationToken, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let config = crate::CoordinatorConfig::new(dir);
    let handle = tokio::spawn(async move {
        if let Err(e) = crate::run(config, listener, token).await {
            eprintln!("bench coordinator failed: {e}");
        }
    });
    Ok((addr, shutdown, handle))
}

async fn connect_when_ready(
    addr: &str,
) -> BenchResult<PipelineServiceClient<tonic::transport::Channel>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut client) = PipelineServiceClient::connect(addr.to_string()).await
            && client
                .list_pipelines(pb::ListPipelinesRequest {})
                .await
                .is_ok()
        {
            return Ok(client);
        }
        if Instant::now() > deadline {
            return Err("the coordinator did not answer within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Start latencies: `clients` clients at once, `starts` calls in all.
async fn start_latencies(addr: &str, clients: usize, starts: usize) -> BenchResult<Vec<Duration>> {
    let per_client = starts.div_ceil(clients);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut client = PipelineServiceClient::connect(addr).await?;
                let mut took = Vec::with_capacity(per_client);
                for n in 0..per_client {
                    let t = Instant::now();
                    client
                        .start_pipeline_execution(pb::StartPipelineExecutionRequest {
                            pipeline: format!("bench-{c}"),
                            revision: Some(pb::SourceRevision {
                                branch: "main".into(),
                                commit: format!("c{n}"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .await?;
                    took.push(t.elapsed());
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(took)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    Ok(all)
}

/// Fills a store with `cfg.executions` finished executions over `cfg.pipelines` pipelines.
async fn fill(dir: &Path, cfg: &BenchConfig) -> BenchResult<()> {
    let engine = Arc::new(SledEngine::open(dir)?);
    crate::store::schema::prepare(engine.as_ref())?;
    let (store, writer) = Store::start(engine)?;
    let per_pipeline = cfg.executions.div_ceil(cfg.pipelines.max(1));
    let mut ops = Vec::new();
    for p in 0..cfg.pipelines {
        let name = format!("pipeline-{p}");
        let record = PipelineRecord {
            name: name.clone(),
            version: 1,
            yaml: pipeline_yaml(&name),
            source_name: format!("{name}.yaml"),
            updated_at_ms: 0,
        };
        ops.push(Op::put_json(Tree::Pipelines, name.as_bytes(), &record));
        ops.push(Op::Put(
            Tree::PipelineVersions,
            key_num(&name, 1),
            record.yaml.clone().into_bytes(),
        ));
        for n in 1..=per_pipeline as u64 {
            let exec = execution(&name, n, ExecutionStatus::Succeeded, n as i64);
            ops.push(Op::put_json(
                Tree::Jobs,
                exec.stages[0].jobs[0].as_bytes(),
                &job(&exec),
            ));
            ops.push(Op::put_json(Tree::Executions, exec.id.as_bytes(), &exec));
            ops.push(Op::Put(
                Tree::ExecutionIndex,
                key_num(&name, n),
                exec.id.into_bytes(),
            ));
            if ops.len() >= 3000 {
                store.write(std::mem::take(&mut ops)).await?;
            }
        }
    }
    store.write(ops).await?;
    drop(store);
    writer.closed().await;
    Ok(())
}

/// Runs every measurement and prints the figures.
pub async fn run(cfg: BenchConfig) -> BenchResult<()> {
    let scratch = cfg.dir.join(format!("baton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = measure(&scratch, &cfg).await;
    // The scratch directory is ours alone.
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn measure(scratch: &Path, cfg: &BenchConfig) -> BenchResult<()> {
    let writes = cfg.writers * cfg.writes_per_writer;
    println!(
        "1. durable state transitions ({} writers x {} changes, 3 records each, sled)",
        cfg.writers, cfg.writes_per_writer
    );
    let group = transitions_per_second(&scratch.join("group"), CommitMode::Group, cfg).await?;
    let single = transitions_per_second(&scratch.join("single"), CommitMode::PerWrite, cfg).await?;
    println!(
        "   group commit:         {group:>9.0} transitions/s ({writes} in {:.2} s)",
        writes as f64 / group
    );
    println!(
        "   one commit per write: {single:>9.0} transitions/s ({writes} in {:.2} s)",
        writes as f64 / single
    );
    println!("   ratio:                {:>9.1}x", group / single);

    println!("2. StartPipelineExecution latency seen by clients (loopback, no workers)");
    let (addr, shutdown, handle) = serve(&scratch.join("latency")).await?;
    let mut client = connect_when_ready(&addr).await?;
    for c in 0..16 {
        let name = format!("bench-{c}");
        client
            .put_pipeline(pb::PutPipelineRequest {
                definition_yaml: pipeline_yaml(&name),
                source_name: format!("{name}.yaml"),
            })
            .await?;
    }
    for clients in [1, 16] {
        let took = start_latencies(&addr, clients, cfg.starts).await?;
        println!(
            "   {clients:>2} client(s), {} starts: median {:.2} ms, p99 {:.2} ms",
            took.len(),
            percentile(&took, 0.5).as_secs_f64() * 1000.0,
            percentile(&took, 0.99).as_secs_f64() * 1000.0
        );
    }
    shutdown.cancel();
    handle.await?;

    println!(
        "3. start-up with {} finished executions in {} pipelines",
        cfg.executions, cfg.pipelines
    );
    let big = scratch.join("startup");
    let filling = Instant::now();
    fill(&big, cfg).await?;
    println!(
        "   (store filled in {:.1} s)",
        filling.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let (addr, shutdown, handle) = serve(&big).await?;
    let mut client = connect_when_ready(&addr).await?;
    let ready = started.elapsed();
    let listed = client
        .list_pipelines(pb::ListPipelinesRequest {})
        .await?
        .into_inner();
    println!(
        "   start to first answer: {:.2} s ({} pipelines served)",
        ready.as_secs_f64(),
        listed.pipelines.len()
    );
    shutdown.cancel();
    handle.await?;
    Ok(())
}
