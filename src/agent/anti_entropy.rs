//! Anti-entropy: the pure diff that brings the catalog's view of this node in line with the
//! agent's local state (Consul's `agent/ae` + `local.State.SyncFull`).
//!
//! `diff` compares what the agent holds with what the catalog holds for its node and returns
//! the commands that reconcile them. It reads no clock and does no IO; the agent runs it after
//! every local change and on a periodic full sync, and simply retries on the next run if a
//! write fails.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::agent::local::{LocalCheck, LocalState};
use crate::catalog::Catalog;
use crate::catalog::command::{CheckRegistration, Command, Registration};
use crate::catalog::model::{Check, Node, Service};

/// Rows on the agent's node that belong to the server leader, never to anti-entropy.
pub const LEADER_OWNED_SERVICE_ID: &str = "consul";
pub const LEADER_OWNED_CHECK_ID: &str = "serfHealth";

/// Consul's anti-entropy interval for clusters of up to [`SCALE_THRESHOLD_NODES`] nodes.
pub(crate) const FULL_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// How soon a failed full sync is retried, before the stagger (Consul's `retryFailIntv`).
pub(crate) const RETRY_FAIL_INTERVAL: Duration = Duration::from_secs(15);
/// The stagger window before the full sync a new server triggers (Consul's `serverUpIntv`).
pub(crate) const SERVER_UP_INTERVAL: Duration = Duration::from_secs(3);
/// Cluster size above which periodic syncs spread out: the delay doubles each time the
/// cluster doubles beyond it (Consul's `scaleThreshold`).
pub(crate) const SCALE_THRESHOLD_NODES: usize = 128;

/// Consul's `ae.scaleFactor`: 1 up to the threshold, then 1 more per doubling (8 at 8,192).
pub(crate) fn scale_factor(nodes: usize) -> u32 {
    if nodes <= SCALE_THRESHOLD_NODES {
        return 1;
    }
    ((nodes as f64).log2() - (SCALE_THRESHOLD_NODES as f64).log2()).ceil() as u32 + 1
}

/// Consul's `staggerFn`: a random part of `window` scaled by the cluster size. `random01` is
/// drawn by the caller from [0, 1), so this stays pure.
pub(crate) fn stagger(window: Duration, nodes: usize, random01: f64) -> Duration {
    (window * scale_factor(nodes)).mul_f64(random01.clamp(0.0, 1.0))
}

/// When the next periodic full sync runs after a successful one.
pub(crate) fn full_sync_delay(nodes: usize, random01: f64) -> Duration {
    FULL_SYNC_INTERVAL + stagger(FULL_SYNC_INTERVAL, nodes, random01)
}

/// When a failed full sync is retried.
pub(crate) fn retry_delay(nodes: usize, random01: f64) -> Duration {
    RETRY_FAIL_INTERVAL + stagger(RETRY_FAIL_INTERVAL, nodes, random01)
}

/// The part of the local state one change touched: what the sync after that change compares.
/// A check bound to a service belongs to its service's scope, because the command that
/// registers it carries the service too.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SyncScope {
    /// A service and the checks bound to it.
    Service(String),
    /// A check bound to no service.
    NodeCheck(String),
}

impl SyncScope {
    pub(crate) fn of_check(service_id: &str, check_id: &str) -> SyncScope {
        if service_id.is_empty() { SyncScope::NodeCheck(check_id.to_string()) } else { SyncScope::Service(service_id.to_string()) }
    }

    fn covers(&self, service_id: &str, check_id: &str) -> bool {
        match self {
            SyncScope::Service(id) => service_id == id,
            SyncScope::NodeCheck(id) => service_id.is_empty() && check_id == id,
        }
    }
}

