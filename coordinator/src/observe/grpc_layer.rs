//! A tower layer on the tonic server that counts gRPC requests and times them.
//!
//! Latency is measured until the response headers: for a unary call that is the whole call, for
//! a stream it is the time to open it. The code is read from the `grpc-status` header when a
//! call fails before its body (tonic's trailers-only errors); otherwise it is `0`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::metrics::{GrpcLabels, Metrics};

/// Adds [`GrpcMetricsService`] around every service of the server.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
}

impl GrpcMetricsLayer {
    /// A layer that records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts and times each request passed to `inner`.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Only Baton's, health and reflection paths become labels: anything else is `other`, so a
/// client cannot grow the label set.
fn method_label(path: &str) -> String {
    const KNOWN: [&str; 3] = ["/baton.v1.", "/grpc.health.", "/grpc.reflection."];
    if KNOWN.iter().any(|p| path.starts_with(p)) && path.len() < 128 {
        path.to_string()
    } else {
        "other".to_string()
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let call = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_string(),
                Err(_) => "transport".to_string(),
            };
            let labels = GrpcLabels { method, code };
            metrics.grpc.requests.get_or_create(&labels).inc();
            metrics
                .grpc
                .latency
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}
