//! Consul's JSON response shapes, and the conversions from catalog and agent types.
//!
//! This is the only module that knows Consul's field names for output. Field order follows
//! Consul's Go structs so responses diff cleanly against a real Consul's.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::model::{Check, KvEntry, Node, Service, ServiceAddress, Session, SessionBehavior, Weights};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeOut {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&Node> for NodeOut {
    fn from(node: &Node) -> NodeOut {
        NodeOut {
            id: node.id.clone(),
            node: node.name.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            meta: node.meta.clone(),
            create_index: node.create_index,
            modify_index: node.modify_index,
        }
    }
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAddressOut {
    pub address: String,
    pub port: u16,
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "PascalCase")]
pub struct WeightsOut {
    pub passing: u32,
    pub warning: u32,
}

impl From<Weights> for WeightsOut {
    fn from(weights: Weights) -> WeightsOut {
        WeightsOut { passing: weights.passing, warning: weights.warning }
    }
}

pub fn tagged_addresses_out(addresses: &BTreeMap<String, ServiceAddress>) -> BTreeMap<String, ServiceAddressOut> {
    addresses
        .iter()
        .map(|(tag, a)| (tag.clone(), ServiceAddressOut { address: a.address.clone(), port: a.port }))
        .collect()
}

/// The stored JSON text of an opaque field (`Proxy`, `Connect`, `Locality`), or `default`.
pub fn opaque(service_opaque: &BTreeMap<String, String>, field: &str) -> Option<Value> {
    service_opaque.get(field).and_then(|text| serde_json::from_str(text).ok())
}

/// A service as the health endpoints and `/v1/catalog/node/:node` show it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceOut {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    /// Omitted when empty, as Consul's `omitempty` does.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddressOut>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub weights: WeightsOut,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub proxy: Value,
    pub connect: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Value>,
    pub peer_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&Service> for ServiceOut {
    fn from(service: &Service) -> ServiceOut {
        ServiceOut {
            id: service.id.clone(),
            service: service.name.clone(),
            tags: service.tags.clone(),
            address: service.address.clone(),
            tagged_addresses: tagged_addresses_out(&service.tagged_addresses),
            meta: service.meta.clone(),
            port: service.port,
            weights: service.weights.into(),
            enable_tag_override: service.enable_tag_override,
            kind: service.kind.clone(),
            proxy: opaque(&service.opaque_json, "Proxy").unwrap_or_else(|| serde_json::json!({})),
            connect: opaque(&service.opaque_json, "Connect").unwrap_or_else(|| serde_json::json!({})),
            locality: opaque(&service.opaque_json, "Locality"),
            peer_name: String::new(),
            create_index: service.create_index,
            modify_index: service.modify_index,
        }
    }
}

/// One row of `/v1/catalog/service/:name`: node and service fields flattened.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceOut {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub service_address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tagged_addresses: BTreeMap<String, ServiceAddressOut>,
    pub service_weights: WeightsOut,
    pub service_meta: BTreeMap<String, String>,
    pub service_port: u16,
    pub service_enable_tag_override: bool,
    pub service_proxy: Value,
    pub service_connect: Value,
    pub create_index: u64,
    pub modify_index: u64,
}

impl CatalogServiceOut {
    pub fn new(node: &Node, service: &Service) -> CatalogServiceOut {
        CatalogServiceOut {
            id: node.id.clone(),
            node: node.name.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_kind: service.kind.clone(),
            service_id: service.id.clone(),
            service_name: service.name.clone(),
            service_tags: service.tags.clone(),
            service_address: service.address.clone(),
            service_tagged_addresses: tagged_addresses_out(&service.tagged_addresses),
            service_weights: service.weights.into(),
            service_meta: service.meta.clone(),
            service_port: service.port,
            service_enable_tag_override: service.enable_tag_override,
            service_proxy: opaque(&service.opaque_json, "Proxy").unwrap_or_else(|| serde_json::json!({})),
            service_connect: opaque(&service.opaque_json, "Connect").unwrap_or_else(|| serde_json::json!({})),
            create_index: service.create_index,
            modify_index: service.modify_index,
        }
    }
}

