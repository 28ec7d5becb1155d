//! `baton-coordinator`: loads its settings (flags > `BATON_*` > `--config` file > defaults),
//! checks them before binding anything, sets up logging, and serves until SIGTERM or Ctrl-C.

use baton_coordinator::CoordinatorConfig;
use baton_settings::{ConfigError, Loaded};

fn command() -> clap::Command {
    clap::Command::new("baton-coordinator")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Baton's coordinator: pipelines, stage locks and the worker fleet, over gRPC.")
        .after_help(
            "Every setting can also come from a BATON_* variable or a TOML file (--config); flags win over variables, variables over the file, the file over defaults. Logs follow RUST_LOG (default info).",
        )
}

fn load() -> Result<CoordinatorConfig, ConfigError> {
    let loaded: Loaded<CoordinatorConfig> = baton_settings::load(command())?;
    if let Err((key, why)) = loaded.settings.validate() {
        return Err(loaded.invalid(key, why));
    }
    Ok(loaded.settings)
}

fn main() -> std::process::ExitCode {
    let config = match load() {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
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
        let listener = match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", config.listen);
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
        let tls = config.tls_cert_file.is_some();
        tracing::info!(addr = %config.listen, tls, "baton-coordinator listening");
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