/// The entries of `local` in `scope` (all of them when `None`): what a scoped diff reads.
pub(super) fn scoped_local(local: &LocalState, scope: Option<&SyncScope>) -> LocalState {
    let Some(scope) = scope else { return local.clone() };
    let mut scoped = LocalState::default();
    if let SyncScope::Service(id) = scope
        && let Some(service) = local.services.get(id)
    {
        scoped.services.insert(id.clone(), service.clone());
    }
    // The scope's checks through the local index, not a scan of every check on the agent.
    let in_scope: Box<dyn Iterator<Item = (&String, &LocalCheck)>> = match scope {
        SyncScope::Service(id) => Box::new(local.checks.of_service(id)),
        SyncScope::NodeCheck(id) => Box::new(local.checks.get_key_value(id).filter(|(_, c)| c.registration.service_id.is_empty()).into_iter()),
    };
    for (id, check) in in_scope {
        scoped.checks.insert(id.clone(), check.clone());
        // A deferred output must stay deferred in a scoped diff too.
        if let Some(due) = local.deferred_output.get(id) {
            scoped.deferred_output.insert(id.clone(), *due);
        }
        if let Some(since) = local.critical_since.get(id) {
            scoped.critical_since.insert(id.clone(), *since);
        }
    }
    scoped
}

/// Returns the commands that make the catalog match `local` for `node` within `scope` (and
/// the node's own row); `None` compares everything. `node` is the registration of the node
/// itself (address, metadata), without service or checks.
pub(crate) fn diff_scoped(local: &LocalState, catalog: &Catalog, node: &Registration, scope: Option<&SyncScope>) -> Vec<Command> {
    let in_scope = |service_id: &str, check_id: &str| scope.is_none_or(|scope| scope.covers(service_id, check_id));
    let mut commands = Vec::new();
    let node_row = catalog.node(&node.node);
    if node_row.is_none_or(|row| !node_matches(row, node)) {
        commands.push(Command::Register(node.clone()));
    }

    // Checks that differ, by service: a service's go in one command with it (as Consul's
    // `syncService` sends a service with its checks), a node check in one of its own.
    // The catalog's checks in scope, found through its indexes (a registration's run must not
    // cost a scan of every check on a node with hundreds of services).
    let catalog_checks: Vec<&Check> = match scope {
        None => catalog.node_checks_iter(&node.node).collect(),
        Some(SyncScope::Service(id)) => catalog.service_checks(&node.node, id).collect(),
        Some(SyncScope::NodeCheck(id)) => catalog.check(&node.node, id).filter(|c| c.service_id.is_empty()).into_iter().collect(),
    };
    let mut differing: BTreeMap<&str, Vec<CheckRegistration>> = BTreeMap::new();
    for (id, check) in local.checks.iter().filter(|(id, c)| in_scope(&c.registration.service_id, id)) {
        // A deferred output (`check_update_interval`) is not a difference until it is due.
        let output_deferred = local.deferred_output.contains_key(id);
        let in_sync = catalog_checks.iter().any(|row| row.check_id == *id && check_matches(row, &check.registration, output_deferred));
        // A check bound to a service that is not yet local cannot be registered; skip it.
        let service_known = check.registration.service_id.is_empty() || local.services.contains_key(&check.registration.service_id);
        if in_sync || !service_known {
            continue;
        }
        if check.registration.service_id.is_empty() {
            let mut registration = node.clone();
            registration.skip_node_update = true;
            registration.checks = vec![check.registration.clone()];
            commands.push(Command::Register(registration));
        } else {
            differing.entry(check.registration.service_id.as_str()).or_default().push(check.registration.clone());
        }
    }

    let scoped_services: Vec<(&String, &crate::agent::local::LocalService)> = match scope {
        Some(SyncScope::Service(id)) => local.services.get_key_value(id).into_iter().collect(),
        Some(SyncScope::NodeCheck(_)) => Vec::new(),
        None => local.services.iter().collect(),
    };
    for (id, service) in scoped_services {
        let in_sync = catalog.service(&node.node, id).is_some_and(|row| service_matches(row, &service.registration));
        let checks = differing.remove(id.as_str()).unwrap_or_default();
        if !in_sync || !checks.is_empty() {
            let mut registration = node.clone();
            registration.skip_node_update = true;
            registration.service = Some(service.registration.clone());
            registration.checks = checks;
            commands.push(Command::Register(registration));
        }
    }
    // The catalog's services in scope: one lookup for a service's scope, none for a check's.
    let catalog_services = match scope {
        Some(SyncScope::Service(id)) => catalog.service(&node.node, id).into_iter().collect(),
        Some(SyncScope::NodeCheck(_)) => Vec::new(),
        None => catalog.node_services(&node.node),
    };
    for row in catalog_services {
        if row.id != LEADER_OWNED_SERVICE_ID && !local.services.contains_key(&row.id) {
            commands.push(Command::DeregisterService { node: node.node.clone(), service_id: row.id.clone() });
        }
    }

    for row in catalog_checks {
        if row.check_id != LEADER_OWNED_CHECK_ID && !local.checks.contains_key(&row.check_id) {
            // Checks of a service being deregistered go with it.
            let service_goes = !row.service_id.is_empty() && !local.services.contains_key(&row.service_id);
            if !service_goes {
                commands.push(Command::DeregisterCheck { node: node.node.clone(), check_id: row.check_id.clone() });
            }
        }
    }
    commands
}