/// A health check (`HealthCheck` in Consul).
#[derive(Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct CheckOut {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub check_type: String,
    pub interval: String,
    pub timeout: String,
    pub exposed_port: u16,
    pub definition: Value,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&Check> for CheckOut {
    fn from(check: &Check) -> CheckOut {
        let d = &check.definition;
        let mut definition = serde_json::Map::new();
        if !d.http.is_empty() {
            definition.insert("HTTP".into(), Value::from(d.http.clone()));
        }
        if !d.tcp.is_empty() {
            definition.insert("TCP".into(), Value::from(d.tcp.clone()));
        }
        if !d.interval.is_empty() {
            definition.insert("Interval".into(), Value::from(d.interval.clone()));
        }
        if !d.timeout.is_empty() {
            definition.insert("Timeout".into(), Value::from(d.timeout.clone()));
        }
        if !d.deregister_critical_service_after.is_empty() {
            definition.insert("DeregisterCriticalServiceAfter".into(), Value::from(d.deregister_critical_service_after.clone()));
        }
        let check_type = if d.check_type == "maintenance" { String::new() } else { d.check_type.clone() };
        CheckOut {
            node: check.node.clone(),
            check_id: check.check_id.clone(),
            name: check.name.clone(),
            status: check.status.as_str().to_string(),
            notes: check.notes.clone(),
            output: check.output.clone(),
            service_id: check.service_id.clone(),
            service_name: check.service_name.clone(),
            service_tags: check.service_tags.clone(),
            check_type,
            interval: d.interval.clone(),
            timeout: d.timeout.clone(),
            exposed_port: 0,
            definition: Value::Object(definition),
            create_index: check.create_index,
            modify_index: check.modify_index,
        }
    }
}

/// One entry of `/v1/health/service/:name`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntryOut {
    pub node: NodeOut,
    pub service: ServiceOut,
    pub checks: Vec<CheckOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvOut {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&KvEntry> for KvOut {
    fn from(entry: &KvEntry) -> KvOut {
        KvOut {
            lock_index: entry.lock_index,
            key: entry.key.clone(),
            flags: entry.flags,
            // Consul returns `null` for an empty value.
            value: (!entry.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&entry.value)),
            session: entry.session.clone(),
            create_index: entry.create_index,
            modify_index: entry.modify_index,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionOut {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Nanoseconds, as Go's `time.Duration` marshals.
    pub lock_delay: u64,
    pub behavior: String,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub node_checks: Vec<String>,
    pub service_checks: Option<Vec<Value>>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&Session> for SessionOut {
    fn from(session: &Session) -> SessionOut {
        SessionOut {
            id: session.id.clone(),
            name: session.name.clone(),
            node: session.node.clone(),
            lock_delay: session.lock_delay_ms * 1_000_000,
            behavior: match session.behavior {
                SessionBehavior::Release => "release".into(),
                SessionBehavior::Delete => "delete".into(),
            },
            ttl: session_ttl(session.ttl_ms),
            node_checks: session.node_checks.clone(),
            service_checks: (!session.service_checks.is_empty())
                .then(|| session.service_checks.iter().map(|id| serde_json::json!({"ID": id, "Namespace": ""})).collect()),
            create_index: session.create_index,
            modify_index: session.modify_index,
        }
    }
}

/// A session's TTL as Consul shows it: `""` for none, else seconds with the fraction kept
/// (`"15s"`, `"7.5s"`): Consul echoes the string it was given, which clients wrote that way.
fn session_ttl(ttl_ms: u64) -> String {
    match (ttl_ms / 1000, ttl_ms % 1000) {
        (0, 0) => String::new(),
        (secs, 0) => format!("{secs}s"),
        (secs, millis) => format!("{secs}.{}s", format!("{millis:03}").trim_end_matches('0')),
    }
}
