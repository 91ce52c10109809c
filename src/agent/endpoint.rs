//! The server port's [`Endpoint`]: what a server agent answers to its peers and to client
//! agents. Raft messages go to Raft as bytes (decoded there); joins to the cluster code;
//! commands are decoded here and committed through the role's write path.

use std::sync::Arc;

use crate::agent::Agent;
use crate::agent::remote_view::ViewRequest;
use crate::agent::role::Written;
use crate::catalog::Command;
use crate::raft::RaftServer;
use crate::raft::cluster::JoinRequest;
use crate::rpc::fault::Faults;
use crate::rpc::server::{Endpoint, RaftCall, WriteRoute};
use crate::rpc::{decode, encode};

/// A server agent serving its server port.
pub struct ServerEndpoint {
    agent: Arc<Agent>,
    raft: Arc<RaftServer>,
}

impl ServerEndpoint {
    pub fn new(agent: Arc<Agent>, raft: Arc<RaftServer>) -> ServerEndpoint {
        ServerEndpoint { agent, raft }
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
}
