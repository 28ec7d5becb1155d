//! `baton up`: a coordinator and N local workers in one process, with the example pipelines
//! applied — the quickest way to try Baton. With `--demo`, it then runs the supersede demo.
//!
//! Everything it starts is owned here: the coordinator and every worker get their own
//! cancellation tokens, and `up` never returns before they have all ended (workers drain
//! first; a second Ctrl-C abandons their jobs; the coordinator stops last).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_coordinator::CoordinatorConfig;
use baton_proto::v1::PutPipelineRequest;
use baton_worker::{Shutdown, WorkerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{Api, DEFAULT_ADDR};
use crate::commands::Ctx;
use crate::error::{CliError, io_text};
use crate::output::emit;

/// After a second Ctrl-C abandons the workers' jobs, how long to wait for them to go. Draining
/// itself has no limit: running jobs finish.
const ABANDON_WAIT: Duration = Duration::from_secs(30);
/// How long the coordinator may take to stop once the workers are gone.
const COORDINATOR_STOP_WAIT: Duration = Duration::from_secs(10);

/// Flags of `baton up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the coordinator keeps its store; local workers get `workers/<name>` inside it.
    #[arg(long, default_value = "./.baton")]
    data_dir: PathBuf,
    /// Address to serve the gRPC API on.
    #[arg(long, default_value = "127.0.0.1:7411")]
    listen: String,
    /// Address to serve the web dashboard and Prometheus `/metrics` on ("" serves no HTTP).
    #[arg(long, default_value = "127.0.0.1:7412")]
    http_addr: String,
    /// How many local workers to start (named local-1, local-2, ...; label os=linux; 1 slot each).
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// After start-up, push five quick revisions to `web-app` and show superseding live, then exit.
    #[arg(long)]
    demo: bool,
    /// Directory whose `*.yaml` pipeline files are applied at start. Default: `./examples` if present.
    #[arg(long)]
    examples: Option<PathBuf>,
}

/// A running local worker.
struct LocalWorker {
    name: String,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), baton_worker::WorkerError>>,
}

/// Runs `baton up` until Ctrl-C (or, with `--demo`, until the demo ends).
pub async fn run(ctx: &Ctx, args: UpArgs) -> Result<(), CliError> {
    // Everything that can be checked is checked before a port is bound.
    let pipelines = load_examples(args.examples.as_deref())?;
    let data_dir = std::path::absolute(&args.data_dir)
        .map_err(|e| CliError::file("resolve", &args.data_dir, &e))?;
    let workers_dir = data_dir.join("workers");
    std::fs::create_dir_all(&workers_dir)
        .map_err(|e| CliError::file("create", &workers_dir, &e))?;

    let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| {
        CliError::msg(format!(
            "cannot listen on {}: {} — is another `baton up` running? (pick a port with --listen)",
            args.listen,
            io_text(&e)
        ))
    })?;
    let local = listener.local_addr().map_err(|e| {
        CliError::msg(format!(
            "cannot read the listening address: {}",
            io_text(&e)
        ))
    })?;
    let url = client_url(local);
    let http = if args.http_addr.is_empty() {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(&args.http_addr)
                .await
                .map_err(|e| {
                    CliError::msg(format!(
                        "cannot listen on {} for the dashboard: {} (pick a port with --http-addr, or --http-addr '' for none)",
                        args.http_addr,
                        io_text(&e)
                    ))
                })?,
        )
    };
    let dashboard = http
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(client_url);

    let stop_coordinator = CancellationToken::new();
    let mut coordinator = tokio::spawn(baton_coordinator::run_with_listeners(
        CoordinatorConfig::new(&data_dir),
        listener,
        http,
        stop_coordinator.clone(),
        std::sync::Arc::new(baton_coordinator::clock::SystemClock),
    ));
    // Workers start once the coordinator serves, so they never log that it refused them.
    let serving = tokio::select! {
        result = wait_serving(&url) => result,
        ended = &mut coordinator => Err(coordinator_ended(ended)),
    };
    if let Err(err) = serving {
        stop_coordinator.cancel();
        if !coordinator.is_finished() {
            stop(coordinator).await;
        }
        return Err(err);
    }
    let workers: Vec<LocalWorker> = (1..=args.workers)
        .map(|i| start_worker(&url, &format!("local-{i}"), &workers_dir))
        .collect();

    let session = async {
        let mut api = Api::connect(&url).await?;
        let applied = apply_all(&mut api, &pipelines).await?;
        if args.demo {
            crate::demo::run(&mut api, ctx.output, std::io::stdout().is_terminal()).await
        } else {
            print_banner(&url, dashboard.as_deref(), &data_dir, &workers, &applied);
            wait_for_signal().await;
            Ok(())
        }
    };
    let result = tokio::select! {
        result = session => result,
        ended = &mut coordinator => Err(coordinator_ended(ended)),
    };
    let draining = if args.demo {
        crate::progress::Spinner::hidden()
    } else {
        crate::progress::Spinner::start(
            "Shutting down: draining workers (press Ctrl-C again to abandon running jobs)...",
        )
    };
    stop_workers(workers).await;
    draining.finish("Workers stopped.");
    stop_coordinator.cancel();
    if !coordinator.is_finished() {
        stop(coordinator).await;
    }
    result
}

