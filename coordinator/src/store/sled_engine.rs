//! The sled engine: a batch becomes durable as one synced record in the
//! [commit log](super::commit_log) and is then written to sled, which flushes in its own time.
//!
//! sled's multi-tree transactions and its flush are not used on that path: the log already
//! makes a batch all-or-nothing across a crash (a batch is written to sled only once its
//! record is synced, and opening applies every record again), and a lock of our own keeps
//! readers from seeing half a batch. The writer answers as soon as the record is synced, with
//! that lock already taken, so an answered caller that reads waits for its batch to be in
//! sled rather than every caller waiting for it (0.04-0.07 ms a batch, `baton::hop`
//! writer-durable → writer-applied). Measured on the 2-core VM (`baton::hop` events,
//! `baton-bench cancel-latency`): a 12-tree transaction 0.10-0.13 ms and sled's flush
//! 0.21 ms per batch, against 0.11 ms for the log's write and sync.

use std::path::Path;
use std::sync::{Mutex, RwLock};

use sled::Transactional;

use super::commit_log::{Appended, CommitLog};
use super::{Engine, KeyValues, Op, StoreError, Tree};

/// sled 0.34 with one sled tree per [`Tree`], and Baton's commit log beside it.
pub struct SledEngine {
    db: sled::Db,
    trees: Vec<(Tree, sled::Tree)>,
    /// Only the store writer appends; the lock is never contended.
    log: Mutex<CommitLog>,
    /// Held for writing while a batch goes into sled and for reading around every read of
    /// one key or one scanned entry (as sled does for its transactions), so that a reader
    /// that sees one write of a batch sees all of it.
    batch_gate: RwLock<()>,
    /// How many batches `open` applied again from the commit log.
    replayed: usize,
    /// Set when a batch already announced durable could not be written to sled: from then on
    /// sled lacks an acknowledged batch, so every read and write is refused with this.
    failed: std::sync::OnceLock<String>,
}

fn engine_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Engine("a store lock is poisoned (a store thread panicked)".into())
}

/// Says what is wrong with a store that will not open, which file, and what to do.
fn open_err(dir: &Path, e: sled::Error) -> StoreError {
    let dir = dir.display();
    let damaged = |what: String| {
        format!(
            "{what}; its data is in {dir}/db, {dir}/snap.* and {dir}/commit.log (settings in {dir}/conf). Baton changed and deleted nothing. Keep this directory as it is for investigation, restore your latest backup into a new directory (baton-coordinator restore --in BACKUP --data-dir NEW_DIR) and start with --data-dir NEW_DIR"
        )
    };
    StoreError::Open(match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => format!(
            "another process holds the lock on {dir}/db: a baton-coordinator (or a backup or restore) is using this directory. Stop it, or use another --data-dir; to back up a running coordinator use `baton-coordinator backup --addr`. Nothing was changed"
        ),
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => format!(
            "permission denied ({io}) on {dir} or its files conf, db, snap.*: make them readable and writable by the user that runs baton-coordinator. Nothing was changed"
        ),
        sled::Error::Io(io) => format!(
            "{io} while opening {dir} (files conf, db, snap.*, commit.log): check the disk and the directory. Nothing was changed"
        ),
        sled::Error::Corruption { at, .. } => damaged(format!(
            "the store is damaged (corruption at {})",
            at.map_or("an unknown place".to_string(), |p| format!("{p:?}"))
        )),
        sled::Error::Unsupported(what) => damaged(format!(
            "the store cannot be opened by this version of its engine: {what}"
        )),
        other => damaged(format!("the store engine failed: {other}")),
    })
}

