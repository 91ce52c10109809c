//! KV operations of a transaction, with Consul's verbs and error texts.
//!
//! Every write remembers its key in the undo log before it changes it.

use crate::catalog::apply::Outcome;
use crate::catalog::kv;
use crate::catalog::model::KvEntry;
use crate::catalog::txn::undo::Undo;
use crate::catalog::txn::{TxnKvOp, TxnKvVerb, TxnResult};
use crate::catalog::{Catalog, ChangeSet};

pub(super) fn apply_kv_op(catalog: &mut Catalog, index: u64, op: &TxnKvOp, now_ms: Option<u64>, changes: &mut ChangeSet, undo: &mut Undo, results: &mut Vec<TxnResult>) -> Result<(), String> {
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
            undo.remember_kv(catalog, key);
            let cas = (op.verb == TxnKvVerb::Cas).then_some(op.index);
            guard(kv::set(catalog, index, key, &op.value, op.flags, cas, changes), format!("failed to set key {key:?}, index is stale"))?;
            written(catalog, results);
        }
        TxnKvVerb::Lock => {
            undo.remember_kv(catalog, key);
            guard(kv::lock(catalog, index, key, &op.value, op.flags, &op.session, now_ms, changes), format!("failed to lock key {key:?}, lock is already held"))?;
            written(catalog, results);
        }
        TxnKvVerb::Unlock => {
            undo.remember_kv(catalog, key);
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
            undo.remember_kv(catalog, key);
            let cas = (op.verb == TxnKvVerb::DeleteCas).then_some(op.index);
            guard(kv::delete(catalog, index, key, cas, changes), format!("failed to delete key {key:?}, index is stale"))?;
        }
        TxnKvVerb::DeleteTree => {
            let doomed: Vec<String> = catalog.kv_prefix(key).map(|e| e.key.clone()).collect();
            for doomed_key in doomed {
                undo.remember_kv(catalog, &doomed_key);
                kv::delete(catalog, index, &doomed_key, None, changes);
            }
        }
    }
    Ok(())
}
