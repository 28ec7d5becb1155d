use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::events::Change;
use crate::store::records::{ExecutionStatus, Revision, StageRun, StageStatus};
use crate::store::{MemoryEngine, key_num_suffix};

const DAY: i64 = 24 * 3600 * 1000;

fn execution(pipeline: &str, number: u64, status: ExecutionStatus, at_ms: i64) -> ExecutionRecord {
    ExecutionRecord {
        id: format!("{pipeline}-{number}"),
        pipeline: pipeline.into(),
        pipeline_version: 1,
        number,
        revision: Revision::default(),
        status,
        status_reason: String::new(),
        stage_index: 0,
        stages: vec![StageRun {
            stage: "build".into(),
            status: StageStatus::Succeeded,
            started_at_ms: at_ms,
            finished_at_ms: at_ms,
            fence_token: number,
            run_order: 1,
            jobs: vec![format!("{pipeline}-{number}-job")],
        }],
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        cancel: None,
        cancelled_by: None,
    }
}

/// A pipeline with one execution per entry of `runs` (status, Unix ms), each with a job, two
/// log chunks and one event.
async fn seed(store: &Store, pipeline: &str, runs: &[(ExecutionStatus, i64)]) {
    let record = PipelineRecord {
        name: pipeline.into(),
        version: 1,
        yaml: String::new(),
        source_name: String::new(),
        updated_at_ms: 0,
    };
    let mut ops = vec![Op::put_json(Tree::Pipelines, pipeline.as_bytes(), &record)];
    for (i, (status, at_ms)) in runs.iter().enumerate() {
        let number = i as u64 + 1;
        let exec = execution(pipeline, number, *status, *at_ms);
        let job = exec.stages[0].jobs[0].clone();
        ops.push(Op::put_json(Tree::Executions, exec.id.as_bytes(), &exec));
        ops.push(Op::Put(
            Tree::ExecutionIndex,
            key_num(pipeline, number),
            exec.id.clone().into_bytes(),
        ));
        ops.push(Op::Put(
            Tree::Jobs,
            job.clone().into_bytes(),
            b"{}".to_vec(),
        ));
        ops.push(Op::Put(Tree::Logs, key_num(&job, 0), b"log".to_vec()));
        ops.push(Op::Put(Tree::Logs, key_num(&job, 3), b"log".to_vec()));
        let event = Event {
            seq: number,
            at_ms: *at_ms,
            pipeline: pipeline.into(),
            execution_id: exec.id.clone(),
            stage: String::new(),
            job_id: String::new(),
            change: Change::Execution(*status),
            message: String::new(),
        };
        ops.push(Op::put_json(
            Tree::Events,
            key_num(pipeline, number),
            &event,
        ));
    }
    store.write(ops).await.expect("seed");
}

fn numbers(store: &Store, pipeline: &str) -> Vec<u64> {
    store
        .scan_prefix(Tree::ExecutionIndex, &prefix(pipeline))
        .expect("scan")
        .iter()
        .filter_map(|(k, _)| key_num_suffix(k))
        .collect()
}

fn count(store: &Store, tree: Tree) -> usize {
    store.scan_prefix(tree, b"").expect("scan").len()
}

fn store() -> Store {
    Store::start(Arc::new(MemoryEngine::default()))
        .expect("store")
        .0
}

#[tokio::test]
async fn count_limit_keeps_the_newest_per_pipeline_and_never_removes_live_ones() {
    use ExecutionStatus::*;
    let store = store();
    let runs = [
        (InProgress, 1),
        (Succeeded, 2),
        (Failed, 3),
        (Superseded, 4),
        (Succeeded, 5),
        (Stopped, 6),
    ];
    seed(&store, "web", &runs).await;
    seed(&store, "api", &runs[1..3]).await;
    let policy = Retention {
        max_age: None,
        keep_per_pipeline: Some(2),
        batch_ops: 3,
        ..Retention::default()
    };
    let swept = sweep(&store, &policy, 10).await.expect("sweep");
    assert_eq!(numbers(&store, "web"), vec![1, 5, 6], "#1 has not ended");
    assert_eq!(numbers(&store, "api"), vec![1, 2], "within the limit");
    assert_eq!(swept.executions, 3);
    assert_eq!(swept.jobs, 3);
    assert_eq!(swept.log_chunks, 6);
    assert_eq!(count(&store, Tree::Executions), 5);
    assert_eq!(count(&store, Tree::Jobs), 5);
    assert_eq!(count(&store, Tree::Logs), 10);
    // The live #1 is the oldest kept, so no event of web is older than everything kept.
    assert_eq!(swept.events, 0);
    // A second sweep finds nothing more to do.
    assert_eq!(
        sweep(&store, &policy, 10).await.expect("again"),
        Swept::default()
    );
}

#[tokio::test]
async fn age_limit_removes_finished_executions_older_than_it_with_their_events() {
    use ExecutionStatus::*;
    let store = store();
    let now = 100 * DAY;
    seed(
        &store,
        "web",
        &[
            (Succeeded, 10 * DAY),
            (Failed, 50 * DAY),
            (Succeeded, 95 * DAY),
        ],
    )
    .await;
    seed(&store, "old", &[(Succeeded, DAY)]).await;
    let policy = Retention {
        max_age: Some(Duration::from_secs(30 * 24 * 3600)),
        keep_per_pipeline: None,
        batch_ops: 1,
        ..Retention::default()
    };
    let swept = sweep(&store, &policy, now).await.expect("sweep");
    assert_eq!(numbers(&store, "web"), vec![3]);
    assert!(numbers(&store, "old").is_empty());
    assert_eq!(swept.executions, 3);
    // Only the kept execution's event is left to replay in web; `old` keeps its newest event
    // so that its numbering goes on after a restart.
    let events: Vec<u64> = store
        .scan_prefix(Tree::Events, b"")
        .expect("scan")
        .iter()
        .filter_map(|(k, _)| key_num_suffix(k))
        .collect();
    assert_eq!(events, vec![1, 3], "old #1, web #3");
    assert_eq!(swept.events, 2);
    // Nothing is old enough a day earlier than its limit.
    let fresh = store_with_one(Succeeded, now - 29 * DAY).await;
    assert_eq!(
        sweep(&fresh, &policy, now).await.expect("sweep"),
        Swept::default()
    );
}

async fn store_with_one(status: ExecutionStatus, at_ms: i64) -> Store {
    let store = store();
    seed(&store, "web", &[(status, at_ms)]).await;
    store
}

#[tokio::test]
async fn request_tokens_past_their_day_are_removed() {
    use crate::store::key2;
    use crate::store::records::RequestTokenRecord;
    let store = store();
    let now = 10 * DAY;
    let token = |at_ms: i64| RequestTokenRecord {
        execution_id: "e".into(),
        at_ms,
    };
    store
        .write(vec![
            Op::put_json(
                Tree::RequestTokens,
                key2("web", "old"),
                &token(now - DAY - 1),
            ),
            Op::put_json(
                Tree::RequestTokens,
                key2("web", "new"),
                &token(now - DAY + 1),
            ),
        ])
        .await
        .expect("write");
    let swept = sweep(&store, &Retention::default(), now)
        .await
        .expect("sweep");
    assert_eq!(swept.request_tokens, 1);
    let left: Vec<Vec<u8>> = store
        .scan_prefix(Tree::RequestTokens, b"")
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![key2("web", "new")]);
}