impl SledEngine {
    /// Opens (or creates) the store in `dir` and applies again the batches its commit log
    /// holds that sled may not have flushed. Never deletes anything to recover; a store that
    /// will not open gets an error that names the file and says what to do.
    pub fn open(dir: &Path) -> Result<SledEngine, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024);
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled lets go of its file lock from a background thread after the last
                // handle is dropped, so a reopen right after a close can race it: ask again
                // for up to a second before saying someone else holds the directory.
                Err(e) if attempts < 50 && e.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(open_err(dir, e)),
            }
        };
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map(|tree| (*t, tree)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| open_err(dir, e))?;
        let (log, replay) = CommitLog::open(dir)?;
        let engine = SledEngine {
            db,
            trees,
            log: Mutex::new(log),
            batch_gate: RwLock::new(()),
            replayed: replay.len(),
            failed: std::sync::OnceLock::new(),
        };
        if !replay.is_empty() {
            for ops in &replay {
                engine.write_ops(ops)?;
            }
            engine.flush()?;
            tracing::info!(
                batches = replay.len(),
                "applied the commit log's last batches again"
            );
        }
        Ok(engine)
    }

    /// How many batches opening applied again from the commit log: those acknowledged
    /// before the last stop that sled had not flushed (0 after a clean stop).
    pub fn replayed(&self) -> usize {
        self.replayed
    }

    /// Writes every dirty page to disk; the commit log then starts afresh.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(engine_err)?;
        self.log.lock().map_err(poisoned)?.restart()
    }

    /// Writes `ops` to sled one by one, behind the batch gate.
    fn write_ops(&self, ops: &[Op]) -> Result<(), StoreError> {
        let _gate = self.batch_gate.write().map_err(poisoned)?;
        self.insert_ops(ops)
    }

    /// Writes `ops` to sled one by one; the caller holds the batch gate.
    fn insert_ops(&self, ops: &[Op]) -> Result<(), StoreError> {
        for op in ops {
            match op {
                Op::Put(t, k, v) => self.tree(*t).insert(k.as_slice(), v.as_slice()),
                Op::Delete(t, k) => self.tree(*t).remove(k.as_slice()),
            }
            .map_err(engine_err)?;
        }
        Ok(())
    }

    /// Writes `ops` as one sled transaction (for a batch too large for the commit log).
    fn transaction(&self, ops: &[Op]) -> Result<(), StoreError> {
        let trees: Vec<sled::Tree> = self.trees.iter().map(|(_, t)| t.clone()).collect();
        trees
            .as_slice()
            .transaction(|tx| {
                for op in ops {
                    match op {
                        Op::Put(t, k, v) => {
                            tx[tree_index(*t)].insert(k.as_slice(), v.as_slice())?;
                        }
                        Op::Delete(t, k) => {
                            tx[tree_index(*t)].remove(k.as_slice())?;
                        }
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| engine_err(format!("{e:?}")))
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree_index(tree)].1
    }
}

/// Where `tree` is in `SledEngine::trees`: every Tree variant is opened in `open`, in ALL order.
fn tree_index(tree: Tree) -> usize {
    Tree::ALL.iter().position(|t| *t == tree).unwrap_or(0)
}

impl Drop for SledEngine {
    /// A clean close flushes sled, so that the next open has no batch to apply again.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "the store's last flush failed; the next start applies the commit log again");
        }
    }
}

impl Engine for SledEngine {
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut outcome = Ok(());
        self.apply_announcing(ops, &mut |result| outcome = result.clone());
        outcome
    }

    /// Durable once the batch's record is synced in the commit log: the gate is taken for
    /// writing, `durable` is called, and the batch goes into sled before the gate opens, so
    /// that a caller answered reads its own write (the answer does not wait for sled's 0.04 ms).
    fn apply_announcing(&self, ops: &[Op], durable: &mut dyn FnMut(&Result<(), StoreError>)) {
        // Held until the batch is in sled, so that a `flush` (which starts the log afresh)
        // never comes between the record and its writes.
        let mut log = match self.log.lock() {
            Ok(log) => log,
            Err(e) => return durable(&Err(poisoned(e))),
        };
        let logged = self.log_batch(&mut log, ops);
        let Ok(Logged::InLog) = logged else {
            return durable(&logged.map(|_| ()));
        };
        let gate = match self.batch_gate.write() {
            Ok(gate) => gate,
            Err(e) => return durable(&Err(poisoned(e))),
        };
        durable(&Ok(()));
        // Those just answered are woken on this CPU when they can be, and would wait there for
        // the sled writes: let them go first (readers wait at the gate either way).
        std::thread::yield_now();
        if let Err(e) = self.insert_ops(ops) {
            let why = format!(
                "a batch acknowledged as durable could not be written to sled ({e}); it is in the commit log, which a restart of the coordinator applies again. Until then the store refuses reads and writes"
            );
            tracing::error!("{why}");
            let _ = self.failed.set(why);
        }
        drop(gate);
        drop(log);
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _gate = self.batch_gate.read().map_err(poisoned)?;
        self.check()?;
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(engine_err)?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<KeyValues, StoreError> {
        self.collect(self.tree(tree).scan_prefix(prefix), prefix, usize::MAX)
    }

    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.collect(self.tree(tree).range(start.max(prefix)..), prefix, limit)
    }

    fn scan_last(&self, tree: Tree, prefix: &[u8], limit: usize) -> Result<KeyValues, StoreError> {
        self.collect(self.tree(tree).scan_prefix(prefix).rev(), prefix, limit)
    }
}

