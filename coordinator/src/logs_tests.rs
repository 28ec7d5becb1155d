use std::sync::Arc;

use super::*;
use crate::store::MemoryEngine;

fn hub(cap: u64) -> (LogHub, Store) {
    let (store, _writer) = Store::start(Arc::new(MemoryEngine::default())).expect("store");
    (LogHub::new(store.clone(), cap), store)
}

/// Waits until every detached write queued before now is applied (the writer keeps order).
async fn settle(store: &Store) {
    store
        .write(vec![Op::Put(Tree::Meta, b"settle".to_vec(), Vec::new())])
        .await
        .expect("write");
}

fn text(hub: &LogHub, job: &str) -> String {
    hub.stored(job, 0)
        .expect("read")
        .iter()
        .map(|c| String::from_utf8_lossy(&c.data).to_string())
        .collect()
}

#[tokio::test]
async fn a_log_past_its_cap_keeps_the_head_and_says_the_tail_was_dropped() {
    let (logs, store) = hub(100);
    logs.append("j1", 0, 1, vec![b'a'; 60]);
    logs.append("j1", 0, 1, vec![b'b'; 60]);
    logs.append("j1", 1, 2, b"never stored".to_vec());
    settle(&store).await;
    let kept = text(&logs, "j1");
    let expected_head = format!("{}{}", "a".repeat(60), "b".repeat(40));
    assert!(kept.starts_with(&expected_head), "{kept}");
    assert_eq!(
        &kept[100..],
        "\n[baton] this job's log reached its cap of 100 bytes; the rest of it was dropped\n"
    );
    let marker = logs.stored("j1", 100).expect("read");
    assert_eq!(marker[0].stream, LOG_STREAM_SYSTEM);

    // After a restart the hub continues from what is stored: nothing more is kept.
    let again = LogHub::new(store.clone(), 100);
    again.append("j1", 2, 1, b"more".to_vec());
    settle(&store).await;
    assert_eq!(text(&again, "j1"), kept);
}

#[tokio::test]
async fn a_log_that_fills_its_cap_exactly_gets_the_marker_only_when_more_comes() {
    let (logs, store) = hub(10);
    logs.append("j1", 0, 1, b"0123456789".to_vec());
    settle(&store).await;
    assert_eq!(text(&logs, "j1"), "0123456789");
    logs.append("j1", 0, 1, b"x".to_vec());
    settle(&store).await;
    assert!(text(&logs, "j1").ends_with("cap of 10 bytes; the rest of it was dropped\n"));
    assert_eq!(size_words(64 * 1024 * 1024), "64 MiB");
}

#[tokio::test]
async fn an_ended_job_leaves_memory_and_its_followers_end() {
    let (logs, store) = hub(1024);
    let mut follower = logs.subscribe("j1", false).expect("live");
    logs.append("j1", 0, 1, b"hello".to_vec());
    assert_eq!(logs.jobs_in_memory(), 1);
    logs.finish("j1");
    assert_eq!(logs.jobs_in_memory(), 0);
    assert_eq!(follower.recv().await.expect("chunk").data, b"hello");
    assert!(matches!(
        follower.recv().await,
        Err(broadcast::error::RecvError::Closed)
    ));
    // A follower that comes after the end reads what is stored and is not kept waiting,
    // even if it read the job record just before the job ended.
    assert!(logs.subscribe("j1", false).is_none());
    // A chunk that arrives late is stored after the rest, without coming back into memory.
    logs.append("j1", 0, 1, b" world".to_vec());
    settle(&store).await;
    assert_eq!(logs.jobs_in_memory(), 0);
    assert_eq!(text(&logs, "j1"), "hello world");
}

#[tokio::test]
async fn output_sent_again_with_its_offset_is_stored_once() {
    let (logs, store) = hub(1024);
    logs.append_at("j1", Some(0), 0, 1, b"one\n".to_vec());
    logs.append_at("j1", Some(4), 0, 1, b"two\n".to_vec());
    // A restarted worker sends its whole spool again: one chunk overlaps the end.
    logs.append_at("j1", Some(0), 0, 1, b"one\n".to_vec());
    logs.append_at("j1", Some(4), 0, 1, b"two\nthree\n".to_vec());
    logs.append_at("j1", Some(14), 0, 1, b"four\n".to_vec());
    settle(&store).await;
    assert_eq!(text(&logs, "j1"), "one\ntwo\nthree\nfour\n");

    // After a coordinator restart the stored end still counts.
    let again = LogHub::new(store.clone(), 1024);
    again.append_at("j1", Some(14), 0, 1, b"four\nfive\n".to_vec());
    settle(&store).await;
    assert_eq!(text(&again, "j1"), "one\ntwo\nthree\nfour\nfive\n");
}
