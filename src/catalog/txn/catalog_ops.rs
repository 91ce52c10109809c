//! Node, Service and Check operations of a transaction, with Consul's verbs and error texts.
//!
//! Writes go through the same helpers as `Command::Register` and the deregister commands, so a
//! transaction changes the catalog exactly as the equivalent standalone commands would. Before
//! a write, the node's whole scope goes into the undo log (`Undo::remember_node_scope`),
//! because those helpers cascade to services, checks, sessions and locked keys, and so does
//! the row a `set` may create.
//!
//! As in Consul, a `cas` with index 0 means "only if it does not exist yet", and a
//! `delete-cas` of a row that does not exist fails.

use std::collections::BTreeMap;

use crate::catalog::apply::{Outcome, deregister_check, deregister_node, deregister_service, register};
use crate::catalog::command::Registration;
use crate::catalog::txn::undo::Undo;
use crate::catalog::txn::{TxnCatalogVerb, TxnCheckOp, TxnNodeOp, TxnOpResult, TxnServiceOp};
use crate::catalog::{Catalog, ChangeSet, RowKey};

/// Consul's `ErrMissingNode` and `ErrMissingService` texts.
const MISSING_NODE: &str = "Missing node registration";
const MISSING_SERVICE: &str = "Missing service registration";

type OpResult = Result<Vec<TxnOpResult>, String>;

pub(super) fn apply_node_op(catalog: &mut Catalog, index: u64, op: &TxnNodeOp, now_ms: Option<u64>, changes: &mut ChangeSet, undo: &mut Undo) -> OpResult {
    let name = op.node.as_str();
    let modify_index = catalog.nodes.get(name).map(|n| n.modify_index);
    match op.verb {
        TxnCatalogVerb::Get => {
            let found = if op.node_id.is_empty() {
                catalog.nodes.get(name)
            } else {
                catalog.nodes.values().find(|n| n.id == op.node_id)
            };
            found.map(|n| vec![TxnOpResult::Node(n.clone())]).ok_or_else(|| format!("node {name:?} doesn't exist"))
        }
        TxnCatalogVerb::Set | TxnCatalogVerb::Cas => {
            if op.verb == TxnCatalogVerb::Cas && !cas_holds(op.index, modify_index) {
                return Err(format!("failed to set node {name:?}, index is stale"));
            }
            undo.remember_node_scope(catalog, name);
            let registration = Registration {
                node_id: op.node_id.clone(),
                node: op.node.clone(),
                address: op.address.clone(),
                datacenter: op.datacenter.clone(),
                tagged_addresses: op.tagged_addresses.clone(),
                node_meta: op.meta.clone(),
                skip_node_update: false,
                service: None,
                checks: Vec::new(),
            };
            accepted(register(catalog, index, &registration, now_ms, changes))?;
            Ok(catalog.nodes.get(name).map(|n| TxnOpResult::Node(n.clone())).into_iter().collect())
        }
        TxnCatalogVerb::Delete | TxnCatalogVerb::DeleteCas => {
            if op.verb == TxnCatalogVerb::DeleteCas && modify_index != Some(op.index) {
                return Err(format!("failed to delete node {name:?}, index is stale"));
            }
            undo.remember_node_scope(catalog, name);
            accepted(deregister_node(catalog, index, name, now_ms, changes))?;
            Ok(Vec::new())
        }
    }
}

