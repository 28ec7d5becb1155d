//! Job logs: appended in order, stored in chunks, capped per job, followed live.
//!
//! Appends are numbered by byte offset and written through the store's writer in order; a
//! follower subscribes before it reads what is stored, so no chunk falls between the two.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::store::{Op, Store, StoreError, Tree, key_num, key_num_suffix, prefix};

/// The stream number of lines Baton writes itself (`LogStream::System`).
pub const LOG_STREAM_SYSTEM: i32 = 3;

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
    /// Followers of a job that may still write.
    live: Option<broadcast::Sender<Chunk>>,
}

/// How many ended jobs the hub remembers, so that a follower arriving after the end is not
/// left waiting for a job that will never write again.
const ENDED_REMEMBERED: usize = 10_000;

/// Every job's log.
///
/// Only jobs that may still write are kept in memory; [`LogHub::finish`] drops a job's entry.
pub struct LogHub {
    store: Store,
    cap: u64,
    jobs: Mutex<Jobs>,
}

#[derive(Default)]
struct Jobs {
    live: HashMap<String, JobLog>,
    /// Ended jobs and where a late chunk of theirs would go.
    ended: HashMap<String, u64>,
    ended_order: VecDeque<String>,
}

fn encode(c: &Chunk) -> Vec<u8> {
    let mut v = Vec::with_capacity(c.data.len() + 5);
    v.push(c.stream as u8);
    v.extend_from_slice(&c.step.to_be_bytes());
    v.extend_from_slice(&c.data);
    v
}

fn decode(key: &[u8], value: &[u8]) -> Option<Chunk> {
    Some(Chunk {
        offset: key_num_suffix(key)?,
        stream: i32::from(*value.first()?),
        step: u32::from_be_bytes(value.get(1..5)?.try_into().ok()?),
        data: value.get(5..)?.to_vec(),
    })
}

/// `67108864` -> `64 MiB`; other sizes in bytes.
fn size_words(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

impl LogHub {
    /// A hub over `store` that keeps at most `cap` bytes of each job's log (see
    /// [`crate::CoordinatorConfig::log_cap_bytes`]).
    pub fn new(store: Store, cap: u64) -> Self {
        Self {
            store,
            cap,
            jobs: Mutex::new(Jobs::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Jobs) -> R) -> R {
        f(&mut self.jobs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A job seen for the first time since start continues after what is stored.
    fn load(&self, job_id: &str) -> JobLog {
        let next_offset = self
            .store
            .scan_last(Tree::Logs, &prefix(job_id), 1)
            .ok()
            .and_then(|last| last.first().and_then(|(k, v)| decode(k, v)))
            .map(|c| c.offset + c.data.len() as u64)
            .unwrap_or(0);
        JobLog {
            next_offset,
            live: None,
        }
    }

    fn entry<'a>(&self, jobs: &'a mut Jobs, job_id: &str) -> &'a mut JobLog {
        jobs.live.entry(job_id.to_string()).or_insert_with(|| {
            let mut log = self.load(job_id);
            log.live = Some(broadcast::channel(1024).0);
            log
        })
    }

    /// Number of jobs whose log is held in memory (jobs that may still write).
    pub fn jobs_in_memory(&self) -> usize {
        self.with(|jobs| jobs.live.len())
    }

    /// Appends `data` to a job's log. Beyond the cap, the rest is dropped: the log ends with
    /// one system line saying so.
    pub fn append(&self, job_id: &str, step: u32, stream: i32, data: Vec<u8>) {
        self.append_at(job_id, None, step, stream, data);
    }

    /// [`Self::append`] for output whose place in the log the worker names (`offset`): the
    /// bytes before what is stored already are dropped, so a worker that sends its log again
    /// after a restart adds no duplicate. A chunk beyond the end (bytes never received) is
    /// appended at the end, with a warning.
    pub fn append_at(
        &self,
        job_id: &str,
        offset: Option<u64>,
        step: u32,
        stream: i32,
        mut data: Vec<u8>,
    ) {
        if data.is_empty() {
            return;
        }
        self.with(|jobs| {
            // A late chunk of an ended job is still stored, without keeping the job in memory.
            let mut late = None;
            let log = match jobs.ended.get(job_id) {
                Some(&next_offset) => late.insert(JobLog {
                    next_offset,
                    live: None,
                }),
                None => self.entry(jobs, job_id),
            };
            if let Some(offset) = offset {
                if offset < log.next_offset {
                    let have = usize::try_from(log.next_offset - offset).unwrap_or(usize::MAX);
                    if have >= data.len() {
                        tracing::debug!(job_id, offset, "log chunk stored already; dropped");
                        return;
                    }
                    data.drain(..have);
                } else if offset > log.next_offset {
                    tracing::warn!(
                        job_id,
                        offset,
                        stored = log.next_offset,
                        "log chunk beyond the end of the stored log: bytes are missing"
                    );
                }
            }
            if log.next_offset > self.cap {
                return;
            }
            let room = (self.cap - log.next_offset) as usize;
            let over = data.len() > room || room == 0;
            data.truncate(room);
            let mut chunks = vec![(stream, data)];
            if over {
                let marker = format!(
                    "\n[baton] this job's log reached its cap of {}; the rest of it was dropped\n",
                    size_words(self.cap)
                );
                chunks.push((LOG_STREAM_SYSTEM, marker.into_bytes()));
            }
            for (stream, data) in chunks.into_iter().filter(|(_, d)| !d.is_empty()) {
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
                tracing::trace!(job_id, offset = chunk.offset, "log chunk");
                if let Some(tx) = &log.live {
                    let _ = tx.send(chunk);
                }
            }
            if let Some(log) = late {
                jobs.ended.insert(job_id.to_string(), log.next_offset);
            }
        });
    }

    /// Marks a job's log complete: followers end once they have read it all, and the job
    /// leaves memory.
    pub fn finish(&self, job_id: &str) {
        self.with(|jobs| {
            if jobs.ended.contains_key(job_id) {
                return;
            }
            let next_offset = match jobs.live.remove(job_id) {
                Some(log) => log.next_offset,
                None => self.load(job_id).next_offset,
            };
            jobs.ended.insert(job_id.to_string(), next_offset);
            jobs.ended_order.push_back(job_id.to_string());
            while jobs.ended_order.len() > ENDED_REMEMBERED {
                if let Some(old) = jobs.ended_order.pop_front() {
                    jobs.ended.remove(&old);
                }
            }
        });
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
            if jobs.ended.contains_key(job_id) || job_done && !jobs.live.contains_key(job_id) {
                return None;
            }
            self.entry(jobs, job_id)
                .live
                .as_ref()
                .map(|tx| tx.subscribe())
        })
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
