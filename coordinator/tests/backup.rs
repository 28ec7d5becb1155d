//! `baton-coordinator backup` and `restore`, and a store that will not open, with the real
//! binary.

mod common;

use baton_proto::v1 as pb;
use common::{Coordinator, run_bin};

const PIPELINE: &str = "name: web\nstages:\n  - name: build\n    actions:\n      - name: compile\n        run: [\"true\"]\n";

async fn start_three(coordinator: &Coordinator) -> Vec<String> {
    let mut client = coordinator.client().await;
    client
        .put_pipeline(pb::PutPipelineRequest {
            definition_yaml: PIPELINE.into(),
            source_name: "web.yaml".into(),
        })
        .await
        .expect("put");
    let mut ids = Vec::new();
    for commit in ["c1", "c2", "c3"] {
        let id = client
            .start_pipeline_execution(pb::StartPipelineExecutionRequest {
                pipeline: "web".into(),
                revision: Some(pb::SourceRevision {
                    branch: "main".into(),
                    commit: commit.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("start")
            .into_inner()
            .execution_id;
        ids.push(id);
    }
    ids
}

async fn listed(coordinator: &Coordinator) -> Vec<String> {
    coordinator
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
        .into_iter()
        .map(|e| e.execution_id)
        .collect()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_and_offline_backups_restore_into_a_store_a_coordinator_serves() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("store");
    let mut coordinator = Coordinator::new(&data, &[]);
    coordinator.start().await;
    let mut ids = start_three(&coordinator).await;
    ids.reverse();
    assert_eq!(listed(&coordinator).await, ids, "newest first");

    // A second coordinator on the same store is refused, naming the lock file.
    let second = run_bin(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data.display().to_string(),
    ]);
    assert!(!second.status.success());
    let said = text(&second);
    assert!(said.contains(&format!("{}/db", data.display())), "{said}");
    assert!(said.contains("another process holds the lock"), "{said}");

    // Online: through the running coordinator.
    let online = dir.path().join("online.backup");
    let out = run_bin(&[
        "backup",
        "--data-dir",
        &data.display().to_string(),
        "--out",
        &online.display().to_string(),
        "--addr",
        &coordinator.addr,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("written by the running coordinator"),
        "{}",
        text(&out)
    );

    // Offline: after a kill -9, straight from the directory.
    coordinator.kill();
    let offline = dir.path().join("offline.backup");
    let out = run_bin(&[
        "backup",
        "--data-dir",
        &data.display().to_string(),
        "--out",
        &offline.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("read directly"), "{}", text(&out));

    for (name, file) in [("online", &online), ("offline", &offline)] {
        let restored = dir.path().join(format!("restored-{name}"));
        let out = run_bin(&[
            "restore",
            "--in",
            &file.display().to_string(),
            "--data-dir",
            &restored.display().to_string(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let again = run_bin(&[
            "restore",
            "--in",
            &file.display().to_string(),
            "--data-dir",
            &restored.display().to_string(),
        ]);
        assert!(!again.status.success());
        assert!(text(&again).contains("is not empty"), "{}", text(&again));
        let mut copy = Coordinator::new(&restored, &[]);
        copy.start().await;
        assert_eq!(
            listed(&copy).await,
            ids,
            "{name} backup has every execution"
        );
        copy.kill();
    }
}
