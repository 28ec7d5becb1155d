//! Fencing through the public API: CheckFence answers for the current holder only, and a
//! worker cannot report (log output included) about a job it does not hold.

use baton_proto::v1::{self as pb, agent_service_client::AgentServiceClient, worker_message::Msg};
use baton_tests::{TestCluster, job_in};
use tokio_stream::StreamExt;

async fn check(cluster: &TestCluster, token: u64) -> pb::CheckFenceResponse {
    cluster
        .client()
        .await
        .check_fence(pb::CheckFenceRequest {
            pipeline: "fenced".into(),
            stage: "build".into(),
            lane: String::new(),
            token,
        })
        .await
        .expect("check fence")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fence_holds_only_for_the_execution_inside_the_stage() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("fenced")).await;
    let a = cluster.start_execution("fenced", "main", "a1").await;
    cluster.wait_job_running("fenced", &a, "build").await;
    let first = cluster.state("fenced").await.stages[0].fence_token;
    let holds = check(&cluster, first).await;
    assert!(holds.holds, "{holds:?}");
    assert_eq!(holds.holder_execution_id, a);

    let b = cluster.start_execution("fenced", "main", "b2").await;
    cluster.open_gate("a1");
    cluster.wait_job_running("fenced", &b, "build").await;
    let second = cluster.state("fenced").await.stages[0].fence_token;
    assert!(second > first);
    let stale = check(&cluster, first).await;
    assert!(!stale.holds);
    assert_eq!(
        (stale.current_token, stale.holder_execution_id.as_str()),
        (second, b.as_str())
    );
    assert!(stale.message.contains("no longer holds"), "{stale:?}");
    assert!(check(&cluster, second).await.holds);
    let never = check(&cluster, second + 5).await;
    assert!(
        !never.holds && never.message.contains("never issued"),
        "{never:?}"
    );
    let unknown = cluster
        .client()
        .await
        .check_fence(pb::CheckFenceRequest {
            pipeline: "fenced".into(),
            stage: "nope".into(),
            lane: String::new(),
            token: 1,
        })
        .await
        .expect_err("unknown stage");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    cluster.open_gate("b2");
    cluster
        .wait_status("fenced", &b, pb::ExecutionStatus::Succeeded)
        .await;
    cluster.shutdown().await;
}

fn wire(msg: Msg) -> pb::WorkerMessage {
    pb::WorkerMessage {
        msg: Some(msg),
        seq: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_log_output_from_a_worker_that_does_not_hold_the_job_are_dropped() {
    let cluster = TestCluster::start(1).await;
    cluster.apply(&cluster.gated_pipeline("fenced")).await;
    let exec = cluster.start_execution("fenced", "main", "g1").await;
    let job = cluster.wait_job_running("fenced", &exec, "build").await;

    // Another worker, through the real worker API, claims the job: output, then failure.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut ghost = AgentServiceClient::connect(cluster.addr.clone())
        .await
        .expect("connect");
    for msg in [
        Msg::Register(pb::Register {
            name: "ghost".into(),
            slots: 1,
            ..Default::default()
        }),
        Msg::Log(pb::WorkerLog {
            job_id: job.clone(),
            step: 0,
            stream: pb::LogStream::Stdout as i32,
            data: b"GHOST OUTPUT\n".to_vec(),
            offset: None,
        }),
        Msg::JobFinished(pb::JobFinished {
            job_id: job.clone(),
            outcome: pb::JobOutcome::Failed as i32,
            exit_code: 3,
            message: "ghost says it failed".into(),
            steps_done: 1,
        }),
        // Handled after the two above: once it shows, they have been looked at.
        Msg::Goodbye(pb::Goodbye {
            reason: "done".into(),
        }),
    ] {
        tx.send(wire(msg)).await.expect("queue");
    }
    let mut inbound = ghost
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    assert!(matches!(
        inbound.next().await,
        Some(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Registered(_))
        }))
    ));
    cluster
        .wait_worker("ghost", pb::WorkerState::Draining)
        .await;

    cluster.open_gate("g1");
    let done = cluster
        .wait_status("fenced", &exec, pb::ExecutionStatus::Succeeded)
        .await;
    let record = job_in(&done, "build").expect("job");
    assert_eq!(record.worker, "w1");
    let log = cluster.wait_for_log(&job, "exited 0").await;
    assert!(!log.contains("GHOST"), "{log}");
    drop(tx);
    cluster.shutdown().await;
}
