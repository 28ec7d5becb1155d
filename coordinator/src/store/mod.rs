//! The store: the only module that touches the storage engine.
//!
//! One writer thread owns every write. It takes all requests that are waiting (up to
//! [`MAX_BATCH_OPS`] operations), makes them durable as one atomic batch (for sled: one synced
//! record in the commit log) and only then answers each request. Callers await that answer before they
//! acknowledge a client, dispatch a job or tell a watcher (group commit).
//!
//! Reads go straight to the engine from any thread.

mod commit_log;
mod inline;
mod memory;
pub mod records;
pub mod schema;
mod sled_engine;

use std::sync::Arc;
use std::sync::mpsc;

pub use memory::MemoryEngine;

use crate::observe::metrics::StoreMetrics;
pub use sled_engine::SledEngine;

/// Largest number of operations the writer folds into one batch.
pub const MAX_BATCH_OPS: usize = 512;

/// The named key spaces of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Pipeline name -> current [`records::PipelineRecord`].
    Pipelines,
    /// `name \0 version(be)` -> YAML text of that version.
    PipelineVersions,
    /// Execution id -> [`records::ExecutionRecord`].
    Executions,
    /// `pipeline \0 number(be)` -> execution id: a pipeline's history as a range scan.
    ExecutionIndex,
    /// `pipeline \0 stage` -> [`records::StageRecord`].
    Stages,
    /// Job id -> [`records::JobRecord`].
    Jobs,
    /// `job id \0 offset(be)` -> one log chunk (stream, step, bytes).
    Logs,
    /// `pipeline \0 client request token` -> [`records::RequestTokenRecord`].
    RequestTokens,
    /// Store-wide settings, such as the schema version.
    Meta,
    /// `pipeline \0 execution id` -> empty: the executions that have not ended, so that a
    /// start reads only those instead of a pipeline's whole history.
    LiveExecutions,
    /// `pipeline \0 seq(be)` -> one [`crate::events::Event`] as JSON: what watchers replay.
    Events,
    /// Pipeline name -> the revision orders of its ended executions that still outrank older
    /// arrivals (JSON), so that a start need not read the history for them.
    EndedOrders,
}

impl Tree {
    /// Every tree, for engines that open them up front.
    pub const ALL: [Tree; 12] = [
        Tree::Pipelines,
        Tree::PipelineVersions,
        Tree::Executions,
        Tree::ExecutionIndex,
        Tree::Stages,
        Tree::Jobs,
        Tree::Logs,
        Tree::RequestTokens,
        Tree::Meta,
        Tree::LiveExecutions,
        Tree::Events,
        Tree::EndedOrders,
    ];

    /// The tree's on-disk name.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Pipelines => "pipelines",
            Tree::PipelineVersions => "pipeline_versions",
            Tree::Executions => "executions",
            Tree::ExecutionIndex => "execution_index",
            Tree::Stages => "stages",
            Tree::Jobs => "jobs",
            Tree::Logs => "logs",
            Tree::RequestTokens => "request_tokens",
            Tree::Meta => "meta",
            Tree::LiveExecutions => "live_executions",
            Tree::Events => "events",
            Tree::EndedOrders => "ended_orders",
        }
    }

    /// The tree with on-disk name `name`.
    pub fn from_name(name: &str) -> Option<Tree> {
        Tree::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Keys and values read by a scan, in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// One write.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace `key` in `tree`.
    Put(Tree, Vec<u8>, Vec<u8>),
    /// Remove `key` from `tree`.
    Delete(Tree, Vec<u8>),
}

impl Op {
    /// A put of a serde record as JSON.
    pub fn put_json<T: serde::Serialize>(tree: Tree, key: impl Into<Vec<u8>>, value: &T) -> Op {
        // Serialising our own plain records cannot fail; an empty value would be caught on read.
        Op::Put(
            tree,
            key.into(),
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }
}

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The engine refused or failed a read or write.
    #[error("storage engine: {0}")]
    Engine(String),
    /// A stored value could not be decoded.
    #[error("corrupt record in {tree}: {message}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// The decoding error.
        message: String,
    },
    /// The store will not open (the message says which file and what to do).
    #[error("{0}")]
    Open(String),
    /// The writer thread is gone (the coordinator is shutting down).
    #[error("the store is closed")]
    Closed,
}

