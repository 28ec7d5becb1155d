//! The CLI's one error type. Every variant renders as a single line a person can act on;
//! `main` prints it after `error: ` and exits non-zero. Never a debug dump.

use std::io;
use std::path::Path;

/// Everything that can make a `baton` command fail.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The coordinator could not be reached at all.
    #[error("cannot reach the coordinator at {addr}: {detail} — is `baton up` running?")]
    Unreachable {
        /// The address that was tried.
        addr: String,
        /// What the network said ("connection refused").
        detail: String,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {detail}")]
    File {
        /// "read", "create", ...
        action: &'static str,
        /// The file or directory.
        path: String,
        /// What the OS said, in words.
        detail: String,
    },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Message(String),
    /// The failure was already reported on stderr (e.g. one line per invalid file).
    #[error("failed")]
    AlreadyReported,
    /// Stdout was closed by the reader (`baton logs JOB | head`): stop quietly.
    #[error("stdout closed")]
    StdoutClosed,
}

impl CliError {
    /// A failed file operation on `path`.
    pub fn file(action: &'static str, path: &Path, err: &io::Error) -> Self {
        CliError::File {
            action,
            path: path.display().to_string(),
            detail: io_text(err),
        }
    }

    /// A message error.
    pub fn msg(text: impl Into<String>) -> Self {
        CliError::Message(text.into())
    }
}

/// An I/O error in plain words, without the `(os error N)` suffix.
pub fn io_text(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    }
}
