//! Cluster formation, on server agents (autopilot is one of the leader's duties, `leader`).
//!
//! **Formation.** A server that is not yet in a cluster contacts its `-retry-join` addresses
//! over the server port. If one of them already belongs to a cluster, it asks to join (the
//! leader adds it as a non-voter). Otherwise, with `-bootstrap-expect=N`, once it knows N
//! servers that are all uninitialized, the server with the lowest Raft ID initializes the
//! cluster with exactly those N as voters; the others wait and are brought in by the new
//! leader. One initializer per formation is what keeps simultaneous starts from splitting
//! the brain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{Agent, AgentError};
use crate::raft::RaftServer;

/// Pause between formation attempts; short so a cluster forms quickly once servers are up.
const FORMATION_RETRY_MS: u64 = 500;
/// The server port assumed for a `-retry-join` address that gives none.
pub(crate) const DEFAULT_SERVER_PORT: u16 = 8300;

/// `host` → `host:8300`; `host:port` and `[v6]:port` are kept.
pub(crate) fn server_address(address: &str) -> String {
    let address = address.trim();
    if address.starts_with('[') {
        if address.contains("]:") { address.to_string() } else { format!("{address}:{DEFAULT_SERVER_PORT}") }
    } else if address.matches(':').count() == 1 {
        address.to_string()
    } else if address.contains(':') {
        format!("[{address}]:{DEFAULT_SERVER_PORT}")
    } else {
        format!("{address}:{DEFAULT_SERVER_PORT}")
    }
}

pub(super) async fn formation_loop(agent: Arc<Agent>, raft: Arc<RaftServer>) {
    let config = agent.config();
    let targets: Vec<String> = config.retry_join.iter().map(|a| server_address(a)).collect();
    let expect = config.bootstrap_expect as usize;
    if targets.is_empty() && expect == 0 {
        return;
    }
    let datacenter = agent.identity().datacenter.clone();
    let mut shutdown = agent.shutdown_requested();
    let mut attempts: u32 = 0;
    loop {
        let me = raft.info(&datacenter);
        if me.initialized {
            tracing::info!(servers = raft.status().voters.len(), "this server is part of a cluster");
            return;
        }
        let mut uninitialized = BTreeMap::from([(me.node_id, me.node.clone())]);
        let mut joined = false;
        for target in &targets {
            match raft.fetch_info(target).await {
                Ok(info) if info.node_id == me.node_id => {}
                Ok(info) if info.datacenter != datacenter => {
                    tracing::warn!(%target, theirs = %info.datacenter, "not joining a server of another datacenter");
                }
                Ok(info) if info.initialized => match raft.request_join(target, &datacenter).await {
                    Ok(()) => {
                        tracing::info!(%target, "joined the cluster");
                        joined = true;
                        break;
                    }
                    Err(error) => tracing::debug!(%target, %error, "join refused; will retry"),
                },
                Ok(info) => {
                    uninitialized.insert(info.node_id, info.node);
                }
                Err(error) => tracing::debug!(%target, %error, "server not reachable yet"),
            }
        }
        if !joined && expect > 0 && uninitialized.len() >= expect {
            let lowest = *uninitialized.keys().next().expect("contains this server");
            if lowest == me.node_id {
                let members: BTreeMap<_, _> = uninitialized.into_iter().take(expect).collect();
                tracing::info!(servers = ?members.values().map(|n| n.name.clone()).collect::<Vec<_>>(), "bootstrap_expect reached; forming the cluster");
                if let Err(error) = raft.initialize_cluster(members).await {
                    tracing::warn!(%error, "cluster formation failed; will retry");
                }
            }
        }
        attempts += 1;
        if config.retry_max_attempts > 0 && attempts >= config.retry_max_attempts && !joined {
            tracing::error!(attempts, "giving up joining the cluster (retry_max reached)");
            return;
        }
        let pause = Duration::from_millis(FORMATION_RETRY_MS + rand::random::<u64>() % FORMATION_RETRY_MS);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl Agent {
    /// `cairn join` / `PUT /v1/agent/join/:addr`: joins the cluster of the server at `address`.
    pub async fn join(&self, address: &str) -> Result<(), AgentError> {
        let raft = self.raft().ok_or(AgentError::NoServer)?;
        let target = server_address(address);
        raft.request_join(&target, &self.identity.datacenter).await.map_err(|e| AgentError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::server_address;

    #[test]
    fn retry_join_addresses_get_the_default_server_port() {
        assert_eq!(server_address("10.0.0.2"), "10.0.0.2:8300");
        assert_eq!(server_address("10.0.0.2:9300"), "10.0.0.2:9300");
        assert_eq!(server_address("::1"), "[::1]:8300");
        assert_eq!(server_address("[::1]:9300"), "[::1]:9300");
        assert_eq!(server_address("[::1]"), "[::1]:8300");
        assert_eq!(server_address("host.example"), "host.example:8300");
    }
}
