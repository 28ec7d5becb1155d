//! Backups: every entry of every tree in one engine-neutral file, and back into a new store.
//!
//! A backup of a store nobody uses reads it directly. A running coordinator holds the store's
//! lock, so its backup is written by the coordinator itself, on the store's writer thread
//! between two batches ([`crate::store::Store::exclusive`]): no write lands while the file is
//! written, so the copy is one consistent moment of every tree (writes wait meanwhile).
//!
//! The file: `BATONBK1`, then one record per entry (`1`, tree name length (u8), tree name,
//! key length (u32 BE), key, value length (u32 BE), value), then `0` and the entry count (u64
//! BE). A file cut short has no end record and is refused. It is written under
//! `FILE.partial` and renamed once complete, so `FILE` is never a half-written backup.
//! Nothing here ever deletes a store.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::store::{Engine, KeyValues, Op, SledEngine, StoreError, Tree, schema};

/// The first bytes of a backup file.
pub const MAGIC: &[u8; 8] = b"BATONBK1";

/// Entries read per range scan while writing a backup.
const PAGE: usize = 1024;

/// Entries applied per batch while restoring.
const RESTORE_BATCH: usize = 1000;

/// What a backup or restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Entries copied.
    pub entries: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
    /// The store's schema version, if it has one.
    pub schema_version: Option<u32>,
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The backup file is not one, or is cut short.
    #[error("{path} is not a complete Baton backup: {why}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// Writes every entry of `engine` to the file `out` (through `out.partial`, then renamed).
pub fn write_file(engine: &dyn Engine, out: &Path) -> Result<Summary, BackupError> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = File::create(&partial).map_err(io("cannot create", &partial))?;
    let mut w = BufWriter::new(file);
    let mut summary = Summary {
        entries: 0,
        bytes: 0,
        schema_version: schema::stored_version(engine).ok().flatten(),
    };
    let write_err = io("cannot write", &partial);
    let result = (|| -> Result<(), std::io::Error> {
        w.write_all(MAGIC)?;
        for tree in Tree::ALL {
            let name = tree.name().as_bytes();
            let mut from = Vec::new();
            loop {
                let page: KeyValues = engine
                    .scan_from(tree, b"", &from, PAGE)
                    .map_err(std::io::Error::other)?;
                for (key, value) in &page {
                    w.write_all(&[1, name.len() as u8])?;
                    w.write_all(name)?;
                    w.write_all(&(key.len() as u32).to_be_bytes())?;
                    w.write_all(key)?;
                    w.write_all(&(value.len() as u32).to_be_bytes())?;
                    w.write_all(value)?;
                    summary.entries += 1;
                    summary.bytes += (key.len() + value.len()) as u64;
                }
                match page.last() {
                    Some((last, _)) if page.len() == PAGE => {
                        from = last.clone();
                        from.push(0);
                    }
                    _ => break,
                }
            }
        }
        w.write_all(&[0])?;
        w.write_all(&summary.entries.to_be_bytes())?;
        w.flush()?;
        w.get_ref().sync_all()
    })();
    result.map_err(write_err)?;
    std::fs::rename(&partial, out).map_err(io("cannot rename the finished backup to", out))?;
    Ok(summary)
}

