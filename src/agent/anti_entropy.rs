//! Anti-entropy: the pure diff that brings the catalog's view of this node in line with the
//! agent's local state (Consul's `agent/ae` + `local.State.SyncFull`).
//!
//! `diff` compares what the agent holds with what the catalog holds for its node and returns
//! the commands that reconcile them. It reads no clock and does no IO; the agent runs it after
//! every local change and on a periodic full sync, and simply retries on the next run if a
//! write fails.

use crate::agent::local::LocalState;
use crate::catalog::Catalog;
use crate::catalog::command::{Command, Registration};
use crate::catalog::model::{Check, Node, Service};

/// Rows on the agent's node that belong to the server leader, never to anti-entropy.
pub const LEADER_OWNED_SERVICE_ID: &str = "consul";
pub const LEADER_OWNED_CHECK_ID: &str = "serfHealth";

/// Returns the commands that make the catalog match `local` for `node`.
/// `node` is the registration of the node itself (address, metadata), without service or checks.
pub(super) fn diff(local: &LocalState, catalog: &Catalog, node: &Registration) -> Vec<Command> {
    let mut commands = Vec::new();
    let node_row = catalog.node(&node.node);
    if node_row.is_none_or(|row| !node_matches(row, node)) {
        commands.push(Command::Register(node.clone()));
    }

    for (id, service) in &local.services {
        let in_sync = catalog.service(&node.node, id).is_some_and(|row| service_matches(row, &service.registration));
        if !in_sync {
            let mut registration = node.clone();
            registration.skip_node_update = true;
            registration.service = Some(service.registration.clone());
            commands.push(Command::Register(registration));
        }
    }
    for row in catalog.node_services(&node.node) {
        if row.id != LEADER_OWNED_SERVICE_ID && !local.services.contains_key(&row.id) {
            commands.push(Command::DeregisterService { node: node.node.clone(), service_id: row.id.clone() });
        }
    }

    let catalog_checks = catalog.node_checks(&node.node);
    for (id, check) in &local.checks {
        // A deferred output (`check_update_interval`) is not a difference until it is due.
        let output_deferred = local.deferred_output.contains_key(id);
        let in_sync = catalog_checks.iter().any(|row| row.check_id == *id && check_matches(row, &check.registration, output_deferred));
        // A check bound to a service that is not yet local cannot be registered; skip it.
        let service_known = check.registration.service_id.is_empty() || local.services.contains_key(&check.registration.service_id);
        if !in_sync && service_known {
            let mut registration = node.clone();
            registration.skip_node_update = true;
            registration.checks = vec![check.registration.clone()];
            if let Some(service) = local.services.get(&check.registration.service_id) {
                registration.service = Some(service.registration.clone());
            }
            commands.push(Command::Register(registration));
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
    use crate::agent::local::{LocalCheck, LocalService};
    use crate::catalog::command::{CheckRegistration, ServiceRegistration};
    use crate::catalog::model::{CheckDefinition, HealthStatus, Weights};
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
                tags: vec![],
                address: String::new(),
                tagged_addresses: BTreeMap::new(),
                meta: BTreeMap::new(),
                port: 80,
                kind: String::new(),
                enable_tag_override: false,
                weights: Weights::default(),
                opaque_json: BTreeMap::new(),
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
    fn diff_converges_and_then_is_empty() {
        let mut local = LocalState::default();
        local.services.insert("web1".into(), service("web1"));
        local.checks.insert(
            "service:web1".into(),
            LocalCheck {
                registration: CheckRegistration {
                    check_id: "service:web1".into(),
                    name: "c".into(),
                    status: HealthStatus::Critical,
                    notes: String::new(),
                    output: String::new(),
                    service_id: "web1".into(),
                    definition: CheckDefinition::default(),
                },
                runner: None,
                options: crate::agent::local::CheckOptions::default(),
            },
        );
        let mut catalog = Catalog::new();
        assert!(converge(&local, &mut catalog) > 0);
        assert_eq!(diff(&local, &catalog, &node()), vec![]);

        // A deferred output (`check_update_interval`) is not synced until it is due.
        local.checks.get_mut("service:web1").unwrap().registration.output = "new".into();
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
