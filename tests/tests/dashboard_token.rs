//! With an API token on, the dashboard's reads stay open but its actions (stop) need the token,
//! like every PipelineService call: refused without it, and nothing changes.

use baton_proto::v1 as pb;
use baton_proto::v1::pipeline_service_client::PipelineServiceClient;
use baton_tests::observe::{http_get, http_post};
use baton_tests::secure::RunningCoordinator;

const TOKEN: &str = "dashboard-token-1234";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_actions_need_the_api_token_and_reads_do_not() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = baton_tests::test_config(data.path());
    config.api_token = TOKEN.into();
    let coordinator = RunningCoordinator::start_with_http(config).await;
    let http = format!("http://{}", coordinator.http.expect("http port"));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", coordinator.local))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {TOKEN}").parse().expect("header value");
    let mut client =
        PipelineServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        });
    // No worker: the execution waits with its job queued, so it stays InProgress until stopped.
    client
        .put_pipeline(pb::PutPipelineRequest {
            definition_yaml: "name: guarded\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [\"true\"]\n".into(),
            ..Default::default()
        })
        .await
        .expect("put pipeline");
    let id = client
        .start_pipeline_execution(pb::StartPipelineExecutionRequest {
            pipeline: "guarded".into(),
            revision: Some(pb::SourceRevision {
                branch: "main".into(),
                commit: "c1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
        .execution_id;
    let status = |client: &PipelineServiceClient<_>| {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            client
                .get_pipeline_execution(pb::GetPipelineExecutionRequest { execution_id: id })
                .await
                .expect("get execution")
                .into_inner()
                .status
        }
    };

    let (code, body) = http_get(&http, "/api/pipelines").await;
    assert_eq!(code, 200, "reads need no token: {body}");
    assert!(body.contains("guarded"), "{body}");

    let stop = format!("/api/executions/{id}/stop?mode=abandon");
    let (code, body) = http_post(&http, &stop, None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("requires an API token"), "{body}");
    let (code, body) = http_post(&http, &stop, Some("not-the-token")).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("not accepted"), "{body}");
    assert!(!body.contains(TOKEN), "the token is never echoed: {body}");
    assert_eq!(
        status(&client).await,
        pb::ExecutionStatus::InProgress as i32,
        "a refused stop changes nothing"
    );

    let (code, body) = http_post(&http, &stop, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(
        status(&client).await,
        pb::ExecutionStatus::InProgress as i32,
        "the stop with the token was applied"
    );
    coordinator.stop().await;
}
