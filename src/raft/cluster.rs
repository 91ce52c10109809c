//! Cluster membership: who the servers are, and the operations that change it.
//!
//! New servers find the cluster through a small handshake on the server port: `GET /raft/info`
//! says who a server is and whether it already belongs to a cluster, and `POST /raft/join` asks
//! the leader to add the caller as a non-voter (forwarded to the leader by any server). The
//! leader promotes a non-voter once it has caught up and stayed caught up for the stabilization
//! time (Consul autopilot's server stabilization). Membership changes use openraft's joint
//! consensus.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, RaftServer, ServerNode};

/// How long a server that gave up leadership keeps trying to rejoin.
const REJOIN_AFTER_TRANSFER_MS: u64 = 30_000;
/// Time limit of one handshake request.
const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;

/// What a server says about itself in the join handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub node_id: NodeId,
    pub node: ServerNode,
    pub datacenter: String,
    /// True once the server belongs to a cluster (its membership is not empty).
    pub initialized: bool,
    pub leader: Option<(NodeId, ServerNode)>,
}

/// A join request: the caller's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub node: ServerNode,
    pub datacenter: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("No cluster leader")]
    NoLeader,
    #[error("{0}")]
    Refused(String),
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
}

impl RaftServer {
    pub fn info(&self, datacenter: &str) -> ServerInfo {
        let status = self.status();
        ServerInfo {
            node_id: self.settings.node_id,
            node: self.settings.node.clone(),
            datacenter: datacenter.to_string(),
            initialized: !status.voters.is_empty() || !status.learners.is_empty(),
            leader: status.leader,
        }
    }

    /// Asks the server at `addr` (`host:port` of its server port) who it is.
    pub async fn fetch_info(&self, addr: &str) -> Result<ServerInfo, MembershipError> {
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        self.rpc.get(addr, "/raft/info", timeout).await.map_err(|e| MembershipError::Unreachable { addr: addr.to_string(), reason: e.to_string() })
    }

    /// Asks the server at `addr` to add us to its cluster.
    pub async fn request_join(&self, addr: &str, datacenter: &str) -> Result<(), MembershipError> {
        let request = JoinRequest { node_id: self.settings.node_id, node: self.settings.node.clone(), datacenter: datacenter.to_string() };
        self.request_join_as(addr, request).await
    }

    /// Handles a join request: the leader adds the caller as a non-voter; any other server
    /// forwards the request to the leader.
    pub async fn handle_join(&self, request: JoinRequest, datacenter: &str) -> Result<(), MembershipError> {
        if request.datacenter != datacenter {
            return Err(MembershipError::Refused(format!(
                "datacenter mismatch: this cluster is {datacenter:?}, the joining server is in {:?}",
                request.datacenter
            )));
        }
        let status = self.status();
        match status.leader {
            Some((id, _)) if id == self.settings.node_id => {
                if status.voters.contains_key(&request.node_id) || status.learners.contains_key(&request.node_id) {
                    return Ok(());
                }
                self.raft
                    .add_learner(request.node_id, request.node, false)
                    .await
                    .map(|_| ())
                    .map_err(|e| MembershipError::Refused(e.to_string()))
            }
            Some((_, leader)) => Box::pin(self.request_join_as(&leader.raft_addr, request)).await,
            None => Err(MembershipError::NoLeader),
        }
    }

    async fn request_join_as(&self, addr: &str, request: JoinRequest) -> Result<(), MembershipError> {
        let timeout = Duration::from_millis(self.settings.leader_wait_ms_max);
        let result: Result<(), String> = self
            .rpc
            .call(addr, "/raft/join", &request, timeout)
            .await
            .map_err(|e| MembershipError::Unreachable { addr: addr.to_string(), reason: e.to_string() })?;
        result.map_err(MembershipError::Refused)
    }

