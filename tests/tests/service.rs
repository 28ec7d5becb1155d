//! The standard gRPC services that operators' tools rely on: health and reflection.

use baton_tests::TestCluster;
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

async fn channel(cluster: &TestCluster) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(cluster.addr.clone())
        .expect("address")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_and_reflection_lists_the_services() {
    let cluster = TestCluster::start(0).await;
    let mut health = HealthClient::new(channel(&cluster).await);
    for service in ["baton.v1.PipelineService", "baton.v1.AgentService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }

    let mut reflection = ServerReflectionClient::new(channel(&cluster).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"baton.v1.PipelineService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"baton.v1.AgentService".to_string()),
        "{names:?}"
    );
    cluster.shutdown().await;
}
