//! The undo log of a transaction: the state of every row before the transaction first touched
//! it, and the table indexes before the first operation.
//!
//! An operation remembers every row it *may* change before it changes anything. For KV
//! operations that is the key itself; for Node, Service and Check operations it is the node's
//! whole scope (see [`Undo::remember_node_scope`]), because the apply helpers they reuse cascade:
//! removing a node removes its services and checks, and a removed or critical check ends the
//! node's sessions, which release or delete the keys those sessions hold.
//!
//! Rolling back puts every remembered row back, deleting rows that did not exist, and restores
//! the table indexes. The rows stay in the `ChangeSet`, so the state machine rewrites them with
//! their restored values (or deletes them again), and the persisted rows equal the in-memory
//! catalog after a rolled-back transaction.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::kv::KeyState;
use crate::catalog::coordinates::NodeCoordinate;
use crate::catalog::model::{Check, ConfigEntry, Node, Service, Session, TableIndexes};
use crate::catalog::prepared_query::PreparedQuery;
use crate::catalog::{Catalog, ChangeSet, RowKey};

/// A row, by its key, as it was before the transaction touched it; `None`: it did not exist.
enum Before {
    Node(String, Option<Node>),
    Service((String, String), Option<Service>),
    Check((String, String), Option<Check>),
    /// A KV key with its tombstone, lock-delay and history versions.
    Kv(KeyState),
    Session(String, Option<Session>),
    ConfigEntry((String, String), Option<ConfigEntry>),
    Coordinate((String, String), Option<NodeCoordinate>),
    /// A prepared query bound to a session the transaction may end (which deletes it).
    PreparedQuery(String, Option<PreparedQuery>),
}

pub(super) struct Undo {
    /// The rows already remembered, so that only their first version is kept.
    remembered: BTreeSet<RowKey>,
    /// Nodes whose scope is remembered. Rows that join a scope later are created by an
    /// operation of this transaction, which remembers them itself, so one scan per node is enough.
    scoped_nodes: BTreeSet<String>,
    rows: Vec<Before>,
    indexes: TableIndexes,
    /// Lock-delays, whole: invalidating a session prunes expired delays of any key.
    lock_delays: BTreeMap<String, u64>,
    /// The coordinates table's index, saved whole like the table indexes.
    coordinates_index: u64,
    /// The prepared-query table's index, saved whole like the table indexes.
    prepared_queries_index: u64,
}

impl Undo {
    pub(super) fn new(catalog: &Catalog) -> Undo {
        Undo { remembered: BTreeSet::new(), scoped_nodes: BTreeSet::new(), rows: Vec::new(), indexes: catalog.indexes, lock_delays: catalog.lock_delays.clone(), coordinates_index: catalog.coordinates_index, prepared_queries_index: catalog.prepared_queries_index }
    }

    /// Records `row` as it is now, unless an earlier operation already recorded it.
    pub(super) fn remember(&mut self, catalog: &Catalog, row: RowKey) {
        if row == RowKey::Indexes || !self.remembered.insert(row.clone()) {
            // The table indexes are saved whole when the transaction starts.
            return;
        }
        let before = match row {
            RowKey::Node(name) => Before::Node(name.clone(), catalog.nodes.get(&name).cloned()),
            RowKey::Service(node, id) => {
                let key = (node, id);
                Before::Service(key.clone(), catalog.services.get(&key).cloned())
            }
            RowKey::Check(node, id) => {
                let key = (node, id);
                Before::Check(key.clone(), catalog.checks.get(&key).cloned())
            }
            RowKey::Kv(key) => Before::Kv(KeyState::capture(catalog, &key)),
            RowKey::Session(id) => Before::Session(id.clone(), catalog.sessions.get(&id).cloned()),
            RowKey::ConfigEntry(kind, name) => {
                let key = (kind, name);
                Before::ConfigEntry(key.clone(), catalog.config_entries.get(&key).cloned())
            }
            RowKey::Coordinate(node, segment) => {
                let key = (node, segment);
                Before::Coordinate(key.clone(), catalog.coordinates.get(&key).cloned())
            }
            RowKey::PreparedQuery(id) => Before::PreparedQuery(id.clone(), catalog.prepared_queries.get(&id).cloned()),
            // Saved with their key (`Kv`), or whole when the transaction starts, or derived
            // after it (service indexes); settings and restores are never part of one.
            RowKey::Indexes
            | RowKey::Tombstone(_)
            | RowKey::LockDelay(_)
            | RowKey::KvVersion(..)
            | RowKey::ServiceIndex(_)
            | RowKey::Settings
            | RowKey::RestoreFloor
            | RowKey::CoordinatesIndex
            | RowKey::PreparedQueriesIndex => return,
            // ACL writes are never part of a transaction.
            RowKey::AclToken(_)
            | RowKey::AclPolicy(_)
            | RowKey::AclRole(_)
            | RowKey::AclAuthMethod(_)
            | RowKey::AclBindingRule(_)
            | RowKey::AclIndexes => return,
            // Nor is the autopilot configuration.
            RowKey::AutopilotConfig => return,
        };
        self.rows.push(before);
    }

