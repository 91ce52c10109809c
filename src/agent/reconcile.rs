//! Leader reconciliation (Consul's `leader.go` reconcile): the catalog's nodes follow the LAN
//! pool's members.
//!
//! [`member_commands`] is pure: given the members (from gossip) and the catalog, it returns
//! the commands that bring the catalog in line, Consul's rules:
//! - an **alive** member is a node with a passing `serfHealth` check (and, for a server, the
//!   `consul` service at its server port);
//! - a **failed** member keeps its node, with `serfHealth` critical, until gossip reaps it
//!   (`reconnect_timeout`);
//! - a member that **left** (or was reaped) is deregistered, and so is any node that carries a
//!   `serfHealth` check but is no member at all (`reap_unknown`: only once this leader's view
//!   of the pool has settled, so a freshly started leader does not drop nodes it has not
//!   heard of yet). Nodes registered through `/v1/catalog/register` have no `serfHealth`
//!   and are left alone.
//!
//! [`reconcile_members`] runs it on the leader and writes the commands.

use std::collections::{BTreeMap, BTreeSet};

use crate::agent::{Agent, AgentError, LEADER_OWNED_CHECK_ID, LEADER_OWNED_SERVICE_ID};
use crate::catalog::command::{CheckRegistration, Registration, ServiceRegistration};
use crate::catalog::model::{CheckDefinition, HealthStatus, Weights};
use crate::catalog::{Catalog, Command};

/// The `serfHealth` outputs Consul writes.
const ALIVE_OUTPUT: &str = "Agent alive and reachable";
const FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// A member's state as reconcile needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberState {
    pub name: String,
    pub node_id: String,
    pub address: String,
    pub liveness: Liveness,
    /// The server port, for members tagged `role=consul`.
    pub server_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Alive,
    Failed,
    Left,
}

/// The commands that make the catalog follow `members` (see the module docs).
pub(crate) fn member_commands(members: &[MemberState], catalog: &Catalog, datacenter: &str, reap_unknown: bool) -> Vec<Command> {
    let mut commands = Vec::new();
    for member in members {
        let node = catalog.node(&member.name);
        let serf = catalog.node_checks(&member.name).into_iter().find(|c| c.check_id == LEADER_OWNED_CHECK_ID).map(|c| c.status);
        match member.liveness {
            Liveness::Left => {
                if node.is_some() {
                    commands.push(Command::DeregisterNode { node: member.name.clone() });
                }
            }
            Liveness::Alive | Liveness::Failed => {
                let status = if member.liveness == Liveness::Alive { HealthStatus::Passing } else { HealthStatus::Critical };
                let service_ok = member.server_port.is_none_or(|port| catalog.service(&member.name, LEADER_OWNED_SERVICE_ID).is_some_and(|s| s.port == port));
                if !(node.is_some() && service_ok && serf == Some(status)) {
                    commands.push(Command::Register(registration(member, status, node.is_some(), datacenter)));
                }
            }
        }
    }
    if reap_unknown {
        let known: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
        for node in catalog.nodes() {
            let has_serf = catalog.node_checks(&node.name).iter().any(|c| c.check_id == LEADER_OWNED_CHECK_ID);
            if has_serf && !known.contains(node.name.as_str()) {
                commands.push(Command::DeregisterNode { node: node.name.clone() });
            }
        }
    }
    commands
}

fn registration(member: &MemberState, status: HealthStatus, node_exists: bool, datacenter: &str) -> Registration {
    let service = member.server_port.map(|port| ServiceRegistration {
        id: LEADER_OWNED_SERVICE_ID.into(),
        name: LEADER_OWNED_SERVICE_ID.into(),
        tags: Vec::new(),
        address: String::new(),
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::from([("raft_version".to_string(), "3".to_string())]),
        port,
        kind: String::new(),
        enable_tag_override: false,
        weights: Weights::default(),
        opaque_json: BTreeMap::new(),
    });
    Registration {
        node_id: member.node_id.clone(),
        node: member.name.clone(),
        address: member.address.clone(),
        datacenter: datacenter.to_string(),
        tagged_addresses: BTreeMap::new(),
        node_meta: BTreeMap::new(),
        // The member's own agent owns an existing node's address, meta and tagged addresses
        // (its anti-entropy writes them); the leader only creates a missing node.
        skip_node_update: node_exists,
        service,
        checks: vec![CheckRegistration {
            check_id: LEADER_OWNED_CHECK_ID.into(),
            name: "Serf Health Status".into(),
            status,
            notes: String::new(),
            output: if status == HealthStatus::Passing { ALIVE_OUTPUT } else { FAILED_OUTPUT }.into(),
            service_id: String::new(),
            definition: CheckDefinition::default(),
        }],
    }
}

