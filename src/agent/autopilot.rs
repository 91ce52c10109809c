//! Autopilot on a server: the leader's view of every server's health (Consul's
//! raft-autopilot), which `/v1/operator/autopilot/health` and `/state` report and the leader's
//! promotion of non-voters follows (`leader`).
//!
//! A server is healthy, as in raft-autopilot's `isHealthy`, when its gossip member is alive,
//! it answered the leader within `LastContactThreshold`, its last log term is the leader's
//! term, and it is at most `MaxTrailingLogs` entries behind the leader's log. The cluster is
//! healthy when every server is; its failure tolerance is how many healthy voters it has
//! beyond a quorum. `StableSince` is when a server's health last changed, as this server
//! observed it ([`Stability`]); a non-voter becomes a voter once healthy and stable for
//! `ServerStabilizationTime`.
//!
//! The settings are the replicated configuration (`catalog::autopilot`), which the leader
//! seeds from this agent's `autopilot` settings while the cluster has none.
//!
//! What cairn honours of them: `MaxTrailingLogs`, `LastContactThreshold` and
//! `ServerStabilizationTime` fully (health and promotion). `MinQuorum` bounds only the
//! pruning of failed servers, which cairn never does, so it always holds. `CleanupDeadServers`
//! is stored and reported but **not acted on**: cairn removes no failed server (a server that
//! leaves the pool gracefully is removed whatever it says, as in Consul); the leader logs
//! this, and the API says it in a `Warning` header ([`unhonoured`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::catalog::model::AutopilotSettings;
use crate::gossip::MemberStatus;
use crate::raft::NodeId;

/// One server as autopilot sees it.
#[derive(Clone, Debug)]
pub struct ServerHealth {
    pub id: NodeId,
    pub name: String,
    /// The server port's `host:port`.
    pub address: String,
    /// Its gossip member's status, in serf's words (`alive`, `failed`, ..., `none`).
    pub node_status: &'static str,
    pub voter: bool,
    pub leader: bool,
    /// How long ago it last answered the leader (zero for the leader); `None` if never.
    pub last_contact: Option<Duration>,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    /// How long its health has been what it is now.
    pub stable_for: Duration,
    /// Its node's meta, from the catalog.
    pub meta: BTreeMap<String, String>,
}

/// The leader's view of the cluster.
#[derive(Clone, Debug)]
pub struct AutopilotReport {
    pub healthy: bool,
    pub failure_tolerance: usize,
    pub leader: NodeId,
    /// Voters first, then non-voters, each by Raft ID.
    pub servers: Vec<ServerHealth>,
}

/// When each server's health last changed, as this server observed it (Consul's
/// `StableSince`). Entries for servers that left the membership are dropped on the next
/// observation, so it holds at most one entry per server.
#[derive(Default)]
pub(crate) struct Stability {
    /// Short critical sections only (one map update per server per report).
    since: Mutex<HashMap<NodeId, (bool, Instant)>>,
}

impl Stability {
    /// Notes each server's health at `now` and answers how long it has held.
    fn observe(&self, healths: &[(NodeId, bool)], now: Instant) -> HashMap<NodeId, Duration> {
        let mut since = self.since.lock().expect("autopilot stability lock poisoned");
        since.retain(|id, _| healths.iter().any(|(server, _)| server == id));
        healths
            .iter()
            .map(|&(id, healthy)| {
                let entry = since.entry(id).or_insert((healthy, now));
                if entry.0 != healthy {
                    *entry = (healthy, now);
                }
                (id, now.duration_since(entry.1))
            })
            .collect()
    }
}

/// The settings this agent seeds the cluster with (its `autopilot` config section).
pub(crate) fn seed_settings(config: &crate::config::Autopilot) -> AutopilotSettings {
    AutopilotSettings {
        cleanup_dead_servers: config.cleanup_dead_servers,
        last_contact_threshold_ns: config.last_contact_threshold_ms.saturating_mul(1_000_000),
        max_trailing_logs: config.max_trailing_logs,
        min_quorum: 0,
        server_stabilization_time_ns: config.server_stabilization_time_ms.saturating_mul(1_000_000),
    }
}

/// What of `settings` cairn stores but does not act on, in words for a warning; `None` if it
/// acts on all of it.
pub fn unhonoured(settings: &AutopilotSettings) -> Option<&'static str> {
    settings.cleanup_dead_servers.then_some(
        "CleanupDeadServers is stored but not acted on: cairn does not remove failed servers (remove one with `cairn operator raft remove-peer`); servers that leave gracefully are removed",
    )
}

