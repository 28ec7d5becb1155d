//! Baton's coordinator as a library: pipelines, stage locks, executions, the worker fleet and
//! the durable store, served over gRPC. `main.rs`, `baton up` and the tests all call [`run`].

pub mod config;
pub mod pipeline;

pub use config::CoordinatorConfig;

/// Anything that stops the coordinator from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store in {path}: {message}")]
    Store {
        /// The data directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

/// Serves the coordinator on `listener` until `shutdown` is cancelled.
///
/// The caller binds the socket (tests use `127.0.0.1:0`) and owns shutdown.
pub async fn run(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), StartError> {
    let _ = (config, listener);
    shutdown.cancelled().await;
    Ok(())
}