pub(super) fn apply_service_op(catalog: &mut Catalog, index: u64, op: &TxnServiceOp, now_ms: Option<u64>, changes: &mut ChangeSet, undo: &mut Undo) -> OpResult {
    let (node, id) = (op.node.as_str(), op.service.id.as_str());
    let key = (op.node.clone(), op.service.id.clone());
    let modify_index = catalog.services.get(&key).map(|s| s.modify_index);
    match op.verb {
        TxnCatalogVerb::Get => catalog
            .services
            .get(&key)
            .map(|s| vec![TxnOpResult::Service(s.clone())])
            .ok_or_else(|| format!("service {id:?} on node {node:?} doesn't exist")),
        TxnCatalogVerb::Set | TxnCatalogVerb::Cas => {
            if op.verb == TxnCatalogVerb::Cas && !cas_holds(op.index, modify_index) {
                return Err(format!("failed to set service {id:?} on node {node:?}, index is stale"));
            }
            if !catalog.nodes.contains_key(node) {
                return Err(MISSING_NODE.to_string());
            }
            undo.remember_node_scope(catalog, node);
            undo.remember(catalog, RowKey::Service(op.node.clone(), op.service.id.clone()));
            let registration = Registration { service: Some(op.service.clone()), ..existing_node(node) };
            accepted(register(catalog, index, &registration, now_ms, changes))?;
            Ok(catalog.services.get(&key).map(|s| TxnOpResult::Service(s.clone())).into_iter().collect())
        }
        TxnCatalogVerb::Delete | TxnCatalogVerb::DeleteCas => {
            if op.verb == TxnCatalogVerb::DeleteCas && modify_index != Some(op.index) {
                return Err(format!("failed to delete service {id:?} on node {node:?}, index is stale"));
            }
            undo.remember_node_scope(catalog, node);
            accepted(deregister_service(catalog, index, node, id, now_ms, changes))?;
            Ok(Vec::new())
        }
    }
}

pub(super) fn apply_check_op(catalog: &mut Catalog, index: u64, op: &TxnCheckOp, now_ms: Option<u64>, changes: &mut ChangeSet, undo: &mut Undo) -> OpResult {
    let (node, id) = (op.node.as_str(), op.check.check_id.as_str());
    let key = (op.node.clone(), op.check.check_id.clone());
    let modify_index = catalog.checks.get(&key).map(|c| c.modify_index);
    match op.verb {
        TxnCatalogVerb::Get => catalog
            .checks
            .get(&key)
            .map(|c| vec![TxnOpResult::Check(c.clone())])
            .ok_or_else(|| format!("check {id:?} on node {node:?} doesn't exist")),
        TxnCatalogVerb::Set | TxnCatalogVerb::Cas => {
            if op.verb == TxnCatalogVerb::Cas && !cas_holds(op.index, modify_index) {
                return Err(format!("failed to set check {id:?} on node {node:?}, index is stale"));
            }
            if !catalog.nodes.contains_key(node) {
                return Err(MISSING_NODE.to_string());
            }
            let service_id = op.check.service_id.clone();
            if !service_id.is_empty() && !catalog.services.contains_key(&(op.node.clone(), service_id)) {
                return Err(MISSING_SERVICE.to_string());
            }
            undo.remember_node_scope(catalog, node);
            undo.remember(catalog, RowKey::Check(op.node.clone(), op.check.check_id.clone()));
            let registration = Registration { checks: vec![op.check.clone()], ..existing_node(node) };
            accepted(register(catalog, index, &registration, now_ms, changes))?;
            Ok(catalog.checks.get(&key).map(|c| TxnOpResult::Check(c.clone())).into_iter().collect())
        }
        TxnCatalogVerb::Delete | TxnCatalogVerb::DeleteCas => {
            if op.verb == TxnCatalogVerb::DeleteCas && modify_index != Some(op.index) {
                return Err(format!("failed to delete check {id:?} on node {node:?}, index is stale"));
            }
            undo.remember_node_scope(catalog, node);
            accepted(deregister_check(catalog, index, node, id, now_ms, changes))?;
            Ok(Vec::new())
        }
    }
}

/// Consul's CAS rule: index 0 writes only a new row; any other index must equal the row's.
fn cas_holds(expected: u64, current: Option<u64>) -> bool {
    match current {
        None => expected == 0,
        Some(modify_index) => expected != 0 && expected == modify_index,
    }
}

/// A registration that leaves the (existing) node's own fields alone.
fn existing_node(node: &str) -> Registration {
    Registration {
        node_id: String::new(),
        node: node.to_string(),
        address: String::new(),
        datacenter: String::new(),
        tagged_addresses: BTreeMap::new(),
        node_meta: BTreeMap::new(),
        skip_node_update: true,
        service: None,
        checks: Vec::new(),
    }
}

/// The helpers validate before they mutate, so a rejection has changed nothing.
fn accepted(outcome: Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Rejected(reason) => Err(reason),
        _ => Ok(()),
    }
}
