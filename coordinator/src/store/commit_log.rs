//! The commit log: where a batch becomes durable without waiting for sled's flush.
//!
//! sled's flush hands the write to one of its I/O threads and waits for it (0.21-0.38 ms
//! measured on the 2-core VM); this log is written and synced on the store writer's own
//! thread with the same system calls sled uses (`pwrite` + `sync_file_range` on Linux), and
//! sled flushes in its own time. A batch is durable once its record is synced here.
//!
//! File `commit.log` in the data directory:
//!
//! - bytes 0..20: the header, `BATONCL1`, the epoch (u64 LE), a CRC-32 of those 16 bytes;
//! - from [`RECORDS_START`] on: records, each `length u32 | epoch u64 | crc u32 | ops`, the CRC
//!   over length, epoch and ops. Ops are `1 | tree name | key | value` (a put) or
//!   `2 | tree name | key` (a delete), each name, key and value prefixed by its length.
//!
//! Opening reads the records of the header's epoch up to the first that is cut, damaged or
//! from an older epoch; the engine applies them again, flushes, and starts a new epoch (one
//! header write), so older records are never read again. The same happens when the log is
//! full. Records hold whole values (puts and deletes, never increments), so applying a
//! record twice gives the same state as once.
//!
//! The file grows in [`GROW_BY`] steps of zeros, each synced with `fdatasync`, so the
//! records' `sync_file_range` only ever overwrites blocks that exist.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Op, StoreError, Tree};

/// The log's file name inside the data directory.
pub const FILE_NAME: &str = "commit.log";
/// Where the first record starts (the header keeps a block of its own).
pub const RECORDS_START: u64 = 4096;
/// The log's largest size; a batch that does not fit starts a new epoch after a sled flush.
pub const CAPACITY: u64 = 32 * 1024 * 1024;
/// How much the file grows at a time.
pub const GROW_BY: u64 = 1024 * 1024;

const MAGIC: &[u8; 8] = b"BATONCL1";
const HEADER_LEN: usize = 20;
const RECORD_HEAD: usize = 16;
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// What [`CommitLog::append`] did with a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// The record is in the log and synced: the batch is durable.
    Durable,
    /// The log has no room for it; nothing was written. The caller flushes the engine and
    /// calls [`CommitLog::restart`].
    Full,
}

/// The open commit log (used by the store writer thread only).
pub struct CommitLog {
    file: File,
    path: PathBuf,
    epoch: u64,
    /// Where the next record goes.
    end: u64,
    /// How long the file is.
    len: u64,
    /// Scratch buffer for encoding, kept between appends.
    buf: Vec<u8>,
}

/// The error for a failed `what` on the log at `path`; formatted only when there is one
/// (appends are on the writer's path for every batch).
fn io_err<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::Engine(format!("{what} {}: {e}", path.display()))
}

impl CommitLog {
    /// Opens (or creates) the log in `dir` and returns it with the batches of its current
    /// epoch, oldest first, for the engine to apply again. The log keeps that epoch until
    /// [`CommitLog::restart`]: call it once those batches are flushed in the engine.
    pub fn open(dir: &Path) -> Result<(CommitLog, Vec<Vec<Op>>), StoreError> {
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path, "cannot open the commit log"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_err(&path, "cannot read the commit log"))?;
        let len = bytes.len() as u64;
        let header = bytes.get(..HEADER_LEN);
        let epoch = match header.map(parse_header) {
            Some(Some(epoch)) => epoch,
            // A new file, or one whose creation was cut before its header was synced (then
            // nothing was ever acknowledged from it): start it afresh.
            _ if bytes.iter().all(|b| *b == 0) => 0,
            _ => {
                return Err(StoreError::Open(format!(
                    "the commit log {} has a damaged header, so the last acknowledged writes cannot be recovered from it. Baton changed and deleted nothing. Keep the data directory as it is for investigation, restore your latest backup into a new directory (baton-coordinator restore --in BACKUP --data-dir NEW_DIR) and start with --data-dir NEW_DIR",
                    path.display()
                )));
            }
        };
        let mut batches = Vec::new();
        let mut at = RECORDS_START as usize;
        if epoch > 0 {
            while let Some((ops, next)) = read_record(&bytes, at, epoch) {
                batches.push(ops);
                at = next;
            }
        }
        let mut log = CommitLog {
            file,
            path,
            epoch,
            end: at as u64,
            len,
            buf: Vec::new(),
        };
        if epoch == 0 {
            log.restart()?;
            // The directory entry of a new file must be durable too.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok((log, batches))
    }

