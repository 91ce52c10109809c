//! The catalog: Consul's replicated state (nodes, services, checks, KV, sessions) as a pure,
//! deterministic state machine plus the queries that read it.
//!
//! `apply` takes a committed [`Command`] and its Raft index and mutates [`Catalog`]; it never
//! fails on user input (a rejected command is an [`Outcome`]), does no IO, and reads no clock or
//! randomness, so every server applying the same log ends with the same state.
//!
//! Durability is the Raft layer's job, but the catalog tells it exactly what changed: `apply`
//! records every touched row in a [`ChangeSet`], and [`Catalog::encode_row`] gives the bytes to
//! write (or `None` to delete) for each. The Raft state machine writes those rows in the same
//! RocksDB batch as `last_applied`, and [`Catalog::load_row`] rebuilds the catalog from them on
//! restart, so a restart never replays the whole log.

pub mod acl;
mod apply;
mod autopilot;
pub mod codec;
pub mod coordinates;
pub mod kv;
pub mod command;
pub mod model;
pub mod prepared_query;
pub mod query;
mod node_table;
mod check_table;
mod kv_table;
mod service_table;
mod session_table;
pub mod txn;
pub mod ui_summary;
#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod kv_tests;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use apply::{Outcome, apply};
pub use command::Command;

use crate::catalog::model::{ConfigEntry, KvEntry, Settings, TableIndexes};

/// The whole replicated state held in memory. Rows are keyed so that iteration order is
/// deterministic (`BTreeMap`), which keeps snapshots and digests byte-identical across servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    nodes: node_table::NodeTable,
    /// Keyed by (node, service ID).
    services: service_table::ServiceTable,
    /// Keyed by (node, check ID).
    checks: check_table::CheckTable,
    kv: kv_table::KvTable,
    sessions: session_table::SessionTable,
    /// Keyed by (kind, name).
    config_entries: BTreeMap<(String, String), ConfigEntry>,
    indexes: TableIndexes,
    /// Deleted KV keys and the index of their deletion, so that a prefix's index never goes
    /// backwards on delete. Reaped by `Command::KvReapTombstones`.
    tombstones: BTreeMap<String, u64>,
    /// Keys whose lock was lost by an invalidated session, and the wall-clock millisecond
    /// before which no session may acquire them again (lock-delay).
    lock_delays: BTreeMap<String, u64>,
    /// Earlier versions of KV entries, keyed by (key, modify index): the KV history extension.
    kv_history: BTreeMap<(String, u64), KvEntry>,
    settings: Settings,
    /// The index of the last change to each service's query results (its instances, their
    /// nodes and checks), deregistrations included: the `X-Consul-Index` of
    /// `/v1/health/service/<name>` and `/v1/catalog/service/<name>`.
    service_indexes: BTreeMap<String, u64>,
    /// The index of the last snapshot restore: a floor under every index a query reports, so
    /// that restoring older rows never moves a client's index backwards.
    restore_floor: u64,
    /// Network coordinates, keyed by (node, segment); deleted with their node (`coordinates`).
    coordinates: BTreeMap<(String, String), coordinates::NodeCoordinate>,
    /// The index of the last change to `coordinates` (its own row: `TableIndexes` is frozen).
    coordinates_index: u64,
    /// ACL tokens, policies, roles, auth methods and binding rules (`acl`).
    acl: acl::AclTables,
    /// Prepared queries by ID (`prepared_query`).
    prepared_queries: BTreeMap<String, prepared_query::PreparedQuery>,
    /// The index of the last change to `prepared_queries` (its own row: `TableIndexes` is frozen).
    prepared_queries_index: u64,
    /// The autopilot configuration, once the leader has stored one (`autopilot`).
    autopilot: Option<model::AutopilotConfig>,
}

/// Identifies one persisted row of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowKey {
    Node(String),
    Service(String, String),
    Check(String, String),
    Kv(String),
    Session(String),
    Indexes,
    ConfigEntry(String, String),
    Tombstone(String),
    LockDelay(String),
    /// One earlier version of a KV entry: (key, its modify index).
    KvVersion(String, u64),
    Settings,
    ServiceIndex(String),
    RestoreFloor,
    /// A node's network coordinate in one segment: (node, segment).
    Coordinate(String, String),
    /// The coordinates table's index.
    CoordinatesIndex,
    /// ACL rows: a token by accessor ID, a policy or role by ID, an auth method by name, a
    /// binding rule by ID, and the ACL tables' indexes.
    AclToken(String),
    AclPolicy(String),
    AclRole(String),
    AclAuthMethod(String),
    AclBindingRule(String),
    AclIndexes,
    /// A prepared query by ID, and the prepared-query table's index.
    PreparedQuery(String),
    PreparedQueriesIndex,
    /// The autopilot configuration.
    AutopilotConfig,
}