/// A storage engine: sled for real use, memory for tests and simulations.
pub trait Engine: Send + Sync + 'static {
    /// Applies `ops` atomically and makes them durable before returning.
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// [`Engine::apply`] that calls `durable` with the outcome once the batch is durable,
    /// which may come before the call returns: an engine that makes a batch durable before
    /// it is in place for reading (sled, through its commit log) calls it then, and holds
    /// reads back until the batch is in place. The store writer answers its callers from
    /// `durable`. Default: `apply`, then `durable`.
    fn apply_announcing(&self, ops: &[Op], durable: &mut dyn FnMut(&Result<(), StoreError>)) {
        durable(&self.apply(ops));
    }
    /// Reads one key.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Reads every key that starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<KeyValues, StoreError>;
    /// Reads at most `limit` keys that start with `prefix` and are `>= start`, in key order.
    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError>;
    /// Reads the last `limit` keys that start with `prefix`, last key first.
    fn scan_last(&self, tree: Tree, prefix: &[u8], limit: usize) -> Result<KeyValues, StoreError>;
}

/// How the writer turns requests into durable batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Everything waiting (up to [`MAX_BATCH_OPS`]) in one batch, made durable once. Default.
    #[default]
    Group,
    /// One batch, made durable on its own, per request (for comparison in the benchmark).
    PerWrite,
}

struct WriteRequest {
    ops: Vec<Op>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Work for the writer thread that runs alone, between two batches.
type Exclusive = Box<dyn FnOnce(&dyn Engine) + Send>;

enum Request {
    Write(WriteRequest),
    Exclusive(Exclusive),
}

/// The writer thread's end: lets the owner wait until every write is done and the engine is
/// closed (so the data directory can be opened again).
pub struct StoreWriter {
    closed: tokio::sync::oneshot::Receiver<()>,
}

impl StoreWriter {
    /// Resolves once the last `Store` clone is gone and the writer has finished.
    pub async fn closed(self) {
        let _ = self.closed.await;
    }
}

/// Handle to the store; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    /// `None` for an inline store ([`Store::start_inline`]): writes apply on the caller's thread.
    writer: Option<mpsc::Sender<Request>>,
}

impl Store {
    /// Starts the writer thread over `engine`. The engine closes once every `Store` clone is
    /// gone and the writer has finished; [`StoreWriter::closed`] waits for that.
    pub fn start(engine: Arc<dyn Engine>) -> Result<(Store, StoreWriter), StoreError> {
        Self::start_observed(engine, None)
    }

    /// [`Store::start`] with a chosen [`CommitMode`].
    pub fn start_with(
        engine: Arc<dyn Engine>,
        mode: CommitMode,
    ) -> Result<(Store, StoreWriter), StoreError> {
        Self::spawn_writer(engine, mode, None)
    }

    /// [`Store::start`] that records each batch's size and flush time in `metrics`.
    pub fn start_observed(
        engine: Arc<dyn Engine>,
        metrics: Option<StoreMetrics>,
    ) -> Result<(Store, StoreWriter), StoreError> {
        Self::spawn_writer(engine, CommitMode::Group, metrics)
    }

