//! `apply`: the single dispatch point that turns a committed command into catalog changes.
//!
//! Every arm validates before it mutates, so a rejected command leaves the catalog untouched.
//! Rows whose content does not change keep their `modify_index`, as in Consul, so idempotent
//! writes do not wake blocking queries that filter on the row's own index.

use crate::catalog::command::{CheckRegistration, Command, Registration, SessionRequest};
use crate::catalog::model::{Check, HealthStatus, Node, Service, Session, SessionBehavior};
use crate::catalog::{Catalog, ChangeSet, RowKey, kv};

/// The result of applying one command, returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// The command took effect (or was a no-op).
    Done,
    /// A guarded write: `true` if it took effect (KV CAS, lock, unlock).
    Bool(bool),
    /// The command was refused by a rule of the data model; nothing changed.
    Rejected(String),
    /// A transaction's results, or the errors that rolled it back.
    Txn(Result<Vec<crate::catalog::txn::TxnResult>, Vec<crate::catalog::txn::TxnError>>),
    /// The same for `Command::TxnOps`, whose results may also be nodes, services and checks.
    /// Appended last: forwarded writes carry outcomes between servers.
    TxnOps(Result<Vec<crate::catalog::txn::TxnOpResult>, Vec<crate::catalog::txn::TxnError>>),
    /// The outcomes of a [`Command::Batch`], in order.
    Batch(Vec<Outcome>),
}

/// Applies `command` committed in the Raft entry at `raft_index`. `changes` receives every row
/// touched.
///
/// Each command gets its own index (its `ModifyIndex`): the entry's Raft index, or one past the
/// catalog's last index when a batch before it used that up. Outside batches the two are the
/// same, as in Consul; a [`Command::Batch`] of n writes takes n consecutive indexes, and every
/// server derives the same ones from the same log.
pub fn apply(catalog: &mut Catalog, raft_index: u64, command: &Command, changes: &mut ChangeSet) -> Outcome {
    assert!(raft_index > 0, "raft indexes start at 1");
    if let Command::Batch(commands) = command {
        let outcomes = commands.iter().map(|command| apply_one(catalog, raft_index, command, changes)).collect();
        return Outcome::Batch(outcomes);
    }
    apply_one(catalog, raft_index, command, changes)
}

fn apply_one(catalog: &mut Catalog, raft_index: u64, command: &Command, changes: &mut ChangeSet) -> Outcome {
    let index = raft_index.max(catalog.last_index() + 1);
    let mut mine = ChangeSet::new();
    let outcome = dispatch(catalog, index, command, None, &mut mine);
    for name in &mine.services {
        // A name with no instances left falls back to the services table's index, which the
        // deregistration just moved, so dropping its entry never moves an index backwards.
        if catalog.services.has_name(name) {
            catalog.service_indexes.insert(name.clone(), index);
        } else {
            catalog.service_indexes.remove(name);
        }
        mine.rows.insert(RowKey::ServiceIndex(name.clone()));
    }
    if !mine.rows.is_empty() {
        mine.touch(RowKey::Indexes);
    }
    changes.merge(mine);
    outcome
}