/// Backs up the store in `data_dir`, which no coordinator may be using.
pub fn backup_dir(data_dir: &Path, out: &Path) -> Result<Summary, BackupError> {
    if !data_dir.join("conf").exists() {
        return Err(BackupError::Refused(format!(
            "there is no Baton store in {} (no {}/conf)",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let engine = SledEngine::open(data_dir)?;
    write_file(&engine, out)
}

fn read_exact(r: &mut impl Read, n: usize, path: &Path) -> Result<Vec<u8>, BackupError> {
    let mut buf = vec![0; n];
    r.read_exact(&mut buf).map_err(|e| BackupError::BadFile {
        path: path.to_path_buf(),
        why: format!("it ends early ({e}); it was probably cut short"),
    })?;
    Ok(buf)
}

fn read_u32(r: &mut impl Read, path: &Path) -> Result<usize, BackupError> {
    let b = read_exact(r, 4, path)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Reads a backup file into `engine` (an empty store).
pub fn read_file(input: &Path, engine: &dyn Engine) -> Result<Summary, BackupError> {
    let file = File::open(input).map_err(io("cannot open", input))?;
    let mut r = BufReader::new(file);
    let bad = |why: &str| BackupError::BadFile {
        path: input.to_path_buf(),
        why: why.to_string(),
    };
    if read_exact(&mut r, MAGIC.len(), input)? != MAGIC {
        return Err(bad("it does not start with BATONBK1"));
    }
    let mut summary = Summary {
        entries: 0,
        bytes: 0,
        schema_version: None,
    };
    let mut ops = Vec::new();
    loop {
        match read_exact(&mut r, 1, input)?[0] {
            1 => {}
            0 => {
                let count = read_exact(&mut r, 8, input)?;
                let count = u64::from_be_bytes(count.try_into().map_err(|_| bad("bad count"))?);
                if count != summary.entries {
                    return Err(bad(&format!(
                        "it says {count} entries but holds {}",
                        summary.entries
                    )));
                }
                break;
            }
            other => return Err(bad(&format!("unknown record type {other}"))),
        }
        let name_len = read_exact(&mut r, 1, input)?[0] as usize;
        let name = String::from_utf8_lossy(&read_exact(&mut r, name_len, input)?).to_string();
        let tree = Tree::from_name(&name)
            .ok_or_else(|| bad(&format!("unknown tree {name:?} (made by a newer Baton?)")))?;
        let key_len = read_u32(&mut r, input)?;
        let key = read_exact(&mut r, key_len, input)?;
        let value_len = read_u32(&mut r, input)?;
        let value = read_exact(&mut r, value_len, input)?;
        summary.entries += 1;
        summary.bytes += (key.len() + value.len()) as u64;
        ops.push(Op::Put(tree, key, value));
        if ops.len() >= RESTORE_BATCH {
            engine.apply(&std::mem::take(&mut ops))?;
        }
    }
    engine.apply(&ops)?;
    summary.schema_version = schema::stored_version(engine).ok().flatten();
    Ok(summary)
}

/// Restores `input` into `data_dir`, which must not exist or be empty. The store is built in
/// `DATA_DIR.restoring` and renamed to `data_dir` once complete; on failure that partial copy
/// is left for the user to look at and remove.
pub fn restore_dir(input: &Path, data_dir: &Path) -> Result<Summary, BackupError> {
    if let Ok(mut entries) = std::fs::read_dir(data_dir)
        && entries.next().is_some()
    {
        return Err(BackupError::Refused(format!(
            "{} is not empty; restore into a new or empty directory (nothing was changed)",
            data_dir.display()
        )));
    }
    let mut staging = data_dir.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists (left by an earlier restore?); look at it, remove it, and run the restore again",
            staging.display()
        )));
    }
    let restored = (|| {
        let engine = SledEngine::open(&staging)?;
        let summary = read_file(input, &engine)?;
        engine.flush()?;
        Ok::<_, BackupError>(summary)
    })();
    match restored {
        Ok(summary) => {
            std::fs::rename(&staging, data_dir)
                .map_err(io("cannot move the restored store to", data_dir))?;
            Ok(summary)
        }
        Err(e) => Err(BackupError::Refused(format!(
            "the restore stopped: {e}. {} was not created; the partial copy is in {} (remove it once you have looked at it)",
            data_dir.display(),
            staging.display()
        ))),
    }
}

/// How [`backup`] took the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Read directly: no coordinator was using the store.
    Offline,
    /// Written by the running coordinator at the given address, between two store batches.
    Online,
}

