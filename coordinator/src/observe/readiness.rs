//! Whether the coordinator takes calls: NOT_SERVING while it starts (before the actors are
//! rebuilt from the store) and while it drains (after it was told to stop), SERVING otherwise.
//!
//! [`Readiness`] drives both the standard gRPC health service and a tower layer that answers
//! every other call with UNAVAILABLE while not ready (health and reflection always answer), so
//! clients and workers retry instead of seeing a coordinator with no pipelines.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use baton_proto::v1::agent_service_server::AgentServiceServer;
use baton_proto::v1::pipeline_service_server::PipelineServiceServer;
use tonic_health::server::HealthReporter;

use crate::api::agent_server::AgentApi;
use crate::api::pipeline_server::PipelineApi;

/// The coordinator's readiness, shared by the health service and [`ReadinessLayer`].
#[derive(Clone)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    health: HealthReporter,
}

impl Readiness {
    /// Not ready; both Baton services report NOT_SERVING until [`Readiness::serving`].
    pub async fn starting(health: HealthReporter) -> Self {
        health
            .set_not_serving::<PipelineServiceServer<PipelineApi>>()
            .await;
        health
            .set_not_serving::<AgentServiceServer<AgentApi>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            health,
        }
    }

    /// Ready: calls are let through and health says SERVING.
    pub async fn serving(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.health
            .set_serving::<PipelineServiceServer<PipelineApi>>()
            .await;
        self.health
            .set_serving::<AgentServiceServer<AgentApi>>()
            .await;
        self.health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tracing::info!("serving");
    }

    /// Draining: health says NOT_SERVING and new calls get UNAVAILABLE.
    pub async fn draining(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.health
            .set_not_serving::<PipelineServiceServer<PipelineApi>>()
            .await;
        self.health
            .set_not_serving::<AgentServiceServer<AgentApi>>()
            .await;
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tracing::info!("draining: health reports NOT_SERVING");
    }

    /// The layer that holds calls back while not ready.
    pub fn layer(&self) -> ReadinessLayer {
        ReadinessLayer {
            ready: self.ready.clone(),
        }
    }
}

/// Answers UNAVAILABLE to Baton's services while the coordinator is not ready.
#[derive(Clone)]
pub struct ReadinessLayer {
    ready: Arc<AtomicBool>,
}

impl<S> tower::Layer<S> for ReadinessLayer {
    type Service = ReadinessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadinessService {
            inner,
            ready: self.ready.clone(),
        }
    }
}

/// See [`ReadinessLayer`].
#[derive(Clone)]
pub struct ReadinessService<S> {
    inner: S,
    ready: Arc<AtomicBool>,
}

impl<S, B> tower::Service<http::Request<B>> for ReadinessService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let always = path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.");
        if !always && !self.ready.load(Ordering::SeqCst) {
            let status = tonic::Status::unavailable(
                "the coordinator is starting or shutting down; try again shortly",
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use baton_proto::v1 as pb;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    use super::Readiness;

    /// What the coordinator does at start-up, on a real socket: the port is open but health
    /// says NOT_SERVING and Baton's calls get UNAVAILABLE until `serving()`.
    #[tokio::test]
    async fn not_serving_and_unavailable_until_ready() {
        let (health, health_service) = tonic_health::server::health_reporter();
        let readiness = Readiness::starting(health).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(readiness.layer())
                .add_service(health_service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let channel = tonic::transport::Channel::from_shared(addr)
            .expect("address")
            .connect()
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel.clone());
        let mut pipelines = pb::pipeline_service_client::PipelineServiceClient::new(channel);
        let status = |service: &str| HealthCheckRequest {
            service: service.into(),
        };

        for service in ["", "baton.v1.PipelineService", "baton.v1.AgentService"] {
            let reply = health.check(status(service)).await.expect("health");
            assert_eq!(reply.into_inner().status, ServingStatus::NotServing as i32);
        }
        let refused = pipelines
            .list_pipelines(pb::ListPipelinesRequest {})
            .await
            .expect_err("not ready");
        assert_eq!(refused.code(), tonic::Code::Unavailable);

        readiness.serving().await;
        let reply = health
            .check(status("baton.v1.PipelineService"))
            .await
            .expect("health");
        assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32);
        // Let through now: this bare server has no PipelineService behind the layer.
        let passed = pipelines
            .list_pipelines(pb::ListPipelinesRequest {})
            .await
            .expect_err("no such service here");
        assert_eq!(passed.code(), tonic::Code::Unimplemented);

        stop.cancel();
        drop((health, pipelines));
        server.await.expect("server task").expect("server");
    }
}