    fn spawn_writer(
        engine: Arc<dyn Engine>,
        mode: CommitMode,
        metrics: Option<StoreMetrics>,
    ) -> Result<(Store, StoreWriter), StoreError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        let writer_engine = engine.clone();
        std::thread::Builder::new()
            .name("baton-store-writer".into())
            .spawn(move || {
                write_loop(writer_engine.as_ref(), rx, mode, metrics);
                drop(writer_engine);
                let _ = closed_tx.send(());
            })
            .map_err(|e| StoreError::Engine(format!("cannot start the store writer: {e}")))?;
        Ok((
            Store {
                engine,
                writer: Some(tx),
            },
            StoreWriter { closed },
        ))
    }

    /// Writes `ops` atomically; resolves once they are durable.
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.write_queued(ops).await
    }

    /// Queues `ops` now, behind every write queued before, and returns what resolves once
    /// they are durable. The caller may queue more writes before this one resolves: they are
    /// applied (and answered) in the order they were queued, often in the same flush.
    pub fn write_queued(
        &self,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (done, rx) = tokio::sync::oneshot::channel();
        let queued = if ops.is_empty() {
            let _ = done.send(Ok(()));
            Ok(())
        } else {
            self.submit(Request::Write(WriteRequest { ops, done }))
        };
        async move {
            queued?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Resolves once every write queued before it (detached ones included) has been applied:
    /// a reader that calls it after subscribing to live data sees everything sent before.
    pub async fn barrier(&self) -> Result<(), StoreError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.submit(Request::Write(WriteRequest {
            ops: Vec::new(),
            done,
        }))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `ops` behind every earlier write without waiting for them to be durable (for
    /// data nobody is acknowledged for, such as log chunks).
    pub fn write_detached(&self, ops: Vec<Op>) {
        let (done, _) = tokio::sync::oneshot::channel();
        let _ = self.submit(Request::Write(WriteRequest { ops, done }));
    }

    /// Runs `work` on the writer thread between two batches, with no write in between: a
    /// consistent view of every tree (what an online backup reads). Writes wait meanwhile.
    pub async fn exclusive<R: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Engine) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.submit(Request::Exclusive(Box::new(move |engine| {
            let _ = done.send(work(engine));
        })))?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Reads one key.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get(tree, key)
    }

    /// Reads and decodes one JSON record.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.engine.get(tree, key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, &bytes).map(Some),
        }
    }

    /// Reads every key with `prefix`, in key order.
    pub fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<KeyValues, StoreError> {
        self.engine.scan_prefix(tree, prefix)
    }

    /// Reads at most `limit` keys with `prefix` from `start` on, in key order (a range scan).
    pub fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.engine.scan_from(tree, prefix, start, limit)
    }

    /// Reads the last `limit` keys with `prefix`, last first (a reverse range scan).
    pub fn scan_last(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.engine.scan_last(tree, prefix, limit)
    }

    /// The engine under the store (for backups and schema checks).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Reads and decodes every JSON record with `prefix`, in key order.
    pub fn scan_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: Tree,
        prefix: &[u8],
    ) -> Result<Vec<T>, StoreError> {
        self.engine
            .scan_prefix(tree, prefix)?
            .iter()
            .map(|(_, v)| decode(tree, v))
            .collect()
    }
}

fn decode<T: serde::de::DeserializeOwned>(tree: Tree, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree: tree.name(),
        message: e.to_string(),
    })
}

fn write_loop(
    engine: &dyn Engine,
    rx: mpsc::Receiver<Request>,
    mode: CommitMode,
    metrics: Option<StoreMetrics>,
) {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match rx.recv() {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        let first = match first {
            Request::Exclusive(work) => {
                work(engine);
                continue;
            }
            Request::Write(write) => write,
        };
        let mut count = first.ops.len();
        let mut batch = vec![first];
        while mode == CommitMode::Group && count < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(Request::Write(next)) => {
                    count += next.ops.len();
                    batch.push(next);
                }
                Ok(exclusive) => {
                    carried = Some(exclusive);
                    break;
                }
                Err(_) => break,
            }
        }
        let ops = last_write_wins(
            batch
                .iter_mut()
                .flat_map(|r| std::mem::take(&mut r.ops))
                .collect(),
        );
        let started = std::time::Instant::now();
        tracing::trace!(target: "baton::hop", "writer-got");
        let mut waiting = Some(batch);
        engine.apply_announcing(&ops, &mut |result| {
            tracing::trace!(target: "baton::hop", "writer-durable");
            if let Err(e) = result {
                tracing::error!(error = %e, "store batch failed");
            }
            for request in waiting.take().into_iter().flatten() {
                let _ = request.done.send(result.clone());
            }
        });
        tracing::trace!(target: "baton::hop", "writer-applied");
        if let Some(m) = &metrics {
            m.batch_ops.observe(ops.len() as f64);
            m.flush_seconds.observe(started.elapsed().as_secs_f64());
        }
    }
}

/// The ops of one batch with every write but the last to each key left out: a busy
/// pipeline rewrites the same execution record many times in one batch, and applying only
/// the last one gives the same result inside one transaction.
fn last_write_wins(ops: Vec<Op>) -> Vec<Op> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    let mut kept: Vec<Op> = ops
        .into_iter()
        .rev()
        .filter(|op| {
            let (Op::Put(tree, key, _) | Op::Delete(tree, key)) = op;
            seen.insert((*tree, key.clone()))
        })
        .collect();
    kept.reverse();
    kept
}

/// Key `a \0 b`.
pub fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

