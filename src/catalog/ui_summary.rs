//! The dashboard's whole-catalog summaries (Consul's `/v1/internal/ui/*`), each computed in
//! one pass over the catalog: per service name (Consul's `summarizeServices`), per node (the
//! node dump), and the health overview (Consul's `getCatalogOverview`).
//!
//! Pure: values in, values out. Which instances count (ACLs, `?filter=`) is the caller's
//! predicate, so the HTTP layer keeps the filter grammar and the token; JSON names are
//! `http`'s. The passes walk nodes in name order and each node's services and checks by
//! range, so a summary of 20,000 instances costs no lookup per instance.

use std::collections::BTreeMap;

use crate::catalog::Catalog;
use crate::catalog::model::{Check, HealthStatus, Node, Service};

/// Consul's `structs.MetaExternalSource`: the service meta key naming where a service came from.
pub const META_EXTERNAL_SOURCE: &str = "external-source";
/// Consul's `ServiceKindConnectProxy`.
const KIND_CONNECT_PROXY: &str = "connect-proxy";

/// One service name's summary (Consul's `ServiceSummary` plus `ConnectedWithProxy`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSummary {
    pub kind: String,
    pub name: String,
    pub datacenter: String,
    /// The union of the instances' tags, sorted.
    pub tags: Vec<String>,
    /// The nodes with an instance, sorted.
    pub nodes: Vec<String>,
    /// Distinct `external-source` meta values, in the order first seen.
    pub external_sources: Vec<String>,
    pub instance_count: usize,
    pub checks: StatusCounts,
    pub transparent_proxy: bool,
    pub connect_native: bool,
    /// A connect-proxy instance names this service as its destination.
    pub connected_with_proxy: bool,
}

/// How many checks (or nodes, or instances) are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub passing: usize,
    pub warning: usize,
    pub critical: usize,
}

impl StatusCounts {
    fn add(&mut self, status: HealthStatus) {
        match status {
            HealthStatus::Passing => self.passing += 1,
            HealthStatus::Warning => self.warning += 1,
            HealthStatus::Critical => self.critical += 1,
        }
    }

    fn add_all(&mut self, other: StatusCounts) {
        self.passing += other.passing;
        self.warning += other.warning;
        self.critical += other.critical;
    }

    fn of(checks: &[&Check]) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for check in checks {
            counts.add(check.status);
        }
        counts
    }

    pub fn total(&self) -> usize {
        self.passing + self.warning + self.critical
    }
}

/// One instance offered to the caller's predicate: its node, the service, the node's
/// node-level checks and the service's own checks.
pub struct InstanceRef<'a> {
    pub node: &'a Node,
    pub service: &'a Service,
    pub node_checks: &'a [&'a Check],
    pub service_checks: &'a [&'a Check],
}

/// A node with its services (by ID) and checks (by check ID): Consul's `NodeInfo`.
#[derive(Clone, Debug)]
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub services: Vec<&'a Service>,
    pub checks: Vec<&'a Check>,
}

/// Consul's `HealthSummary`: a name (empty for the one node entry) and its counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSummary {
    pub name: String,
    pub counts: StatusCounts,
}

/// Consul's `CatalogSummary`, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogOverview {
    pub nodes: Vec<HealthSummary>,
    pub services: Vec<HealthSummary>,
    pub checks: Vec<HealthSummary>,
}

/// A node's checks split as the summaries need them.
struct NodeChecks<'a> {
    node_level: Vec<&'a Check>,
    /// Service ID → its checks.
    by_service: BTreeMap<&'a str, Vec<&'a Check>>,
}

impl<'a> NodeChecks<'a> {
    fn of(catalog: &'a Catalog, node: &str) -> NodeChecks<'a> {
        let mut split = NodeChecks { node_level: Vec::new(), by_service: BTreeMap::new() };
        for check in catalog.node_checks_iter(node) {
            if check.service_id.is_empty() {
                split.node_level.push(check);
            } else {
                split.by_service.entry(check.service_id.as_str()).or_default().push(check);
            }
        }
        split
    }

    fn of_service(&self, service_id: &str) -> &[&'a Check] {
        self.by_service.get(service_id).map_or(&[], Vec::as_slice)
    }
}

/// A summary being built, with the positions that keep Consul's deduplication without sets.
#[derive(Default)]
struct Building {
    summary: ServiceSummary,
    /// The position (in node order) of the last node added to `nodes`.
    last_node: Option<usize>,
    /// The position of the last node whose node-level checks were counted: Consul counts each
    /// distinct (node, check) once per service.
    last_checked_node: Option<usize>,
    transparent_proxy_set: bool,
}

impl Building {
    fn new(name: &str) -> Building {
        Building { summary: ServiceSummary { name: name.to_string(), ..ServiceSummary::default() }, ..Building::default() }
    }

    fn count_checks(&mut self, position: usize, node_counts: StatusCounts, service_checks: &[&Check]) {
        if self.last_checked_node != Some(position) {
            self.summary.checks.add_all(node_counts);
            self.last_checked_node = Some(position);
        }
        self.summary.checks.add_all(StatusCounts::of(service_checks));
    }

    fn add_instance(&mut self, position: usize, instance: &InstanceRef<'_>, node_counts: StatusCounts) {
        let (node, service) = (instance.node, instance.service);
        let summary = &mut self.summary;
        if self.last_node != Some(position) {
            summary.nodes.push(node.name.clone());
            self.last_node = Some(position);
        }
        summary.kind.clone_from(&service.kind);
        summary.datacenter.clone_from(&node.datacenter);
        summary.instance_count += 1;
        summary.connect_native |= connect_native(service);
        for tag in &service.tags {
            if !summary.tags.contains(tag) {
                summary.tags.push(tag.clone());
            }
        }
        if let Some(source) = service.meta.get(META_EXTERNAL_SOURCE).filter(|s| !s.is_empty())
            && !summary.external_sources.contains(source)
        {
            summary.external_sources.push(source.clone());
        }
        self.count_checks(position, node_counts, instance.service_checks);
    }

