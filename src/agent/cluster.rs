//! Cluster formation, on server agents (autopilot is one of the leader's duties, `leader`).
//!
//! **Formation.** Servers find each other through the LAN gossip pool (`members`): every
//! alive `role=consul` member of this datacenter announces its server port. A server that is
//! not yet in a cluster asks those servers who they are over the server port. If one of them
//! already belongs to a cluster, it asks to join (the leader adds it as a non-voter, and
//! autopilot promotes it). Otherwise, with `-bootstrap-expect=N`, once it knows N servers that
//! are all uninitialized, the server with the lowest Raft ID initializes the cluster with
//! exactly those N as voters; the others wait and are brought in by the new leader. One
//! initializer per formation is what keeps simultaneous starts from splitting the brain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::raft::RaftServer;

/// Pause between formation attempts; short so a cluster forms quickly once servers are up.
const FORMATION_RETRY_MS: u64 = 500;

pub(super) async fn formation_loop(agent: Arc<Agent>, raft: Arc<RaftServer>) {
    let expect = agent.config().bootstrap_expect as usize;
    let datacenter = agent.identity().datacenter.clone();
    let mut shutdown = agent.shutdown_requested();
    loop {
        let me = raft.info(&datacenter);
        if me.initialized {
            tracing::info!(servers = raft.status().voters.len(), "this server is part of a cluster");
            return;
        }
        let targets: Vec<String> =
            agent.known_servers().into_iter().map(|s| s.server_addr).filter(|addr| *addr != me.node.raft_addr).collect();
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
        let pause = Duration::from_millis(FORMATION_RETRY_MS + rand::random::<u64>() % FORMATION_RETRY_MS);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