/// The one match over [`Command`]. `now_ms` is the proposer's clock when the command came
/// wrapped in [`Command::At`].
fn dispatch(catalog: &mut Catalog, index: u64, command: &Command, now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    match command {
        Command::Register(registration) => register(catalog, index, registration, now_ms, changes),
        Command::DeregisterNode { node } => deregister_node(catalog, index, node, now_ms, changes),
        Command::DeregisterService { node, service_id } => {
            deregister_service(catalog, index, node, service_id, now_ms, changes)
        }
        Command::DeregisterCheck { node, check_id } => deregister_check(catalog, index, node, check_id, now_ms, changes),
        Command::UpdateCheck { node, check_id, status, output } => {
            let outcome = update_check(catalog, index, node, check_id, *status, output, changes);
            // Only a check that exists turns critical: a refused update changes nothing.
            if *status == HealthStatus::Critical && !matches!(outcome, Outcome::Rejected(_)) {
                invalidate_sessions_of_check(catalog, index, node, check_id, now_ms, changes);
            }
            outcome
        }
        Command::KvSet { key, value, flags, cas_index } => kv::set(catalog, index, key, value, *flags, *cas_index, changes),
        Command::KvDelete { key, cas_index } => kv::delete(catalog, index, key, *cas_index, changes),
        Command::KvDeleteTree { prefix } => kv::delete_tree(catalog, index, prefix, changes),
        Command::KvLock { key, value, flags, session, now_ms } => {
            kv::lock(catalog, index, key, value, *flags, session, Some(*now_ms), changes)
        }
        Command::KvUnlock { key, value, flags, session } => kv::unlock(catalog, index, key, value, *flags, session, changes),
        Command::SessionCreate(request) => session_create(catalog, index, request, request.ttl_s.saturating_mul(1000), changes),
        Command::SessionCreateExact { request, ttl_ms } => session_create(catalog, index, request, *ttl_ms, changes),
        Command::SessionDestroy { session, now_ms } => {
            if catalog.sessions.contains_key(session) {
                invalidate_session(catalog, index, session, Some(*now_ms), changes);
            }
            Outcome::Done
        }
        Command::Restore { rows } => restore(catalog, index, rows, changes),
        Command::Txn { ops } => crate::catalog::txn::apply_txn(catalog, index, ops, now_ms, changes),
        Command::TxnOps { ops } => crate::catalog::txn::apply_txn_ops(catalog, index, ops, now_ms, changes),
        Command::ConfigSet { kind, name, body_json, cas_index } => {
            config_set(catalog, index, kind, name, body_json, *cas_index, changes)
        }
        Command::ConfigDelete { kind, name, cas_index } => {
            let key = (kind.clone(), name.clone());
            match (cas_index, catalog.config_entries.get(&key)) {
                (Some(cas), Some(entry)) if entry.modify_index != *cas => return_bool(false),
                (Some(_), None) => return_bool(false),
                (_, None) => return_bool(true),
                (_, Some(_)) => {
                    catalog.config_entries.remove(&key);
                    catalog.indexes.config_entries = index;
                    changes.touch(RowKey::ConfigEntry(key.0, key.1));
                    return_bool(true)
                }
            }
        }
        Command::At { now_ms: _, command } if matches!(**command, Command::At { .. }) => {
            Outcome::Rejected("a timestamped command cannot wrap another".into())
        }
        Command::At { now_ms, command } => dispatch(catalog, index, command, Some(*now_ms), changes),
        Command::KvReapTombstones { up_to_index } => kv::reap_tombstones(catalog, *up_to_index, changes),
        Command::SetKvHistoryVersions { versions } => kv::set_history_versions(catalog, *versions, changes),
        // `apply` unpacks a top-level batch; one inside another command is malformed.
        Command::Batch(_) => Outcome::Rejected("a batch cannot be nested".into()),
        Command::CoordinateBatchUpdate(updates) => crate::catalog::coordinates::update_batch(catalog, index, updates, changes),
        Command::Acl(op) => crate::catalog::acl::apply_acl(catalog, index, op, changes),
        Command::PreparedQuery(op) => crate::catalog::prepared_query::apply_prepared_query(catalog, index, op, changes),
        Command::SetAutopilotConfig { settings, cas_index } => crate::catalog::autopilot::set(catalog, index, settings, *cas_index, changes),
    }
}

/// Replaces the catalog with a snapshot's rows. Every table index moves to `index`, so blocking
/// queries wake and no index a client has seen is ever ahead of the new state.
fn restore(catalog: &mut Catalog, index: u64, rows: &[(Vec<u8>, Vec<u8>)], changes: &mut ChangeSet) -> Outcome {
    let mut fresh = Catalog::new();
    for (key, value) in rows {
        if let Err(error) = fresh.load_row(key, value) {
            return Outcome::Rejected(format!("snapshot row does not decode: {error}"));
        }
    }
    for row in catalog.all_rows() {
        changes.touch(row);
    }
    changes.everything = true;
    *catalog = fresh;
    catalog.restore_floor = index;
    catalog.indexes = crate::catalog::model::TableIndexes {
        nodes: index,
        services: index,
        checks: index,
        kv: index,
        sessions: index,
        config_entries: index,
    };
    for row in catalog.all_rows() {
        changes.touch(row);
    }
    Outcome::Done
}

fn return_bool(ok: bool) -> Outcome {
    Outcome::Bool(ok)
}

