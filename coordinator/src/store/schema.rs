//! The store's schema version: checked before anything else reads the store.
//!
//! The version lives in the `meta` tree under `schema_version`. A store written by a newer
//! Baton is refused untouched; an older one is upgraded one step at a time, each step's
//! changes and the new version number in one atomic batch, so a kill -9 during an upgrade
//! leaves either the old or the new version, never a mix. A store without the key is version 1
//! (the layout before the key existed), unless it is empty: then it is new and gets
//! [`CURRENT`].

use serde::Deserialize;

use super::records::{ExecutionRecord, ExecutionStatus};
use super::{Engine, Op, StoreError, Tree, key2};
use crate::execution::revision::EndedOrders;

/// The schema version this coordinator writes.
///
/// 1: the first layout. 2: adds `live_executions` (the executions that have not ended, per
/// pipeline), `ended_orders` (per pipeline) and `events` (what watchers replay).
pub const CURRENT: u32 = 2;

/// The key of the version in [`Tree::Meta`].
pub const VERSION_KEY: &[u8] = b"schema_version";

/// One upgrade step, from version `from` to `from + 1`.
pub struct Migration {
    /// The version it upgrades.
    pub from: u32,
    /// What it does, for the log.
    pub what: &'static str,
    /// The writes that upgrade the store (read from the engine, applied with the new version).
    pub run: fn(&dyn Engine) -> Result<Vec<Op>, StoreError>,
}

/// Every upgrade step this coordinator knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    from: 1,
    what: "index the executions that have not ended",
    run: index_live_executions,
}];

/// Why a store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer Baton.
    #[error(
        "it was written with schema version {found}, newer than this baton-coordinator understands (versions 1 to {supported}). Nothing was changed. Run the newer baton-coordinator that wrote it, or restore a backup made with this version into an empty directory"
    )]
    Newer {
        /// The stored version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An older version with no known upgrade.
    #[error(
        "it has schema version {found} and this baton-coordinator cannot upgrade it to version {supported}. Nothing was changed. Upgrade it with an older baton-coordinator first"
    )]
    NoUpgrade {
        /// The stored version.
        found: u32,
        /// The version this build writes.
        supported: u32,
    },
    /// The version key is not a number.
    #[error(
        "its schema version key holds {0:?}, which is not a version number. Nothing was changed"
    )]
    Unreadable(String),
    /// The engine failed while checking or upgrading.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`prepare`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// An empty store, now marked with the current version.
    Created(u32),
    /// Already at the current version.
    Current(u32),
    /// Upgraded from one version to another.
    Upgraded {
        /// The version found.
        from: u32,
        /// The version now stored.
        to: u32,
    },
}

/// The stored version, if any.
pub fn stored_version(engine: &dyn Engine) -> Result<Option<u32>, SchemaError> {
    match engine.get(Tree::Meta, VERSION_KEY)? {
        None => Ok(None),
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes).to_string();
            text.trim()
                .parse()
                .map(Some)
                .map_err(|_| SchemaError::Unreadable(text))
        }
    }
}

/// Checks the store and brings it to [`CURRENT`] (see the module docs).
pub fn prepare(engine: &dyn Engine) -> Result<Prepared, SchemaError> {
    prepare_to(engine, CURRENT, MIGRATIONS)
}

/// [`prepare`] towards any version with any steps (tests use fake versions).
pub fn prepare_to(
    engine: &dyn Engine,
    current: u32,
    migrations: &[Migration],
) -> Result<Prepared, SchemaError> {
    let found = match stored_version(engine)? {
        Some(v) => v,
        None if is_empty(engine)? => {
            engine.apply(&[version_op(current)])?;
            return Ok(Prepared::Created(current));
        }
        None => 1,
    };
    if found > current {
        return Err(SchemaError::Newer {
            found,
            supported: current,
        });
    }
    let mut version = found;
    while version < current {
        let step = migrations
            .iter()
            .find(|m| m.from == version)
            .ok_or(SchemaError::NoUpgrade {
                found,
                supported: current,
            })?;
        tracing::info!(
            from = version,
            to = version + 1,
            what = step.what,
            "upgrading the store"
        );
        let mut ops = (step.run)(engine)?;
        ops.push(version_op(version + 1));
        engine.apply(&ops)?;
        version += 1;
    }
    if found == current {
        if engine.get(Tree::Meta, VERSION_KEY)?.is_none() {
            engine.apply(&[version_op(current)])?;
        }
        return Ok(Prepared::Current(current));
    }
    Ok(Prepared::Upgraded {
        from: found,
        to: current,
    })
}

fn version_op(version: u32) -> Op {
    Op::Put(
        Tree::Meta,
        VERSION_KEY.to_vec(),
        version.to_string().into_bytes(),
    )
}

