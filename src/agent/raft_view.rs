//! The dashboard's live view of the Raft cluster (cairn's `/v1/internal/ui/raft`; Consul has
//! none): every server's role, term, indexes, last contact, health and gossip status, plus the
//! leader changes this server observed.
//!
//! On the leader it is autopilot's report (`autopilot`: health, last contact and match
//! indexes as the leader sees them) with the leader's own commit and applied indexes. On any
//! other server (a `?stale` read) it is what that server knows: the membership, its own
//! role, term and indexes, and gossip's statuses; what only the leader knows is `None`.
//!
//! [`LeaderChanges`] is a ring of the last [`LEADER_CHANGES_MAX`] leaders this server saw
//! elected, fed by the leader loop (`leader`), in memory only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::agent::Agent;
use crate::agent::autopilot::{AutopilotReport, serf_status};
use crate::gossip::MemberStatus;
use crate::raft::{NodeId, RaftStatus};

/// Most leader changes remembered.
pub const LEADER_CHANGES_MAX: usize = 32;

/// One observed leader change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaderChange {
    pub term: u64,
    /// The new leader's node name.
    pub leader: String,
    /// Wall-clock milliseconds when this server learned of it.
    pub at_ms: u64,
}

/// The ring of recent leader changes. Short critical sections only.
#[derive(Default)]
pub struct LeaderChanges {
    ring: Mutex<VecDeque<LeaderChange>>,
}

impl LeaderChanges {
    /// Notes a new leader (the same leader and term again is not a change).
    pub(crate) fn record(&self, change: LeaderChange) {
        let mut ring = self.ring.lock().expect("leader changes lock poisoned");
        if ring.back().is_some_and(|last| last.term == change.term && last.leader == change.leader) {
            return;
        }
        if ring.len() >= LEADER_CHANGES_MAX {
            ring.pop_front();
        }
        ring.push_back(change);
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<LeaderChange> {
        self.ring.lock().expect("leader changes lock poisoned").iter().cloned().collect()
    }
}

/// One server in the view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerView {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    /// `leader`, `follower`, `candidate` or `non-voter`.
    pub role: &'static str,
    /// The term of its last log entry (known for the answering server and, on the leader,
    /// for every server it replicates to).
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Milliseconds since it last answered the leader; 0 for the leader.
    pub last_contact_ms: Option<u64>,
    pub voter: bool,
    pub healthy: Option<bool>,
    pub serf_status: &'static str,
}

/// The whole view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RaftView {
    pub leader_name: String,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub healthy: Option<bool>,
    pub failure_tolerance: Option<usize>,
    pub served_by: String,
    pub servers: Vec<ServerView>,
    pub leader_changes: Vec<LeaderChange>,
}

impl Agent {
    /// The recent leader changes this server saw.
    pub fn leader_changes(&self) -> &LeaderChanges {
        &self.leader_changes
    }

    /// This server's view of the cluster; `None` on a client agent (which relays the request
    /// to a server, `http::forward`).
    pub fn raft_view(&self) -> Option<RaftView> {
        let raft = self.raft()?;
        let status = raft.status();
        let members: HashMap<String, MemberStatus> = self.members().into_iter().map(|m| (m.name, m.status)).collect();
        let (servers, commit_index, report) = match self.autopilot_report() {
            Some(report) => {
                let commit = quorum_match(&report);
                (leader_servers(&report, &status, commit), Some(commit), Some(report))
            }
            None => (local_servers(&status, &members), None, None),
        };
        let leader = status.leader.as_ref();
        Some(RaftView {
            leader_name: leader.map(|(_, node)| node.name.clone()).unwrap_or_default(),
            leader_id: leader.map(|(id, _)| *id),
            term: status.term,
            commit_index,
            healthy: report.as_ref().map(|r| r.healthy),
            failure_tolerance: report.as_ref().map(|r| r.failure_tolerance),
            served_by: self.identity.node_name.clone(),
            servers,
            leader_changes: self.leader_changes.list(),
        })
    }
}

/// The highest index a quorum of voters holds: the commit index as the leader knows it.
fn quorum_match(report: &AutopilotReport) -> u64 {
    let mut matched: Vec<u64> = report.servers.iter().filter(|s| s.voter).map(|s| s.last_index).collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    let quorum = matched.len() / 2 + 1;
    matched.get(quorum - 1).copied().unwrap_or(0)
}

fn leader_servers(report: &AutopilotReport, status: &RaftStatus, commit: u64) -> Vec<ServerView> {
    report
        .servers
        .iter()
        .map(|server| {
            let own = server.id == status.node_id;
            ServerView {
                id: server.id,
                name: server.name.clone(),
                address: server.address.clone(),
                role: if server.leader { "leader" } else if server.voter { "follower" } else { "non-voter" },
                term: Some(server.last_term),
                last_log_index: Some(server.last_index),
                commit_index: own.then_some(commit),
                applied_index: own.then_some(status.applied_index),
                last_contact_ms: server.last_contact.map(|contact| u64::try_from(contact.as_millis()).unwrap_or(u64::MAX)),
                voter: server.voter,
                healthy: Some(server.healthy),
                serf_status: server.node_status,
            }
        })
        .collect()
}

fn local_servers(status: &RaftStatus, members: &HashMap<String, MemberStatus>) -> Vec<ServerView> {
    let leader_id = status.leader.as_ref().map(|(id, _)| *id);
    let groups = [(true, &status.voters), (false, &status.learners)];
    let mut servers = Vec::new();
    for (voter, group) in groups {
        for (id, node) in group {
            let own = *id == status.node_id;
            let role = match (own, voter) {
                (true, _) if status.state == "candidate" => "candidate",
                (_, false) => "non-voter",
                _ if leader_id == Some(*id) => "leader",
                _ => "follower",
            };
            servers.push(ServerView {
                id: *id,
                name: node.name.clone(),
                address: node.raft_addr.clone(),
                role,
                term: own.then_some(status.term),
                last_log_index: own.then_some(status.last_log_index),
                commit_index: None,
                applied_index: own.then_some(status.applied_index),
                last_contact_ms: None,
                voter,
                healthy: None,
                serf_status: members.get(&node.name).map_or("none", |s| serf_status(*s)),
            });
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_changes_and_ignores_repeats() {
        let ring = LeaderChanges::default();
        for term in 1..=(LEADER_CHANGES_MAX as u64 + 5) {
            ring.record(LeaderChange { term, leader: format!("s{}", term % 3), at_ms: term * 10 });
            ring.record(LeaderChange { term, leader: format!("s{}", term % 3), at_ms: term * 10 + 1 });
        }
        let list = ring.list();
        assert_eq!(list.len(), LEADER_CHANGES_MAX);
        assert_eq!(list.first().map(|c| c.term), Some(6), "the oldest were dropped");
        assert_eq!(list.last().map(|c| (c.term, c.at_ms)), Some((LEADER_CHANGES_MAX as u64 + 5, (LEADER_CHANGES_MAX as u64 + 5) * 10)));
    }
}
