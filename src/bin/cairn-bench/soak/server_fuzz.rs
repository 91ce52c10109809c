//! The server port's fuzzer: Raft frames (`rpc::frames`) and the port's HTTP routes
//! (`rpc::server`), from addresses that are not members of the cluster and from a member's
//! own address.
//!
//! - **Strangers** (127.0.0.1, 127.0.0.2: no server of the soak's cluster uses them) send
//!   anything, including well-formed Raft messages of a far higher term and well-formed
//!   writes. Every frame must be refused and every HTTP request answered 4xx; a frame
//!   accepted or a 2xx is a finding ("stranger admitted").
//! - **A member** (another server's address) is trusted by design, so it sends only what must
//!   be refused whatever the caller: bodies that decode as no server-port message (checked
//!   here with cairn's own decoder before sending), broken frame headers, lengths past the
//!   limit, unknown frame kinds, bad routes, and API requests relayed through `/fwd`. An
//!   accepted malformed frame, a 2xx to a malformed body, or any 5xx is a finding.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn::catalog::Command;
use cairn::raft::{NodeId, ServerNode, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::http_fuzz::{self, FuzzRequest};
use super::http_seeds::{self, Body, HttpSeed, Known};
use super::mutate::mutate_bytes;
use super::report::Tally;
use super::wire::{self, Answer, Delivery};

/// The first byte of a framed connection (`rpc::frames::FRAME_MAGIC`).
const FRAME_MAGIC: u8 = 0xCB;
const STATUS_OK: u8 = 0;
/// The server port's body limit (`rpc::RPC_BODY_BYTES_MAX`): a frame claiming more is cut off.
const RPC_BODY_BYTES_MAX: u32 = 32 * 1024 * 1024;
/// Longest wait for a frame's answer (a frame whose length promises more than was sent waits
/// for the server's 10 s body timeout).
const FRAME_ANSWER_TIMEOUT_MS: u64 = 15_000;
/// Longest wait for an HTTP answer on the server port (its body deadline is 10 s).
const HTTP_ANSWER_TIMEOUT_MS: u64 = 15_000;
const ROUTES: &[&str] = &["/raft/append", "/raft/vote", "/raft/snapshot", "/raft/info", "/raft/join", "/raft/forward", "/rpc/write", "/rpc/read", "/raft/fault", "/raft/x", "/"];

/// Where the server-port fuzzers send, and from where.
#[derive(Clone)]
pub(crate) struct ServerTarget {
    /// Each server's (IP, server port).
    pub(crate) servers: Vec<SocketAddr>,
    /// Addresses no member uses.
    pub(crate) strangers: Vec<IpAddr>,
    pub(crate) management_token: String,
}

/// Who sends: decides what may be sent and what must come back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Stranger,
    Member,
}

/// Runs one fuzzing loop until `stop`.
pub(crate) async fn worker(target: ServerTarget, seed: u64, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let position = rng.gen_range(0..target.servers.len());
        let addr = target.servers[position];
        let (caller, source) = if rng.gen_bool(0.5) {
            (Caller::Stranger, *target.strangers.choose(&mut rng).expect("a stranger"))
        } else {
            // Another server's address: a member of the cluster.
            (Caller::Member, target.servers[(position + 1 + rng.gen_range(0..target.servers.len() - 1)) % target.servers.len()].ip())
        };
        match rng.gen_range(0..3) {
            0 => frames(&mut rng, addr, source, caller, &tally).await,
            1 => raw_route(&mut rng, addr, source, caller, &tally).await,
            _ => mutated_http(&mut rng, addr, source, caller, &target.management_token, &tally).await,
        }
    }
}

fn label(caller: Caller) -> &'static str {
    match caller {
        Caller::Stranger => "server_stranger",
        Caller::Member => "server_member",
    }
}

