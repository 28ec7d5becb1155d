//! TLS, tokens and limits on loopback: wrong token, no token and wrong CA are each refused with
//! a clear error, and a refused call changes nothing.

use std::time::Duration;

use baton_coordinator::CoordinatorConfig;
use baton_proto::v1::{self as pb, pipeline_service_client::PipelineServiceClient};
use baton_tests::TestCluster;
use baton_tests::secure::{RunningCoordinator, TestPki};
use baton_worker::{Shutdown, WorkerConfig, WorkerError};
use tonic::transport::{Channel, Endpoint};

const API_TOKEN: &str = "api-token-7f3a";
const WORKER_TOKEN: &str = "worker-token-91c2";

fn config(data: &tempfile::TempDir) -> CoordinatorConfig {
    let mut config = baton_tests::test_config(data.path());
    config.api_token = API_TOKEN.into();
    config.worker_token = WORKER_TOKEN.into();
    config
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}").parse().expect("header value");
    req.metadata_mut().insert("authorization", value);
    req
}

fn pipeline(name: &str, stages: usize) -> pb::PutPipelineRequest {
    let mut yaml = format!("name: {name}\nstages:\n");
    for i in 0..stages {
        yaml +=
            &format!("  - name: s{i}\n    actions:\n      - name: a\n        run: [\"true\"]\n");
    }
    pb::PutPipelineRequest {
        definition_yaml: yaml,
        source_name: format!("{name}.yaml"),
    }
}

async fn plain_client(addr: std::net::SocketAddr) -> PipelineServiceClient<Channel> {
    PipelineServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

/// Runs a worker until it gives up, which it does only when refused.
async fn refused_worker(config: WorkerConfig) -> String {
    let run = baton_worker::run(config, Shutdown::new());
    match tokio::time::timeout(baton_tests::DEADLINE, run).await {
        Ok(Err(WorkerError::Refused(status))) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            status.message().to_string()
        }
        other => panic!("expected the worker to be refused, got {other:?}"),
    }
}

fn worker(addr: &str, token: &str, work: &tempfile::TempDir) -> WorkerConfig {
    WorkerConfig {
        coordinator: addr.to_string(),
        name: "w-secure".into(),
        token: token.into(),
        work_dir: work.path().to_path_buf(),
        reconnect_backoff: Duration::from_millis(50),
        ..WorkerConfig::default()
    }
}

#[tokio::test]
async fn api_calls_without_the_right_token_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let coordinator = RunningCoordinator::start(config(&data)).await;
    let mut client = plain_client(coordinator.local).await;

    let none = client
        .put_pipeline(pipeline("web", 1))
        .await
        .expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);
    assert!(none.message().contains("requires an API token"), "{none:?}");
    let wrong = client
        .put_pipeline(with_token(pipeline("web", 1), "not-the-token"))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert!(wrong.message().contains("was not accepted"), "{wrong:?}");
    assert!(!wrong.message().contains(API_TOKEN) && !wrong.message().contains("not-the-token"));

    let listed = client
        .list_pipelines(with_token(pb::ListPipelinesRequest {}, API_TOKEN))
        .await
        .expect("list with the token")
        .into_inner();
    assert!(
        listed.pipelines.is_empty(),
        "a refused call stored something"
    );
    client
        .put_pipeline(with_token(pipeline("web", 1), API_TOKEN))
        .await
        .expect("put with the token");

    // Health stays open for probes.
    let channel = Endpoint::from_shared(format!("http://{}", coordinator.local))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token");
    assert_eq!(health.into_inner().status, 1, "SERVING");
    coordinator.stop().await;
}

#[tokio::test]
async fn workers_without_the_registration_token_are_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    let coordinator = RunningCoordinator::start(config(&data)).await;
    let addr = format!("http://{}", coordinator.local);

    let none = refused_worker(worker(&addr, "", &work)).await;
    assert!(
        none.contains("requires a worker registration token"),
        "{none}"
    );
    let wrong = refused_worker(worker(&addr, "guess", &work)).await;
    assert!(wrong.contains("was not accepted"), "{wrong}");

    let listed = plain_client(coordinator.local)
        .await
        .list_workers(with_token(pb::ListWorkersRequest {}, API_TOKEN))
        .await
        .expect("list workers")
        .into_inner();
    assert!(listed.workers.is_empty(), "a refused worker was registered");
    coordinator.stop().await;
}

fn tls_config(data: &tempfile::TempDir, pki: &TestPki, mutual: bool) -> CoordinatorConfig {
    let mut config = baton_tests::test_config(data.path());
    config.tls_cert_file = Some(pki.server_cert.clone());
    config.tls_key_file = Some(pki.server_key.clone());
    if mutual {
        config.worker_ca_file = Some(pki.ca.clone());
    }
    config
}