fn is_empty(engine: &dyn Engine) -> Result<bool, StoreError> {
    for tree in Tree::ALL {
        if !engine.scan_from(tree, b"", b"", 1)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Just the fields the upgrade needs; other fields (and ones added later) are left alone.
#[derive(Deserialize)]
struct ExecutionHead {
    id: String,
    pipeline: String,
    status: serde_json::Value,
}

/// 1 -> 2: every execution that has not ended gets a `live_executions` entry, and each
/// pipeline's ended revision orders are stored (what its history decided at start before).
fn index_live_executions(engine: &dyn Engine) -> Result<Vec<Op>, StoreError> {
    let mut ops = Vec::new();
    let mut orders: std::collections::BTreeMap<String, EndedOrders> = Default::default();
    for (key, value) in engine.scan_prefix(Tree::Executions, b"")? {
        let head: ExecutionHead =
            serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                tree: Tree::Executions.name(),
                message: format!("{}: {e}", String::from_utf8_lossy(&key)),
            })?;
        // A status this build does not know is kept live: the pipeline reads it at start.
        let ended = serde_json::from_value::<ExecutionStatus>(head.status)
            .map(|s| s.is_final())
            .unwrap_or(false);
        if !ended {
            ops.push(Op::Put(
                Tree::LiveExecutions,
                key2(&head.pipeline, &head.id),
                Vec::new(),
            ));
        } else if let Ok(exec) = serde_json::from_slice::<ExecutionRecord>(&value) {
            orders
                .entry(exec.pipeline.clone())
                .or_default()
                .record(&exec.revision.branch, &exec);
        }
    }
    for (pipeline, ended) in orders {
        let entries = ended.to_entries();
        if !entries.is_empty() {
            ops.push(Op::put_json(
                Tree::EndedOrders,
                pipeline.as_bytes(),
                &entries,
            ));
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryEngine;

    fn put(engine: &dyn Engine, tree: Tree, key: &str, value: &str) {
        engine
            .apply(&[Op::Put(tree, key.into(), value.into())])
            .expect("put");
    }

    #[test]
    fn an_empty_store_gets_the_current_version() {
        let engine = MemoryEngine::default();
        assert_eq!(
            prepare(&engine).expect("prepare"),
            Prepared::Created(CURRENT)
        );
        assert_eq!(stored_version(&engine).expect("read"), Some(CURRENT));
        assert_eq!(prepare(&engine).expect("again"), Prepared::Current(CURRENT));
    }

    #[test]
    fn a_newer_store_is_refused_and_left_untouched() {
        let engine = MemoryEngine::default();
        put(&engine, Tree::Meta, "schema_version", "7");
        put(&engine, Tree::Pipelines, "web", "{}");
        let err = prepare(&engine).expect_err("refused");
        assert!(matches!(
            err,
            SchemaError::Newer {
                found: 7,
                supported: CURRENT
            }
        ));
        let text = err.to_string();
        assert!(text.contains("schema version 7"), "{text}");
        assert!(text.contains("Nothing was changed"), "{text}");
        assert_eq!(stored_version(&engine).expect("read"), Some(7));
    }

    fn fake_step(engine: &dyn Engine) -> Result<Vec<Op>, StoreError> {
        let n = engine.scan_prefix(Tree::Pipelines, b"")?.len();
        Ok(vec![Op::Put(
            Tree::Meta,
            b"pipelines_counted".to_vec(),
            n.to_string().into(),
        )])
    }

    #[test]
    fn an_older_store_is_upgraded_step_by_step() {
        let engine = MemoryEngine::default();
        put(&engine, Tree::Meta, "schema_version", "2");
        put(&engine, Tree::Pipelines, "a", "{}");
        put(&engine, Tree::Pipelines, "b", "{}");
        let steps = [
            Migration {
                from: 2,
                what: "count",
                run: fake_step,
            },
            Migration {
                from: 3,
                what: "nothing",
                run: |_| Ok(Vec::new()),
            },
        ];
        let done = prepare_to(&engine, 4, &steps).expect("upgrade");
        assert_eq!(done, Prepared::Upgraded { from: 2, to: 4 });
        assert_eq!(stored_version(&engine).expect("read"), Some(4));
        assert_eq!(
            engine.get(Tree::Meta, b"pipelines_counted").expect("get"),
            Some(b"2".to_vec())
        );
        // A version with no step to the next one is refused as it is.
        let old = MemoryEngine::default();
        put(&old, Tree::Meta, "schema_version", "1");
        assert!(matches!(
            prepare_to(&old, 4, &steps),
            Err(SchemaError::NoUpgrade {
                found: 1,
                supported: 4
            })
        ));
        assert_eq!(stored_version(&old).expect("read"), Some(1));
    }

    #[test]
    fn a_version_one_store_gets_its_live_executions_indexed() {
        let engine = MemoryEngine::default();
        // Written before the version key existed: no key, but data.
        put(
            &engine,
            Tree::Executions,
            "e1",
            r#"{"id":"e1","pipeline":"web","status":"InProgress","later_field":1}"#,
        );
        put(
            &engine,
            Tree::Executions,
            "e2",
            r#"{"id":"e2","pipeline":"web","status":"Succeeded"}"#,
        );
        assert_eq!(
            prepare(&engine).expect("upgrade"),
            Prepared::Upgraded {
                from: 1,
                to: CURRENT
            }
        );
        let live = engine.scan_prefix(Tree::LiveExecutions, b"").expect("scan");
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, key2("web", "e1"));
    }
}