    /// A connect-proxy instance fronting this service: its checks count here too, and the
    /// service is transparent only while every proxy is (Consul's rule, for its warning).
    fn add_proxy(&mut self, position: usize, proxy: &ProxyFields, node_counts: StatusCounts, service_checks: &[&Check]) {
        self.summary.connected_with_proxy = true;
        self.count_checks(position, node_counts, service_checks);
        if proxy.transparent && !self.transparent_proxy_set {
            self.summary.transparent_proxy = true;
        }
        if !proxy.transparent {
            self.summary.transparent_proxy = false;
        }
        self.transparent_proxy_set = true;
    }
}

/// What the summary reads of a proxy's opaque `Proxy` JSON.
struct ProxyFields {
    destination: String,
    transparent: bool,
}

fn proxy_fields(service: &Service) -> Option<ProxyFields> {
    if service.kind != KIND_CONNECT_PROXY {
        return None;
    }
    let proxy: serde_json::Value = serde_json::from_str(service.opaque_json.get("Proxy")?).ok()?;
    let destination = proxy.get("DestinationServiceName")?.as_str()?.to_string();
    let transparent = proxy.get("Mode").and_then(serde_json::Value::as_str) == Some("transparent");
    Some(ProxyFields { destination, transparent })
}

fn connect_native(service: &Service) -> bool {
    let Some(text) = service.opaque_json.get("Connect") else { return false };
    serde_json::from_str::<serde_json::Value>(text).ok().and_then(|c| c.get("Native")?.as_bool()).unwrap_or(false)
}

/// Every service name's summary, sorted by name, over the instances `keep` accepts (Consul
/// filters the instances, then summarizes). Names that only a proxy names get a summary
/// with no instances, as in Consul.
pub fn service_summaries(catalog: &Catalog, mut keep: impl FnMut(&InstanceRef<'_>) -> bool) -> Vec<ServiceSummary> {
    let mut building: BTreeMap<String, Building> = BTreeMap::new();
    for (position, node) in catalog.nodes().enumerate() {
        let services = catalog.node_services(&node.name);
        if services.is_empty() {
            continue;
        }
        let checks = NodeChecks::of(catalog, &node.name);
        let node_counts = StatusCounts::of(&checks.node_level);
        for service in services {
            let instance = InstanceRef { node, service, node_checks: &checks.node_level, service_checks: checks.of_service(&service.id) };
            if !keep(&instance) {
                continue;
            }
            entry(&mut building, &service.name).add_instance(position, &instance, node_counts);
            if let Some(proxy) = proxy_fields(service) {
                entry(&mut building, &proxy.destination).add_proxy(position, &proxy, node_counts, instance.service_checks);
            }
        }
    }
    building
        .into_values()
        .map(|mut b| {
            b.summary.tags.sort();
            b.summary
        })
        .collect()
}

fn entry<'m>(building: &'m mut BTreeMap<String, Building>, name: &str) -> &'m mut Building {
    if !building.contains_key(name) {
        building.insert(name.to_string(), Building::new(name));
    }
    building.get_mut(name).expect("inserted just above")
}

/// Every node with its services and checks, by node name.
pub fn node_infos(catalog: &Catalog) -> Vec<NodeInfo<'_>> {
    catalog.nodes().map(|node| node_info_of(catalog, node)).collect()
}

/// One node with its services and checks, `None` when unknown.
pub fn node_info<'a>(catalog: &'a Catalog, name: &str) -> Option<NodeInfo<'a>> {
    catalog.node(name).map(|node| node_info_of(catalog, node))
}

fn node_info_of<'a>(catalog: &'a Catalog, node: &'a Node) -> NodeInfo<'a> {
    NodeInfo { node, services: catalog.node_services(&node.name), checks: catalog.node_checks(&node.name) }
}

/// Consul's catalog overview: nodes by their worst node-level check, service instances by
/// their worst service-level check (node checks do not count there), checks by name.
pub fn catalog_overview(catalog: &Catalog) -> CatalogOverview {
    let mut nodes = StatusCounts::default();
    let mut services: BTreeMap<&str, StatusCounts> = BTreeMap::new();
    let mut checks: BTreeMap<&str, StatusCounts> = BTreeMap::new();
    let mut any_node = false;
    for node in catalog.nodes() {
        any_node = true;
        let split = NodeChecks::of(catalog, &node.name);
        for check in split.node_level.iter().chain(split.by_service.values().flatten()) {
            checks.entry(check.name.as_str()).or_default().add(check.status);
        }
        nodes.add(worst(&split.node_level));
        for service in catalog.node_services(&node.name) {
            services.entry(service.name.as_str()).or_default().add(worst(split.of_service(&service.id)));
        }
    }
    let named = |map: BTreeMap<&str, StatusCounts>| map.into_iter().map(|(name, counts)| HealthSummary { name: name.to_string(), counts }).collect();
    CatalogOverview {
        nodes: if any_node { vec![HealthSummary { name: String::new(), counts: nodes }] } else { Vec::new() },
        services: named(services),
        checks: named(checks),
    }
}

fn worst(checks: &[&Check]) -> HealthStatus {
    crate::catalog::query::aggregate_status(checks.iter().copied())
}

#[cfg(test)]
#[path = "ui_summary_tests.rs"]
mod tests;