    /// Writes `ops` as one record and syncs it, unless the log is full.
    pub fn append(&mut self, ops: &[Op]) -> Result<Appended, StoreError> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; RECORD_HEAD]);
        for op in ops {
            encode_op(&mut self.buf, op);
        }
        let payload_len = self.buf.len() - RECORD_HEAD;
        let Ok(payload_len32) = u32::try_from(payload_len) else {
            return Ok(Appended::Full);
        };
        let total = self.buf.len() as u64;
        if self.end + total > CAPACITY {
            return Ok(Appended::Full);
        }
        self.buf[0..4].copy_from_slice(&payload_len32.to_le_bytes());
        self.buf[4..12].copy_from_slice(&self.epoch.to_le_bytes());
        let crc = record_crc(&self.buf[0..12], &self.buf[RECORD_HEAD..]);
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
        if self.end + total > self.len {
            self.grow(self.end + total)?;
        }
        self.file
            .write_all_at(&self.buf, self.end)
            .map_err(io_err(&self.path, "cannot write the commit log"))?;
        sync_range(&self.file, self.end, total)
            .map_err(io_err(&self.path, "cannot sync the commit log"))?;
        self.end += total;
        Ok(Appended::Durable)
    }

    /// Starts a new epoch: every record written so far will not be read again. Call only
    /// once the engine has durably flushed everything those records hold.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.epoch += 1;
        let mut header = [0u8; HEADER_LEN];
        header[0..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        let crc = crc32fast::hash(&header[0..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        if self.len < RECORDS_START {
            self.grow(RECORDS_START)?;
        }
        self.file
            .write_all_at(&header, 0)
            .map_err(io_err(&self.path, "cannot write the commit log header"))?;
        self.file
            .sync_data()
            .map_err(io_err(&self.path, "cannot sync the commit log header"))?;
        self.end = RECORDS_START;
        Ok(())
    }

    /// Extends the file with zeros to at least `to` (in [`GROW_BY`] steps) and syncs its
    /// data and size, so that later records overwrite blocks that exist.
    fn grow(&mut self, to: u64) -> Result<(), StoreError> {
        let new_len = to.div_ceil(GROW_BY) * GROW_BY;
        self.file
            .seek(SeekFrom::Start(self.len))
            .map_err(io_err(&self.path, "cannot extend the commit log"))?;
        let zeros = vec![0u8; (new_len - self.len) as usize];
        self.file
            .write_all(&zeros)
            .map_err(io_err(&self.path, "cannot extend the commit log"))?;
        self.file
            .sync_data()
            .map_err(io_err(&self.path, "cannot sync the commit log"))?;
        self.len = new_len;
        Ok(())
    }
}

fn parse_header(header: &[u8]) -> Option<u64> {
    let magic_ok = header.get(0..8)? == MAGIC;
    let epoch = u64::from_le_bytes(header.get(8..16)?.try_into().ok()?);
    let crc = u32::from_le_bytes(header.get(16..20)?.try_into().ok()?);
    (magic_ok && crc == crc32fast::hash(header.get(0..16)?) && epoch > 0).then_some(epoch)
}

fn record_crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(head);
    hasher.update(payload);
    hasher.finalize()
}

/// The record at `at` if it is whole, undamaged and of `epoch`, with where the next starts.
fn read_record(bytes: &[u8], at: usize, epoch: u64) -> Option<(Vec<Op>, usize)> {
    let head = bytes.get(at..at.checked_add(RECORD_HEAD)?)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let record_epoch = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let crc = u32::from_le_bytes(head[12..16].try_into().ok()?);
    if record_epoch != epoch {
        return None;
    }
    let start = at + RECORD_HEAD;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if record_crc(&head[0..12], payload) != crc {
        return None;
    }
    Some((decode_ops(payload)?, start + len))
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn encode_op(buf: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Put(tree, key, value) => {
            buf.push(PUT);
            put_bytes(buf, tree.name().as_bytes());
            put_bytes(buf, key);
            put_bytes(buf, value);
        }
        Op::Delete(tree, key) => {
            buf.push(DELETE);
            put_bytes(buf, tree.name().as_bytes());
            put_bytes(buf, key);
        }
    }
}

/// Reads length-prefixed pieces from a record's ops.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn piece(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.bytes.get(0..4)?.try_into().ok()?) as usize;
        let piece = self.bytes.get(4..4usize.checked_add(len)?)?;
        self.bytes = &self.bytes[4 + len..];
        Some(piece)
    }

    fn tree(&mut self) -> Option<Tree> {
        Tree::from_name(std::str::from_utf8(self.piece()?).ok()?)
    }
}

