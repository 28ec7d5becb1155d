//! A retried trigger starts nothing twice: the same client request token returns the first
//! call's execution, also after a coordinator restart (issue 9).

use baton_proto::v1 as pb;
use baton_tests::TestCluster;

async fn start_with_token(
    cluster: &TestCluster,
    commit: &str,
    token: &str,
) -> pb::StartPipelineExecutionResponse {
    cluster
        .client()
        .await
        .start_pipeline_execution(pb::StartPipelineExecutionRequest {
            pipeline: "web".into(),
            revision: Some(pb::SourceRevision {
                branch: "main".into(),
                commit: commit.into(),
                trigger: "webhook".into(),
                ..Default::default()
            }),
            client_request_token: token.into(),
        })
        .await
        .expect("start")
        .into_inner()
}

async fn executions(cluster: &TestCluster) -> Vec<pb::PipelineExecution> {
    cluster
        .client()
        .await
        .list_pipeline_executions(pb::ListPipelineExecutionsRequest {
            pipeline: "web".into(),
            limit: 0,
        })
        .await
        .expect("list")
        .into_inner()
        .executions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_token_twice_and_after_restart_yields_one_execution() {
    let mut cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;

    let first = start_with_token(&cluster, "abc1234", "push-17").await;
    assert!(!first.deduplicated);
    let retry = start_with_token(&cluster, "abc1234", "push-17").await;
    assert_eq!(retry.execution_id, first.execution_id);
    assert!(retry.deduplicated, "the retry must say nothing new started");

    // Another token is another trigger.
    let other = start_with_token(&cluster, "def5678", "push-18").await;
    assert_ne!(other.execution_id, first.execution_id);
    assert_eq!(executions(&cluster).await.len(), 2);

    cluster.restart_coordinator().await;
    let after_restart = start_with_token(&cluster, "abc1234", "push-17").await;
    assert_eq!(after_restart.execution_id, first.execution_id);
    assert!(after_restart.deduplicated);
    assert_eq!(executions(&cluster).await.len(), 2);

    // Without a token every call starts an execution, as before.
    let plain_a = start_with_token(&cluster, "abc1234", "").await;
    let plain_b = start_with_token(&cluster, "abc1234", "").await;
    assert_ne!(plain_a.execution_id, plain_b.execution_id);
    assert_eq!(executions(&cluster).await.len(), 4);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprintable_or_overlong_token_is_refused() {
    let cluster = TestCluster::start(0).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    let mut client = cluster.client().await;
    for token in ["x".repeat(129), "bad\ntoken".to_string()] {
        let err = client
            .start_pipeline_execution(pb::StartPipelineExecutionRequest {
                pipeline: "web".into(),
                revision: Some(pb::SourceRevision {
                    branch: "main".into(),
                    commit: "abc".into(),
                    ..Default::default()
                }),
                client_request_token: token,
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
    assert!(executions(&cluster).await.is_empty());
    cluster.shutdown().await;
}

/// Retries that race the first call (a webhook delivered several times at once) still start
/// one execution: the pipeline actor goes on with the next call while the first one's batch
/// flushes, so the retries find the token among those not yet durable and are answered once
/// it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_sent_many_times_at_once_yields_one_execution() {
    let cluster = TestCluster::start(0).await;
    cluster.apply(&cluster.gated_pipeline("web")).await;
    let calls = (0..12).map(|_| start_with_token(&cluster, "abc1234", "push-99"));
    let replies = futures::future::join_all(calls).await;
    let first = &replies[0].execution_id;
    assert!(
        replies.iter().all(|r| &r.execution_id == first),
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|r| !r.deduplicated).count(),
        1,
        "exactly one call started it: {replies:?}"
    );
    assert_eq!(executions(&cluster).await.len(), 1);
    cluster.shutdown().await;
}
