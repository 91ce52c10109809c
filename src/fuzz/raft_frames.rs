//! Fuzzes the server port's Raft traffic: the framed connection (`rpc::frames::serve`, its
//! length prefixes, kinds and sender field), the Raft messages inside (decoded by
//! `raft::network::checked_request` and checked by `raft::bounds` before openraft sees them),
//! the snapshot chunk admission (`SnapshotChunks`), the other server-port bodies (joins, view
//! requests) and the answers a server decodes from its peers. The attack: a server of the
//! cluster (or anyone who gets its address admitted) sends forged frames to crash its peers,
//! make them allocate without bound, or slip numbers past the bounds that openraft then
//! overflows on (a term of `u64::MAX`, a snapshot offset of a terabyte).
//!
//! Not covered: openraft's own handling of a message that passed the checks (that needs a
//! running Raft with a store on disk).

use std::net::SocketAddr;
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::remote_view::{ViewRequest, ViewRows, acl_token_rows, address_rows, node_rows, service_rows};
use crate::catalog::Catalog;
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz, samples};
use crate::raft::bounds::{Bounded, SnapshotChunks};
use crate::raft::cluster::JoinRequest;
use crate::raft::network::checked_request;
use crate::raft::{NodeId, ServerNode, TypeConfig};
use crate::rpc::fault::Faults;
use crate::rpc::frames::{FRAME_MAGIC, kind_of, request_frame, serve};
use crate::rpc::server::{Endpoint, PeerKind, RaftCall, WriteRoute};
use crate::rpc::{decode, encode};

/// Largest frame stream or message generated, in bytes.
const RAFT_INPUT_BYTES_MAX: usize = 64 * 1024;
/// What one frame stream may make the server hold: its frames are read whole, each up to
/// `RPC_BODY_BYTES_MAX` (32 MiB) as its length says, before anything is decoded.
const FRAMES_ALLOC_BYTES_MAX: usize = 2 * crate::rpc::RPC_BODY_BYTES_MAX + FUZZ_ALLOC_BYTES_MAX_DEFAULT;

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn server(id: u64) -> ServerNode {
    ServerNode { name: format!("server-{id}"), raft_addr: format!("10.0.0.{id}:8300"), http_addr: format!("10.0.0.{id}:8500") }
}

fn membership() -> Membership<NodeId, ServerNode> {
    Membership::new(vec![[1, 2, 3].into()], (1..=3).map(|id| (id, server(id))).collect::<std::collections::BTreeMap<_, _>>())
}

fn append() -> AppendEntriesRequest<TypeConfig> {
    let commands = samples::commands();
    let mut entries = vec![
        Entry { log_id: log_id(3, 10), payload: EntryPayload::Blank },
        Entry { log_id: log_id(3, 11), payload: EntryPayload::Membership(membership()) },
    ];
    entries.extend(commands.into_iter().take(4).enumerate().map(|(at, command)| Entry { log_id: log_id(3, 12 + at as u64), payload: EntryPayload::Normal(command) }));
    AppendEntriesRequest { vote: Vote::new_committed(3, 1), prev_log_id: Some(log_id(2, 9)), entries, leader_commit: Some(log_id(2, 9)) }
}

fn vote() -> VoteRequest<NodeId> {
    VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 15)))
}

fn snapshot_chunk(offset: u64) -> InstallSnapshotRequest<TypeConfig> {
    let meta = SnapshotMeta { last_log_id: Some(log_id(3, 15)), last_membership: StoredMembership::new(Some(log_id(3, 11)), membership()), snapshot_id: "3-15-1".into() };
    InstallSnapshotRequest { vote: Vote::new_committed(3, 1), meta, offset, data: vec![7; 300], done: offset > 0 }
}

/// The Raft side of the server port, up to where openraft would take over: the same decoding
/// and checks as `RaftServer::handle_rpc`, then a plain answer.
struct RaftChecks {
    chunks: SnapshotChunks,
    faults: Faults,
}

#[async_trait::async_trait]
impl Endpoint for RaftChecks {
    async fn raft(&self, call: RaftCall, body: &[u8]) -> Result<Vec<u8>, String> {
        raft_call(&self.chunks, call, body)
    }
    fn info(&self) -> Vec<u8> {
        Vec::new()
    }
    async fn join(&self, _body: &[u8]) -> Result<Vec<u8>, String> {
        Err("not in this target".into())
    }
    async fn write(&self, _body: &[u8], _route: WriteRoute) -> Result<Vec<u8>, String> {
        Err("not in this target".into())
    }
    async fn read(&self, _body: &[u8]) -> Result<Vec<u8>, String> {
        Err("not in this target".into())
    }
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn peer_kind(&self, _ip: std::net::IpAddr) -> PeerKind {
        PeerKind::Server
    }
}

