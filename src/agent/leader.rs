//! The leader's duties, in one loop that runs on every server and acts only while it leads.
//!
//! Each duty keeps its own state and its own pace; stepping down clears the state (a new
//! leader starts afresh, as in Consul):
//! - **reconcile** the catalog with the cluster's members (`reconcile`): `serfHealth` and the
//!   `consul` service for servers, at once on a membership change and every 30 s;
//! - **session TTLs**: a deadline per TTL session (2 × TTL, Consul's rule), invalidated with a
//!   `SessionDestroy` stamped with the leader's clock; renewals restart the deadline;
//! - **KV housekeeping**: tombstone GC (Consul's scheme: every `TOMBSTONE_GC_GRANULARITY_MS`
//!   note the index; reap up to a note once it is older than `kv_tombstone_ttl`) and the
//!   replicated `kv_history_versions` setting;
//! - **ACLs** (`acl::leader_duty`): the builtin policy, the anonymous and initial management
//!   tokens exist; expired tokens are deleted;
//! - **autopilot** (`autopilot`): store the agent's `autopilot` settings as the cluster's
//!   configuration while it has none; promote a non-voter once it has been healthy for
//!   `ServerStabilizationTime`.
//!
//! The loop also logs each new leader (`New leader elected`, which tools look for).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{Agent, reconcile, wall_clock_ms};
use crate::catalog::Command;
use crate::raft::{RaftServer, RaftStatus};

/// The loop's tick: the finest pace any duty needs.
const LEADER_TICK_MS: u64 = 250;
/// How often the leader re-checks every member's registration without a membership change.
const RECONCILE_INTERVAL_MS: u64 = 30_000;
/// How soon a failed reconcile is retried.
const RECONCILE_RETRY_MS: u64 = 500;
/// Consul lets a session live up to twice its TTL before the leader invalidates it.
const SESSION_TTL_MULTIPLIER: u32 = 2;
/// How often the leader notes the applied index for tombstone GC (Consul: 30 s).
const TOMBSTONE_GC_GRANULARITY_MS: u64 = 30_000;
/// How often the KV housekeeping runs.
const HOUSEKEEPING_INTERVAL_MS: u64 = 1_000;
/// Most index notes kept; older ones are reaped or dropped.
const TOMBSTONE_NOTES_MAX: usize = 1024;

/// The state of every duty while this server leads.
#[derive(Default)]
struct Duties {
    next_reconcile: Option<Instant>,
    next_housekeeping: Option<Instant>,
    /// Tombstone GC: (when, catalog index) notes, oldest first.
    tombstone_notes: VecDeque<(Instant, u64)>,
    next_tombstone_note: Option<Instant>,
    /// Autopilot: whether this leadership has said that `CleanupDeadServers` is not acted on.
    cleanup_warned: bool,
}

