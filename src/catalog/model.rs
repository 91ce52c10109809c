//! The replicated data model: nodes, services, health checks, KV entries and sessions.
//!
//! These are plain values. They carry Consul's *meaning* but not its JSON names: the HTTP layer
//! (`http::dto`) owns the wire shapes and converts to and from these types. Every type here is
//! serialized with postcard inside the versioned codec (`catalog::codec`), so fields are
//! append-only: add new fields at the end and never reorder or remove them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Health of one check, ordered from best to worst so that `max` gives the aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    Passing,
    Warning,
    Critical,
}

impl HealthStatus {
    /// Consul's lowercase name, used in JSON and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<HealthStatus> {
        match text {
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "critical" => Some(HealthStatus::Critical),
            _ => None,
        }
    }
}

/// A catalog node: one machine running an agent, or an external node registered by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One address of a service under a tag such as `lan` or `wan`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

/// DNS SRV weights per health state (Consul's `Weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights { passing: 1, warning: 1 }
    }
}

/// A service instance on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub node: String,
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// Empty means "use the node's address".
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    /// `""`, `connect-proxy`, `mesh-gateway`, ...: opaque to the catalog.
    pub kind: String,
    pub enable_tag_override: bool,
    pub weights: Weights,
    /// JSON text of mesh fields the catalog stores but never interprets (`Proxy`, `Connect`,
    /// `Locality`). Kept as text because postcard cannot carry self-describing values.
    pub opaque_json: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// How a check was defined, kept so the catalog can show it (`Type`, `Interval`, `Definition`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    /// `ttl`, `http`, `tcp`, `script`, or `""` for checks registered straight into the catalog.
    pub check_type: String,
    pub http: String,
    pub tcp: String,
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
}

/// A health check on a node, optionally bound to one of its services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: HealthStatus,
    pub notes: String,
    pub output: String,
    /// Empty for node-level checks such as `serfHealth`.
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub definition: CheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One KV entry. `modify_index` is the Raft index of the write that last changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    /// The session holding the lock on this key, if any.
    pub session: Option<String>,
}

/// What happens to a session's locks when it is invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionBehavior {
    Release,
    Delete,
}

/// A session: the owner of KV locks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<String>,
    pub lock_delay_ms: u64,
    pub behavior: SessionBehavior,
    /// Zero means no TTL. Kept to the millisecond since format 2 (`codec::FORMAT_V2`).
    pub ttl_ms: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The highest index at which each table changed, deletions included, so that an index
/// returned to a blocking query never goes backwards when rows disappear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub kv: u64,
    pub sessions: u64,
    pub config_entries: u64,
}

/// A configuration entry (`/v1/config`): a JSON document keyed by kind and name. The catalog
/// stores it without interpreting it, except where a query needs a field (ingress gateways).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub kind: String,
    pub name: String,
    /// The entry's JSON text, without `Kind`, `Name` and the indexes.
    pub body_json: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Replicated settings that change how `apply` behaves, so every server must agree on them.
/// Persisted only once set; until then the defaults hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// How many versions of each KV key `?history` keeps, the live one included.
    pub kv_history_versions: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { kv_history_versions: crate::catalog::kv::KV_HISTORY_VERSIONS_DEFAULT }
    }
}

/// The autopilot settings Consul's CE autopilot acts on, as `PUT
/// /v1/operator/autopilot/configuration` sets them (durations in nanoseconds, Consul's
/// `time.Duration`, so what was given is kept exactly). Consul Enterprise's redundancy zones
/// and upgrade migrations have no place here: the API refuses them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotSettings {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold_ns: u64,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time_ns: u64,
}

/// The stored autopilot configuration with its indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    pub settings: AutopilotSettings,
    pub create_index: u64,
    pub modify_index: u64,
}
