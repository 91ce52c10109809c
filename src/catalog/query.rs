//! Read-only queries over the catalog: the pure half of every catalog, health and KV endpoint.
//!
//! Results are in deterministic key order (node, then ID), which is also the order Consul's
//! memdb indexes give. Filtering by Consul's `?filter=` expressions happens in the HTTP layer on
//! the JSON shape, since that is what the expressions are written against.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::Catalog;
use crate::catalog::model::{Check, ConfigEntry, HealthStatus, KvEntry, Node, Service, Session};

/// A service instance with its node and every check that affects it: the node-level checks
/// (such as `serfHealth`) first, then the service's own.
#[derive(Clone, Debug)]
pub struct HealthInstance<'a> {
    pub node: &'a Node,
    pub service: &'a Service,
    pub checks: Vec<&'a Check>,
}

impl HealthInstance<'_> {
    /// The worst status among the instance's checks (passing if it has none).
    pub fn aggregate_status(&self) -> HealthStatus {
        aggregate_status(self.checks.iter().copied())
    }
}

/// The worst status among `checks`, passing for none.
pub fn aggregate_status<'a>(checks: impl IntoIterator<Item = &'a Check>) -> HealthStatus {
    checks.into_iter().map(|c| c.status).max().unwrap_or(HealthStatus::Passing)
}

impl Catalog {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// The node named `name` in any case, without a scan (DNS).
    pub fn node_ignoring_case(&self, name: &str) -> Option<&Node> {
        self.nodes.named_ignoring_case(name)
    }

    /// Who has address `ip`, without a scan (DNS PTR): the first node by name with it, else
    /// the first service instance (by node, then ID) registered with it.
    pub fn address_owner(&self, ip: std::net::IpAddr) -> Option<Result<&Node, &Service>> {
        self.nodes.with_address(ip).map(Ok).or_else(|| self.services.with_address(ip).map(Err))
    }

    pub fn node_services(&self, node: &str) -> Vec<&Service> {
        self.services
            .range((node.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == node)
            .map(|(_, s)| s)
            .collect()
    }

    pub fn service(&self, node: &str, service_id: &str) -> Option<&Service> {
        self.services.get(&(node.to_string(), service_id.to_string()))
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// Service name to the sorted union of its instances' tags (`/v1/catalog/services`).
    pub fn service_names(&self) -> BTreeMap<String, Vec<String>> {
        let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for service in self.services.values() {
            names.entry(service.name.clone()).or_default().extend(service.tags.iter().cloned());
        }
        names.into_iter().map(|(name, tags)| (name, tags.into_iter().collect())).collect()
    }

    /// The names registered that equal `name` ignoring case (DNS names are case-insensitive).
    pub fn service_names_ignoring_case(&self, name: &str) -> Vec<String> {
        let names: BTreeSet<&str> = self.services.named_ignoring_case(name).map(|s| s.name.as_str()).collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// Every instance of the service `name`, with its node.
    pub fn service_instances(&self, name: &str) -> Vec<(&Node, &Service)> {
        self.services.named(name).filter_map(|s| self.nodes.get(&s.node).map(|n| (n, s))).collect()
    }

    /// Every instance of `name` with the checks that decide its health.
    pub fn health_instances(&self, name: &str) -> Vec<HealthInstance<'_>> {
        self.service_instances(name)
            .into_iter()
            .map(|(node, service)| HealthInstance {
                node,
                service,
                checks: self
                    .node_checks(&node.name)
                    .into_iter()
                    .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
                    .collect(),
            })
            .collect()
    }

    /// All checks registered on `node`, node-level and service-level.
    pub fn node_checks(&self, node: &str) -> Vec<&Check> {
        self.node_checks_iter(node).collect()
    }

    /// [`Catalog::node_checks`] without collecting them.
    pub fn node_checks_iter<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Check> + 'a {
        let node = node.to_string();
        let checks = self.checks.range((node.clone(), String::new())..);
        checks.take_while(move |((n, _), _)| *n == node).map(|(_, c)| c)
    }

    /// The checks on `node` bound to its service `service_id`, by check ID.
    pub fn service_checks<'a>(&'a self, node: &str, service_id: &str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks.service_check_keys(node, service_id).into_iter().filter_map(|key| self.checks.get(&key))
    }

    /// The check `check_id` on `node`.
    pub fn check(&self, node: &str, check_id: &str) -> Option<&Check> {
        self.checks.get(&(node.to_string(), check_id.to_string()))
    }

    /// Checks bound to any instance of the service `name`, by node and check ID; found through
    /// the two indexes (instances by name, checks by service), not a scan of every check.
    pub fn service_name_checks(&self, name: &str) -> Vec<&Check> {
        let mut checks: Vec<&Check> = self.services.named(name).flat_map(|service| self.service_checks(&service.node, &service.id)).collect();
        checks.sort_by(|a, b| (&a.node, &a.check_id).cmp(&(&b.node, &b.check_id)));
        checks
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.values()
    }

    /// The index of the last change to the results of a query about service `name`, or the
    /// services table's index for a name never registered.
    pub fn service_index(&self, name: &str) -> u64 {
        self.service_indexes.get(name).copied().unwrap_or(self.indexes.services).max(self.restore_floor)
    }

    pub fn kv_get(&self, key: &str) -> Option<&KvEntry> {
        self.kv.get(key)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn kv_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KvEntry> + 'a {
        self.kv.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix)).map(|(_, e)| e)
    }

    /// Keys under `prefix`, each cut after the first `separator` that follows the prefix
    /// (`?keys&separator=/`), deduplicated.
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for entry in self.kv_prefix(prefix) {
            let key = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match entry.key[prefix.len()..].find(sep) {
                    Some(at) => entry.key[..prefix.len() + at + sep.len()].to_string(),
                    None => entry.key.clone(),
                },
                None => entry.key.clone(),
            };
            if keys.last() != Some(&key) {
                keys.push(key);
            }
        }
        keys
    }

    pub fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The sessions of `node`, by ID (an index, not a scan).
    pub fn node_sessions<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions.of_node(node)
    }

    pub fn config_entry(&self, kind: &str, name: &str) -> Option<&ConfigEntry> {
        self.config_entries.get(&(kind.to_string(), name.to_string()))
    }

    /// Every config entry of `kind`, by name.
    pub fn config_entries_of(&self, kind: &str) -> Vec<&ConfigEntry> {
        self.config_entries.values().filter(|e| e.kind == kind).collect()
    }
}
