//! Retention: removes finished executions (with their jobs, logs and events) by age and by
//! count per pipeline, in the background. A pipeline's watch events go with its executions:
//! those older than the oldest execution kept are removed too, except the newest one, which
//! keeps the pipeline's event numbering going across restarts. Client request tokens older
//! than their 24 hours go as well.
//!
//! The sweep reads with range scans and deletes in small batches through the store writer,
//! one awaited batch at a time, so that pipeline changes queued meanwhile are committed
//! between two of its batches instead of waiting for the whole sweep. An execution's logs and
//! jobs go first and its record last, so a sweep cut short by a kill leaves nothing dangling
//! that the next sweep would not find again. Executions that have not ended are never removed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Retention;
use crate::events::Event;
use crate::execution::actor::REQUEST_TOKEN_RETENTION_MS;
use crate::store::records::{ExecutionRecord, PipelineRecord, RequestTokenRecord};
use crate::store::{Op, Store, StoreError, Tree, key_num, prefix};

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Executions removed.
    pub executions: usize,
    /// Jobs removed.
    pub jobs: usize,
    /// Log chunks removed.
    pub log_chunks: usize,
    /// Watch events removed.
    pub events: usize,
    /// Client request tokens past their 24 h removed.
    pub request_tokens: usize,
}

/// Deletes in batches of at most `batch_ops`, each awaited before the next is queued.
struct Deleter<'a> {
    store: &'a Store,
    batch_ops: usize,
    ops: Vec<Op>,
}

impl Deleter<'_> {
    async fn delete(&mut self, tree: Tree, key: Vec<u8>) -> Result<(), StoreError> {
        self.ops.push(Op::Delete(tree, key));
        if self.ops.len() >= self.batch_ops {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        let ops = std::mem::take(&mut self.ops);
        self.store.write(ops).await
    }
}

/// Runs one sweep at `now_ms` over every pipeline.
pub async fn sweep(store: &Store, policy: &Retention, now_ms: i64) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let mut deleter = Deleter {
        store,
        batch_ops: policy.batch_ops.max(1),
        ops: Vec::new(),
    };
    let cutoff = policy
        .max_age
        .map(|age| now_ms.saturating_sub(age.as_millis() as i64));
    for pipeline in store.scan_json::<PipelineRecord>(Tree::Pipelines, b"")? {
        let name = pipeline.name;
        let history = store.scan_prefix(Tree::ExecutionIndex, &prefix(&name))?;
        let total = history.len();
        // The oldest execution kept: events older than it describe removed executions.
        let mut oldest_kept_ms = None;
        for (i, (index_key, id)) in history.iter().enumerate() {
            let over_count = policy
                .keep_per_pipeline
                .is_some_and(|keep| total - i > keep);
            let Some(exec) = store.get_json::<ExecutionRecord>(Tree::Executions, id)? else {
                deleter
                    .delete(Tree::ExecutionIndex, index_key.clone())
                    .await?;
                continue;
            };
            let too_old = cutoff.is_some_and(|c| exec.updated_at_ms < c);
            if !exec.status.is_final() || !(over_count || too_old) {
                oldest_kept_ms.get_or_insert(exec.created_at_ms);
                // Numbers follow start order: past the count limit and younger than the age
                // limit, every later execution is kept too.
                if !over_count && cutoff.is_none_or(|c| exec.created_at_ms >= c) {
                    break;
                }
                continue;
            }
            for job in exec.stages.iter().flat_map(|s| s.jobs.iter()) {
                for (key, _) in store.scan_prefix(Tree::Logs, &prefix(job))? {
                    deleter.delete(Tree::Logs, key).await?;
                    swept.log_chunks += 1;
                }
                deleter.delete(Tree::Jobs, job.as_bytes().to_vec()).await?;
                swept.jobs += 1;
            }
            deleter
                .delete(Tree::Executions, exec.id.as_bytes().to_vec())
                .await?;
            deleter
                .delete(Tree::ExecutionIndex, index_key.clone())
                .await?;
            swept.executions += 1;
        }
        // A pipeline's events go with its executions: those from before the oldest one kept
        // (all of them when none is kept) describe executions that are gone.
        if total > 0 {
            let before_ms = oldest_kept_ms.unwrap_or(i64::MAX);
            swept.events += sweep_events(store, &mut deleter, &name, before_ms).await?;
        }
    }
    swept.request_tokens = sweep_request_tokens(store, &mut deleter, now_ms).await?;
    deleter.flush().await?;
    Ok(swept)
}

/// Removes client request tokens older than their retention (they no longer answer anyway).
async fn sweep_request_tokens(
    store: &Store,
    deleter: &mut Deleter<'_>,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut from = Vec::new();
    loop {
        let page = store.scan_from(Tree::RequestTokens, b"", &from, 512)?;
        let Some((last_key, _)) = page.last() else {
            return Ok(removed);
        };
        from = last_key.clone();
        from.push(0);
        for (key, value) in page {
            let expired = serde_json::from_slice::<RequestTokenRecord>(&value)
                .is_ok_and(|r| now_ms - r.at_ms >= REQUEST_TOKEN_RETENTION_MS);
            if expired {
                deleter.delete(Tree::RequestTokens, key).await?;
                removed += 1;
            }
        }
    }
}

/// Removes `pipeline`'s events stamped before `before_ms`, oldest first.
async fn sweep_events(
    store: &Store,
    deleter: &mut Deleter<'_>,
    pipeline: &str,
    before_ms: i64,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    // The newest event always stays: it carries the pipeline's event counter across restarts.
    let newest = store
        .scan_last(Tree::Events, &prefix(pipeline), 1)?
        .into_iter()
        .next()
        .map(|(k, _)| k);
    let mut from = key_num(pipeline, 0);
    loop {
        let page = store.scan_from(Tree::Events, &prefix(pipeline), &from, 512)?;
        let Some((last_key, _)) = page.last() else {
            return Ok(removed);
        };
        let mut next = last_key.clone();
        next.push(0);
        for (key, value) in page {
            let at_ms = serde_json::from_slice::<Event>(&value)
                .map(|e| e.at_ms)
                .unwrap_or(i64::MIN);
            if at_ms >= before_ms || Some(&key) == newest.as_ref() {
                return Ok(removed);
            }
            deleter.delete(Tree::Events, key).await?;
            removed += 1;
        }
        from = next;
    }
}

/// Sweeps at start and then every `policy.interval` until `shutdown`.
pub async fn run(store: Store, policy: Retention, clock: SharedClock, shutdown: CancellationToken) {
    if policy.max_age.is_none() && policy.keep_per_pipeline.is_none() {
        return;
    }
    loop {
        let sweeping = sweep(&store, &policy, clock.now_ms());
        let result = tokio::select! {
            result = sweeping => result,
            _ = shutdown.cancelled() => return,
        };
        match result {
            Ok(swept) if swept != Swept::default() => {
                tracing::info!(?swept, "retention removed finished executions")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(policy.interval.max(Duration::from_millis(10))) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