impl RowKey {
    /// The table a persisted row key belongs to, by name (what `cairn snapshot inspect`
    /// counts); `None` for bytes that are not a row key.
    pub fn table_of(key: &[u8]) -> Option<&'static str> {
        let name = match codec::decode_row_key(key).ok()? {
            RowKey::Node(_) => "Node",
            RowKey::Service(..) => "Service",
            RowKey::Check(..) => "Check",
            RowKey::Kv(_) => "KVS",
            RowKey::Session(_) => "Session",
            RowKey::Indexes => "Index",
            RowKey::ConfigEntry(..) => "ConfigEntry",
            RowKey::Tombstone(_) => "Tombstone",
            RowKey::LockDelay(_) => "LockDelay",
            RowKey::KvVersion(..) => "KVHistory",
            RowKey::Settings => "Settings",
            RowKey::ServiceIndex(_) => "ServiceIndex",
            RowKey::RestoreFloor => "RestoreFloor",
            RowKey::Coordinate(..) => "Coordinate",
            RowKey::CoordinatesIndex => "CoordinateIndex",
            RowKey::AclToken(_) => "ACLToken",
            RowKey::AclPolicy(_) => "ACLPolicy",
            RowKey::AclRole(_) => "ACLRole",
            RowKey::AclAuthMethod(_) => "ACLAuthMethod",
            RowKey::AclBindingRule(_) => "ACLBindingRule",
            RowKey::AclIndexes => "ACLIndex",
            RowKey::PreparedQuery(_) => "PreparedQuery",
            RowKey::PreparedQueriesIndex => "PreparedQueryIndex",
            RowKey::AutopilotConfig => "Autopilot",
        };
        Some(name)
    }
}

/// What one `apply` changed: the rows touched (to persist) and the service names whose query
/// results may differ (to wake blocking queries watching them), without duplicates.
#[derive(Clone, Debug, Default)]
pub struct ChangeSet {
    rows: BTreeSet<RowKey>,
    services: BTreeSet<String>,
    /// The whole state was replaced (snapshot restore): every watcher must look again.
    everything: bool,
}

impl ChangeSet {
    pub fn new() -> ChangeSet {
        ChangeSet::default()
    }

    /// The change of a wholesale replacement (snapshot install): everything may differ.
    pub fn everything_changed() -> ChangeSet {
        ChangeSet { everything: true, ..ChangeSet::default() }
    }

    fn touch(&mut self, row: RowKey) {
        self.rows.insert(row);
    }