    /// Forms a new cluster whose voters are exactly `members`. Safe to call on every member
    /// with the same map; a no-op on an initialized server.
    pub async fn initialize_cluster(&self, members: BTreeMap<NodeId, ServerNode>) -> Result<(), MembershipError> {
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(MembershipError::Refused(e.to_string())),
        }
    }

    /// Makes a caught-up non-voter a voter (joint consensus).
    pub async fn promote(&self, node_id: NodeId) -> Result<(), MembershipError> {
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id]))).await
    }

    /// Hands leadership to another voter. openraft 0.9 has no leadership-transfer call, so the
    /// leader removes itself from the membership (joint consensus) and steps down once that is
    /// committed; the remaining voters elect a leader among themselves. This server then asks
    /// the new leader to add it back as a non-voter, and autopilot promotes it once it is
    /// stable. The new leader cannot be chosen.
    pub async fn transfer_leadership(self: &std::sync::Arc<Self>) -> Result<(), MembershipError> {
        let status = self.status();
        if status.leader.as_ref().map(|(id, _)| *id) != Some(self.settings.node_id) {
            return Err(MembershipError::Refused("this server is not the leader".into()));
        }
        if status.voters.len() < 2 {
            return Err(MembershipError::Refused("cannot transfer leadership: there are no other voters".into()));
        }
        if let Err(e) = self.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([self.settings.node_id])), false).await {
            return Err(MembershipError::Refused(e.to_string()));
        }
        let peers: Vec<String> = status.voters.iter().filter(|(id, _)| **id != self.settings.node_id).map(|(_, n)| n.raft_addr.clone()).collect();
        let server = self.clone();
        tokio::spawn(async move { server.rejoin_after_transfer(peers).await });
        Ok(())
    }

    /// After stepping down (no longer a member, so nobody tells us who leads): ask the former
    /// peers who the new leader is, then ask it to take us back.
    async fn rejoin_after_transfer(&self, peers: Vec<String>) {
        let deadline = std::time::Instant::now() + Duration::from_millis(REJOIN_AFTER_TRANSFER_MS);
        let datacenter = self.settings.datacenter.clone();
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for peer in &peers {
                let Ok(info) = self.fetch_info(peer).await else { continue };
                let Some((id, leader)) = info.leader else { continue };
                if id == self.settings.node_id {
                    continue;
                }
                match self.request_join(&leader.raft_addr, &datacenter).await {
                    Ok(()) => {
                        tracing::info!(leader = %leader.name, "handed leadership over; rejoining as a non-voter");
                        return;
                    }
                    Err(error) => tracing::debug!(%error, "rejoin after transfer refused; retrying"),
                }
            }
        }
        tracing::warn!("could not rejoin the cluster after transferring leadership; use `cairn join`");
    }

    /// Removes a server from the cluster entirely.
    pub async fn remove_server(&self, node_id: NodeId) -> Result<(), MembershipError> {
        let status = self.status();
        if status.voters.contains_key(&node_id) {
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))).await?;
        }
        self.change(ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))).await
    }

    async fn change(&self, changes: ChangeMembers<NodeId, ServerNode>) -> Result<(), MembershipError> {
        match self.raft.change_membership(changes, false).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(MembershipError::NoLeader),
            Err(e) => Err(MembershipError::Refused(e.to_string())),
        }
    }

    /// On the leader: how far each server's log matches ours (`None` off the leader).
    pub fn replication_progress(&self) -> Option<BTreeMap<NodeId, u64>> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.replication.map(|replication| {
            replication.iter().map(|(id, matched)| (*id, matched.map_or(0, |l| l.index))).collect()
        })
    }

    /// On the leader: the index and term of the last entry each server holds in common with
    /// the leader's log (`(0, 0)` before the first); `None` on other servers.
    pub fn replication_matched(&self) -> Option<BTreeMap<NodeId, (u64, u64)>> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.replication.map(|replication| {
            replication.iter().map(|(id, matched)| (*id, matched.map_or((0, 0), |l| (l.index, l.leader_id.term)))).collect()
        })
    }
}
