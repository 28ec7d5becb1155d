//! Connecting to a coordinator, and turning gRPC failures into one friendly line.
//!
//! Every command goes through [`Api`]: it holds the address so that a dropped connection can
//! say where it was trying to go.

use std::error::Error as _;
use std::time::Duration;

use baton_proto::v1::pipeline_service_client::PipelineServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::{CliError, io_text};

/// The address `baton up` listens on, and the CLI's default.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7411";

/// Largest message the CLI accepts (a long execution list or a big pipeline).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A connected client plus the address it talks to.
#[derive(Clone)]
pub struct Api {
    /// The generated gRPC client; cheap to clone.
    pub client: PipelineServiceClient<Channel>,
    /// The normalised address, for error messages.
    pub addr: String,
}

impl Api {
    /// Connects eagerly, so that an absent coordinator is reported before anything else happens.
    pub async fn connect(addr: &str) -> Result<Self, CliError> {
        let addr = normalize_addr(addr);
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|_| {
                CliError::msg(format!(
                    "'{addr}' is not a valid coordinator address (expected e.g. {DEFAULT_ADDR})"
                ))
            })?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|err| CliError::Unreachable {
                addr: addr.clone(),
                detail: transport_detail(&err),
            })?;
        let client = PipelineServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { client, addr })
    }

    /// Turns a failed call into a friendly error.
    pub fn error(&self, status: Status) -> CliError {
        status_error(&self.addr, status, None)
    }

    /// Like [`Api::error`], but a `NotFound` becomes `not_found` (e.g. "pipeline 'x' not found").
    pub fn error_or(&self, status: Status, not_found: String) -> CliError {
        status_error(&self.addr, status, Some(not_found))
    }
}

/// Adds `http://` when the user gave a bare `host:port`.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Maps a gRPC status to one line. `not_found` replaces the server's words for `NotFound`.
pub fn status_error(addr: &str, status: Status, not_found: Option<String>) -> CliError {
    let message = status.message().trim().to_string();
    let or = |fallback: &str| {
        if message.is_empty() {
            fallback.to_string()
        } else {
            message.clone()
        }
    };
    let text = match status.code() {
        Code::NotFound => not_found.unwrap_or_else(|| or("not found")),
        Code::Unavailable => {
            let detail = status
                .source()
                .map(deepest_detail)
                .unwrap_or_else(|| or("the connection was lost"));
            return CliError::Unreachable {
                addr: addr.to_string(),
                detail,
            };
        }
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Aborted
        | Code::ResourceExhausted => or("the coordinator refused the request"),
        Code::DeadlineExceeded => format!("the coordinator at {addr} did not answer in time"),
        Code::Cancelled => or("the request was cancelled"),
        Code::Unimplemented => format!(
            "the coordinator at {addr} does not support this call (is it an older version of Baton?)"
        ),
        Code::Unauthenticated | Code::PermissionDenied => {
            format!("not allowed: {}", or("permission denied"))
        }
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            format!("the coordinator failed: {}", or("internal error"))
        }
    };
    CliError::Message(text)
}

/// The most useful words in a transport error: the OS error if there is one.
fn transport_detail(err: &tonic::transport::Error) -> String {
    deepest_detail(err)
}

fn deepest_detail(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io_text(io);
        }
        match current.source() {
            Some(next) => current = next,
            None => return current.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_a_scheme() {
        assert_eq!(normalize_addr("127.0.0.1:7411"), "http://127.0.0.1:7411");
        assert_eq!(normalize_addr("https://ci:443/"), "https://ci:443");
    }

    #[test]
    fn not_found_uses_the_callers_words() {
        let err = status_error(
            DEFAULT_ADDR,
            Status::not_found("no such pipeline"),
            Some("pipeline 'x' not found".into()),
        );
        assert_eq!(err.to_string(), "pipeline 'x' not found");
    }

    #[test]
    fn unavailable_reads_as_unreachable() {
        let err = status_error(
            DEFAULT_ADDR,
            Status::unavailable("connection refused"),
            None,
        );
        assert_eq!(
            err.to_string(),
            "cannot reach the coordinator at http://127.0.0.1:7411: connection refused — is `baton up` running?"
        );
    }
}