/// Waits for a coordinator told to stop, up to [`COORDINATOR_STOP_WAIT`]; aborts it after.
async fn stop(mut coordinator: tokio::task::JoinHandle<Result<(), baton_coordinator::StartError>>) {
    match tokio::time::timeout(COORDINATOR_STOP_WAIT, &mut coordinator).await {
        Ok(Ok(Err(err))) => eprintln!("warning: the coordinator stopped with an error: {err}"),
        Ok(_) => {}
        Err(_) => {
            coordinator.abort();
            eprintln!("warning: the coordinator did not stop within {COORDINATOR_STOP_WAIT:?}");
        }
    }
}

/// The URL clients use: a wildcard listen address is reached on loopback.
fn client_url(local: SocketAddr) -> String {
    let ip = if local.ip().is_unspecified() {
        match local {
            SocketAddr::V4(_) => "127.0.0.1".to_string(),
            SocketAddr::V6(_) => "[::1]".to_string(),
        }
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        local.ip().to_string()
    };
    format!("http://{ip}:{}", local.port())
}

fn coordinator_ended(
    ended: Result<Result<(), baton_coordinator::StartError>, tokio::task::JoinError>,
) -> CliError {
    match ended {
        Ok(Err(err)) => CliError::msg(format!("the coordinator stopped: {err}")),
        Ok(Ok(())) => CliError::msg("the coordinator stopped unexpectedly"),
        Err(_) => CliError::msg("the coordinator crashed"),
    }
}

fn start_worker(url: &str, name: &str, workers_dir: &Path) -> LocalWorker {
    let config = WorkerConfig {
        coordinator: url.to_string(),
        name: name.to_string(),
        labels: BTreeMap::from([("os".to_string(), "linux".to_string())]),
        slots: 1,
        token: String::new(),
        work_dir: workers_dir.join(name),
        reconnect_backoff: Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(baton_worker::run(config, shutdown.clone()));
    LocalWorker {
        name: name.to_string(),
        shutdown,
        task,
    }
}

/// Drains every worker; a second Ctrl-C (or SIGTERM) abandons their running jobs.
async fn stop_workers(workers: Vec<LocalWorker>) {
    for w in &workers {
        w.shutdown.drain.cancel();
    }
    let abandon: Vec<CancellationToken> =
        workers.iter().map(|w| w.shutdown.abandon.clone()).collect();
    let mut tasks: Vec<_> = workers.into_iter().map(|w| (w.name, w.task)).collect();
    let all_done = async {
        for (name, task) in &mut tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => eprintln!("warning: worker {name} stopped with an error: {err}"),
                Err(_) => eprintln!("warning: worker {name} crashed"),
            }
        }
    };
    tokio::pin!(all_done);
    tokio::select! {
        () = &mut all_done => return,
        () = wait_for_signal() => {
            eprintln!("Abandoning running jobs...");
            abandon.iter().for_each(CancellationToken::cancel);
        }
    }
    if tokio::time::timeout(ABANDON_WAIT, all_done).await.is_err() {
        eprintln!("warning: some workers did not stop within {ABANDON_WAIT:?}");
    }
}