/// A well-formed server-port body: a Raft message, a command, a join or a read.
fn valid_body(rng: &mut impl Rng) -> Vec<u8> {
    let term = *[0u64, 1, 2, 1_000, 1 << 40, u64::MAX].choose(rng).expect("non-empty");
    let leader: NodeId = rng.gen_range(0..5);
    let log_id = LogId::new(CommittedLeaderId::new(term, leader), rng.gen_range(0..1_000));
    match rng.gen_range(0..6) {
        0 => cairn::rpc::encode(&AppendEntriesRequest::<TypeConfig> { vote: Vote::new_committed(term, leader), prev_log_id: Some(log_id), entries: vec![], leader_commit: Some(log_id) }),
        1 => cairn::rpc::encode(&VoteRequest::<NodeId>::new(Vote::new(term, leader), Some(log_id))),
        2 => {
            let mut request = InstallSnapshotRequest::<TypeConfig> { vote: Vote::new_committed(term, leader), meta: Default::default(), offset: 0, data: vec![0; 16], done: rng.r#gen() };
            request.meta.snapshot_id = "soak".into();
            cairn::rpc::encode(&request)
        }
        3 => cairn::rpc::encode(&Command::KvSet { key: "fuzz/server-port".into(), value: b"stranger".to_vec(), flags: 0, cas_index: None }),
        4 => cairn::rpc::encode(&cairn::raft::cluster::JoinRequest {
            node_id: 99,
            node: ServerNode { name: "rogue".into(), raft_addr: "127.0.0.9:8300".into(), http_addr: "127.0.0.9:8500".into() },
            datacenter: "dc1".into(),
        }),
        _ => cairn::rpc::encode(&cairn::agent::remote_view::ViewRequest::Service { name: "soak-base".into(), min_index: 0, wait_ms: 100 }),
    }
}

/// True when `body` decodes as a message a member could legitimately send (which the soak
/// does not send from a member: members are trusted, so it would be no finding).
fn decodes(body: &[u8]) -> bool {
    use cairn::rpc::decode;
    decode::<AppendEntriesRequest<TypeConfig>>(body).is_ok()
        || decode::<VoteRequest<NodeId>>(body).is_ok()
        || decode::<InstallSnapshotRequest<TypeConfig>>(body).is_ok()
        || decode::<Command>(body).is_ok()
        || decode::<cairn::raft::cluster::JoinRequest>(body).is_ok()
        || decode::<cairn::agent::remote_view::ViewRequest>(body).is_ok()
}

/// A body for `caller`: a stranger may send a valid one; a member only a malformed one.
fn body_for(rng: &mut impl Rng, caller: Caller) -> Vec<u8> {
    loop {
        let mut body = match rng.gen_range(0..4) {
            0 => (0..rng.gen_range(0..256)).map(|_| rng.r#gen()).collect(),
            1 => Vec::new(),
            _ => valid_body(rng),
        };
        if caller == Caller::Member || rng.gen_bool(0.5) {
            let rounds = rng.gen_range(1..6);
            mutate_bytes(rng, &mut body, rounds);
        }
        if caller == Caller::Stranger || !decodes(&body) {
            return body;
        }
    }
}

/// One framed connection: the magic byte, then one to three frames, some broken.
async fn frames(rng: &mut impl Rng, addr: SocketAddr, source: IpAddr, caller: Caller, tally: &Tally) {
    let mut bytes = vec![FRAME_MAGIC];
    let mut expected = 0;
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for _ in 0..rng.gen_range(1..4) {
        let kind = *[1u8, 2, 1, 2, 0, 3, 255].choose(rng).expect("non-empty");
        let from: Vec<u8> = match rng.gen_range(0..4) {
            0 => addr.to_string().into_bytes(),
            1 => vec![0xff, 0xfe],
            _ => Vec::new(),
        };
        let claimed_from = if rng.gen_ratio(1, 20) { u16::MAX } else { from.len() as u16 };
        let body = body_for(rng, caller);
        bodies.push(body.clone());
        let rest = [&[kind][..], &claimed_from.to_be_bytes(), &from, &body].concat();
        let length = match rng.gen_range(0..30) {
            0 => RPC_BODY_BYTES_MAX + 1,
            1 => 0,
            2 => rest.len() as u32 + rng.gen_range(1..64),
            _ => rest.len() as u32,
        };
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&rest);
        expected += 1;
    }
    let delivery = Delivery::pick(rng, bytes.len());
    tally.count(&format!("{}.frames_sent", label(caller)));
    let Ok(mut stream) = wire::connect_from(source, addr).await else {
        tally.finding("server", format!("cannot connect to {addr} from {source}"), "");
        return;
    };
    let answer = wire::exchange(&mut stream, &bytes, delivery, Duration::from_millis(FRAME_ANSWER_TIMEOUT_MS), |b| answers_in(b).len() >= expected).await;
    let received = match &answer {
        Answer::Complete(b) | Answer::Closed(b) | Answer::TimedOut(b) => answers_in(b),
        Answer::NotAwaited => Vec::new(),
    };
    for (position, status) in received.iter().enumerate() {
        tally.count(&format!("{}.frame_{}", label(caller), if *status == STATUS_OK { "accepted" } else { "refused" }));
        // Judged again on what was sent: a member's body that decodes after all is a message a
        // member may send (one 20-minute run had one), not a finding.
        let well_formed = caller == Caller::Member && bodies.get(position).is_some_and(|body| decodes(body));
        if *status == STATUS_OK && well_formed {
            tally.count(&format!("{}.frame_accepted_well_formed", label(caller)));
        } else if *status == STATUS_OK {
            let what = match caller {
                Caller::Stranger => format!("stranger admitted: {addr} accepted a frame from {source}"),
                Caller::Member => format!("{addr} accepted a malformed frame from member {source}"),
            };
            tally.finding("server", what, wire::shown(&bytes));
        }
    }
    if matches!(answer, Answer::TimedOut(_)) {
        tally.count(&format!("{}.frame_timed_out", label(caller)));
    }
}

/// The status byte of every whole answer frame in `bytes`.
fn answers_in(mut bytes: &[u8]) -> Vec<u8> {
    let mut statuses = Vec::new();
    while bytes.len() >= 5 {
        let length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if length == 0 || bytes.len() < 4 + length {
            break;
        }
        statuses.push(bytes[4]);
        bytes = &bytes[4 + length..];
    }
    statuses
}

/// A server-port route with a body for `caller`, otherwise well-formed HTTP.
async fn raw_route(rng: &mut impl Rng, addr: SocketAddr, source: IpAddr, caller: Caller, tally: &Tally) {
    let route = *ROUTES.choose(rng).expect("non-empty");
    let body = body_for(rng, caller);
    let method = if route == "/raft/info" { "GET" } else { "POST" };
    let mut bytes = format!("{method} {route} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(&body);
    let request = FuzzRequest { delivery: Delivery::pick(rng, bytes.len()), bytes, intact: true };
    let status = send(addr, source, caller, &request, tally).await;
    // A member's malformed body must be refused; only the read-only info route answers 200.
    if caller == Caller::Member && status.is_some_and(|s| (200..300).contains(&s)) && route != "/raft/info" {
        tally.finding("server", format!("{addr} answered {status:?} to a malformed body on {route} from member {source}"), wire::shown(&request.bytes));
    }
}

/// A mutated API request through `/fwd` (or a route of the port, mutated the same way).
async fn mutated_http(rng: &mut impl Rng, addr: SocketAddr, source: IpAddr, caller: Caller, token: &str, tally: &Tally) {
    let mut seed = match caller {
        Caller::Member => http_seeds::seed(rng, &Known::default()),
        Caller::Stranger if rng.gen_bool(0.5) => http_seeds::seed(rng, &Known::default()),
        Caller::Stranger => {
            HttpSeed { method: "POST".into(), path: ROUTES.choose(rng).expect("non-empty").to_string(), query: Vec::new(), headers: Vec::new(), body: Body::Raw(valid_body(rng)) }
        }
    };
    if seed.path.starts_with("/v1") {
        seed.path = format!("/fwd{}", seed.path);
    }
    let request = http_fuzz::build(rng, seed, token);
    if http_fuzz::denied(&request.bytes) {
        tally.count(&format!("{}.skipped_denied", label(caller)));
        return;
    }
    send(addr, source, caller, &request, tally).await;
}

/// Sends one HTTP request to the server port and judges its status for `caller`.
async fn send(addr: SocketAddr, source: IpAddr, caller: Caller, request: &FuzzRequest, tally: &Tally) -> Option<u16> {
    let name = label(caller);
    tally.count(&format!("{name}.http_sent"));
    let Ok(mut stream) = wire::connect_from(source, addr).await else {
        tally.finding("server", format!("cannot connect to {addr} from {source}"), "");
        return None;
    };
    let answer = wire::exchange(&mut stream, &request.bytes, request.delivery, Duration::from_millis(HTTP_ANSWER_TIMEOUT_MS), |b| http_fuzz::final_status(b).is_some()).await;
    if let Answer::Complete(_) = answer {
        wire::drain(&mut stream, Duration::from_millis(1_000)).await;
    }
    let status = match &answer {
        Answer::Complete(b) | Answer::Closed(b) => http_fuzz::final_status(b),
        Answer::TimedOut(_) => {
            tally.count(&format!("{name}.http_timed_out"));
            return None;
        }
        Answer::NotAwaited => return None,
    };
    let Some(status) = status else {
        tally.count(&format!("{name}.http_closed_unanswered"));
        return None;
    };
    tally.count(&format!("{name}.http_{}xx", status / 100));
    let shown = || format!("to {addr} from {source}: {}", wire::shown(&request.bytes));
    if status >= 500 {
        tally.finding("server", format!("{addr} answered {status} to {}", if caller == Caller::Stranger { "a stranger" } else { "a member" }), shown());
    } else if caller == Caller::Stranger && (200..300).contains(&status) {
        tally.finding("server", format!("stranger admitted: {addr} answered {status} to {source}"), shown());
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_never_get_a_decodable_body() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..5_000 {
            assert!(!decodes(&body_for(&mut rng, Caller::Member)));
        }
        assert!((0..200).any(|_| decodes(&body_for(&mut rng, Caller::Stranger))));
    }

    #[test]
    fn answers_are_split_into_frames() {
        assert_eq!(answers_in(&[0, 0, 0, 2, 1, b'x', 0, 0, 0, 1, 0, 0, 0]), vec![1, 0]);
        assert_eq!(answers_in(&[0, 0, 0, 9, 1]), Vec::<u8>::new());
    }
}
