//! Server-to-server transport for Raft: axum routes on the server port and a reqwest client.
//!
//! Every body is `[RPC_FORMAT_V1] + postcard(...)`. Requests carry the openraft RPC; responses
//! carry `Result<Response, RaftError>` so a remote Raft error comes back typed. Timeouts come
//! from openraft's `RPCOption::hard_ttl`, and the body limit is larger than a snapshot chunk.
//!
//! AppendEntries and Vote, on the path of every write, go as frames on a kept-alive TCP
//! connection to the same port instead (`frames`); the HTTP routes `/raft/append` and
//! `/raft/vote` stay for older peers and tools.
//!
//! The same port also carries write forwarding: a follower that receives a write posts the
//! encoded command to the leader's `/raft/forward` and relays the outcome.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::catalog::Command;
use crate::raft::fault::{FROM_HEADER, FaultPlan, Faults};
use crate::raft::frames;
use crate::raft::{NodeId, RaftServer, ServerNode, TypeConfig};

const RPC_FORMAT_V1: u8 = 1;
/// openraft's snapshot chunks are 3 MiB by default; leave room for the envelope and entries.
pub const RAFT_RPC_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RPC_FORMAT_V1];
    out.extend(postcard::to_allocvec(value).expect("postcard serializes raft messages"));
    out
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    match bytes.split_first() {
        Some((&RPC_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(std::io::Error::other),
        Some((version, _)) => Err(std::io::Error::other(format!("unknown rpc format version {version}"))),
        None => Err(std::io::Error::other("empty rpc body")),
    }
}

/// Creates one [`PeerClient`] per target server, sharing a connection pool.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    faults: Arc<Faults>,
    /// Our own server address, sent as `x-cairn-from` so a partitioned peer can refuse us.
    own_addr: String,
}

impl Network {
    pub fn new(client: reqwest::Client, faults: Arc<Faults>, own_addr: String) -> Network {
        Network { client, faults, own_addr }
    }
}

pub struct PeerClient {
    client: reqwest::Client,
    target: NodeId,
    target_addr: String,
    base_url: String,
    faults: Arc<Faults>,
    own_addr: String,
    /// The framed connection for AppendEntries and Vote (`frames`), dialled on first use.
    framed: Option<TcpStream>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> PeerClient {
        PeerClient {
            client: self.client.clone(),
            target,
            target_addr: node.raft_addr.clone(),
            base_url: format!("http://{}", node.raft_addr),
            faults: self.faults.clone(),
            own_addr: self.own_addr.clone(),
            framed: None,
        }
    }
}

impl PeerClient {
    /// Refuses to reach a target that a fault plan cuts us from (tests only).
    fn unless_partitioned<E: std::error::Error>(&self) -> Result<(), RPCError<NodeId, ServerNode, E>> {
        if self.faults.blocks(&self.target_addr) {
            let error = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "partitioned (fault injection)");
            return Err(RPCError::Unreachable(Unreachable::new(&error)));
        }
        Ok(())
    }

    async fn call<Req, Resp, E>(&self, path: &str, request: &Req, option: &RPCOption) -> Result<Resp, RPCError<NodeId, ServerNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.unless_partitioned()?;
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header(FROM_HEADER, &self.own_addr)
            .timeout(option.hard_ttl())
            .body(encode(request))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(format!("peer answered {status}")))));
        }
        let bytes = response.bytes().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let result: Result<Resp, E> = decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// One framed exchange (see `frames`). The connection is taken out for the exchange and put
    /// back only after a whole answer, so an error or a cancelled call never leaves a
    /// half-read connection behind.
    async fn call_framed<Req, Resp, E>(&mut self, kind: u8, request: &Req, option: &RPCOption) -> Result<Resp, RPCError<NodeId, ServerNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.unless_partitioned()?;
        let stream = match self.framed.take() {
            Some(stream) => stream,
            None => {
                let dial = tokio::time::timeout(Duration::from_millis(frames::FRAME_CONNECT_TIMEOUT_MS), TcpStream::connect(&self.target_addr));
                let mut stream = match dial.await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
                    Err(_) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::from(std::io::ErrorKind::TimedOut)))),
                };
                let _ = stream.set_nodelay(true);
                stream.write_all(&[frames::FRAME_MAGIC]).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                stream
            }
        };
        let frame = frames::request_frame(kind, &self.own_addr, &encode(request));
        let exchange = async move {
            let mut stream = stream;
            stream.write_all(&frame).await?;
            let answer = frames::read_frame(&mut stream, option.hard_ttl()).await?;
            Ok::<_, frames::FrameError>((stream, answer))
        };
        let network = |e: &dyn std::error::Error| RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())));
        let (stream, answer) = match tokio::time::timeout(option.hard_ttl(), exchange).await {
            Ok(Ok((stream, Some(answer)))) => (stream, answer),
            Ok(Ok((_, None))) => return Err(network(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof))),
            Ok(Err(e)) => return Err(network(&e)),
            Err(_) => return Err(network(&frames::FrameError::Timeout)),
        };
        let Some((&status, body)) = answer.split_first() else {
            return Err(network(&frames::FrameError::Malformed("empty answer")));
        };
        if status != frames::STATUS_OK {
            let reason = String::from_utf8_lossy(body).into_owned();
            return Err(network(&std::io::Error::other(format!("peer refused: {reason}"))));
        }
        let result: Result<Resp, E> = decode(body).map_err(|e| network(&e))?;
        self.framed = Some(stream);
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        self.call_framed(frames::KIND_APPEND, &request, &option).await
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId, InstallSnapshotError>>> {
        self.call("/raft/snapshot", &request, &option).await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ServerNode, RaftError<NodeId>>> {
        self.call_framed(frames::KIND_VOTE, &request, &option).await
    }
}