fn config_set(catalog: &mut Catalog, index: u64, kind: &str, name: &str, body_json: &str, cas_index: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let key = (kind.to_string(), name.to_string());
    let existing = catalog.config_entries.get(&key);
    match (cas_index, existing) {
        (Some(0), Some(_)) => return Outcome::Bool(false),
        (Some(cas), Some(entry)) if cas != 0 && entry.modify_index != cas => return Outcome::Bool(false),
        (Some(cas), None) if cas != 0 => return Outcome::Bool(false),
        _ => {}
    }
    let entry = crate::catalog::model::ConfigEntry {
        kind: kind.to_string(),
        name: name.to_string(),
        body_json: body_json.to_string(),
        create_index: existing.map_or(index, |e| e.create_index),
        modify_index: index,
    };
    catalog.config_entries.insert(key.clone(), entry);
    catalog.indexes.config_entries = index;
    changes.touch(RowKey::ConfigEntry(key.0, key.1));
    Outcome::Bool(true)
}

pub(super) fn register(catalog: &mut Catalog, index: u64, registration: &Registration, now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let node_name = &registration.node;
    // Validate every check's service binding before changing anything.
    for check in &registration.checks {
        if !check.service_id.is_empty() {
            let in_this_registration =
                registration.service.as_ref().is_some_and(|s| s.id == check.service_id);
            let known = catalog.services.contains_key(&(node_name.clone(), check.service_id.clone()));
            if !in_this_registration && !known {
                return Outcome::Rejected(format!(
                    "ServiceID {:?} does not exist on node {node_name:?}",
                    check.service_id
                ));
            }
        }
    }

    let existing = catalog.nodes.get(node_name);
    if existing.is_none() || !registration.skip_node_update {
        let create_index = existing.map_or(index, |n| n.create_index);
        let mut node = Node {
            id: registration.node_id.clone(),
            name: node_name.clone(),
            address: registration.address.clone(),
            datacenter: registration.datacenter.clone(),
            tagged_addresses: registration.tagged_addresses.clone(),
            meta: registration.node_meta.clone(),
            create_index,
            modify_index: index,
        };
        if let Some(existing) = existing {
            node.modify_index = existing.modify_index;
            if *existing != node {
                node.modify_index = index;
            }
        }
        if existing != Some(&node) {
            catalog.nodes.insert(node_name.clone(), node);
            catalog.indexes.nodes = index;
            changes.touch(RowKey::Node(node_name.clone()));
            touch_node_services(catalog, node_name, changes);
        }
    }

    if let Some(service) = &registration.service {
        let key = (node_name.clone(), service.id.clone());
        let existing = catalog.services.get(&key);
        let mut row = Service {
            node: node_name.clone(),
            id: service.id.clone(),
            name: service.name.clone(),
            tags: service.tags.clone(),
            address: service.address.clone(),
            tagged_addresses: service.tagged_addresses.clone(),
            meta: service.meta.clone(),
            port: service.port,
            kind: service.kind.clone(),
            enable_tag_override: service.enable_tag_override,
            weights: service.weights,
            opaque_json: service.opaque_json.clone(),
            create_index: existing.map_or(index, |s| s.create_index),
            modify_index: existing.map_or(index, |s| s.modify_index),
        };
        if existing != Some(&row) {
            // Checks copy their service's name and tags: refresh them when those change.
            let denormalized_changed = existing.is_none_or(|old| old.name != row.name || old.tags != row.tags);
            if let Some(old) = existing {
                changes.touch_service(&old.name);
            }
            changes.touch_service(&row.name);
            row.modify_index = index;
            catalog.services.insert(key.clone(), row);
            catalog.indexes.services = index;
            changes.touch(RowKey::Service(key.0.clone(), key.1.clone()));
            if denormalized_changed {
                refresh_check_service_fields(catalog, index, node_name, &service.id, changes);
            }
        }
    }

    for check in &registration.checks {
        upsert_check(catalog, index, node_name, check, changes);
        if check.status == HealthStatus::Critical {
            invalidate_sessions_of_check(catalog, index, node_name, &check.check_id, now_ms, changes);
        }
    }
    Outcome::Done
}

/// Keeps the denormalized `ServiceName`/`ServiceTags` of checks in step with their service.
fn refresh_check_service_fields(catalog: &mut Catalog, index: u64, node: &str, service_id: &str, changes: &mut ChangeSet) {
    let Some(service) = catalog.services.get(&(node.to_string(), service_id.to_string())) else {
        return;
    };
    let (name, tags) = (service.name.clone(), service.tags.clone());
    for key in catalog.checks.service_check_keys(node, service_id) {
        let mut refreshed = false;
        catalog.checks.update(&key, |check| {
            if check.service_name != name || check.service_tags != tags {
                check.service_name = name.clone();
                check.service_tags = tags.clone();
                check.modify_index = index;
                refreshed = true;
            }
        });
        if refreshed {
            catalog.indexes.checks = index;
            changes.touch(RowKey::Check(key.0, key.1));
        }
    }
}