fn raft_call(chunks: &SnapshotChunks, call: RaftCall, body: &[u8]) -> Result<Vec<u8>, String> {
    match call {
        RaftCall::Append => {
            let request: AppendEntriesRequest<TypeConfig> = checked_request(call, body)?;
            let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = Ok(AppendEntriesResponse::PartialSuccess(request.prev_log_id));
            Ok(encode(&answer))
        }
        RaftCall::Vote => {
            let request: VoteRequest<NodeId> = checked_request(call, body)?;
            let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> = Ok(VoteResponse::new(request.vote, request.last_log_id, false));
            Ok(encode(&answer))
        }
        RaftCall::InstallSnapshot => {
            let request: InstallSnapshotRequest<TypeConfig> = checked_request(call, body)?;
            chunks.admit(&request).map_err(|mismatch| mismatch.to_string())?;
            let answer: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> = Ok(InstallSnapshotResponse { vote: request.vote });
            Ok(encode(&answer))
        }
    }
}

fn frame(call: RaftCall, body: &[u8]) -> Vec<u8> {
    request_frame(kind_of(call).expect("a framed call"), "10.0.0.1:8300", body)
}

/// Streams of frames after the magic byte, as a leader sends them.
#[test]
fn frames() {
    let heartbeat = AppendEntriesRequest::<TypeConfig> { entries: Vec::new(), ..append() };
    let seeds = vec![
        frame(RaftCall::Append, &encode(&append())),
        [frame(RaftCall::Vote, &encode(&vote())), frame(RaftCall::Append, &encode(&heartbeat))].concat(),
        [frame(RaftCall::Append, &encode(&heartbeat)), frame(RaftCall::Append, &encode(&append())), frame(RaftCall::Vote, &encode(&vote()))].concat(),
    ];
    let target = Target { name: "raft_frames::frames", seeds, dictionary: Vec::new(), input_bytes_max: RAFT_INPUT_BYTES_MAX, alloc_bytes_max: FRAMES_ALLOC_BYTES_MAX };
    fuzz(target, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let endpoint: Arc<dyn Endpoint> = Arc::new(RaftChecks { chunks: SnapshotChunks::default(), faults: Faults::new(false) });
        move |input: &[u8]| runtime.block_on(serve_stream(input, Arc::clone(&endpoint)))
    });
}

/// Serves one connection carrying `input` after the magic byte; accepted when every answer
/// is a well-formed frame and at least one said OK.
async fn serve_stream(input: &[u8], endpoint: Arc<dyn Endpoint>) -> Verdict {
    let (client, server_end) = tokio::io::duplex(64 * 1024);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let peer: SocketAddr = "10.0.0.1:41000".parse().expect("an address");
    let served = serve(Box::new(server_end), peer, None, endpoint);
    let send = async {
        let mut stream = vec![FRAME_MAGIC];
        stream.extend_from_slice(input);
        // The server may hang up mid-stream (a malformed length): what it answered still counts.
        let _ = to_server.write_all(&stream).await;
        let _ = to_server.shutdown().await;
    };
    let receive = async {
        let mut answers = Vec::new();
        let _ = from_server.read_to_end(&mut answers).await;
        answers
    };
    let ((), (), answers) = tokio::join!(served, send, receive);
    let mut rest = answers.as_slice();
    let mut any_ok = false;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "a truncated answer frame: {answers:?}");
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(length >= 1 && rest.len() >= 4 + length, "an answer frame's length is wrong: {answers:?}");
        any_ok |= rest[4] == crate::rpc::frames::STATUS_OK;
        rest = &rest[4 + length..];
    }
    if any_ok { Verdict::Accepted } else { Verdict::Refused }
}

/// The kinds of single messages, chosen by an input's first byte.
const MESSAGE_KINDS: u8 = 10;

fn message(kind: u8, body: Vec<u8>) -> Vec<u8> {
    [vec![kind], body].concat()
}

