//! A coordinator inside the caller's task: the given store and clock, actors on the caller's
//! `LocalSet`, gRPC over the given incoming connections. For simulations (a turmoil host has
//! one thread, a paused clock and its own network), where [`crate::run`]'s actor thread, sled
//! store and TCP listener do not fit.
//!
//! It wires the same parts as `server.rs` (dispatcher, registry, the pipeline and agent
//! services) with the same limits and tokens, but without TLS, health, readiness, reflection, metrics,
//! the HTTP port or retention, which a simulation does not exercise.
//! Keep the two in step when a part is added there.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::v1::agent_service_server::AgentServiceServer;
use baton_proto::v1::pipeline_service_server::PipelineServiceServer;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::actor_home::ActorHome;
use crate::api::agent_server::AgentApi;
use crate::api::auth::{ApiToken, WorkerAuth};
use crate::api::pipeline_server::PipelineApi;
use crate::clock::SharedClock;
use crate::config::CoordinatorConfig;
use crate::dispatcher::{DispatchTiming, Dispatcher};
use crate::events::EventHub;
use crate::execution::Shared;
use crate::logs::LogHub;
use crate::registry::Registry;
use crate::server::StartError;
use crate::store::Store;

/// Serves a coordinator over `store` on the connections `incoming` yields, until `shutdown`.
///
/// Must run inside a `tokio::task::LocalSet` (its actors are spawned there). The store's schema
/// is prepared first, so an empty in-memory engine will do; `config.data_dir` is not used.
pub async fn serve_in_process<I, IO, IE>(
    config: CoordinatorConfig,
    store: Store,
    clock: SharedClock,
    incoming: I,
    shutdown: CancellationToken,
) -> Result<(), StartError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    crate::store::schema::prepare(store.engine().as_ref()).map_err(|source| {
        StartError::Schema {
            path: "(in process)".into(),
            source,
        }
    })?;
    let (home, runner) = ActorHome::local();
    let actors = tokio::task::spawn_local(runner);
    let logs = Arc::new(LogHub::new(store.clone(), config.log_cap_bytes as u64));
    let timing = DispatchTiming {
        offer_timeout: config.offer_timeout,
        lease: config.lease,
        lost_margin: config.lost_margin,
    };
    let dispatcher = {
        let (clock, logs) = (clock.clone(), logs.clone());
        home.start(move |_| Dispatcher::new(timing, clock, logs))
    };
    let shared = Shared {
        store,
        dispatcher: dispatcher.clone(),
        events: Arc::new(EventHub::default()),
        clock,
        timer_tick: config.timer_tick,
    };
    let registry = Arc::new(Registry::new(shared, home));
    registry
        .load_all()
        .map_err(|e| StartError::Load(e.to_string()))?;
    let pipeline_api = PipelineApi {
        registry,
        logs,
        shutdown: shutdown.clone(),
        data_dir: config.data_dir.clone(),
        limits: crate::pipeline::PipelineLimits {
            max_pipelines: config.max_pipelines,
            max_stages: config.max_stages,
            max_actions: config.max_actions,
        },
    };
    let agent_api = AgentApi {
        dispatcher,
        heartbeat_interval: config.heartbeat_interval,
        lease: config.lease,
        shutdown: shutdown.clone(),
        auth: WorkerAuth {
            token: config.worker_token.clone(),
            require_client_cert: false,
        },
        max_log_chunk_bytes: config.max_log_chunk_bytes,
    };
    let max = config.max_message_bytes;
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            PipelineServiceServer::new(pipeline_api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            ApiToken::new(config.api_token.clone()),
        ))
        .add_service(
            AgentServiceServer::new(agent_api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await;
    actors.abort();
    served.map_err(|e| StartError::Serve(e.to_string()))
}