/// Ctrl-C, or SIGTERM (so that `docker stop` shuts down cleanly too).
async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Reads and validates every `*.yaml`/`*.yml` file of the examples directory, sorted by name.
fn load_examples(dir: Option<&Path>) -> Result<Vec<(String, String)>, CliError> {
    let (dir, explicit) = match dir {
        Some(dir) => (dir.to_path_buf(), true),
        None => (PathBuf::from("examples"), false),
    };
    if !explicit && !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| CliError::file("read", &dir, &e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = crate::commands::pipeline::read_file(&path)?;
        let name = path.display().to_string();
        baton_coordinator::pipeline::parse_pipeline_file(&name, &text)
            .map_err(|e| CliError::msg(e.to_string()))?;
        out.push((name, text));
    }
    Ok(out)
}

/// PutPipeline for each example; returns the stored pipeline names.
async fn apply_all(api: &mut Api, pipelines: &[(String, String)]) -> Result<Vec<String>, CliError> {
    let mut names = Vec::new();
    for (source_name, text) in pipelines {
        let reply = api
            .client
            .put_pipeline(PutPipelineRequest {
                definition_yaml: text.clone(),
                source_name: source_name.clone(),
            })
            .await
            .map_err(|s| api.error(s))?
            .into_inner();
        if let Some(p) = reply.pipeline {
            names.push(p.name);
        }
    }
    Ok(names)
}

fn print_banner(
    url: &str,
    dashboard: Option<&str>,
    data_dir: &Path,
    workers: &[LocalWorker],
    applied: &[String],
) {
    let addr_flag = if url == DEFAULT_ADDR {
        String::new()
    } else {
        format!("--addr {url} ")
    };
    let try_pipeline = if applied.iter().any(|p| p == "web-app") {
        Some("web-app")
    } else {
        applied.first().map(String::as_str)
    };
    let hint = match try_pipeline {
        Some(p) => format!("baton {addr_flag}state {p}"),
        None => format!("baton {addr_flag}pipeline apply FILE"),
    };
    let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
    let workers = if names.is_empty() {
        "none (--workers 0)".to_string()
    } else {
        format!("{} (label os=linux, 1 slot each)", names.join(", "))
    };
    let pipelines = if applied.is_empty() {
        "none (no examples directory found)".to_string()
    } else {
        applied.join(", ")
    };
    let dashboard = match dashboard {
        Some(http) => format!("  dashboard: {http}/  (metrics: {http}/metrics)\n"),
        None => String::new(),
    };
    // A closed stdout must not stop the coordinator, so the write error is ignored.
    let _ = emit(&format!(
        "Baton is up at {url} — try: {hint}\n{dashboard}  data dir:  {}\n  workers:   {workers}\n  pipelines: {pipelines}\nPress Ctrl-C to stop.\n",
        data_dir.display()
    ));
}

/// How long `baton up` waits for its coordinator to say SERVING.
const STARTUP_WAIT: Duration = Duration::from_secs(60);

/// Waits until the coordinator at `url` reports SERVING on gRPC health (it refuses calls while
/// it rebuilds its pipelines from the store).
async fn wait_serving(url: &str) -> Result<(), CliError> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        CliError::msg(format!("the coordinator at {url} did not start: {e}"))
    };
    let watch = async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| unreachable(&e))?
            .connect()
            .await
            .map_err(|e| unreachable(&e))?;
        let mut statuses = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| unreachable(&e.message()))?
            .into_inner();
        while let Some(status) = statuses
            .message()
            .await
            .map_err(|e| unreachable(&e.message()))?
        {
            if status.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        Err(unreachable(&"its health stream ended"))
    };
    tokio::time::timeout(STARTUP_WAIT, watch)
        .await
        .map_err(|_| unreachable(&format!("not SERVING after {STARTUP_WAIT:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:7411"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 7411)));
        assert_eq!(client_url(any), "http://127.0.0.1:7411");
        assert_eq!(
            client_url(SocketAddr::from(([10, 0, 0, 2], 80))),
            "http://10.0.0.2:80"
        );
    }
}
