//! The sled engine: each batch is one multi-tree transaction followed by one flush.

use std::path::Path;

use sled::Transactional;

use super::{Engine, KeyValues, Op, StoreError, Tree};

/// sled 0.34 with one sled tree per [`Tree`].
pub struct SledEngine {
    db: sled::Db,
    trees: Vec<(Tree, sled::Tree)>,
}

fn engine_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl SledEngine {
    /// Opens (or creates) the store in `dir`. Never deletes anything to recover.
    pub fn open(dir: &Path) -> Result<SledEngine, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(engine_err)?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map(|tree| (*t, tree)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(engine_err)?;
        Ok(SledEngine { db, trees })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        // Every Tree variant is opened in `open`, in ALL order.
        &self.trees[Tree::ALL.iter().position(|t| *t == tree).unwrap_or(0)].1
    }
}

impl Engine for SledEngine {
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let trees: Vec<sled::Tree> = self.trees.iter().map(|(_, t)| t.clone()).collect();
        let index = |tree: Tree| Tree::ALL.iter().position(|t| *t == tree).unwrap_or(0);
        trees
            .as_slice()
            .transaction(|tx| {
                for op in ops {
                    match op {
                        Op::Put(t, k, v) => {
                            tx[index(*t)].insert(k.as_slice(), v.as_slice())?;
                        }
                        Op::Delete(t, k) => {
                            tx[index(*t)].remove(k.as_slice())?;
                        }
                    }
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| engine_err(format!("{e:?}")))?;
        self.db.flush().map_err(engine_err)?;
        Ok(())
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(engine_err)?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<KeyValues, StoreError> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine_err))
            .collect()
    }

    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        self.tree(tree)
            .range(start.max(prefix)..)
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine_err))
            .collect()
    }

    fn scan_last(&self, tree: Tree, prefix: &[u8], limit: usize) -> Result<KeyValues, StoreError> {
        self.tree(tree)
            .scan_prefix(prefix)
            .rev()
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine_err))
            .collect()
    }
}