/// `baton-coordinator backup`: reads `data_dir` directly when no coordinator uses it, and
/// otherwise asks the coordinator at `addr` (which must be using `data_dir`) to write it.
pub async fn backup(
    data_dir: &Path,
    out: &Path,
    addr: &str,
) -> Result<(Summary, Taken), BackupError> {
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(io("cannot read the current directory for", out))?
            .join(out)
    };
    match backup_dir(data_dir, &out) {
        Ok(summary) => return Ok((summary, Taken::Offline)),
        Err(BackupError::Store(StoreError::Open(why))) if why.contains("holds the lock") => {}
        Err(e) => return Err(e),
    }
    use baton_proto::v1::{BackupStoreRequest, pipeline_service_client::PipelineServiceClient};
    let unreachable = |e: &dyn std::fmt::Display| {
        BackupError::Refused(format!(
            "{} is in use by a running coordinator, and the backup through it at {addr} failed: {e}. Pass --addr with that coordinator's address",
            data_dir.display()
        ))
    };
    let mut client = PipelineServiceClient::connect(addr.to_string())
        .await
        .map_err(|e| unreachable(&e))?;
    let canonical = std::fs::canonicalize(data_dir).unwrap_or(data_dir.to_path_buf());
    let reply = client
        .backup_store(BackupStoreRequest {
            path: out.display().to_string(),
            data_dir: canonical.display().to_string(),
        })
        .await
        .map_err(|s| unreachable(&s.message()))?
        .into_inner();
    Ok((
        Summary {
            entries: reply.entries,
            bytes: reply.bytes,
            schema_version: (reply.schema_version > 0).then_some(reply.schema_version),
        },
        Taken::Online,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryEngine;

    fn fill(engine: &dyn Engine) {
        let mut ops = vec![Op::Put(
            Tree::Meta,
            schema::VERSION_KEY.to_vec(),
            b"2".to_vec(),
        )];
        for i in 0..2500u32 {
            ops.push(Op::Put(Tree::Logs, i.to_be_bytes().to_vec(), vec![7; 100]));
        }
        ops.push(Op::Put(Tree::Pipelines, b"web".to_vec(), b"{}".to_vec()));
        engine.apply(&ops).expect("fill");
    }

    #[test]
    fn a_backup_restores_every_entry_of_every_tree() {
        let dir = tempfile::tempdir().expect("dir");
        let source = MemoryEngine::default();
        fill(&source);
        let file = dir.path().join("store.backup");
        let written = write_file(&source, &file).expect("backup");
        assert_eq!(written.entries, 2502);
        assert_eq!(written.schema_version, Some(2));
        let target = dir.path().join("restored");
        let read = restore_dir(&file, &target).expect("restore");
        assert_eq!(read, written);
        let engine = SledEngine::open(&target).expect("open");
        for tree in Tree::ALL {
            assert_eq!(
                engine.scan_prefix(tree, b"").expect("scan"),
                source.scan_prefix(tree, b"").expect("scan"),
                "{}",
                tree.name()
            );
        }
    }

    #[test]
    fn restore_refuses_a_non_empty_dir_and_a_cut_file_and_deletes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let source = MemoryEngine::default();
        fill(&source);
        let file = dir.path().join("b");
        write_file(&source, &file).expect("backup");
        let busy = dir.path().join("busy");
        std::fs::create_dir_all(&busy).expect("mkdir");
        std::fs::write(busy.join("keep.txt"), b"x").expect("write");
        let err = restore_dir(&file, &busy).expect_err("not empty");
        assert!(err.to_string().contains("is not empty"), "{err}");
        assert!(busy.join("keep.txt").exists());

        let bytes = std::fs::read(&file).expect("read");
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
        let target = dir.path().join("new");
        let err = restore_dir(&cut, &target)
            .expect_err("cut short")
            .to_string();
        assert!(err.contains("cut short"), "{err}");
        assert!(err.contains("new.restoring"), "{err}");
        assert!(!target.exists());
    }
}
