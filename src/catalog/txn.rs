//! Transactions (`/v1/txn`): a list of KV operations applied atomically as one Raft entry.
//!
//! Operations run in order against the live catalog while an undo log records the first
//! version of every key they touch. If any operation fails, the undo log puts every key and
//! the table indexes back, so a rolled-back transaction leaves nothing half applied.

use serde::{Deserialize, Serialize};

use crate::catalog::apply::Outcome;
use crate::catalog::kv::{self, KeyState};
use crate::catalog::model::{KvEntry, TableIndexes};
use crate::catalog::{Catalog, ChangeSet};

/// Most operations in one transaction (Consul 1.14+).
pub const TXN_OPS_MAX: usize = 128;

/// Consul's KV verbs in a transaction. Append-only, like every replicated type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnKvVerb {
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
    GetOrEmpty,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnKvOp {
    pub verb: TxnKvVerb,
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub index: u64,
    pub session: String,
}

/// One result row: the KV entry an operation read or wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    pub entry: KvEntry,
    /// Write results carry the entry's metadata but not its value, as in Consul.
    pub include_value: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// The undo log: the state of every key before the transaction first touched it.
struct Undo {
    keys: Vec<KeyState>,
    indexes: TableIndexes,
}

impl Undo {
    fn remember(&mut self, catalog: &Catalog, key: &str) {
        if !self.keys.iter().any(|k| k.key() == key) {
            self.keys.push(KeyState::capture(catalog, key));
        }
    }

    fn roll_back(self, catalog: &mut Catalog) {
        for key in self.keys {
            key.restore(catalog);
        }
        catalog.indexes = self.indexes;
    }
}

pub(super) fn apply_txn(catalog: &mut Catalog, index: u64, ops: &[TxnKvOp], now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let mut undo = Undo { keys: Vec::new(), indexes: catalog.indexes };
    let mut results = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        if let Err(what) = apply_op(catalog, index, op, now_ms, changes, &mut undo, &mut results) {
            undo.roll_back(catalog);
            return Outcome::Txn(Err(vec![TxnError { op_index, what }]));
        }
    }
    Outcome::Txn(Ok(results))
}

fn apply_op(catalog: &mut Catalog, index: u64, op: &TxnKvOp, now_ms: Option<u64>, changes: &mut ChangeSet, undo: &mut Undo, results: &mut Vec<TxnResult>) -> Result<(), String> {
    let key = op.key.as_str();
    let written = |catalog: &Catalog, results: &mut Vec<TxnResult>| {
        if let Some(entry) = catalog.kv.get(key) {
            results.push(TxnResult { entry: entry.clone(), include_value: false });
        }
    };
    let guard = |outcome: Outcome, failure: String| match outcome {
        Outcome::Bool(true) | Outcome::Done => Ok(()),
        Outcome::Rejected(reason) => Err(reason),
        _ => Err(failure),
    };
    match op.verb {
        TxnKvVerb::Set | TxnKvVerb::Cas => {
            undo.remember(catalog, key);
            let cas = (op.verb == TxnKvVerb::Cas).then_some(op.index);
            guard(kv::set(catalog, index, key, &op.value, op.flags, cas, changes), format!("failed to set key {key:?}, index is stale"))?;
            written(catalog, results);
        }
        TxnKvVerb::Lock => {
            undo.remember(catalog, key);
            guard(kv::lock(catalog, index, key, &op.value, op.flags, &op.session, now_ms, changes), format!("failed to lock key {key:?}, lock is already held"))?;
            written(catalog, results);
        }
        TxnKvVerb::Unlock => {
            undo.remember(catalog, key);
            guard(kv::unlock(catalog, index, key, &op.value, op.flags, &op.session, changes), format!("failed to unlock key {key:?}, lock isn't held, or is held by another session"))?;
            written(catalog, results);
        }
        TxnKvVerb::Get | TxnKvVerb::GetOrEmpty => match catalog.kv.get(key) {
            Some(entry) => results.push(TxnResult { entry: entry.clone(), include_value: true }),
            None if op.verb == TxnKvVerb::GetOrEmpty => {}
            None => return Err(format!("key {key:?} doesn't exist")),
        },
        TxnKvVerb::GetTree => {
            let entries: Vec<KvEntry> = catalog.kv_prefix(key).cloned().collect();
            results.extend(entries.into_iter().map(|entry| TxnResult { entry, include_value: true }));
        }
        TxnKvVerb::CheckIndex => match catalog.kv.get(key) {
            Some(entry) if entry.modify_index == op.index => results.push(TxnResult { entry: entry.clone(), include_value: false }),
            Some(_) => return Err(format!("current modify index {} != {}", catalog.kv[key].modify_index, op.index)),
            None => return Err(format!("key {key:?} doesn't exist")),
        },
        TxnKvVerb::CheckSession => match catalog.kv.get(key) {
            Some(entry) if entry.session.as_deref() == Some(op.session.as_str()) => results.push(TxnResult { entry: entry.clone(), include_value: false }),
            Some(_) => return Err(format!("key {key:?} is not locked by session {:?}", op.session)),
            None => return Err(format!("key {key:?} doesn't exist")),
        },
        TxnKvVerb::CheckNotExists => {
            if catalog.kv.contains_key(key) {
                return Err(format!("key {key:?} exists"));
            }
        }
        TxnKvVerb::Delete | TxnKvVerb::DeleteCas => {
            undo.remember(catalog, key);
            let cas = (op.verb == TxnKvVerb::DeleteCas).then_some(op.index);
            guard(kv::delete(catalog, index, key, cas, changes), format!("failed to delete key {key:?}, index is stale"))?;
        }
        TxnKvVerb::DeleteTree => {
            let doomed: Vec<String> = catalog.kv_prefix(key).map(|e| e.key.clone()).collect();
            for doomed_key in doomed {
                undo.remember(catalog, &doomed_key);
                kv::delete(catalog, index, &doomed_key, None, changes);
            }
        }
    }
    Ok(())
}