/// Single server-port bodies and the answers peers send back, each after a kind byte.
#[test]
fn messages() {
    let (catalog, _) = samples::catalog();
    let view = |request: ViewRequest| encode(&request);
    let append_answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(3, 9))));
    let vote_answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> = Ok(VoteResponse::new(Vote::new(4, 2), Some(log_id(3, 15)), true));
    let snapshot_answer: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> = Ok(InstallSnapshotResponse { vote: Vote::new_committed(3, 1) });
    let written: Result<(u64, crate::catalog::Outcome), String> = Ok((42, crate::catalog::Outcome::Bool(true)));
    let seeds = vec![
        message(0, encode(&append())),
        message(1, encode(&vote())),
        message(2, encode(&snapshot_chunk(0))),
        message(2, encode(&snapshot_chunk(300))),
        message(3, encode(&JoinRequest { node_id: 4, node: server(4), datacenter: "dc1".into() })),
        message(4, view(ViewRequest::Service { name: "web".into(), min_index: 3, wait_ms: 1000 })),
        message(4, view(ViewRequest::Node { node: "node-1".into() })),
        message(4, view(ViewRequest::Address { ip: std::net::Ipv4Addr::LOCALHOST.into() })),
        message(4, view(ViewRequest::PreparedQuery { name_or_id: "web".into(), near_node: "node-1".into() })),
        message(5, encode(&append_answer)),
        message(6, encode(&vote_answer)),
        message(7, encode(&snapshot_answer)),
        message(8, encode(&written)),
        message(9, encode(&service_rows(&catalog, "web"))),
    ];
    let target = Target { name: "raft_frames::messages", seeds, dictionary: Vec::new(), input_bytes_max: RAFT_INPUT_BYTES_MAX, alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT };
    fuzz(target, move || {
        let chunks = SnapshotChunks::default();
        move |input: &[u8]| {
            let Some((&kind, body)) = input.split_first() else { return Verdict::Refused };
            match kind % MESSAGE_KINDS {
                0 => Verdict::of(&raft_call(&chunks, RaftCall::Append, body)),
                1 => Verdict::of(&raft_call(&chunks, RaftCall::Vote, body)),
                2 => Verdict::of(&raft_call(&chunks, RaftCall::InstallSnapshot, body)),
                3 => Verdict::of(&decode::<JoinRequest>(body)),
                4 => serve_view(&catalog, body),
                5 => answer::<AppendEntriesResponse<NodeId>, RaftError<NodeId>>(body),
                6 => answer::<VoteResponse<NodeId>, RaftError<NodeId>>(body),
                7 => answer::<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>(body),
                8 => Verdict::of(&decode::<Result<(u64, crate::catalog::Outcome), String>>(body)),
                _ => client_view(body),
            }
        }
    });
}

/// A peer's answer as `PeerClient` takes it: decoded, then bounded.
fn answer<Resp, E>(body: &[u8]) -> Verdict
where
    Resp: serde::de::DeserializeOwned + Bounded,
    E: serde::de::DeserializeOwned,
{
    match decode::<Result<Resp, E>>(body) {
        Ok(Ok(answer)) => Verdict::of(&answer.check_bounds()),
        Ok(Err(_)) => Verdict::Accepted,
        Err(_) => Verdict::Refused,
    }
}

/// A server answering a client agent's view request, and the client loading the answer.
fn serve_view(catalog: &Catalog, body: &[u8]) -> Verdict {
    let Ok(request) = decode::<ViewRequest>(body) else { return Verdict::Refused };
    let rows = match request {
        ViewRequest::Node { node } => node_rows(catalog, &node),
        ViewRequest::Service { name, .. } => service_rows(catalog, &name),
        ViewRequest::AclToken { secret } => acl_token_rows(catalog, &secret),
        ViewRequest::Address { ip } => address_rows(catalog, ip),
        ViewRequest::PreparedQuery { name_or_id, near_node } => {
            crate::agent::prepared_query::prepared_query_rows(catalog, &name_or_id, &near_node)
        }
    };
    let loaded = decode::<ViewRows>(&encode(&rows)).expect("our own view rows decode").into_catalog();
    assert!(loaded.is_ok(), "a server's own view rows do not load: {loaded:?}");
    Verdict::Accepted
}

/// A client agent loading the rows a server sent, then reading them as DNS does.
fn client_view(body: &[u8]) -> Verdict {
    let Ok(rows) = decode::<ViewRows>(body) else { return Verdict::Refused };
    let Ok(catalog) = rows.into_catalog() else { return Verdict::Refused };
    for (name, _) in catalog.service_names() {
        let _ = catalog.health_instances(&name);
    }
    for node in catalog.nodes() {
        let _ = catalog.node_services(&node.name);
        let _ = catalog.node_checks(&node.name);
    }
    Verdict::Accepted
}
