//! openraft's network over the server port (`rpc`): peer clients and the serving side.
//!
//! Outgoing: [`Network`] makes one [`PeerClient`] per target server. AppendEntries and Vote
//! travel as frames on a kept-alive connection (`rpc::frames`); InstallSnapshot as an HTTP
//! POST (`/raft/snapshot`) through the one `rpc::client::RpcClient`. Timeouts come from
//! openraft's `RPCOption::hard_ttl`.
//!
//! Every answer a peer sends is noted in [`PeerContacts`]: the leader's view of when each
//! follower was last in contact, which autopilot's health reads (`LastContactThreshold`).
//!
//! Incoming: [`RaftServer::handle_rpc`] decodes a message that `rpc::server` received as
//! bytes, hands it to openraft, and encodes its `Result`, so a remote Raft error comes back
//! typed. Decoding happens here, before openraft sees anything, and so do the checks of
//! `bounds` (terms and indexes openraft can do arithmetic on), on requests and on answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::bounds::Bounded;
use crate::raft::disk_full::DiskSpace;
use crate::raft::{NodeId, RaftServer, ServerNode, TypeConfig};
use crate::rpc::client::RpcClient;
use crate::rpc::frames::{FramedCallError, FramedConn};
use crate::rpc::server::RaftCall;
use crate::rpc::{RpcError, decode, encode, encode_as};

/// Creates one [`PeerClient`] per target server, sharing the agent's rpc client.
#[derive(Clone)]
pub struct Network {
    rpc: Arc<RpcClient>,
    space: DiskSpace,
    contacts: Arc<PeerContacts>,
}

impl Network {
    pub fn new(rpc: Arc<RpcClient>, space: DiskSpace, contacts: Arc<PeerContacts>) -> Network {
        Network { rpc, space, contacts }
    }
}

/// When each peer last answered one of this server's Raft messages. One entry per server of
/// the membership that ever answered (bounded by the membership's size).
#[derive(Default)]
pub struct PeerContacts {
    /// Written by the peer clients on every answer, read by autopilot's health; held only to
    /// copy an `Instant`.
    answered: Mutex<HashMap<NodeId, Instant>>,
}

impl PeerContacts {
    fn record(&self, peer: NodeId) {
        self.answered.lock().expect("peer contacts lock poisoned").insert(peer, Instant::now());
    }

    /// How long ago `peer` last answered; `None` if it never has.
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        self.answered.lock().expect("peer contacts lock poisoned").get(&peer).map(Instant::elapsed)
    }
}

/// Sends one server's Raft messages to one peer. While this server's storage waits for disk
/// space it sends nothing, as if cut off by a partition (always safe in Raft): a leader whose
/// disk is full would otherwise go on heartbeating from a core that cannot apply or
/// acknowledge anything, and no server with room could take over.
pub struct PeerClient {
    space: DiskSpace,
    rpc: Arc<RpcClient>,
    target: NodeId,
    target_addr: String,
    contacts: Arc<PeerContacts>,
    /// The framed connection for AppendEntries and Vote, dialled on first use.
    framed: FramedConn,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> PeerClient {
        PeerClient {
            space: self.space.clone(),
            rpc: self.rpc.clone(),
            target,
            target_addr: node.raft_addr.clone(),
            contacts: self.contacts.clone(),
            framed: self.rpc.framed(&node.raft_addr),
        }
    }
}

fn network_error<E: std::error::Error>(reason: impl ToString) -> RPCError<NodeId, ServerNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(reason.to_string())))
}

fn unreachable<E: std::error::Error>(reason: impl ToString) -> RPCError<NodeId, ServerNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::new(std::io::ErrorKind::ConnectionRefused, reason.to_string())))
}

impl PeerClient {
    /// Refuses to send while this server's disk is full (see [`PeerClient`]).
    fn check_space<E: std::error::Error>(&self) -> Result<(), RPCError<NodeId, ServerNode, E>> {
        if self.space.is_full() {
            return Err(unreachable("this server's disk is full: it sends no Raft messages until it has room again"));
        }
        Ok(())
    }