/// Key `a \0 n(big endian)`, so that numeric order is key order.
pub fn key_num(a: &str, n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 9);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The number at the end of a [`key_num`] key.
pub fn key_num_suffix(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// Prefix `a \0` for scanning everything under `a`.
pub fn prefix(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(store: Store) {
        // Many writers at once: every one is answered, and everything is readable after.
        let writes = (0..50u64).map(|n| {
            let store = store.clone();
            async move {
                store
                    .write(vec![
                        Op::Put(
                            Tree::ExecutionIndex,
                            key_num("web", n),
                            n.to_string().into(),
                        ),
                        Op::Put(Tree::Jobs, format!("job-{n}").into(), b"{}".to_vec()),
                    ])
                    .await
            }
        });
        for result in futures::future::join_all(writes).await {
            assert!(result.is_ok());
        }
        let history = store
            .scan_prefix(Tree::ExecutionIndex, &prefix("web"))
            .expect("scan");
        let numbers: Vec<String> = history
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v).to_string())
            .collect();
        let expected: Vec<String> = (0..50).map(|n: u64| n.to_string()).collect();
        assert_eq!(numbers, expected, "big-endian keys scan in numeric order");
        assert!(
            store
                .scan_prefix(Tree::ExecutionIndex, &prefix("we"))
                .expect("scan")
                .is_empty(),
            "a prefix stops at the separator"
        );
        // Range scans: a page from a start key, and the newest first.
        let page = store
            .scan_from(Tree::ExecutionIndex, &prefix("web"), &key_num("web", 10), 3)
            .expect("scan from");
        let page: Vec<u64> = page.iter().filter_map(|(k, _)| key_num_suffix(k)).collect();
        assert_eq!(page, vec![10, 11, 12]);
        let newest = store
            .scan_last(Tree::ExecutionIndex, &prefix("web"), 2)
            .expect("scan last");
        let newest: Vec<u64> = newest
            .iter()
            .filter_map(|(k, _)| key_num_suffix(k))
            .collect();
        assert_eq!(newest, vec![49, 48]);
        assert!(
            store
                .scan_from(Tree::ExecutionIndex, &prefix("web"), &key_num("web", 50), 3)
                .expect("scan past the end")
                .is_empty()
        );
        store
            .write(vec![Op::Delete(Tree::Jobs, b"job-3".to_vec())])
            .await
            .expect("delete");
        assert_eq!(store.get(Tree::Jobs, b"job-3").expect("get"), None);
    }

    #[tokio::test]
    async fn memory_store_batches_and_scans_in_order() {
        let (store, _writer) = Store::start(Arc::new(MemoryEngine::default())).expect("start");
        exercise(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_answered_as_durable_is_readable_at_once() {
        // sled answers once the commit log has the batch, before the batch is in sled: a
        // reader must still find it right after the answer.
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Arc::new(SledEngine::open(dir.path()).expect("open"));
        let (store, _writer) = Store::start(engine).expect("start");
        for n in 0..300u64 {
            let key = key_num("web", n);
            let ops = (0..8)
                .map(|t| Op::Put(Tree::Jobs, key_num(&format!("job{t}"), n), vec![1; 512]))
                .chain([Op::Put(Tree::ExecutionIndex, key.clone(), b"x".to_vec())])
                .collect();
            store.write(ops).await.expect("write");
            assert!(
                store
                    .get(Tree::ExecutionIndex, &key)
                    .expect("get")
                    .is_some(),
                "write {n} answered but not readable"
            );
        }
    }

    #[tokio::test]
    async fn sled_store_batches_scans_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Arc::new(SledEngine::open(dir.path()).expect("open"));
        let (store, writer) = Store::start(engine).expect("start");
        exercise(store).await;
        writer.closed().await;
        let reopened = SledEngine::open(dir.path()).expect("reopen");
        assert!(reopened.get(Tree::Jobs, b"job-49").expect("get").is_some());
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn only_the_last_write_to_a_key_is_applied_and_order_is_kept() {
        let ops = vec![
            Op::Put(Tree::Executions, b"a".to_vec(), b"1".to_vec()),
            Op::Put(Tree::Jobs, b"a".to_vec(), b"j".to_vec()),
            Op::Put(Tree::Executions, b"b".to_vec(), b"1".to_vec()),
            Op::Put(Tree::Executions, b"a".to_vec(), b"2".to_vec()),
            Op::Delete(Tree::Executions, b"b".to_vec()),
        ];
        let kept: Vec<String> = last_write_wins(ops)
            .iter()
            .map(|op| match op {
                Op::Put(t, k, v) => format!(
                    "put {} {}={}",
                    t.name(),
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                Op::Delete(t, k) => format!("del {} {}", t.name(), String::from_utf8_lossy(k)),
            })
            .collect();
        assert_eq!(
            kept,
            ["put jobs a=j", "put executions a=2", "del executions b"]
        );
    }
}
