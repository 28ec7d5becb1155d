//! Who may call: the API token for `PipelineService` (an interceptor, so a refused call never
//! reaches a handler and changes nothing) and the registration token and client certificate for
//! worker sessions. Health and reflection stay open. Token values are never logged or echoed.

use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` on every PipelineService call. An empty token
/// lets every call through (the default, for `baton up` on loopback).
#[derive(Clone)]
pub struct ApiToken {
    expected: String,
}

impl ApiToken {
    /// `expected` empty: no check.
    pub fn new(expected: String) -> Self {
        Self { expected }
    }
}

impl ApiToken {
    /// Checks the value of an `Authorization` header (`Bearer TOKEN`), if there was one.
    /// The gRPC interceptor and the dashboard's actions both ask here.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), Status> {
        if self.expected.is_empty() {
            return Ok(());
        }
        match authorization.and_then(bearer_token) {
            None => Err(Status::unauthenticated(
                "this coordinator requires an API token: pass --token or set BATON_API_TOKEN (sent as `authorization: Bearer TOKEN`)",
            )),
            Some(token) if baton_settings::secrets_match(token, &self.expected) => Ok(()),
            Some(_) => Err(Status::unauthenticated(
                "the API token was not accepted: check --token / BATON_API_TOKEN against the coordinator's api_token",
            )),
        }
    }
}

impl tonic::service::Interceptor for ApiToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.check(header)?;
        Ok(req)
    }
}

/// The token of an `authorization: Bearer TOKEN` header value, if it is one.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// What a worker must show to register.
#[derive(Clone, Debug, Default)]
pub struct WorkerAuth {
    /// The registration token; empty means none is needed.
    pub token: String,
    /// A client certificate signed by the worker CA is required (mutual TLS).
    pub require_client_cert: bool,
}

impl WorkerAuth {
    /// Checks a session's TLS peer and its Register token.
    pub fn check<T>(&self, req: &Request<T>, presented_token: &str) -> Result<(), Status> {
        if self.require_client_cert && req.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated(
                "this coordinator requires workers to present a client certificate signed by its worker CA (baton-worker --cert-file/--key-file)",
            ));
        }
        if self.token.is_empty() || baton_settings::secrets_match(presented_token, &self.token) {
            return Ok(());
        }
        Err(Status::unauthenticated(if presented_token.is_empty() {
            "this coordinator requires a worker registration token: pass --token or set BATON_WORKER_TOKEN"
        } else {
            "the worker registration token was not accepted: check --token / BATON_WORKER_TOKEN against the coordinator's worker_token"
        }))
    }
}