pub(crate) fn serf_status(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::None => "none",
        MemberStatus::Alive => "alive",
        MemberStatus::Leaving => "leaving",
        MemberStatus::Left => "left",
        MemberStatus::Failed => "failed",
    }
}

impl Agent {
    /// The autopilot settings in force: the replicated ones, or this agent's until the leader
    /// has stored them.
    pub fn autopilot_settings(&self) -> AutopilotSettings {
        let stored = self.view.read(|catalog| catalog.autopilot_config().map(|config| config.settings.clone()));
        stored.unwrap_or_else(|| seed_settings(&self.config.autopilot))
    }

    /// Every server's health as the leader sees it; `None` unless this agent is the leader.
    pub fn autopilot_report(&self) -> Option<AutopilotReport> {
        let raft = self.raft()?;
        let status = raft.status();
        if status.leader.as_ref().map(|(id, _)| *id) != Some(status.node_id) {
            return None;
        }
        let matched = raft.replication_matched()?;
        let settings = self.autopilot_settings();
        let members: HashMap<String, MemberStatus> = self.members().into_iter().filter(|m| m.tags.get("role").is_some_and(|r| r == "consul")).map(|m| (m.name, m.status)).collect();
        let threshold = Duration::from_nanos(settings.last_contact_threshold_ns);
        let mut servers = Vec::new();
        for (voter, group) in [(true, &status.voters), (false, &status.learners)] {
            for (id, node) in group {
                let leader = *id == status.node_id;
                let (last_contact, (last_index, last_term)) = if leader {
                    (Some(Duration::ZERO), (status.last_log_index, status.term))
                } else {
                    (raft.last_contact(*id), matched.get(id).copied().unwrap_or((0, 0)))
                };
                let node_status = if leader { "alive" } else { members.get(&node.name).map_or("none", |s| serf_status(*s)) };
                let healthy = node_status == "alive"
                    && last_contact.is_some_and(|contact| contact <= threshold)
                    && last_term == status.term
                    && last_index.saturating_add(settings.max_trailing_logs) >= status.last_log_index;
                let meta = self.view.read(|catalog| catalog.node(&node.name).map(|n| n.meta.clone())).unwrap_or_default();
                let server = ServerHealth { id: *id, name: node.name.clone(), address: node.raft_addr.clone(), node_status, voter, leader, last_contact, last_term, last_index, healthy, stable_for: Duration::ZERO, meta };
                servers.push(server);
            }
        }
        let healths: Vec<(NodeId, bool)> = servers.iter().map(|s| (s.id, s.healthy)).collect();
        let stable = self.autopilot_stability.observe(&healths, Instant::now());
        for server in &mut servers {
            server.stable_for = stable.get(&server.id).copied().unwrap_or_default();
        }
        let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
        let quorum = status.voters.len() / 2 + 1;
        Some(AutopilotReport {
            healthy: servers.iter().all(|s| s.healthy),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            leader: status.node_id,
            servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_restarts_when_health_changes_and_forgets_departed_servers() {
        let stability = Stability::default();
        let start = Instant::now();
        stability.observe(&[(1, true), (2, false)], start);
        let later = start + Duration::from_secs(5);
        let held = stability.observe(&[(1, true), (2, true)], later);
        assert_eq!(held[&1], Duration::from_secs(5), "unchanged health keeps its start");
        assert_eq!(held[&2], Duration::ZERO, "a change restarts the clock");
        assert_eq!(stability.observe(&[(2, true)], later + Duration::from_secs(1))[&2], Duration::from_secs(1));
        stability.observe(&[(1, true)], later);
        assert_eq!(stability.since.lock().unwrap().len(), 1, "server 2 left the membership");
    }

    #[test]
    fn only_cleanup_dead_servers_goes_unhonoured() {
        let mut settings = seed_settings(&crate::config::Autopilot { cleanup_dead_servers: true, last_contact_threshold_ms: 200, max_trailing_logs: 250, server_stabilization_time_ms: 10_000 });
        assert_eq!((settings.last_contact_threshold_ns, settings.server_stabilization_time_ns), (200_000_000, 10_000_000_000));
        assert!(unhonoured(&settings).is_some_and(|text| text.contains("CleanupDeadServers")));
        settings.cleanup_dead_servers = false;
        assert_eq!(unhonoured(&settings), None);
    }
}