fn node_matches(row: &Node, node: &Registration) -> bool {
    row.id == node.node_id
        && row.address == node.address
        && row.datacenter == node.datacenter
        && row.tagged_addresses == node.tagged_addresses
        && row.meta == node.node_meta
}

fn service_matches(row: &Service, service: &crate::catalog::command::ServiceRegistration) -> bool {
    // With EnableTagOverride, tags edited in the catalog win (Consul #1283).
    let tags_match = service.enable_tag_override || row.tags == service.tags;
    row.name == service.name
        && tags_match
        && row.address == service.address
        && row.tagged_addresses == service.tagged_addresses
        && row.meta == service.meta
        && row.port == service.port
        && row.kind == service.kind
        && row.enable_tag_override == service.enable_tag_override
        && row.weights == service.weights
        && row.opaque_json == service.opaque_json
}

fn check_matches(row: &Check, check: &crate::catalog::command::CheckRegistration, output_deferred: bool) -> bool {
    row.name == check.name
        && row.status == check.status
        && row.notes == check.notes
        && (output_deferred || row.output == check.output)
        && row.service_id == check.service_id
        && row.definition == check.definition
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn diff(local: &LocalState, catalog: &Catalog, node: &Registration) -> Vec<Command> {
        diff_scoped(local, catalog, node, None)
    }
    use crate::agent::local::{LocalCheck, LocalService};
    use crate::catalog::command::ServiceRegistration;
    use crate::catalog::{ChangeSet, apply};

    fn node() -> Registration {
        Registration {
            node_id: "id".into(),
            node: "n1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: BTreeMap::new(),
            node_meta: BTreeMap::new(),
            skip_node_update: false,
            service: None,
            checks: vec![],
        }
    }

    fn service(id: &str) -> LocalService {
        LocalService {
            registration: ServiceRegistration {
                id: id.into(),
                name: "web".into(),
                port: 80,
                ..Default::default()
            },
        }
    }

    fn converge(local: &LocalState, catalog: &mut Catalog) -> usize {
        let mut index = catalog.indexes().nodes.max(catalog.indexes().services).max(catalog.indexes().checks) + 1;
        let commands = diff(local, catalog, &node());
        for command in &commands {
            apply(catalog, index, command, &mut ChangeSet::new());
            index += 1;
        }
        commands.len()
    }

    #[test]
    fn periodic_syncs_spread_out_as_the_cluster_grows() {
        assert_eq!([1, 128, 129, 256, 257, 512, 8192].map(scale_factor), [1, 1, 2, 2, 3, 3, 7]);
        assert_eq!(scale_factor(8193), 8);
        assert_eq!(full_sync_delay(3, 0.0), Duration::from_secs(60));
        assert_eq!(full_sync_delay(3, 0.5), Duration::from_secs(90));
        // 5,000 nodes: factor 7, so up to 7 more minutes of stagger.
        assert_eq!(full_sync_delay(5_000, 0.5), Duration::from_secs(60 + 210));
        assert_eq!(retry_delay(3, 0.0), Duration::from_secs(15));
        assert_eq!(stagger(SERVER_UP_INTERVAL, 300, 0.5), Duration::from_secs(4) + Duration::from_millis(500));
        // An out-of-range draw never stretches the window.
        assert_eq!(stagger(SERVER_UP_INTERVAL, 3, 7.0), SERVER_UP_INTERVAL);
    }

    fn check(id: &str, service_id: &str) -> LocalCheck {
        LocalCheck::for_test(id, service_id)
    }

    #[test]
    fn a_scoped_diff_touches_only_its_scope() {
        let mut local = LocalState::default();
        for id in ["web1", "web2"] {
            local.services.insert(id.into(), service(id));
            local.checks.insert(format!("{id}-c"), check(&format!("{id}-c"), id));
        }
        local.checks.insert("node-c".into(), check("node-c", ""));
        let mut catalog = Catalog::new();
        let web1 = SyncScope::Service("web1".into());
        let scoped = diff_scoped(&local, &catalog, &node(), Some(&web1));
        assert_eq!(diff_scoped(&scoped_local(&local, Some(&web1)), &catalog, &node(), Some(&web1)), scoped);
        // The node itself, then web1 with its check in one command (as Consul's syncService).
        assert_eq!(scoped.len(), 2, "{scoped:?}");
        let Command::Register(web1_registration) = &scoped[1] else { panic!("{scoped:?}") };
        assert_eq!(web1_registration.service.as_ref().map(|s| s.id.as_str()), Some("web1"));
        assert_eq!(web1_registration.checks.iter().map(|c| c.check_id.as_str()).collect::<Vec<_>>(), ["web1-c"]);
        let mut index = 1;
        for command in &scoped {
            apply(&mut catalog, index, command, &mut ChangeSet::new());
            index += 1;
        }
        assert!(diff_scoped(&local, &catalog, &node(), Some(&web1)).is_empty());
        assert!(catalog.service("n1", "web2").is_none(), "web2 is out of web1's scope");
        let node_check = SyncScope::of_check("", "node-c");
        assert_eq!(diff_scoped(&local, &catalog, &node(), Some(&node_check)).len(), 1);
        // Removing web1 locally: its scope deregisters it (its check goes with it).
        local.services.remove("web1");
        local.checks.remove("web1-c");
        let gone = diff_scoped(&local, &catalog, &node(), Some(&web1));
        assert_eq!(gone, vec![Command::DeregisterService { node: "n1".into(), service_id: "web1".into() }]);
        // The full diff still sees everything else: web1 goes, web2 comes with its check, and
        // the node check.
        assert_eq!(diff(&local, &catalog, &node()).len(), 1 + 1 + 1);
        // A check that alone differs goes with its service, which is unchanged.
        local.checks.update("web2-c", |c| c.registration.output = "new".into()).unwrap();
        converge(&local, &mut catalog);
        local.checks.update("web2-c", |c| c.registration.output = "newer".into()).unwrap();
        let web2 = SyncScope::Service("web2".into());
        let changed = diff_scoped(&local, &catalog, &node(), Some(&web2));
        assert!(matches!(&changed[..], [Command::Register(r)] if r.checks.len() == 1 && r.service.is_some()), "{changed:?}");
    }

    #[test]
    fn diff_converges_and_then_is_empty() {
        let mut local = LocalState::default();
        local.services.insert("web1".into(), service("web1"));
        local.checks.insert("service:web1".into(), check("service:web1", "web1"));
        let mut catalog = Catalog::new();
        assert!(converge(&local, &mut catalog) > 0);
        assert_eq!(diff(&local, &catalog, &node()), vec![]);

        // A deferred output (`check_update_interval`) is not synced until it is due.
        local.checks.update("service:web1", |c| c.registration.output = "new".into()).unwrap();
        local.deferred_output.insert("service:web1".into(), std::time::Instant::now());
        assert_eq!(diff(&local, &catalog, &node()), vec![]);
        local.deferred_output.clear();
        assert_eq!(diff(&local, &catalog, &node()).len(), 1, "once due, the output is synced");
        assert!(converge(&local, &mut catalog) > 0);

        local.services.clear();
        local.checks.clear();
        assert!(converge(&local, &mut catalog) > 0);
        assert!(catalog.node_services("n1").is_empty());
        assert!(catalog.node_checks("n1").is_empty());
        assert_eq!(diff(&local, &catalog, &node()), vec![]);
    }
}