/// Where [`SledEngine::log_batch`] left a batch.
enum Logged {
    /// Synced in the commit log; not written to sled yet.
    InLog,
    /// Too large for the log: written to sled as one transaction and flushed.
    InSled,
}

impl SledEngine {
    /// Makes `ops` durable: one synced record in the commit log, or, for a batch larger
    /// than the whole log, a sled transaction and flush.
    fn log_batch(&self, log: &mut CommitLog, ops: &[Op]) -> Result<Logged, StoreError> {
        self.check()?;
        if log.append(ops)? == Appended::Full {
            // Every logged batch is in sled already: once sled has flushed them the log
            // can start afresh.
            self.db.flush().map_err(engine_err)?;
            log.restart()?;
            if log.append(ops)? == Appended::Full {
                // Larger than the whole log: sled's own transaction and flush make it
                // atomic and durable (the new epoch holds nothing to apply over it).
                self.transaction(ops)?;
                self.db.flush().map_err(engine_err)?;
                return Ok(Logged::InSled);
            }
        }
        tracing::trace!(target: "baton::hop", "log-synced");
        Ok(Logged::InLog)
    }

    /// The error of an earlier failure that left sled without an acknowledged batch.
    fn check(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            Some(why) => Err(StoreError::Engine(why.clone())),
            None => Ok(()),
        }
    }

    /// Up to `limit` entries of `entries` while their keys start with `prefix`, each read
    /// behind the batch gate (a long scan does not hold up the writer, as with sled's own
    /// transactions).
    fn collect(
        &self,
        mut entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        let mut out = Vec::new();
        while out.len() < limit {
            let next = {
                let _gate = self.batch_gate.read().map_err(poisoned)?;
                self.check()?;
                entries.next()
            };
            match next {
                Some(Ok((k, v))) if k.starts_with(prefix) => out.push((k.to_vec(), v.to_vec())),
                Some(Ok(_)) | None => break,
                Some(Err(e)) => return Err(engine_err(e)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    const CHILD_DIR: &str = "BATON_TEST_SLED_CHILD_DIR";
    const BATCHES: usize = 200;

    /// Run as a child process by the test below: writes `BATCHES` batches, says so, and waits
    /// to be killed. Does nothing when run as an ordinary test.
    #[test]
    fn child_writes_batches_and_waits_to_be_killed() {
        let Some(dir) = std::env::var_os(CHILD_DIR) else {
            return;
        };
        let engine = SledEngine::open(Path::new(&dir)).expect("open");
        for i in 0..BATCHES {
            let key = format!("job-{i:04}").into_bytes();
            engine
                .apply(&[
                    Op::Put(Tree::Jobs, key.clone(), b"done".to_vec()),
                    Op::Put(Tree::Executions, key, vec![b'x'; 300]),
                ])
                .expect("apply");
        }
        engine
            .apply(&[Op::Delete(Tree::Jobs, b"job-0007".to_vec())])
            .expect("apply");
        println!("acknowledged");
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn batches_acknowledged_before_a_kill_9_are_there_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "store::sled_engine::tests::child_writes_batches_and_waits_to_be_killed",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let acknowledged = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "acknowledged");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(acknowledged, "the child never acknowledged its writes");

        let engine = SledEngine::open(dir.path()).expect("reopen");
        assert_eq!(
            engine.replayed(),
            BATCHES + 1,
            "the log starts afresh only on a clean close or when full, so it holds every batch"
        );
        for i in (0..BATCHES).filter(|i| *i != 7) {
            let key = format!("job-{i:04}").into_bytes();
            assert_eq!(
                engine.get(Tree::Jobs, &key).expect("get"),
                Some(b"done".to_vec())
            );
        }
        assert_eq!(engine.get(Tree::Jobs, b"job-0007").expect("get"), None);
        drop(engine);
        let engine = SledEngine::open(dir.path()).expect("reopen after a clean close");
        assert_eq!(
            engine.replayed(),
            0,
            "a clean close leaves nothing to apply again"
        );
        assert!(engine.get(Tree::Jobs, b"job-0199").expect("get").is_some());
    }
}