fn upsert_check(catalog: &mut Catalog, index: u64, node: &str, check: &CheckRegistration, changes: &mut ChangeSet) {
    let (service_name, service_tags) = if check.service_id.is_empty() {
        (String::new(), Vec::new())
    } else {
        catalog
            .services
            .get(&(node.to_string(), check.service_id.clone()))
            .map(|s| (s.name.clone(), s.tags.clone()))
            .unwrap_or_default()
    };
    let key = (node.to_string(), check.check_id.clone());
    let existing = catalog.checks.get(&key);
    let mut row = Check {
        node: node.to_string(),
        check_id: check.check_id.clone(),
        name: check.name.clone(),
        status: check.status,
        notes: check.notes.clone(),
        output: check.output.clone(),
        service_id: check.service_id.clone(),
        service_name,
        service_tags,
        definition: check.definition.clone(),
        create_index: existing.map_or(index, |c| c.create_index),
        modify_index: existing.map_or(index, |c| c.modify_index),
    };
    if existing != Some(&row) {
        touch_check_services(catalog, node, &row.service_name, changes);
        row.modify_index = index;
        catalog.checks.insert(key.clone(), row);
        catalog.indexes.checks = index;
        changes.touch(RowKey::Check(key.0, key.1));
    }
}

fn update_check(catalog: &mut Catalog, index: u64, node: &str, check_id: &str, status: HealthStatus, output: &str, changes: &mut ChangeSet) -> Outcome {
    let key = (node.to_string(), check_id.to_string());
    let mut changed_service = None;
    let known = catalog.checks.update(&key, |check| {
        if check.status != status || check.output != output {
            check.status = status;
            check.output = output.to_string();
            check.modify_index = index;
            changed_service = Some(check.service_name.clone());
        }
    });
    if !known {
        return Outcome::Rejected(format!("unknown check {check_id:?} on node {node:?}"));
    }
    if let Some(service_name) = changed_service {
        catalog.indexes.checks = index;
        changes.touch(RowKey::Check(key.0, key.1));
        touch_check_services(catalog, node, &service_name, changes);
    }
    Outcome::Done
}

pub(super) fn deregister_node(catalog: &mut Catalog, index: u64, node: &str, now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    touch_node_services(catalog, node, changes);
    if catalog.nodes.remove(node).is_none() {
        return Outcome::Done;
    }
    catalog.indexes.nodes = index;
    changes.touch(RowKey::Node(node.to_string()));
    // Consul deletes a node's coordinates with the node.
    crate::catalog::coordinates::remove_node(catalog, index, node, changes);
    let first = (node.to_string(), String::new());
    let services: Vec<_> = catalog.services.range(first.clone()..).take_while(|((n, _), _)| n == node).map(|(key, _)| key.clone()).collect();
    for key in services {
        catalog.services.remove(&key);
        catalog.indexes.services = index;
        changes.touch(RowKey::Service(key.0, key.1));
    }
    let checks: Vec<_> = catalog.checks.range(first..).take_while(|((n, _), _)| n == node).map(|(key, _)| key.clone()).collect();
    for key in checks {
        catalog.checks.remove(&key);
        catalog.indexes.checks = index;
        changes.touch(RowKey::Check(key.0, key.1));
    }
    let sessions: Vec<_> = catalog.sessions.of_node(node).map(|s| s.id.clone()).collect();
    for session in sessions {
        invalidate_session(catalog, index, &session, now_ms, changes);
    }
    Outcome::Done
}

pub(super) fn deregister_service(catalog: &mut Catalog, index: u64, node: &str, service_id: &str, now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let key = (node.to_string(), service_id.to_string());
    let Some(service) = catalog.services.remove(&key) else {
        return Outcome::Done;
    };
    changes.touch_service(&service.name);
    catalog.indexes.services = index;
    changes.touch(RowKey::Service(key.0, key.1));
    for key in catalog.checks.service_check_keys(node, service_id) {
        catalog.checks.remove(&key);
        catalog.indexes.checks = index;
        invalidate_sessions_of_check(catalog, index, node, &key.1, now_ms, changes);
        changes.touch(RowKey::Check(key.0, key.1));
    }
    Outcome::Done
}