/// The routes served on the server port. `datacenter` is checked on join.
pub fn router(server: Arc<RaftServer>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/forward", post(forward))
        .route("/raft/info", axum::routing::get(info))
        .route("/raft/join", post(join))
        .route("/raft/fault", post(set_faults))
        .layer(axum::middleware::from_fn_with_state(server.clone(), refuse_partitioned))
        .layer(DefaultBodyLimit::max(RAFT_RPC_BODY_BYTES_MAX))
        .with_state(server)
}

fn reply<T: Serialize>(value: &T) -> Response {
    (StatusCode::OK, encode(value)).into_response()
}

fn bad_request(error: std::io::Error) -> Response {
    (StatusCode::BAD_REQUEST, error.to_string()).into_response()
}

async fn append(State(server): State<Arc<RaftServer>>, body: Bytes) -> Response {
    match decode::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(request) => reply(&server.raft.append_entries(request).await),
        Err(e) => bad_request(e),
    }
}

async fn vote(State(server): State<Arc<RaftServer>>, body: Bytes) -> Response {
    match decode::<VoteRequest<NodeId>>(&body) {
        Ok(request) => reply(&server.raft.vote(request).await),
        Err(e) => bad_request(e),
    }
}

async fn snapshot(State(server): State<Arc<RaftServer>>, body: Bytes) -> Response {
    match decode::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(request) => reply(&server.raft.install_snapshot(request).await),
        Err(e) => bad_request(e),
    }
}

/// Refuses requests from servers we are partitioned from (fault injection).
async fn refuse_partitioned(State(server): State<Arc<RaftServer>>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let from = request.headers().get(FROM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !from.is_empty() && server.faults.blocks(from) {
        return (StatusCode::SERVICE_UNAVAILABLE, "partitioned (fault injection)").into_response();
    }
    next.run(request).await
}

async fn set_faults(State(server): State<Arc<RaftServer>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultPlan>(&body) {
        Ok(plan) => match server.faults.set(plan) {
            Ok(()) => StatusCode::OK.into_response(),
            Err(reason) => (StatusCode::FORBIDDEN, reason).into_response(),
        },
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn info(State(server): State<Arc<RaftServer>>) -> Response {
    reply(&server.info(&server.settings.datacenter))
}

/// A server asking to join: the leader adds it as a non-voter; others forward to the leader.
async fn join(State(server): State<Arc<RaftServer>>, body: Bytes) -> Response {
    match decode::<crate::raft::cluster::JoinRequest>(&body) {
        Ok(request) => {
            let datacenter = server.settings.datacenter.clone();
            let result = server.handle_join(request, &datacenter).await.map_err(|e| e.to_string());
            reply(&result)
        }
        Err(e) => bad_request(e),
    }
}

/// A write forwarded by a follower: applied here if we lead, else refused with the reason.
async fn forward(State(server): State<Arc<RaftServer>>, body: Bytes) -> Response {
    match decode::<Command>(&body) {
        Ok(command) => {
            let result = server.write_local(command).await.map_err(|e| e.to_string());
            reply(&result)
        }
        Err(e) => bad_request(e),
    }
}
