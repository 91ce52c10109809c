//! Transactions (`/v1/txn`): a list of KV, Node, Service and Check operations applied
//! atomically as one Raft entry.
//!
//! Operations run in order against the live catalog while an undo log (`undo.rs`) records the
//! first version of every row they may touch. If any operation fails, the undo log puts every
//! row and the table indexes back before `apply` returns, so a rolled-back transaction leaves
//! nothing half applied, in memory or on disk.
//!
//! Two commands carry transactions. `Command::Txn` (KV operations only) is what older builds
//! proposed; it still applies exactly as it did: it stops at the first failing operation.
//! `Command::TxnOps` carries [`TxnOp`]s of every kind and, as Consul does, runs every
//! operation and reports every failure (`TxnError`), then rolls back if there was any.
//!
//! Every type here is replicated: append-only, like `Command`.

mod catalog_ops;
mod kv;
mod undo;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::apply::Outcome;
use crate::catalog::command::{CheckRegistration, ServiceRegistration};
use crate::catalog::model::{Check, KvEntry, Node, Service};
use crate::catalog::{Catalog, ChangeSet};
use crate::catalog::txn::undo::Undo;

/// Most operations in one transaction (Consul 1.14+).
pub const TXN_OPS_MAX: usize = 128;

/// One operation of a [`crate::catalog::Command::TxnOps`] transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Kv(TxnKvOp),
    Node(TxnNodeOp),
    Service(TxnServiceOp),
    Check(TxnCheckOp),
}

/// Consul's KV verbs in a transaction.
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

/// Consul's Node, Service and Check verbs in a transaction (the three share the same five).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCatalogVerb {
    Set,
    Cas,
    Get,
    Delete,
    DeleteCas,
}

/// A Node operation: the node's fields as Consul's `Node` object carries them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnNodeOp {
    pub verb: TxnCatalogVerb,
    pub node_id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    /// The `ModifyIndex` that `cas` and `delete-cas` compare with.
    pub index: u64,
}

/// A Service operation on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnServiceOp {
    pub verb: TxnCatalogVerb,
    pub node: String,
    pub service: ServiceRegistration,
    /// The `ModifyIndex` that `cas` and `delete-cas` compare with.
    pub index: u64,
}

/// A Check operation on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnCheckOp {
    pub verb: TxnCatalogVerb,
    pub node: String,
    pub check: CheckRegistration,
    /// The `ModifyIndex` that `cas` and `delete-cas` compare with.
    pub index: u64,
}

/// One KV result row: the KV entry an operation read or wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    pub entry: KvEntry,
    /// Write results carry the entry's metadata but not its value, as in Consul.
    pub include_value: bool,
}

/// One result row of a `TxnOps` transaction: the row an operation read or wrote. Deletes
/// and KV checks that return nothing add no row, as in Consul.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    Kv(TxnResult),
    Node(Node),
    Service(Service),
    Check(Check),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// Applies a `Command::Txn` (KV only): stops at the first failing operation and rolls back.
pub(super) fn apply_txn(catalog: &mut Catalog, index: u64, ops: &[TxnKvOp], now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let mut undo = Undo::new(catalog);
    let mut results = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        if let Err(what) = kv::apply_kv_op(catalog, index, op, now_ms, changes, &mut undo, &mut results) {
            undo.roll_back(catalog);
            // Nothing changed, so no service's results did: no service index moves.
            changes.services.clear();
            return Outcome::Txn(Err(vec![TxnError { op_index, what }]));
        }
    }
    Outcome::Txn(Ok(results))
}

/// Applies a `Command::TxnOps`: runs every operation, and rolls all of them back if any failed.
pub(super) fn apply_txn_ops(catalog: &mut Catalog, index: u64, ops: &[TxnOp], now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let mut undo = Undo::new(catalog);
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (op_index, op) in ops.iter().enumerate() {
        let mut op_changes = ChangeSet::new();
        let applied = match op {
            TxnOp::Kv(op) => {
                let mut rows = Vec::new();
                kv::apply_kv_op(catalog, index, op, now_ms, &mut op_changes, &mut undo, &mut rows)
                    .map(|()| rows.into_iter().map(TxnOpResult::Kv).collect())
            }
            TxnOp::Node(op) => catalog_ops::apply_node_op(catalog, index, op, now_ms, &mut op_changes, &mut undo),
            TxnOp::Service(op) => catalog_ops::apply_service_op(catalog, index, op, now_ms, &mut op_changes, &mut undo),
            TxnOp::Check(op) => catalog_ops::apply_check_op(catalog, index, op, now_ms, &mut op_changes, &mut undo),
        };
        debug_assert!(undo.covers(&op_changes), "operation {op_index} changed rows the undo log did not remember: {op:?}");
        changes.merge(op_changes);
        match applied {
            Ok(rows) => results.extend(rows),
            Err(what) => errors.push(TxnError { op_index, what }),
        }
    }
    if errors.is_empty() {
        return Outcome::TxnOps(Ok(results));
    }
    undo.roll_back(catalog);
    changes.services.clear();
    Outcome::TxnOps(Err(errors))
}