/// Removes one check; sessions that depend on it end.
pub(super) fn deregister_check(catalog: &mut Catalog, index: u64, node: &str, check_id: &str, now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let key = (node.to_string(), check_id.to_string());
    if let Some(check) = catalog.checks.get(&key) {
        touch_check_services(catalog, node, &check.service_name.clone(), changes);
        catalog.checks.remove(&key);
        catalog.indexes.checks = index;
        changes.touch(RowKey::Check(key.0, key.1));
        invalidate_sessions_of_check(catalog, index, node, check_id, now_ms, changes);
    }
    Outcome::Done
}

fn session_create(catalog: &mut Catalog, index: u64, request: &SessionRequest, ttl_ms: u64, changes: &mut ChangeSet) -> Outcome {
    if !catalog.nodes.contains_key(&request.node) {
        return Outcome::Rejected(format!("Missing node registration for {:?}", request.node));
    }
    for check_id in request.node_checks.iter().chain(&request.service_checks) {
        match catalog.checks.get(&(request.node.clone(), check_id.clone())) {
            None => return Outcome::Rejected(format!("Missing check '{check_id}' registration")),
            Some(check) if check.status == HealthStatus::Critical => {
                return Outcome::Rejected(format!("Check '{check_id}' is in critical state"));
            }
            Some(_) => {}
        }
    }
    if catalog.sessions.contains_key(&request.id) {
        return Outcome::Rejected(format!("session {:?} already exists", request.id));
    }
    let session = Session {
        id: request.id.clone(),
        name: request.name.clone(),
        node: request.node.clone(),
        node_checks: request.node_checks.clone(),
        service_checks: request.service_checks.clone(),
        lock_delay_ms: request.lock_delay_ms,
        behavior: request.behavior,
        ttl_ms,
        create_index: index,
        modify_index: index,
    };
    catalog.sessions.insert(request.id.clone(), session);
    catalog.indexes.sessions = index;
    changes.touch(RowKey::Session(request.id.clone()));
    Outcome::Done
}

/// A session ends when a check it depends on goes critical or disappears (Consul's rule).
fn invalidate_sessions_of_check(catalog: &mut Catalog, index: u64, node: &str, check_id: &str, now_ms: Option<u64>, changes: &mut ChangeSet) {
    let doomed: Vec<String> = catalog
        .sessions
        .of_node(node)
        .filter(|s| s.node_checks.iter().chain(&s.service_checks).any(|c| c == check_id))
        .map(|s| s.id.clone())
        .collect();
    for session in doomed {
        invalidate_session(catalog, index, &session, now_ms, changes);
    }
}

/// Ends a session: its locks are released or its keys deleted, per its behavior, and each key
/// it held starts the session's lock-delay (when the time is known).
fn invalidate_session(catalog: &mut Catalog, index: u64, session_id: &str, now_ms: Option<u64>, changes: &mut ChangeSet) {
    let Some(session) = catalog.sessions.remove(session_id) else {
        return;
    };
    catalog.indexes.sessions = index;
    changes.touch(RowKey::Session(session_id.to_string()));
    let held = catalog.kv.held_by(session_id);
    let delete_keys = session.behavior == SessionBehavior::Delete;
    kv::lose_locks(catalog, index, &held, delete_keys, session.lock_delay_ms, now_ms, changes);
    // Consul deletes the prepared queries bound to a session with it.
    crate::catalog::prepared_query::remove_for_session(catalog, index, session_id, changes);
}

/// Marks every service on `node` as changed (node fields and node-level checks show up in the
/// results of service queries).
fn touch_node_services(catalog: &Catalog, node: &str, changes: &mut ChangeSet) {
    let first = (node.to_string(), String::new());
    for (_, service) in catalog.services.range(first..).take_while(|((n, _), _)| n == node) {
        changes.touch_service(&service.name);
    }
}

/// Marks the services a check's change shows up in: its own service, or every service on the
/// node for a node-level check.
fn touch_check_services(catalog: &Catalog, node: &str, service_name: &str, changes: &mut ChangeSet) {
    if service_name.is_empty() {
        touch_node_services(catalog, node, changes);
    } else {
        changes.touch_service(service_name);
    }
}