    fn touch_service(&mut self, name: &str) {
        if !self.services.contains(name) {
            self.services.insert(name.to_string());
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = &RowKey> {
        self.rows.iter()
    }

    /// Names of the services whose catalog or health results may have changed.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(String::as_str)
    }

    /// True after a change that replaced the whole state.
    pub fn everything(&self) -> bool {
        self.everything
    }

    /// Adds `other`'s changes to this set.
    fn merge(&mut self, other: ChangeSet) {
        self.rows.extend(other.rows);
        self.services.extend(other.services);
        self.everything |= other.everything;
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.services.is_empty() && !self.everything
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.services.clear();
        self.everything = false;
    }
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// The ACL tables.
    pub fn acl(&self) -> &acl::AclTables {
        &self.acl
    }

    /// The highest index at which each table changed.
    pub fn indexes(&self) -> TableIndexes {
        self.indexes
    }

    /// The highest index any table or restore has reached: the last `ModifyIndex` handed out.
    pub fn last_index(&self) -> u64 {
        let i = &self.indexes;
        [
            i.nodes,
            i.services,
            i.checks,
            i.kv,
            i.sessions,
            i.config_entries,
            self.restore_floor,
            self.coordinates_index,
            self.acl.indexes.max(),
            self.prepared_queries_index,
            self.autopilot.as_ref().map_or(0, |config| config.modify_index),
        ]
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// The bytes to persist for `row`, or `None` if the row no longer exists.
    pub fn encode_row(&self, row: &RowKey) -> Option<(Vec<u8>, Vec<u8>)> {
        let key = codec::encode_row_key(row);
        let value = match row {
            RowKey::Node(name) => codec::encode_row_value(self.nodes.get(name)?),
            RowKey::Service(node, id) => {
                codec::encode_row_value(self.services.get(&(node.clone(), id.clone()))?)
            }
            RowKey::Check(node, id) => {
                codec::encode_row_value(self.checks.get(&(node.clone(), id.clone()))?)
            }
            RowKey::Kv(key) => codec::encode_row_value(self.kv.get(key)?),
            RowKey::Session(id) => codec::encode_session_row(self.sessions.get(id)?),
            RowKey::Indexes => codec::encode_row_value(&self.indexes),
            RowKey::ConfigEntry(kind, name) => {
                codec::encode_row_value(self.config_entries.get(&(kind.clone(), name.clone()))?)
            }
            RowKey::Tombstone(key) => codec::encode_row_value(self.tombstones.get(key)?),
            RowKey::LockDelay(key) => codec::encode_row_value(self.lock_delays.get(key)?),
            RowKey::KvVersion(key, index) => codec::encode_row_value(self.kv_history.get(&(key.clone(), *index))?),
            RowKey::Settings => codec::encode_row_value(&self.settings),
            RowKey::ServiceIndex(name) => codec::encode_row_value(self.service_indexes.get(name)?),
            RowKey::RestoreFloor if self.restore_floor == 0 => return None,
            RowKey::RestoreFloor => codec::encode_row_value(&self.restore_floor),
            RowKey::Coordinate(node, segment) => {
                codec::encode_row_value(self.coordinates.get(&(node.clone(), segment.clone()))?)
            }
            RowKey::CoordinatesIndex if self.coordinates_index == 0 => return None,
            RowKey::CoordinatesIndex => codec::encode_row_value(&self.coordinates_index),
            RowKey::AclToken(id) => codec::encode_row_value(self.acl.tokens.get(id)?),
            RowKey::AclPolicy(id) => codec::encode_row_value(self.acl.policies.get(id)?),
            RowKey::AclRole(id) => codec::encode_row_value(self.acl.roles.get(id)?),
            RowKey::AclAuthMethod(name) => codec::encode_row_value(self.acl.auth_methods.get(name)?),
            RowKey::AclBindingRule(id) => codec::encode_row_value(self.acl.binding_rules.get(id)?),
            RowKey::AclIndexes if self.acl.indexes == acl::AclIndexes::default() => return None,
            RowKey::AclIndexes => codec::encode_row_value(&self.acl.indexes),
            RowKey::PreparedQuery(id) => codec::encode_row_value(self.prepared_queries.get(id)?),
            RowKey::PreparedQueriesIndex if self.prepared_queries_index == 0 => return None,
            RowKey::PreparedQueriesIndex => codec::encode_row_value(&self.prepared_queries_index),
            RowKey::AutopilotConfig => codec::encode_row_value(self.autopilot.as_ref()?),
        };
        Some((key, value))
    }

    /// The persisted key of `row`, for deletions.
    pub fn row_key_bytes(row: &RowKey) -> Vec<u8> {
        codec::encode_row_key(row)
    }

    /// Every row, in key order: what a snapshot contains.
    pub fn all_rows(&self) -> Vec<RowKey> {
        let mut rows = Vec::with_capacity(
            self.nodes.len() + self.services.len() + self.checks.len() + self.kv.len() + 1,
        );
        rows.extend(self.nodes.keys().map(|n| RowKey::Node(n.clone())));
        rows.extend(self.services.keys().map(|(n, s)| RowKey::Service(n.clone(), s.clone())));
        rows.extend(self.checks.keys().map(|(n, c)| RowKey::Check(n.clone(), c.clone())));
        rows.extend(self.kv.keys().map(|k| RowKey::Kv(k.clone())));
        rows.extend(self.sessions.keys().map(|s| RowKey::Session(s.clone())));
        rows.extend(self.config_entries.keys().map(|(k, n)| RowKey::ConfigEntry(k.clone(), n.clone())));
        rows.extend(self.tombstones.keys().map(|k| RowKey::Tombstone(k.clone())));
        rows.extend(self.lock_delays.keys().map(|k| RowKey::LockDelay(k.clone())));
        rows.extend(self.kv_history.keys().map(|(k, i)| RowKey::KvVersion(k.clone(), *i)));
        rows.extend(self.service_indexes.keys().map(|name| RowKey::ServiceIndex(name.clone())));
        rows.extend(self.coordinates.keys().map(|(n, s)| RowKey::Coordinate(n.clone(), s.clone())));
        rows.extend(self.acl.tokens.keys().map(|id| RowKey::AclToken(id.clone())));
        rows.extend(self.acl.policies.keys().map(|id| RowKey::AclPolicy(id.clone())));
        rows.extend(self.acl.roles.keys().map(|id| RowKey::AclRole(id.clone())));
        rows.extend(self.acl.auth_methods.keys().map(|name| RowKey::AclAuthMethod(name.clone())));
        rows.extend(self.acl.binding_rules.keys().map(|id| RowKey::AclBindingRule(id.clone())));
        if self.acl.indexes != acl::AclIndexes::default() {
            rows.push(RowKey::AclIndexes);
        }
        rows.extend(self.prepared_queries.keys().map(|id| RowKey::PreparedQuery(id.clone())));
        if self.prepared_queries_index != 0 {
            rows.push(RowKey::PreparedQueriesIndex);
        }
        if self.restore_floor != 0 {
            rows.push(RowKey::RestoreFloor);
        }
        if self.coordinates_index != 0 {
            rows.push(RowKey::CoordinatesIndex);
        }
        if self.settings != Settings::default() {
            rows.push(RowKey::Settings);
        }
        if self.autopilot.is_some() {
            rows.push(RowKey::AutopilotConfig);
        }
        rows.push(RowKey::Indexes);
        rows
    }

    /// Rebuilds one row from its persisted bytes (restart and snapshot install).
    pub fn load_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), codec::CodecError> {
        match codec::decode_row_key(key)? {
            RowKey::Node(name) => {
                self.nodes.insert(name, codec::decode_row_value(value)?);
            }
            RowKey::Service(node, id) => {
                self.services.insert((node, id), codec::decode_row_value(value)?);
            }
            RowKey::Check(node, id) => {
                self.checks.insert((node, id), codec::decode_row_value(value)?);
            }
            RowKey::Kv(key) => {
                self.kv.insert(key, codec::decode_row_value(value)?);
            }
            RowKey::Session(id) => {
                self.sessions.insert(id, codec::decode_session_row(value)?);
            }
            RowKey::Indexes => self.indexes = codec::decode_row_value(value)?,
            RowKey::ConfigEntry(kind, name) => {
                self.config_entries.insert((kind, name), codec::decode_row_value(value)?);
            }
            RowKey::Tombstone(key) => {
                self.tombstones.insert(key, codec::decode_row_value(value)?);
            }
            RowKey::LockDelay(key) => {
                self.lock_delays.insert(key, codec::decode_row_value(value)?);
            }
            RowKey::KvVersion(key, index) => {
                self.kv_history.insert((key, index), codec::decode_row_value(value)?);
            }
            RowKey::Settings => self.settings = codec::decode_row_value(value)?,
            RowKey::ServiceIndex(name) => {
                self.service_indexes.insert(name, codec::decode_row_value(value)?);
            }
            RowKey::RestoreFloor => self.restore_floor = codec::decode_row_value(value)?,
            RowKey::Coordinate(node, segment) => {
                self.coordinates.insert((node, segment), codec::decode_row_value(value)?);
            }
            RowKey::CoordinatesIndex => self.coordinates_index = codec::decode_row_value(value)?,
            RowKey::AclToken(_) => self.acl.load_token(codec::decode_row_value(value)?),
            RowKey::AclPolicy(id) => {
                self.acl.policies.insert(id, codec::decode_row_value(value)?);
            }
            RowKey::AclRole(id) => {
                self.acl.roles.insert(id, codec::decode_row_value(value)?);
            }
            RowKey::AclAuthMethod(name) => {
                self.acl.auth_methods.insert(name, codec::decode_row_value(value)?);
            }
            RowKey::AclBindingRule(id) => {
                self.acl.binding_rules.insert(id, codec::decode_row_value(value)?);
            }
            RowKey::AclIndexes => self.acl.indexes = codec::decode_row_value(value)?,
            RowKey::PreparedQuery(id) => {
                self.prepared_queries.insert(id, codec::decode_row_value(value)?);
            }
            RowKey::PreparedQueriesIndex => self.prepared_queries_index = codec::decode_row_value(value)?,
            RowKey::AutopilotConfig => self.autopilot = Some(codec::decode_row_value(value)?),
        }
        Ok(())
    }

    /// How many entries each table holds: what the state's memory grows with.
    pub fn sizes(&self) -> Vec<(&'static str, usize)> {
        let acl = &self.acl;
        vec![
            ("nodes", self.nodes.len()),
            ("services", self.services.len()),
            ("service_indexes", self.service_indexes.len()),
            ("checks", self.checks.len()),
            ("kv", self.kv.len()),
            ("kv_tombstones", self.tombstones.len()),
            ("kv_history", self.kv_history.len()),
            ("kv_lock_delays", self.lock_delays.len()),
            ("sessions", self.sessions.len()),
            ("config_entries", self.config_entries.len()),
            ("coordinates", self.coordinates.len()),
            ("acl_tokens", acl.tokens.len()),
            ("acl_policies", acl.policies.len()),
            ("acl_roles", acl.roles.len()),
            ("acl_auth_methods", acl.auth_methods.len()),
            ("acl_binding_rules", acl.binding_rules.len()),
            ("prepared_queries", self.prepared_queries.len()),
        ]
    }

    /// A digest of the whole state, equal on two servers exactly when their catalogs are equal.
    pub fn digest(&self) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        for row in self.all_rows() {
            if let Some((key, value)) = self.encode_row(&row) {
                hasher.update(&(key.len() as u64).to_be_bytes());
                hasher.update(&key);
                hasher.update(&(value.len() as u64).to_be_bytes());
                hasher.update(&value);
            }
        }
        hasher.finalize()
    }
}
