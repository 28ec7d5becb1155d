//! `baton`: the user's command line for a Baton coordinator, and `baton up`, the local
//! all-in-one (coordinator + workers in one process).
//!
//! This file only parses arguments, builds the runtime and dispatches; every failure ends as
//! one `error: ...` line on stderr and a non-zero exit, never a panic or a debug dump.

mod client;
mod commands;
mod demo;
mod error;
mod output;
mod paint;
mod progress;
mod render;
mod savings;
mod up;
mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::DEFAULT_ADDR;
use crate::commands::Ctx;
use crate::error::CliError;
use crate::output::OutputFormat;

/// Drive a Baton coordinator: pipelines, executions, stage locks, workers.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about, propagate_version = true)]
struct Cli {
    /// Coordinator address (`baton up` listens on the default).
    #[arg(long, global = true, env = "BATON_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    /// Output format: tables for people, JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// API token, when the coordinator requires one (sent as `authorization: Bearer`).
    #[arg(long, global = true, env = "BATON_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for an `https://` coordinator.
    #[arg(long, global = true, env = "BATON_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM), when the coordinator asks for mutual TLS.
    #[arg(long, global = true, env = "BATON_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Client private key (PEM) for `--cert-file`.
    #[arg(long, global = true, env = "BATON_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a coordinator and local workers in this process, and apply the example pipelines.
    Up(up::UpArgs),
    /// Apply, validate, list and show pipeline definitions.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Start an execution of a pipeline for a source revision; prints its id.
    Start(commands::execution::StartArgs),
    /// Stop an execution: by default running jobs finish their current step (wait).
    Stop {
        /// Execution id.
        execution: String,
        /// Terminate running jobs instead (SIGTERM, grace period, SIGKILL).
        #[arg(long)]
        abandon: bool,
        /// Why, recorded as the execution's status reason.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show who holds each stage, who waits and why, and the last outcome.
    State {
        /// Pipeline name.
        pipeline: String,
        /// Redraw on every change until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// List a pipeline's executions, newest first.
    Executions {
        /// Pipeline name.
        pipeline: String,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one execution: its stages and jobs.
    Execution {
        /// Execution id.
        id: String,
    },
    /// Print a job's log.
    Logs {
        /// Job id (see `baton execution ID`).
        job: String,
        /// Keep streaming until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// List connected and recently seen workers.
    Workers,
    /// Approve a pending approval action.
    Approve(commands::policy::DecideArgs),
    /// Reject a pending approval action (the stage and execution fail).
    Reject(commands::policy::DecideArgs),
    /// Resume a failed or stopped execution in the stage it left.
    Retry {
        /// Execution id.
        execution: String,
        /// The stage it failed or was stopped in.
        stage: String,
        /// Run every action of the stage again (default: only those that did not succeed).
        #[arg(long)]
        all: bool,
    },
    /// Disable or enable the transition into a stage.
    #[command(subcommand)]
    Transition(TransitionCommand),
    /// Resume an execution Paused in front of a stage (`when_busy: pause`).
    Resume {
        /// Execution id.
        execution: String,
    },
    /// Act on one worker.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Fencing: ask whether a fence token still holds its stage.
    #[command(subcommand)]
    Fence(FenceCommand),
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
    /// Drain a worker: it takes no new job, finishes its running ones, says goodbye and exits.
    Drain {
        /// Worker name (see `baton workers`).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TransitionCommand {
    /// Hold every execution arriving in front of STAGE until the transition is enabled.
    Disable {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
        /// Why, shown to everyone who looks at the stage.
        #[arg(long, default_value = "")]
        reason: String,
        /// Who disables it. Default: `$BATON_USER`, else `$USER`.
        #[arg(long)]
        by: Option<String>,
    },
    /// Let the execution waiting in front of STAGE in.
    Enable {
        /// Pipeline name.
        pipeline: String,
        /// Stage name.
        stage: String,
    },
}

#[derive(Debug, Subcommand)]
enum FenceCommand {
    /// Exit 0 when the token still holds the stage; otherwise say why and exit non-zero.
    /// Inside a job, every flag defaults to the job's own BATON_* variable.
    Check {
        /// Pipeline name.
        #[arg(long, env = "BATON_PIPELINE")]
        pipeline: String,
        /// Stage name.
        #[arg(long, env = "BATON_STAGE")]
        stage: String,
        /// The fence token the job was given (`--token` is the API token).
        #[arg(long, env = "BATON_FENCE_TOKEN")]
        fence_token: u64,
    },
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Create or update pipelines from files.
    Apply {
        /// Pipeline files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check pipeline files locally, without a coordinator.
    Validate {
        /// Pipeline files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List pipelines.
    List,
    /// Print a pipeline's stored definition.
    Get {
        /// Pipeline name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) | Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(CliError::AlreadyReported) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx {
        addr: cli.addr,
        output: cli.output,
        access: client::Access {
            token: cli.token.unwrap_or_default(),
            ca_file: cli.ca_file,
            cert_file: cli.cert_file,
            key_file: cli.key_file,
        },
    };
    match cli.command {
        Command::Up(args) => {
            init_tracing();
            up::run(&ctx, args).await
        }
        Command::Pipeline(PipelineCommand::Apply { files }) => {
            commands::pipeline::apply(&ctx, &files).await
        }
        Command::Pipeline(PipelineCommand::Validate { files }) => {
            commands::pipeline::validate(&ctx, &files)
        }
        Command::Pipeline(PipelineCommand::List) => commands::pipeline::list(&ctx).await,
        Command::Pipeline(PipelineCommand::Get { name }) => {
            commands::pipeline::get(&ctx, &name).await
        }
        Command::Start(args) => commands::execution::start(&ctx, &args).await,
        Command::Stop {
            execution,
            abandon,
            reason,
        } => commands::execution::stop(&ctx, &execution, abandon, &reason).await,
        Command::State { pipeline, watch } => commands::state::run(&ctx, &pipeline, watch).await,
        Command::Executions { pipeline, limit } => {
            commands::execution::list(&ctx, &pipeline, limit).await
        }
        Command::Execution { id } => commands::execution::show(&ctx, &id).await,
        Command::Logs { job, follow } => commands::logs::run(&ctx, &job, follow).await,
        Command::Workers => commands::workers::run(&ctx).await,
        Command::Approve(args) => commands::policy::decide(&ctx, &args, true).await,
        Command::Reject(args) => commands::policy::decide(&ctx, &args, false).await,
        Command::Retry {
            execution,
            stage,
            all,
        } => commands::policy::retry(&ctx, &execution, &stage, all).await,
        Command::Transition(TransitionCommand::Disable {
            pipeline,
            stage,
            reason,
            by,
        }) => {
            let by = by.unwrap_or_else(commands::transition::whoami);
            commands::transition::disable(&ctx, &pipeline, &stage, &reason, &by).await
        }
        Command::Transition(TransitionCommand::Enable { pipeline, stage }) => {
            commands::transition::enable(&ctx, &pipeline, &stage).await
        }
        Command::Resume { execution } => commands::transition::resume(&ctx, &execution).await,
        Command::Worker(WorkerCommand::Drain { name }) => {
            commands::workers::drain(&ctx, &name).await
        }
        Command::Fence(FenceCommand::Check {
            pipeline,
            stage,
            fence_token,
        }) => commands::fence::check(&ctx, &pipeline, &stage, fence_token).await,
    }
}

/// Logs for `baton up` only, on stderr; quiet (warnings) unless `RUST_LOG` says otherwise.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_api_token_and_a_fence_token_are_separate_flags() {
        let cli = Cli::try_parse_from([
            "baton",
            "--token",
            "api-secret",
            "fence",
            "check",
            "--pipeline",
            "p",
            "--stage",
            "s",
            "--fence-token",
            "7",
        ])
        .map_err(|e| e.to_string());
        let parsed = cli.as_ref().map(|c| {
            let fence = match &c.command {
                Command::Fence(FenceCommand::Check { fence_token, .. }) => Some(*fence_token),
                _ => None,
            };
            (c.token.clone(), fence)
        });
        assert_eq!(
            parsed,
            Ok((Some("api-secret".to_string()), Some(7))),
            "{cli:?}"
        );
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "baton", "state", "web-app", "--output", "json", "--addr", "h:1",
        ]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(
            matches!(&cli, Ok(c) if c.output == OutputFormat::Json && c.addr == "h:1"),
            "{cli:?}"
        );
    }
}
