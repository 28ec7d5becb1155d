//! `baton-coordinator`: parses flags, sets up logging, and serves until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use baton_coordinator::CoordinatorConfig;
use clap::Parser;

/// Baton's coordinator: pipelines, stage locks and the worker fleet, over gRPC.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "BATON_LISTEN", default_value = "127.0.0.1:7411")]
    listen: String,
    /// Where the store lives.
    #[arg(long, env = "BATON_DATA_DIR", default_value = "./.baton")]
    data_dir: PathBuf,
    /// How long a silent worker keeps its jobs before it is declared lost.
    #[arg(long, env = "BATON_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// How often workers send a heartbeat.
    #[arg(long, env = "BATON_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Address of the HTTP port: web dashboard and Prometheus `/metrics` ("" serves no HTTP).
    #[arg(long, env = "BATON_HTTP_ADDR", default_value = "127.0.0.1:7412")]
    http_addr: String,
    /// After SIGTERM, how long to keep the port open reporting NOT_SERVING before closing.
    #[arg(long, env = "BATON_DRAIN_GRACE", default_value = "0s", value_parser = humantime::parse_duration)]
    drain_grace: Duration,
    /// Log format: text or json (filter with RUST_LOG, e.g. `RUST_LOG=baton_coordinator=debug`).
    #[arg(long, env = "BATON_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let mut config = CoordinatorConfig::new(&args.data_dir);
    config.lease = args.lease;
    config.heartbeat_interval = args.heartbeat;
    config.drain_grace = args.drain_grace;
    config.http_addr = Some(args.http_addr.clone()).filter(|a| !a.is_empty());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            trigger.cancel();
        });
        tracing::info!(addr = %args.listen, "baton-coordinator listening");
        match baton_coordinator::run(config, listener, shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