pub(super) async fn leader_loop(agent: Arc<Agent>, raft: Arc<RaftServer>) {
    let mut metrics = raft.leader_changes();
    let mut shutdown = agent.shutdown_requested();
    let mut members = agent.member_changes();
    let mut last_leader = None;
    let mut duties = Duties::default();
    loop {
        let status = raft.status();
        let leader_id = status.leader.as_ref().map(|(id, _)| *id);
        if leader_id != last_leader {
            if let Some((_, node)) = &status.leader {
                tracing::info!(term = status.term, "New leader elected: payload={}", node.name);
                let change = crate::agent::raft_view::LeaderChange { term: status.term, leader: node.name.clone(), at_ms: crate::agent::wall_clock_ms() };
                agent.leader_changes().record(change);
            }
            last_leader = leader_id;
            duties = Duties::default();
        }
        if leader_id == Some(raft.node_id()) {
            duties.run(&agent, &raft, &status).await;
        } else {
            agent.session_deadlines.lock().expect("session deadlines lock poisoned").clear();
        }
        // Raft's metrics change with every commit; only a new leader, role or membership
        // matters here (the tick covers the rest), so a busy cluster does not spin this loop.
        let seen = leadership(&metrics.borrow_and_update());
        tokio::select! {
            changed = metrics.wait_for(|m| leadership(m) != seen) => if changed.is_err() { return },
            changed = members.changed() => if changed.is_ok() { duties.next_reconcile = None },
            _ = tokio::time::sleep(Duration::from_millis(LEADER_TICK_MS)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What of Raft's metrics wakes the leader loop: the leader, this server's role, the membership.
fn leadership(metrics: &openraft::RaftMetrics<crate::raft::NodeId, crate::raft::ServerNode>) -> (Option<crate::raft::NodeId>, openraft::ServerState, Option<openraft::LogId<crate::raft::NodeId>>) {
    (metrics.current_leader, metrics.state, *metrics.membership_config.log_id())
}

fn due(next: Option<Instant>) -> bool {
    next.is_none_or(|at| Instant::now() >= at)
}

impl Duties {
    async fn run(&mut self, agent: &Agent, raft: &RaftServer, status: &RaftStatus) {
        let housekeeping = due(self.next_housekeeping);
        if housekeeping {
            // First: until the initial management token exists, `/v1/acl/bootstrap` waits.
            if let Err(error) = crate::agent::acl::leader_duty(agent).await {
                tracing::debug!(%error, "ACL initialization failed; will retry");
            }
        }
        remove_departed_servers(agent, raft, status).await;
        if due(self.next_reconcile) {
            let members = agent.member_states();
            let settled = agent.gossip_settled();
            let pause = match reconcile::reconcile_members(agent, &members, settled).await {
                Ok(()) => RECONCILE_INTERVAL_MS,
                Err(error) => {
                    tracing::debug!(%error, "member reconcile failed; will retry");
                    RECONCILE_RETRY_MS
                }
            };
            self.next_reconcile = Some(Instant::now() + Duration::from_millis(pause));
        }
        expire_sessions(agent).await;
        if housekeeping {
            self.next_housekeeping = Some(Instant::now() + Duration::from_millis(HOUSEKEEPING_INTERVAL_MS));
            sync_history_setting(agent).await;
            seed_autopilot_config(agent).await;
            self.collect_tombstones(agent).await;
        }
        self.autopilot(agent, raft).await;
    }

    async fn collect_tombstones(&mut self, agent: &Agent) {
        let ttl = Duration::from_millis(agent.config().kv_tombstone_ttl_ms);
        let granularity = Duration::from_millis(TOMBSTONE_GC_GRANULARITY_MS).min(ttl);
        if !due(self.next_tombstone_note) {
            return;
        }
        self.next_tombstone_note = Some(Instant::now() + granularity);
        // Tombstones carry catalog indexes, which batched writes move ahead of the Raft index.
        self.tombstone_notes.push_back((Instant::now(), agent.view().read(|catalog| catalog.last_index())));
        if self.tombstone_notes.len() > TOMBSTONE_NOTES_MAX {
            self.tombstone_notes.pop_front();
        }
        let mut reap_to = None;
        while let Some(&(at, index)) = self.tombstone_notes.front() {
            if at.elapsed() < ttl {
                break;
            }
            reap_to = Some(index);
            self.tombstone_notes.pop_front();
        }
        let Some(up_to_index) = reap_to else { return };
        if agent.view().read(|catalog| catalog.kv_tombstones()) == 0 {
            return;
        }
        if let Err(error) = agent.write(Command::KvReapTombstones { up_to_index }).await {
            tracing::debug!(%error, "tombstone reap failed; will retry");
        }
    }

    async fn autopilot(&mut self, agent: &Agent, raft: &RaftServer) {
        let Some(report) = agent.autopilot_report() else { return };
        let settings = agent.autopilot_settings();
        if !self.cleanup_warned
            && let Some(warning) = crate::agent::autopilot::unhonoured(&settings)
        {
            tracing::warn!("autopilot: {warning}");
            self.cleanup_warned = true;
        }
        let stabilization = Duration::from_nanos(settings.server_stabilization_time_ns);
        for server in report.servers.iter().filter(|s| !s.voter && s.id != raft.node_id()) {
            if !server.healthy || server.stable_for < stabilization {
                continue;
            }
            match raft.promote(server.id).await {
                Ok(()) => tracing::info!(server = %server.name, "promoted to voter after stabilization"),
                Err(error) => tracing::warn!(server = %server.name, %error, "promotion failed; will retry"),
            }
        }
    }
}

/// Consul's `handleLeftMember` for servers: a server that left the pool gracefully leaves the
/// Raft configuration too, so the quorum shrinks with it instead of counting a dead voter.
async fn remove_departed_servers(agent: &Agent, raft: &RaftServer, status: &RaftStatus) {
    let departed: Vec<String> = agent
        .members()
        .into_iter()
        .filter(|m| m.status == crate::gossip::MemberStatus::Left && m.tags.get("role").is_some_and(|r| r == "consul"))
        .map(|m| m.name)
        .collect();
    for (id, node) in status.voters.iter().chain(status.learners.iter()) {
        if *id != raft.node_id() && departed.contains(&node.name) {
            match raft.remove_server(*id).await {
                Ok(()) => tracing::info!(server = %node.name, "removed a server that left the cluster from the Raft configuration"),
                Err(error) => tracing::warn!(server = %node.name, %error, "cannot remove a departed server from Raft; will retry"),
            }
        }
    }
}

/// Consul's `getOrCreateAutopilotConfig`: while the cluster has no autopilot configuration,
/// the leader stores its own settings (check-and-set on 0, so a configuration set meanwhile
/// is never replaced).
async fn seed_autopilot_config(agent: &Agent) {
    if agent.view().read(|catalog| catalog.autopilot_config().is_some()) {
        return;
    }
    // The command is new in format 2: wait, without a word, until every server reads it (a
    // rolling upgrade; `agent::formats`).
    if agent.cluster_format(agent.raft().map(|raft| raft.as_ref())) < crate::catalog::codec::FORMAT_V2 {
        return;
    }
    let settings = crate::agent::autopilot::seed_settings(&agent.config().autopilot);
    if let Err(error) = agent.write(Command::SetAutopilotConfig { settings, cas_index: Some(0) }).await {
        tracing::debug!(%error, "storing the autopilot configuration failed; will retry");
    }
}

async fn sync_history_setting(agent: &Agent) {
    let wanted = agent.config().kv_history_versions;
    let current = agent.view().read(|catalog| catalog.settings().kv_history_versions);
    if current != wanted
        && let Err(error) = agent.write(Command::SetKvHistoryVersions { versions: wanted }).await
    {
        tracing::debug!(%error, "setting kv_history_versions failed; will retry");
    }
}

impl Agent {
    /// `PUT /v1/session/renew`: restarts the session's TTL on the leader. Returns whether the
    /// session exists.
    pub fn renew_session(&self, session: &str) -> bool {
        let ttl_ms = self.view.read(|catalog| catalog.session(session).map(|s| s.ttl_ms));
        let Some(ttl_ms) = ttl_ms else { return false };
        if ttl_ms > 0 {
            let deadline = Instant::now() + Duration::from_millis(ttl_ms) * SESSION_TTL_MULTIPLIER;
            self.session_deadlines.lock().expect("session deadlines lock poisoned").insert(session.to_string(), deadline);
        }
        true
    }
}

/// Invalidates sessions whose TTL ran out (the leader stamps the time into the command; the
/// state machine never reads a clock).
async fn expire_sessions(agent: &Agent) {
    let sessions: Vec<(String, u64)> =
        agent.view.read(|catalog| catalog.sessions().filter(|s| s.ttl_ms > 0).map(|s| (s.id.clone(), s.ttl_ms)).collect());
    let now = Instant::now();
    let expired: Vec<String> = {
        let mut deadlines = agent.session_deadlines.lock().expect("session deadlines lock poisoned");
        deadlines.retain(|id, _| sessions.iter().any(|(s, _)| s == id));
        for (id, ttl_ms) in &sessions {
            deadlines.entry(id.clone()).or_insert(now + Duration::from_millis(*ttl_ms) * SESSION_TTL_MULTIPLIER);
        }
        deadlines.iter().filter(|(_, deadline)| **deadline <= now).map(|(id, _)| id.clone()).collect()
    };
    for session in expired {
        match agent.write(Command::SessionDestroy { session: session.clone(), now_ms: wall_clock_ms() }).await {
            Ok(_) => {
                tracing::info!(%session, "session TTL expired; invalidated");
                agent.session_deadlines.lock().expect("session deadlines lock poisoned").remove(&session);
            }
            Err(error) => tracing::warn!(%session, %error, "cannot invalidate an expired session; will retry"),
        }
    }
}