    pub(super) fn remember_kv(&mut self, catalog: &Catalog, key: &str) {
        self.remember(catalog, RowKey::Kv(key.to_string()));
    }

    /// Records every row a Node, Service or Check operation on `node` can change: the node, its
    /// services and checks, its sessions, and the keys those sessions hold.
    pub(super) fn remember_node_scope(&mut self, catalog: &Catalog, node: &str) {
        if !self.scoped_nodes.insert(node.to_string()) {
            return;
        }
        let mut rows = vec![RowKey::Node(node.to_string())];
        let from = (node.to_string(), String::new());
        rows.extend(catalog.services.range(from.clone()..).take_while(|((n, _), _)| n == node).map(|((n, id), _)| RowKey::Service(n.clone(), id.clone())));
        rows.extend(catalog.checks.range(from..).take_while(|((n, _), _)| n == node).map(|((n, id), _)| RowKey::Check(n.clone(), id.clone())));
        // Removing the node removes its coordinates.
        rows.extend(crate::catalog::coordinates::node_keys(catalog, node).map(|(n, s)| RowKey::Coordinate(n, s)));
        let sessions: BTreeSet<&str> = catalog.sessions.of_node(node).map(|s| s.id.as_str()).collect();
        rows.extend(sessions.iter().map(|id| RowKey::Session(id.to_string())));
        if !sessions.is_empty() {
            rows.extend(sessions.iter().flat_map(|id| catalog.kv.held_by(id)).map(RowKey::Kv));
            // Ending a session deletes the prepared queries bound to it.
            let bound = catalog.prepared_queries.values().filter(|q| sessions.contains(q.session.as_str()));
            rows.extend(bound.map(|q| RowKey::PreparedQuery(q.id.clone())).collect::<Vec<_>>());
        }
        for row in rows {
            self.remember(catalog, row);
        }
    }

    /// Whether every row in `changes` was remembered before it changed: what makes a rollback
    /// complete. Checked after every operation in debug builds.
    pub(super) fn covers(&self, changes: &ChangeSet) -> bool {
        changes.rows().all(|row| match row {
            RowKey::Indexes | RowKey::LockDelay(_) | RowKey::CoordinatesIndex | RowKey::PreparedQueriesIndex => true,
            RowKey::Tombstone(key) | RowKey::KvVersion(key, _) => self.remembered.contains(&RowKey::Kv(key.clone())),
            row => self.remembered.contains(row),
        })
    }

    /// Puts every remembered row and the table indexes back.
    pub(super) fn roll_back(self, catalog: &mut Catalog) {
        for before in self.rows {
            match before {
                Before::Node(key, Some(row)) => {
                    catalog.nodes.insert(key, row);
                }
                Before::Node(key, None) => {
                    catalog.nodes.remove(&key);
                }
                Before::Service(key, Some(row)) => {
                    catalog.services.insert(key, row);
                }
                Before::Service(key, None) => {
                    catalog.services.remove(&key);
                }
                Before::Check(key, Some(row)) => {
                    catalog.checks.insert(key, row);
                }
                Before::Check(key, None) => {
                    catalog.checks.remove(&key);
                }
                Before::Kv(state) => state.restore(catalog),
                Before::Session(key, Some(row)) => {
                    catalog.sessions.insert(key, row);
                }
                Before::Session(key, None) => {
                    catalog.sessions.remove(&key);
                }
                Before::ConfigEntry(key, row) => put(&mut catalog.config_entries, key, row),
                Before::Coordinate(key, row) => put(&mut catalog.coordinates, key, row),
                Before::PreparedQuery(key, row) => put(&mut catalog.prepared_queries, key, row),
            }
        }
        catalog.indexes = self.indexes;
        catalog.lock_delays = self.lock_delays;
        catalog.coordinates_index = self.coordinates_index;
        catalog.prepared_queries_index = self.prepared_queries_index;
    }
}

fn put<K: Ord, V>(table: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
    match value {
        Some(value) => {
            table.insert(key, value);
        }
        None => {
            table.remove(&key);
        }
    }
}
