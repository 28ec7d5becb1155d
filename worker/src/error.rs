//! The worker's one error type.
//!
//! Everything that can fail in `baton_worker` (bad configuration, a coordinator we cannot reach or
//! that refuses us, a job directory we cannot create) is a [`WorkerError`]. Job failures are not
//! errors: they are outcomes reported to the coordinator.
//!
//! Messages do not repeat their source; print an error with [`chain`] to see the causes.

use std::path::PathBuf;

/// What can go wrong in the worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration is unusable; the message says which field and why.
    #[error("invalid worker configuration: {0}")]
    Config(String),

    /// The coordinator address is not a valid URI.
    #[error("invalid coordinator address {address:?}")]
    Address {
        /// The address as configured.
        address: String,
        /// Why it does not parse.
        #[source]
        source: tonic::transport::Error,
    },

    /// Connecting to the coordinator failed (it may be down; the worker retries).
    #[error("cannot connect to the coordinator")]
    Connect(#[from] tonic::transport::Error),

    /// The coordinator answered the session with an error status.
    #[error("coordinator session failed: {0}")]
    Status(#[from] tonic::Status),

    /// The coordinator broke the protocol (for example its first message was not `Registered`).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The coordinator refused this worker for good (bad token, not permitted).
    #[error("the coordinator refused this worker: {0}")]
    Refused(tonic::Status),

    /// A file-system or process operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What the worker was doing.
        what: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An error followed by its causes, `a: b: c`, for logs and for the user.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
