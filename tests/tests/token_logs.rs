//! Tokens never reach the logs: everything the coordinator and a worker trace (at debug level,
//! dependencies included) while tokens are accepted and refused is captured and searched.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use baton_tests::secure::RunningCoordinator;
use baton_worker::{Shutdown, WorkerConfig};

const API_TOKEN: &str = "api-token-c0ffee42";
const WORKER_TOKEN: &str = "worker-token-beef1234";
const WRONG: &str = "wrong-token-dead5678";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut all) = self.0.lock() {
            all.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn token_values_never_appear_in_traces() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || writer.clone())
        .init();

    let data = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    let mut config = baton_tests::test_config(data.path());
    config.api_token = API_TOKEN.into();
    config.worker_token = WORKER_TOKEN.into();
    tracing::info!(?config, "starting");
    let coordinator = RunningCoordinator::start(config).await;
    let url = format!("http://{}", coordinator.local);

    let worker = |token: &str| WorkerConfig {
        coordinator: url.clone(),
        name: "w-logs".into(),
        token: token.into(),
        work_dir: work.path().to_path_buf(),
        reconnect_backoff: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    let refused = baton_worker::run(worker(WRONG), Shutdown::new()).await;
    assert!(refused.is_err(), "a wrong token was accepted");
    tracing::info!(?refused, "refused");
    let shutdown = Shutdown::new();
    let good = worker(WORKER_TOKEN);
    tracing::info!(config = ?good, "worker");
    let task = tokio::spawn(baton_worker::run(good, shutdown.clone()));

    let mut client = PipelineServiceClient::connect(url.clone())
        .await
        .expect("connect");
    for token in [API_TOKEN, WRONG] {
        let mut req = tonic::Request::new(pb::ListWorkersRequest {});
        let value = format!("Bearer {token}").parse().expect("header");
        req.metadata_mut().insert("authorization", value);
        let reply = client.list_workers(req).await;
        tracing::info!(?reply, "list workers");
    }
    shutdown.drain.cancel();
    let _ = tokio::time::timeout(baton_tests::DEADLINE, task).await;
    coordinator.stop().await;

    let text = String::from_utf8_lossy(&captured.0.lock().expect("log buffer")).to_string();
    assert!(text.contains("registered"), "nothing was traced: {text}");
    for secret in [API_TOKEN, WORKER_TOKEN, WRONG] {
        assert!(
            !text.contains(secret),
            "{secret} appears in the traces:\n{text}"
        );
    }
}