    /// Decodes a peer's encoded `Result`, typing a remote Raft error as such.
    fn remote_result<Resp, E>(&self, bytes: &[u8]) -> Result<Resp, RPCError<NodeId, ServerNode, E>>
    where
        Resp: DeserializeOwned + Bounded,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Resp, E> = decode(bytes).map_err(network_error)?;
        self.contacts.record(self.target);
        let answer = result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))?;
        answer.check_bounds().map_err(|error| {
            tracing::warn!(target_node = self.target, %error, "refused a Raft answer from a peer");
            network_error(format!("refused answer from server {}: {error}", self.target))
        })?;
        Ok(answer)
    }

    /// `format`: the encoding format the request needs (`rpc::encode_as`).
    async fn call_framed<Req, Resp, E>(&mut self, call: RaftCall, format: u8, request: &Req, option: &RPCOption) -> Result<Resp, RPCError<NodeId, ServerNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Bounded,
        E: std::error::Error + DeserializeOwned,
    {
        self.check_space()?;
        match self.framed.call(call, &encode_as(format, request), option.hard_ttl()).await {
            Ok(bytes) => self.remote_result(&bytes),
            Err(FramedCallError::Unreachable { reason, .. }) => Err(unreachable(reason)),
            Err(error) => Err(network_error(error)),
        }
    }

    async fn call_http<Req, Resp, E>(&self, path: &str, request: &Req, option: &RPCOption) -> Result<Resp, RPCError<NodeId, ServerNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned + Bounded,
        E: std::error::Error + DeserializeOwned,
    {
        self.check_space()?;
        match self.rpc.call_raw(&self.target_addr, path, encode(request), option.hard_ttl()).await {
            Ok(bytes) => self.remote_result(&bytes),
            Err(error @ (RpcError::Unreachable { .. } | RpcError::Partitioned { .. } | RpcError::NotAdmitted { .. })) => Err(unreachable(error)),
            Err(error) => Err(network_error(error)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        // Entries of a newer format make the whole message that format: a follower of an older
        // release then refuses it as such rather than misreading it.
        let format = request.entries.iter().map(crate::raft::log_store::entry_format).max().unwrap_or(crate::rpc::RPC_FORMAT_V1);
        self.call_framed(RaftCall::Append, format, &request, &option).await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId, InstallSnapshotError>>> {
        self.call_http("/raft/snapshot", &request, &option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        self.call_framed(RaftCall::Vote, crate::rpc::RPC_FORMAT_V1, &request, &option).await
    }
}

impl RaftServer {
    /// Serves one Raft message that arrived as bytes: decoded and checked here (terms and
    /// indexes within `bounds`), answered by openraft, encoded back. `Err` refuses a body that
    /// does not decode or carries numbers openraft cannot take.
    pub async fn handle_rpc(&self, call: RaftCall, body: &[u8]) -> Result<Vec<u8>, String> {
        match call {
            RaftCall::Append => {
                let request: AppendEntriesRequest<TypeConfig> = checked_request(call, body)?;
                Ok(encode(&self.raft.append_entries(request).await))
            }
            RaftCall::Vote => {
                let request: VoteRequest<NodeId> = checked_request(call, body)?;
                Ok(encode(&self.raft.vote(request).await))
            }
            RaftCall::InstallSnapshot => {
                let request: InstallSnapshotRequest<TypeConfig> = checked_request(call, body)?;
                if let Err(mismatch) = self.snapshot_chunks.admit(&request) {
                    tracing::warn!(%mismatch, "refused a snapshot chunk that does not continue the snapshot being received");
                    let refused: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
                        Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)));
                    return Ok(encode(&refused));
                }
                Ok(encode(&self.raft.install_snapshot(request).await))
            }
        }
    }
}

/// Decodes a Raft request and refuses it, with a warning, if its numbers are out of bounds.
pub(crate) fn checked_request<T: DeserializeOwned + Bounded>(call: RaftCall, body: &[u8]) -> Result<T, String> {
    let request: T = decode(body).map_err(|error| {
        // A peer of a newer release sends what this one cannot read: `rpc::decode` says so.
        tracing::warn!(?call, %error, "refused a Raft message that does not decode");
        error.to_string()
    })?;
    request.check_bounds().map_err(|error| {
        tracing::warn!(?call, %error, "refused a Raft message from a peer");
        format!("refused Raft {call:?}: {error}")
    })?;
    Ok(request)
}
