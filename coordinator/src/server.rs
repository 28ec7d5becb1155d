//! Starting and stopping a coordinator: the store, the actor system, the gRPC server.
//!
//! Actors live on their own thread under an actix `System`; tonic serves on the caller's tokio
//! runtime. Handlers reach actors through their `Addr`, which is `Send`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use baton_proto::v1::agent_service_server::AgentServiceServer;
use baton_proto::v1::pipeline_service_server::PipelineServiceServer;
use tokio_util::sync::CancellationToken;

use crate::api::agent_server::AgentApi;
use crate::api::auth::{ApiToken, WorkerAuth};
use crate::api::pipeline_server::PipelineApi;
use crate::clock::{SharedClock, SystemClock};
use crate::config::CoordinatorConfig;
use crate::dispatcher::{DispatchTiming, Dispatcher};
use crate::events::EventHub;
use crate::execution::Shared;
use crate::logs::LogHub;
use crate::observe::grpc_layer::GrpcMetricsLayer;
use crate::observe::http::HttpState;
use crate::observe::metrics::Metrics;
use crate::observe::readiness::Readiness;
use crate::registry::Registry;
use crate::store::{SledEngine, Store};

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
    /// The store's schema version does not fit this build.
    #[error("cannot use the store in {path}: {source}")]
    Schema {
        /// The data directory.
        path: String,
        /// What is wrong with it.
        source: crate::store::schema::SchemaError,
    },
    /// The stored state could not be loaded.
    #[error("cannot load the stored state: {0}")]
    Load(String),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(String),
    /// The HTTP port (dashboard, `/metrics`) could not be bound.
    #[error(
        "cannot listen on {addr} for the dashboard and metrics: {message} (pick another with --http-addr)"
    )]
    Http {
        /// The address asked for.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A setting is wrong (see [`CoordinatorConfig::validate`]).
    #[error("setting `{0}` {1}")]
    Config(&'static str, String),
}

/// The actor thread: a `System` that runs until told to stop.
struct ActorSystem {
    arbiter: ArbiterHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ActorSystem {
    fn start() -> Result<Self, StartError> {
        let (arbiter_tx, arbiter_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("baton-actors".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let _ = arbiter_tx.send(Arbiter::current());
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StartError::Serve(e.to_string()))?;
        let arbiter = arbiter_rx
            .recv()
            .map_err(|_| StartError::Serve("the actor system did not start".into()))?;
        Ok(Self {
            arbiter,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ActorSystem {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves the coordinator on `listener` until `shutdown` is cancelled.
///
/// The caller binds the socket (tests use `127.0.0.1:0`) and owns shutdown. Returns once the
/// server has stopped and the store is closed, so the same data directory can be opened again.
pub async fn run(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected clock. Binds `config.http_addr` when it is set.
pub async fn run_with_clock(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    clock: SharedClock,
) -> Result<(), StartError> {
    // Nothing is bound before the settings are known to be good.
    config
        .validate()
        .map_err(|(key, why)| StartError::Config(key, why))?;
    let http = match &config.http_addr {
        Some(addr) => {
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError::Http {
                        addr: addr.clone(),
                        message: e.to_string(),
                    })?,
            )
        }
        None => None,
    };
    run_with_listeners(config, listener, http, shutdown, clock).await
}

/// [`run`] on sockets the caller bound: gRPC on `listener`, and the dashboard and `/metrics`
/// on `http` when given (`config.http_addr` is not used).
pub async fn run_with_listeners(
    config: CoordinatorConfig,
    listener: tokio::net::TcpListener,
    http: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
    clock: SharedClock,
) -> Result<(), StartError> {
    config
        .validate()
        .map_err(|(key, why)| StartError::Config(key, why))?;
    let tls = config
        .server_tls()
        .map_err(|(key, why)| StartError::Config(key, why))?;
    let store_err = |e: crate::store::StoreError| StartError::Store {
        path: config.data_dir.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::Store {
        path: config.data_dir.display().to_string(),
        message: format!("{e}; check that the directory can be created by this user"),
    })?;
    let engine = Arc::new(SledEngine::open(&config.data_dir).map_err(store_err)?);
    match crate::store::schema::prepare(engine.as_ref()) {
        Ok(prepared) => tracing::info!(?prepared, "store schema"),
        Err(source) => {
            return Err(StartError::Schema {
                path: config.data_dir.display().to_string(),
                source,
            });
        }
    }
    let metrics = Arc::new(Metrics::new());
    let (store, writer) =
        Store::start_observed(engine, Some(metrics.store.clone())).map_err(store_err)?;
    let actors = ActorSystem::start()?;
    let logs = Arc::new(LogHub::new(store.clone(), config.log_cap_bytes as u64));
    let timing = DispatchTiming {
        offer_timeout: config.offer_timeout,
        lease: config.lease,
        lost_margin: config.lost_margin,
    };
    let dispatcher = {
        let (clock, logs) = (clock.clone(), logs.clone());
        Dispatcher::start_in_arbiter(&actors.arbiter, move |_| {
            Dispatcher::new(timing, clock, logs)
        })
    };
    let events = Arc::new(EventHub::default());
    metrics.follow(&events, store.clone(), shutdown.clone());
    let shared = Shared {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        events,
        clock,
        timer_tick: config.timer_tick,
    };
    let registry = Arc::new(Registry::new(shared, actors.arbiter.clone()));

    // Serve at once, NOT_SERVING (health) and UNAVAILABLE (everything else) until the actors
    // are rebuilt from the store; NOT_SERVING again while draining after `shutdown`.
    let (health, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::starting(health).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(baton_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Serve(e.to_string()))?;
    let pipeline_api = Arc::new(PipelineApi {
        registry: registry.clone(),
        logs,
        shutdown: shutdown.clone(),
        data_dir: config.data_dir.clone(),
        limits: crate::pipeline::PipelineLimits {
            max_pipelines: config.max_pipelines,
            max_stages: config.max_stages,
            max_actions: config.max_actions,
        },
    });

    // The HTTP port is served once the store is loaded; until then its connections wait.
    let http = http.map(|listener| {
        let state = Arc::new(HttpState {
            api: pipeline_api.clone(),
            metrics: metrics.clone(),
            api_token: ApiToken::new(config.api_token.clone()),
        });
        (listener, state)
    });
    let mut http_server = None;
    let agent_api = AgentApi {
        dispatcher,
        heartbeat_interval: config.heartbeat_interval,
        lease: config.lease,
        shutdown: shutdown.clone(),
        auth: WorkerAuth {
            token: config.worker_token.clone(),
            require_client_cert: tls.is_some() && config.worker_ca_file.is_some(),
        },
        max_log_chunk_bytes: config.max_log_chunk_bytes,
    };
    let max = config.max_message_bytes;
    // TCP_NODELAY: an offer or a cancel signal is one small frame; Nagle's algorithm would
    // hold it back until the peer acknowledges the previous one (milliseconds on loopback).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let stop_serving = shutdown.child_token();
    let drain = {
        let (readiness, stop, grace) =
            (readiness.clone(), stop_serving.clone(), config.drain_grace);
        async move {
            stop.cancelled().await;
            readiness.draining().await;
            tokio::time::sleep(grace).await;
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| StartError::Config("tls_cert_file", e.to_string()))?;
    }
    let server = tokio::spawn(
        builder
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .max_concurrent_streams(Some(config.max_streams_per_connection))
            .layer(GrpcMetricsLayer::new(metrics.clone()))
            .layer(readiness.layer())
            .add_service(health_service)
            .add_service(reflection)
            .add_service(tonic::service::interceptor::InterceptedService::new(
                PipelineServiceServer::from_arc(pipeline_api)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
                ApiToken::new(config.api_token.clone()),
            ))
            .add_service(
                AgentServiceServer::new(agent_api)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(incoming, drain),
    );
    let loaded = registry.load_all();
    let clock = registry.shared().clock.clone();
    let mut retention = None;
    // The services hold the registry from here on; this handle would keep the store open.
    drop(registry);
    let served = match loaded {
        Ok(loaded) => {
            tracing::info!(pipelines = loaded, data_dir = %config.data_dir.display(), "store loaded");
            retention = Some(tokio::spawn(crate::retention::run(
                store.clone(),
                config.retention(),
                clock.clone(),
                shutdown.clone(),
            )));
            if let Some((listener, state)) = http {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, "dashboard and /metrics listening");
                }
                let serve = crate::observe::http::serve(listener, state, shutdown.clone());
                http_server = Some(tokio::spawn(serve));
            }
            readiness.serving().await;
            match server.await {
                Ok(served) => served.map_err(|e| StartError::Serve(e.to_string())),
                Err(e) => Err(StartError::Serve(e.to_string())),
            }
        }
        Err(e) => {
            drop(http);
            stop_serving.cancel();
            let _ = server.await;
            Err(StartError::Load(e.to_string()))
        }
    };
    if let Some(task) = http_server {
        // Its streams end with the shutdown token, so this is quick.
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server failed"),
            Ok(_) => {}
            Err(_) => tracing::warn!("the HTTP server did not stop within 10 s"),
        }
    }
    drop(actors);
    drop(store);
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    // Whatever is still queued is written before the engine closes; session tasks still
    // holding the store end with the shutdown token, so this is quick.
    if tokio::time::timeout(Duration::from_secs(10), writer.closed())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close within 10 s");
    }
    served
}
