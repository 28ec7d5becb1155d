//! Connecting to a coordinator, and turning gRPC failures into one friendly line.
//!
//! Every command goes through [`Api`]: it holds the address so that a dropped connection can
//! say where it was trying to go.

use std::error::Error as _;
use std::time::Duration;

use std::path::PathBuf;

use baton_proto::v1::pipeline_service_client::PipelineServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::{CliError, io_text};

/// The address `baton up` listens on, and the CLI's default.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7411";

/// Largest message the CLI accepts (a long execution list or a big pipeline).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How the CLI proves who it is and whom it trusts: the API token and TLS files.
#[derive(Clone, Default)]
pub struct Access {
    /// `--token` / `BATON_API_TOKEN`, sent as `authorization: Bearer`; empty sends none.
    pub token: String,
    /// `--ca-file`: CA for an `https://` coordinator.
    pub ca_file: Option<PathBuf>,
    /// `--cert-file`: client certificate (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// `--key-file`: client key (mutual TLS).
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &baton_settings::redacted(&self.token))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// Adds the API token to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// The generated client with the token interceptor.
pub type Client = PipelineServiceClient<InterceptedService<Channel, Bearer>>;

/// A connected client plus the address it talks to.
#[derive(Clone)]
pub struct Api {
    /// The generated gRPC client; cheap to clone.
    pub client: Client,
    /// The normalised address, for error messages.
    pub addr: String,
}

impl Api {
    /// Connects eagerly, so that an absent coordinator is reported before anything else happens.
    pub async fn connect(addr: &str) -> Result<Self, CliError> {
        Self::connect_with(addr, &Access::default()).await
    }

    /// [`Api::connect`] with a token and TLS files.
    pub async fn connect_with(addr: &str, access: &Access) -> Result<Self, CliError> {
        let addr = normalize_addr(addr);
        let mut endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|_| {
                CliError::msg(format!(
                    "'{addr}' is not a valid coordinator address (expected e.g. {DEFAULT_ADDR})"
                ))
            })?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let files = access.ca_file.is_some() || access.cert_file.is_some();
        if addr.starts_with("https://") {
            let tls = baton_settings::tls::client_config(
                access.ca_file.as_deref(),
                access.cert_file.as_deref(),
                access.key_file.as_deref(),
            )
            .map_err(|e| {
                CliError::msg(format!("--{}: {}", e.setting.replace('_', "-"), e.message))
            })?;
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| CliError::msg(format!("TLS settings: {e}")))?;
        } else if files {
            return Err(CliError::msg(format!(
                "--ca-file/--cert-file are for TLS, but {addr} is not https:// (use --addr https://HOST:PORT)"
            )));
        }
        let bearer = match access.token.as_str() {
            "" => None,
            token => Some(format!("Bearer {token}").parse().map_err(|_| {
                CliError::msg("the API token has characters that cannot be sent in a header")
            })?),
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|err| {
                let detail = transport_detail(&err);
                if detail.contains("certificate") {
                    CliError::msg(format!(
                        "TLS with the coordinator at {addr} failed: {detail} — check --ca-file (the CA that signed the coordinator's certificate)"
                    ))
                } else {
                    CliError::Unreachable {
                        addr: addr.clone(),
                        detail,
                    }
                }
            })?;
        let client = PipelineServiceClient::with_interceptor(channel, Bearer(bearer))
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