/// The ops of one record; `None` if they do not parse (the CRC matched, so only a record
/// written by a Baton that knows trees this one does not).
fn decode_ops(payload: &[u8]) -> Option<Vec<Op>> {
    let mut reader = Reader { bytes: payload };
    let mut ops = Vec::new();
    while !reader.bytes.is_empty() {
        let op = match reader.byte()? {
            PUT => Op::Put(
                reader.tree()?,
                reader.piece()?.to_vec(),
                reader.piece()?.to_vec(),
            ),
            DELETE => Op::Delete(reader.tree()?, reader.piece()?.to_vec()),
            _ => return None,
        };
        ops.push(op);
    }
    Some(ops)
}

/// Makes `len` bytes at `offset` durable: `sync_file_range` as sled does on Linux (the
/// blocks exist already, see [`CommitLog::grow`]), `fdatasync` elsewhere.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn sync_range(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return file.sync_data();
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and
    // sync_file_range reads no memory of ours.
    let rc = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOSYS) {
        file.sync_data()
    } else {
        Err(err)
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_range(file: &File, _offset: u64, _len: u64) -> std::io::Result<()> {
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put(
            Tree::Jobs,
            key.as_bytes().to_vec(),
            value.as_bytes().to_vec(),
        )
    }

    fn keys(batches: &[Vec<Op>]) -> Vec<String> {
        batches
            .iter()
            .flatten()
            .map(|op| match op {
                Op::Put(_, k, v) => format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                Op::Delete(_, k) => format!("-{}", String::from_utf8_lossy(k)),
            })
            .collect()
    }

    #[test]
    fn appended_batches_come_back_in_order_until_the_log_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, replay) = CommitLog::open(dir.path()).expect("open");
            assert!(replay.is_empty());
            assert_eq!(
                log.append(&[put("a", "1")]).expect("append"),
                Appended::Durable
            );
            let batch = [put("b", "2"), Op::Delete(Tree::Stages, b"s".to_vec())];
            assert_eq!(log.append(&batch).expect("append"), Appended::Durable);
        }
        let (mut log, replay) = CommitLog::open(dir.path()).expect("reopen");
        assert_eq!(replay.len(), 2, "one entry per batch");
        assert_eq!(keys(&replay), ["a=1", "b=2", "-s"]);
        log.restart().expect("restart");
        log.append(&[put("c", "3")]).expect("append");
        drop(log);
        let (_, replay) = CommitLog::open(dir.path()).expect("reopen");
        assert_eq!(
            keys(&replay),
            ["c=3"],
            "records of the old epoch are not read again"
        );
    }

    #[test]
    fn a_cut_or_damaged_last_record_ends_the_replay_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = CommitLog::open(dir.path()).expect("open");
        log.append(&[put("kept", "1")]).expect("append");
        let second_at = log.end;
        log.append(&[put("cut", "2")]).expect("append");
        let end = log.end;
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let bytes = std::fs::read(&path).expect("read");

        // Cut in the middle of the second record's payload (a write that a crash tore).
        let mut torn = bytes.clone();
        for b in &mut torn[(end as usize - 3)..end as usize] {
            *b = 0;
        }
        std::fs::write(&path, &torn).expect("write");
        let (_, replay) = CommitLog::open(dir.path()).expect("reopen");
        assert_eq!(keys(&replay), ["kept=1"]);

        // A flipped bit in the second record's head.
        let mut flipped = bytes;
        flipped[second_at as usize + 1] ^= 0x40;
        std::fs::write(&path, &flipped).expect("write");
        let (_, replay) = CommitLog::open(dir.path()).expect("reopen");
        assert_eq!(keys(&replay), ["kept=1"]);
    }

    #[test]
    fn a_batch_that_does_not_fit_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = CommitLog::open(dir.path()).expect("open");
        log.append(&[put("small", "1")]).expect("append");
        let huge = "x".repeat(CAPACITY as usize);
        assert_eq!(
            log.append(&[put("huge", &huge)]).expect("append"),
            Appended::Full
        );
        drop(log);
        let (_, replay) = CommitLog::open(dir.path()).expect("reopen");
        assert_eq!(keys(&replay), ["small=1"]);
    }

    #[test]
    fn a_damaged_header_refuses_to_open_and_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(CommitLog::open(dir.path()).expect("open"));
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[9] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let Err(StoreError::Open(message)) = CommitLog::open(dir.path()) else {
            panic!("a damaged header must not open");
        };
        assert!(message.contains("commit.log"), "{message}");
        assert!(message.contains("restore"), "{message}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "nothing changed"
        );
    }
}