async fn tls_channel(port: u16, ca: &std::path::Path) -> Result<Channel, String> {
    let tls =
        baton_settings::tls::client_config(Some(ca), None, None).map_err(|e| e.to_string())?;
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn tls_refuses_a_client_that_trusts_another_ca() {
    let (pki, other) = (TestPki::new("a"), TestPki::new("b"));
    let data = tempfile::tempdir().expect("temp dir");
    let coordinator = RunningCoordinator::start(tls_config(&data, &pki, false)).await;
    let port = coordinator.local.port();

    let wrong = tls_channel(port, &other.ca).await.expect_err("wrong CA");
    assert!(wrong.contains("UnknownIssuer"), "{wrong}");
    let plain = PipelineServiceClient::connect(format!("http://localhost:{port}"))
        .await
        .expect("tcp connects")
        .list_pipelines(pb::ListPipelinesRequest {})
        .await;
    assert!(plain.is_err(), "plaintext reached a TLS coordinator");

    let channel = tls_channel(port, &pki.ca).await.expect("right CA");
    PipelineServiceClient::new(channel)
        .list_pipelines(pb::ListPipelinesRequest {})
        .await
        .expect("call over TLS");
    coordinator.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_worker_certificate() {
    let pki = TestPki::new("m");
    let data = tempfile::tempdir().expect("temp dir");
    let work = tempfile::tempdir().expect("temp dir");
    let coordinator = RunningCoordinator::start(tls_config(&data, &pki, true)).await;
    let url = format!("https://localhost:{}", coordinator.local.port());

    let mut bare = worker(&url, "", &work);
    bare.ca_file = Some(pki.ca.clone());
    let refused = refused_worker(bare.clone()).await;
    assert!(refused.contains("client certificate"), "{refused}");

    let mut with_cert = bare;
    with_cert.cert_file = Some(pki.client_cert.clone());
    with_cert.key_file = Some(pki.client_key.clone());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(baton_worker::run(with_cert, shutdown.clone()));
    // Clients need no certificate: the CLI talks to the same port.
    let mut client = PipelineServiceClient::new(
        tls_channel(coordinator.local.port(), &pki.ca)
            .await
            .expect("client"),
    );
    let deadline = tokio::time::Instant::now() + baton_tests::DEADLINE;
    loop {
        let workers = client
            .list_workers(pb::ListWorkersRequest {})
            .await
            .expect("list workers")
            .into_inner()
            .workers;
        if workers
            .iter()
            .any(|w| w.state == pb::WorkerState::Connected as i32)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.drain.cancel();
    tokio::time::timeout(baton_tests::DEADLINE, task)
        .await
        .expect("worker drains")
        .expect("worker task")
        .expect("worker ends cleanly");
    coordinator.stop().await;
}

#[tokio::test]
async fn pipeline_files_over_the_limits_are_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = baton_tests::test_config(data.path());
    config.max_stages = 2;
    config.max_pipelines = 1;
    let coordinator = RunningCoordinator::start(config).await;
    let mut client = plain_client(coordinator.local).await;

    let big = client
        .put_pipeline(pipeline("big", 3))
        .await
        .expect_err("3 stages");
    assert_eq!(big.code(), tonic::Code::InvalidArgument);
    assert!(big.message().contains("at most 2 (max_stages)"), "{big:?}");
    client
        .put_pipeline(pipeline("one", 2))
        .await
        .expect("first pipeline");
    client
        .put_pipeline(pipeline("one", 1))
        .await
        .expect("updating it is fine");
    let second = client
        .put_pipeline(pipeline("two", 1))
        .await
        .expect_err("second");
    assert!(second.message().contains("max_pipelines"), "{second:?}");
    coordinator.stop().await;
}

#[tokio::test]
async fn an_oversized_log_chunk_is_cut_with_a_note() {
    let cluster = TestCluster::start_with(1, |c| c.max_log_chunk_bytes = 100).await;
    cluster
        .apply("name: loud\nstages:\n  - name: build\n    actions:\n      - name: shout\n        run: [\"printf '%0300d' 0\"]\n")
        .await;
    let id = cluster.start_execution("loud", "main", "c1").await;
    let exec = cluster
        .wait_status("loud", &id, pb::ExecutionStatus::Succeeded)
        .await;
    let job = baton_tests::job_in(&exec, "build")
        .expect("job")
        .job_id
        .clone();
    let log = cluster
        .wait_for_log(&job, "chunks are limited to 100 bytes")
        .await;
    assert!(
        log.contains(&"0".repeat(100)) && !log.contains(&"0".repeat(101)),
        "{log}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = baton_tests::test_config(data.path());
    config.max_message_bytes = 64 << 10;
    let coordinator = RunningCoordinator::start(config).await;
    let mut client = plain_client(coordinator.local).await;
    let mut big = pipeline("big", 1);
    big.definition_yaml += &format!("# {}\n", "x".repeat(100 << 10));
    let refused = client.put_pipeline(big).await.expect_err("100 KiB message");
    assert_eq!(refused.code(), tonic::Code::OutOfRange);
    assert!(
        refused.message().contains("the limit is: 65536 bytes"),
        "{refused:?}"
    );
    coordinator.stop().await;
}
