//! The server port's [`Endpoint`]: what a server agent answers to its peers and to client
//! agents. Raft messages go to Raft as bytes (decoded there); joins to the cluster code;
//! commands are decoded here and committed through the role's write path.
//!
//! It also says who a caller is ([`PeerKind`], for `rpc::server::admit`): a server when its
//! address is a Raft member's or a `role=consul` LAN member's (the Raft membership covers a
//! restarted server that gossip has not met again yet), a member when it is any other LAN
//! member (not one that left), this agent's own addresses count as a server, and anyone else
//! is a stranger. The table is rebuilt when the members change, and on a miss at most every
//! [`PEER_TABLE_REBUILD_MS_MIN`] (a member whose join has not reached the events loop yet).
//! Addresses are what authenticate a caller here, so the table is only as trustworthy as the
//! pool: with a gossip key (`encrypt`) no one without the key joins it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::agent::Agent;
use crate::agent::remote_view::ViewRequest;
use crate::agent::role::Written;
use crate::catalog::Command;
use crate::raft::RaftServer;
use crate::raft::cluster::JoinRequest;
use crate::rpc::fault::Faults;
use crate::gossip::MemberStatus;
use crate::rpc::server::{Endpoint, PeerKind, RaftCall, WriteRoute};
use crate::rpc::{decode, encode};

/// Least time between two rebuilds of the peer table caused by unknown callers.
const PEER_TABLE_REBUILD_MS_MIN: u64 = 250;

/// A server agent serving its server port.
pub struct ServerEndpoint {
    agent: Arc<Agent>,
    raft: Arc<RaftServer>,
    peers: Mutex<PeerTable>,
}

/// Who the known addresses are (see the module docs).
struct PeerTable {
    by_ip: HashMap<IpAddr, PeerKind>,
    built: Option<Instant>,
    members_changed: watch::Receiver<u64>,
}

impl ServerEndpoint {
    pub fn new(agent: Arc<Agent>, raft: Arc<RaftServer>) -> ServerEndpoint {
        let members_changed = agent.members_changed.subscribe();
        ServerEndpoint { agent, raft, peers: Mutex::new(PeerTable { by_ip: HashMap::new(), built: None, members_changed }) }
    }

    /// Every address that may call, and what it is.
    fn peer_table(&self) -> HashMap<IpAddr, PeerKind> {
        let mut by_ip = HashMap::new();
        for member in self.agent.gossip.members() {
            if matches!(member.status, MemberStatus::Left | MemberStatus::None) {
                continue;
            }
            let kind = if member.tags.get("role").is_some_and(|r| r == "consul") { PeerKind::Server } else { PeerKind::Member };
            let entry = by_ip.entry(member.addr.to_canonical()).or_insert(kind);
            if kind == PeerKind::Server {
                *entry = PeerKind::Server;
            }
        }
        let own = [self.agent.identity.advertise_addr, self.agent.config.bind_addr];
        for ip in self.raft.member_ips().into_iter().chain(own) {
            by_ip.insert(ip.to_canonical(), PeerKind::Server);
        }
        by_ip
    }
}

#[async_trait::async_trait]
impl Endpoint for ServerEndpoint {
    async fn raft(&self, call: RaftCall, body: &[u8]) -> Result<Vec<u8>, String> {
        self.raft.handle_rpc(call, body).await
    }

    fn info(&self) -> Vec<u8> {
        encode(&self.raft.info(&self.agent.identity().datacenter))
    }

    async fn join(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let request: JoinRequest = decode(body).map_err(|e| e.to_string())?;
        let datacenter = self.agent.identity().datacenter.clone();
        let result = self.raft.handle_join(request, &datacenter).await.map_err(|e| e.to_string());
        Ok(encode(&result))
    }

    async fn write(&self, body: &[u8], route: WriteRoute) -> Result<Vec<u8>, String> {
        let command: Command = decode(body).map_err(|e| e.to_string())?;
        let result: Result<Written, String> = self.agent.write_on_server(&self.raft, command, route).await.map_err(|e| e.to_string());
        Ok(encode(&result))
    }

    async fn read(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let request: ViewRequest = decode(body).map_err(|e| e.to_string())?;
        Ok(encode(&self.agent.serve_view(request).await))
    }

    fn faults(&self) -> &Faults {
        self.raft.faults()
    }

    fn peer_kind(&self, ip: IpAddr) -> PeerKind {
        let mut table = self.peers.lock().expect("peer table lock poisoned");
        let stale = table.built.is_none() || table.members_changed.has_changed().unwrap_or(false);
        let found = table.by_ip.get(&ip).copied();
        let miss_may_rebuild = found.is_none() && table.built.is_none_or(|at| at.elapsed() >= Duration::from_millis(PEER_TABLE_REBUILD_MS_MIN));
        if !stale && !miss_may_rebuild {
            return found.unwrap_or(PeerKind::Stranger);
        }
        table.members_changed.mark_unchanged();
        table.by_ip = self.peer_table();
        table.built = Some(Instant::now());
        table.by_ip.get(&ip).copied().unwrap_or(PeerKind::Stranger)
    }
}
