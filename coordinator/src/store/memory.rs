//! An in-memory engine for unit tests and simulations: same semantics, no durability.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{Engine, KeyValues, Op, StoreError, Tree};

/// Keeps every tree in a `BTreeMap` behind one mutex.
#[derive(Default)]
pub struct MemoryEngine {
    trees: Mutex<Trees>,
}

type Trees = HashMap<Tree, BTreeMap<Vec<u8>, Vec<u8>>>;

impl MemoryEngine {
    fn with<R>(&self, f: impl FnOnce(&mut Trees) -> R) -> R {
        let mut guard = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl Engine for MemoryEngine {
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        self.with(|trees| {
            for op in ops {
                match op {
                    Op::Put(t, k, v) => {
                        trees.entry(*t).or_default().insert(k.clone(), v.clone());
                    }
                    Op::Delete(t, k) => {
                        trees.entry(*t).or_default().remove(k);
                    }
                }
            }
        });
        Ok(())
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with(|t| t.get(&tree).and_then(|m| m.get(key).cloned())))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<KeyValues, StoreError> {
        Ok(self.with(|t| {
            t.get(&tree)
                .map(|m| {
                    m.range(prefix.to_vec()..)
                        .take_while(|(k, _)| k.starts_with(prefix))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        let from = start.max(prefix).to_vec();
        Ok(self.with(|t| {
            t.get(&tree)
                .map(|m| {
                    m.range(from..)
                        .take_while(|(k, _)| k.starts_with(prefix))
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn scan_last(&self, tree: Tree, prefix: &[u8], limit: usize) -> Result<KeyValues, StoreError> {
        Ok(self.with(|t| {
            t.get(&tree)
                .map(|m| {
                    m.range(prefix.to_vec()..)
                        .take_while(|(k, _)| k.starts_with(prefix))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }
}
