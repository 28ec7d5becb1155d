//! The coordinator checks the store's schema version before it serves.

use std::sync::Arc;

use baton_coordinator::store::schema::{CURRENT, VERSION_KEY};
use baton_coordinator::store::{Engine, Op, SledEngine, Store, Tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_refuses_a_store_from_a_newer_version_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("store");
    {
        let engine = Arc::new(SledEngine::open(&data_dir).expect("open"));
        let (store, writer) = Store::start(engine).expect("start");
        store
            .write(vec![
                Op::Put(Tree::Meta, VERSION_KEY.to_vec(), b"99".to_vec()),
                Op::Put(Tree::Pipelines, b"web".to_vec(), b"{}".to_vec()),
            ])
            .await
            .expect("write");
        drop(store);
        writer.closed().await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = baton_tests::test_config(&data_dir);
    let err = baton_coordinator::run(config, listener, Default::default())
        .await
        .expect_err("a newer store is refused");
    let text = err.to_string();
    assert!(text.contains(&data_dir.display().to_string()), "{text}");
    assert!(text.contains("schema version 99"), "{text}");
    assert!(text.contains(&format!("versions 1 to {CURRENT}")), "{text}");
    assert!(text.contains("Nothing was changed"), "{text}");
    let engine = SledEngine::open(&data_dir).expect("reopen");
    assert_eq!(
        engine.get(Tree::Meta, VERSION_KEY).expect("get"),
        Some(b"99".to_vec())
    );
    assert!(engine.get(Tree::Pipelines, b"web").expect("get").is_some());
}
