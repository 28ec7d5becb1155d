//! Job logs: appended in order, stored in chunks, followed live.
//!
//! Appends are numbered by byte offset and written through the store's writer in order; a
//! follower subscribes before it reads what is stored, so no chunk falls between the two.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::store::{Op, Store, StoreError, Tree, key_num, prefix};

/// One piece of a job's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Byte offset in the job's log.
    pub offset: u64,
    /// 0-based step.
    pub step: u32,
    /// 1 stdout, 2 stderr, 3 system (as `LogStream`).
    pub stream: i32,
    /// The bytes.
    pub data: Vec<u8>,
}

struct JobLog {
    next_offset: u64,
    /// `None` once the job has ended: followers stop at the end of what is stored.
    live: Option<broadcast::Sender<Chunk>>,
}

/// Every job's log.
pub struct LogHub {
    store: Store,
    jobs: Mutex<HashMap<String, JobLog>>,
}

fn encode(c: &Chunk) -> Vec<u8> {
    let mut v = Vec::with_capacity(c.data.len() + 5);
    v.push(c.stream as u8);
    v.extend_from_slice(&c.step.to_be_bytes());
    v.extend_from_slice(&c.data);
    v
}

fn decode(key: &[u8], value: &[u8]) -> Option<Chunk> {
    let offset = u64::from_be_bytes(key.get(key.len().checked_sub(8)?..)?.try_into().ok()?);
    Some(Chunk {
        offset,
        stream: i32::from(*value.first()?),
        step: u32::from_be_bytes(value.get(1..5)?.try_into().ok()?),
        data: value.get(5..)?.to_vec(),
    })
}

impl LogHub {
    /// A hub over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, JobLog>) -> R) -> R {
        f(&mut self.jobs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn entry<'a>(&self, jobs: &'a mut HashMap<String, JobLog>, job_id: &str) -> &'a mut JobLog {
        jobs.entry(job_id.to_string()).or_insert_with(|| {
            // A job seen for the first time since start: continue after what is stored.
            let next_offset = self
                .stored(job_id, 0)
                .ok()
                .and_then(|c| c.last().map(|c| c.offset + c.data.len() as u64))
                .unwrap_or(0);
            JobLog {
                next_offset,
                live: Some(broadcast::channel(1024).0),
            }
        })
    }

    /// Appends `data` to a job's log.
    pub fn append(&self, job_id: &str, step: u32, stream: i32, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let chunk = self.with(|jobs| {
            let log = self.entry(jobs, job_id);
            let chunk = Chunk {
                offset: log.next_offset,
                step,
                stream,
                data,
            };
            log.next_offset += chunk.data.len() as u64;
            self.store.write_detached(vec![Op::Put(
                Tree::Logs,
                key_num(job_id, chunk.offset),
                encode(&chunk),
            )]);
            if let Some(tx) = &log.live {
                let _ = tx.send(chunk.clone());
            }
            chunk
        });
        tracing::trace!(job_id, offset = chunk.offset, "log chunk");
    }

    /// Marks a job's log complete: followers end once they have read it all.
    pub fn finish(&self, job_id: &str) {
        self.with(|jobs| self.entry(jobs, job_id).live = None);
    }

    /// Stored chunks from `offset` on.
    pub fn stored(&self, job_id: &str, offset: u64) -> Result<Vec<Chunk>, StoreError> {
        let mut chunks: Vec<Chunk> = self
            .store
            .scan_prefix(Tree::Logs, &prefix(job_id))?
            .iter()
            .filter_map(|(k, v)| decode(k, v))
            .filter(|c| c.offset + c.data.len() as u64 > offset)
            .collect();
        if let Some(first) = chunks.first_mut()
            && first.offset < offset
        {
            let skip = (offset - first.offset) as usize;
            first.data.drain(..skip.min(first.data.len()));
            first.offset = offset;
        }
        Ok(chunks)
    }

    /// A live receiver for a job that may still write, or `None` if its log is complete.
    /// `job_done` says whether the job record has already ended.
    pub fn subscribe(&self, job_id: &str, job_done: bool) -> Option<broadcast::Receiver<Chunk>> {
        self.with(|jobs| {
            if job_done && !jobs.contains_key(job_id) {
                return None;
            }
            self.entry(jobs, job_id)
                .live
                .as_ref()
                .map(|tx| tx.subscribe())
        })
    }
}
