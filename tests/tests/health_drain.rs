//! gRPC health follows the coordinator's life: SERVING once its actors are rebuilt, NOT_SERVING
//! while it drains after being told to stop, and calls made while draining are turned away with
//! UNAVAILABLE (so clients go elsewhere instead of reaching a coordinator on its way out).

use std::sync::Arc;
use std::time::Duration;

use baton_proto::v1 as pb;
use baton_tests::{DEADLINE, test_config};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_not_serving_while_draining() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(data.path());
    // The window in which a load balancer sees NOT_SERVING before the port closes.
    config.drain_grace = Duration::from_secs(5);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let clock = Arc::new(baton_coordinator::clock::SystemClock);
    let coordinator = tokio::spawn(baton_coordinator::run_with_listeners(
        config,
        listener,
        None,
        shutdown.clone(),
        clock,
    ));

    let channel = tonic::transport::Channel::from_shared(addr)
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let mut statuses = health
        .watch(HealthCheckRequest {
            service: "baton.v1.PipelineService".into(),
        })
        .await
        .expect("watch health")
        .into_inner();
    let mut next = async || {
        let status = tokio::time::timeout(DEADLINE, statuses.next())
            .await
            .expect("a health update")
            .expect("the watch stays open")
            .expect("a status");
        ServingStatus::try_from(status.status).expect("a known status")
    };
    // NOT_SERVING first if the watch began before the store was loaded.
    let mut status = next().await;
    if status == ServingStatus::NotServing {
        status = next().await;
    }
    assert_eq!(status, ServingStatus::Serving);
    let mut client = pb::pipeline_service_client::PipelineServiceClient::new(channel);
    client
        .list_pipelines(pb::ListPipelinesRequest {})
        .await
        .expect("served while SERVING");

    shutdown.cancel();
    assert_eq!(next().await, ServingStatus::NotServing);
    let refused = client
        .list_pipelines(pb::ListPipelinesRequest {})
        .await
        .expect_err("turned away while draining");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    // A graceful stop waits for open streams: the health watch is one.
    drop(statuses);

    tokio::time::timeout(DEADLINE, coordinator)
        .await
        .expect("the coordinator stops after its drain grace")
        .expect("coordinator task")
        .expect("a clean stop");
}