/// On the leader: brings the catalog in line with the pool's members.
pub(crate) async fn reconcile_members(agent: &Agent, members: &[MemberState], reap_unknown: bool) -> Result<(), AgentError> {
    let commands = agent.view.read(|catalog| member_commands(members, catalog, &agent.identity.datacenter, reap_unknown));
    for command in commands {
        agent.write(command).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChangeSet, apply};

    fn member(name: &str, liveness: Liveness, server_port: Option<u16>) -> MemberState {
        MemberState { name: name.into(), node_id: format!("id-{name}"), address: "10.0.0.9".into(), liveness, server_port }
    }

    /// Applies the commands of one reconcile pass; returns how many there were.
    fn pass(catalog: &mut Catalog, members: &[MemberState], reap_unknown: bool) -> usize {
        let commands = member_commands(members, catalog, "dc1", reap_unknown);
        for command in &commands {
            let index = catalog.last_index() + 1;
            apply(catalog, index, command, &mut ChangeSet::new());
        }
        commands.len()
    }

    fn serf(catalog: &Catalog, node: &str) -> Option<HealthStatus> {
        catalog.node_checks(node).into_iter().find(|c| c.check_id == LEADER_OWNED_CHECK_ID).map(|c| c.status)
    }

    #[test]
    fn members_become_nodes_and_follow_their_liveness() {
        let mut catalog = Catalog::new();
        let members = [member("s1", Liveness::Alive, Some(8300)), member("c1", Liveness::Alive, None)];
        assert_eq!(pass(&mut catalog, &members, true), 2);
        assert_eq!(serf(&catalog, "s1"), Some(HealthStatus::Passing));
        assert_eq!(catalog.service("s1", LEADER_OWNED_SERVICE_ID).map(|s| s.port), Some(8300));
        assert!(catalog.service("c1", LEADER_OWNED_SERVICE_ID).is_none(), "only servers carry the consul service");
        assert_eq!(pass(&mut catalog, &members, true), 0, "a second pass changes nothing");

        let failed = [member("s1", Liveness::Alive, Some(8300)), member("c1", Liveness::Failed, None)];
        assert_eq!(pass(&mut catalog, &failed, true), 1);
        assert_eq!(serf(&catalog, "c1"), Some(HealthStatus::Critical));
        assert!(catalog.node("c1").is_some(), "a failed member keeps its node");

        let left = [member("s1", Liveness::Alive, Some(8300)), member("c1", Liveness::Left, None)];
        assert_eq!(pass(&mut catalog, &left, true), 1);
        assert!(catalog.node("c1").is_none(), "a member that left is deregistered");
    }

    #[test]
    fn unknown_nodes_are_reaped_only_with_serf_health_and_only_when_asked() {
        let mut catalog = Catalog::new();
        pass(&mut catalog, &[member("gone", Liveness::Alive, None)], true);
        let external = crate::catalog::command::Registration {
            node_id: String::new(),
            node: "external".into(),
            address: "192.0.2.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: BTreeMap::new(),
            node_meta: BTreeMap::new(),
            skip_node_update: false,
            service: None,
            checks: Vec::new(),
        };
        let index = catalog.last_index() + 1;
        apply(&mut catalog, index, &Command::Register(external), &mut ChangeSet::new());
        assert_eq!(pass(&mut catalog, &[], false), 0, "an unsettled view reaps nothing");
        assert_eq!(pass(&mut catalog, &[], true), 1);
        assert!(catalog.node("gone").is_none());
        assert!(catalog.node("external").is_some(), "catalog-registered nodes have no serfHealth and stay");
    }
}
