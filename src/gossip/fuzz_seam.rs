//! Test-only: the gossip task's receive paths without its loop or a live socket, for the
//! fuzzer (`fuzz::gossip`), and real packets and push/pull messages to start it from.
//!
//! [`FuzzAgent`] is a whole gossip task (`Driver`: foca, the broadcast tables, the member view,
//! the coordinate client) whose UDP socket is connected and shut for writing, so every answer
//! it sends fails at once (and is counted) instead of reaching an address a fuzzed packet
//! named. A keyed one is lenient, as an agent in the middle of enabling encryption is: it
//! accepts plaintext and packets sealed with [`FUZZ_KEY`], and seals what it sends.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BufMut;
use foca::Codec as _;
use tokio::sync::{broadcast, mpsc};

use super::broadcasts::{Item, LeaveIntent, NodeMeta, UserEventItem};
use super::coordinate::{Coordinate, CoordinateConfig};
use super::driver::{Command, Driver, DriverParts};
use super::envelope::{Kind, Sealer};
use super::identity::{NodeId, NodeName};
use super::keyring::Cipher;
use super::push_pull::PushPullState;
use super::stats::Counters;
use super::timing::GossipTiming;
use super::{Shared, rtt};

/// The fuzzed agent's key (32 bytes, base64).
pub(crate) const FUZZ_KEY: &str = "Y2Fpcm4tZnV6ei1rZXktMzItYnl0ZXMtbG9uZy4uLi4=";
/// Another pool's key: nothing sealed with it may be accepted.
pub(crate) const WRONG_KEY: &str = "b3RoZXItcG9vbC1rZXktMzItYnl0ZXMtbG9uZy4uLi4=";
/// The largest packet the gossip task reads.
pub(crate) const PACKET_BYTES_MAX: usize = super::envelope::GOSSIP_PACKET_BYTES_MAX;
/// Where every fuzzed packet comes from.
const PEER_ADDR: &str = "127.0.0.1:9";

/// What the agent did with one packet or message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// No drop counter moved.
    Accepted,
    /// Counted as malformed, undecryptable, oversized, plaintext or a foca error.
    Refused,
    /// Counted as undecryptable, and only that.
    Undecryptable,
}

/// A gossip task fed by hand.
pub(crate) struct FuzzAgent {
    driver: Driver,
    shared: Arc<Shared>,
    sealer: Sealer,
    /// Keeps the task's command channel open.
    _commands: mpsc::Sender<Command>,
}

fn id(name: &str, port: u16, bump: u64) -> NodeId {
    NodeId { name: NodeName::new(name).expect("a valid name"), addr: SocketAddr::from(([127, 0, 0, 1], port)), bump }
}

/// The fuzzed agent's identity: fixed, so that seeds can address it.
fn own_id() -> NodeId {
    id("fuzz-agent", 18301, 1)
}

fn cipher(key: &str) -> Cipher {
    Cipher::from_base64(key).expect("a valid key")
}

/// A UDP socket whose every send fails: connected, then shut for writing.
fn mute_socket() -> tokio::net::UdpSocket {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback udp socket");
    socket.connect("127.0.0.1:9").expect("connect");
    // SAFETY: `shutdown` on a file descriptor this function owns, with a valid `how`.
    let shut = unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::SHUT_WR) };
    assert_eq!(shut, 0, "shut the fuzzed agent's socket for writing");
    socket.set_nonblocking(true).expect("non-blocking");
    tokio::net::UdpSocket::from_std(socket).expect("a tokio socket (call inside a runtime)")
}

impl FuzzAgent {
    /// An agent with [`FUZZ_KEY`] that also accepts plaintext and seals what it sends. Must be
    /// called inside a tokio runtime.
    pub(crate) fn keyed() -> FuzzAgent {
        FuzzAgent::with_sealer(Sealer::new(vec![cipher(FUZZ_KEY)], true, false))
    }

    /// An agent of a pool without encryption (cheaper: AES is slow in a debug build). Must be
    /// called inside a tokio runtime.
    pub(crate) fn unkeyed() -> FuzzAgent {
        FuzzAgent::with_sealer(Sealer::new(Vec::new(), false, false))
    }

    fn with_sealer(sealer: Sealer) -> FuzzAgent {
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            members: Mutex::new(Arc::new(Vec::new())),
            member_events: broadcast::channel(16).0,
            user_events: broadcast::channel(16).0,
            rtt_samples: broadcast::channel(16).0,
            coordinate: Mutex::new(Coordinate::new(&CoordinateConfig::consul_default())),
            user_event_clock: Arc::new(AtomicU64::new(0)),
        });
        let (commands, receiver) = mpsc::channel(16);
        let timing = GossipTiming { gossip_nodes: 3, gossip_interval_ms: 200, probe_interval_ms: 1000, probe_timeout_ms: 500, retransmit_mult: 4, suspicion_mult: 4 };
        let driver = Driver::new(DriverParts {
            id: own_id(),
            tags: [("role".to_owned(), "consul".to_owned()), ("dc".to_owned(), "dc1".to_owned())].into(),
            udp: mute_socket(),
            sealer: sealer.clone(),
            shared: Arc::clone(&shared),
            commands: receiver,
            commands_weak: commands.downgrade(),
            timing,
            reconnect_timeout: Duration::from_secs(3600),
            tombstone_timeout: Duration::from_secs(3600),
        });
        FuzzAgent { driver, shared, sealer, _commands: commands }
    }

    fn dropped(&self) -> [u64; 5] {
        let stats = self.shared.counters.snapshot();
        [stats.dropped_malformed, stats.dropped_decrypt, stats.dropped_oversized, stats.dropped_plaintext, stats.foca_errors]
    }

    fn verdict(&self, before: [u64; 5]) -> Received {
        let after = self.dropped();
        let moved: Vec<usize> = (0..5).filter(|&counter| after[counter] != before[counter]).collect();
        match moved.as_slice() {
            [] => Received::Accepted,
            [1] => Received::Undecryptable,
            _ => Received::Refused,
        }
    }

    /// One UDP packet, as the gossip task receives it.
    pub(crate) fn datagram(&mut self, packet: &[u8]) -> Received {
        let before = self.dropped();
        self.driver.on_datagram(packet, PEER_ADDR.parse().expect("an address"));
        let verdict = self.verdict(before);
        // What the packets set going (probes, suspicions, reaping) runs when its time comes.
        self.driver.on_timers_due();
        verdict
    }

    /// One push/pull message (what follows its length prefix), as a join's answer or a
    /// periodic sync's request is read and merged.
    pub(crate) fn push_pull(&mut self, envelope: &[u8]) -> Received {
        let state = match self.sealer.open(envelope) {
            Ok((Kind::PushPullRequest | Kind::PushPullResponse, body)) => postcard::from_bytes::<PushPullState>(&body).ok(),
            _ => None,
        };
        let Some(state) = state.filter(|state| state.validate().is_ok()) else { return Received::Refused };
        self.driver.merge(state, true);
        self.driver.on_timers_due();
        Received::Accepted
    }
}

/// `packet` (a plaintext envelope) sealed with `key` as a peer would send it; `None` when it
/// is not a plaintext envelope.
pub(crate) fn seal_with(key: &str, packet: &[u8]) -> Option<Vec<u8>> {
    let (&version, plaintext) = packet.split_first()?;
    if version != 1 {
        return None;
    }
    let sealed = cipher(key).seal(&[2], plaintext);
    Some([&[2][..], &sealed].concat())
}

fn plain(kind: Kind, body: &[u8]) -> Vec<u8> {
    Sealer::new(Vec::new(), false, false).seal(kind, body)
}

/// A foca packet from `src` to the fuzzed agent: header, member updates, custom broadcasts.
fn foca_packet(src: &NodeId, message: foca::Message<NodeId>, updates: &[foca::Member<NodeId>], items: &[Item]) -> Vec<u8> {
    let mut codec = foca::PostcardCodec;
    let mut buffer = Vec::new();
    let header = foca::Header { src: src.clone(), src_incarnation: 0, dst: own_id(), message };
    codec.encode_header(&header, &mut buffer).expect("a header encodes");
    // foca reads an update count whenever more bytes follow the header.
    if !updates.is_empty() || !items.is_empty() {
        buffer.put_u16(updates.len() as u16);
        for member in updates {
            codec.encode_member(member, &mut buffer).expect("a member encodes");
        }
    }
    for item in items {
        let encoded = postcard::to_allocvec(item).expect("an item encodes");
        buffer.put_u16(encoded.len() as u16);
        buffer.extend_from_slice(&encoded);
    }
    plain(Kind::Foca, &buffer)
}

fn meta(name: &str) -> NodeMeta {
    NodeMeta { name: NodeName::new(name).expect("a valid name"), version: 5, tags: [("role".to_owned(), "node".to_owned()), ("dc".to_owned(), "dc1".to_owned())].into() }
}

/// Real UDP packets (plaintext envelopes): SWIM messages with updates and broadcasts, RTT
/// probes and answers, tag requests and replies.
pub(crate) fn datagram_seeds() -> Vec<Vec<u8>> {
    let peer = id("peer-1", 18302, 5);
    let others = [foca::Member::alive(id("peer-2", 18303, 7)), foca::Member::new(id("peer-3", 18304, 9), 2, foca::State::Suspect)];
    let items = [
        Item::Meta(meta("peer-1")),
        Item::Leave(LeaveIntent { name: NodeName::new("peer-3").expect("valid"), bump: 9, prune: false }),
        Item::UserEvent(UserEventItem { ltime: 3, name: "deploy".into(), payload: b"v2".to_vec() }),
    ];
    let coordinate = Coordinate { vec: vec![0.001; 8], error: 1.5, adjustment: 0.0, height: 1e-5 };
    vec![
        foca_packet(&peer, foca::Message::Announce, &[], &[]),
        foca_packet(&peer, foca::Message::Gossip, &others, &items),
        foca_packet(&peer, foca::Message::Ping(7), &[], &items[..1]),
        foca_packet(&peer, foca::Message::Feed, &others, &[]),
        foca_packet(&peer, foca::Message::PingReq { target: id("peer-2", 18303, 7), probe_number: 3 }, &[], &[]),
        plain(Kind::Ping, &rtt::ping_body(42)),
        plain(Kind::Pong, &rtt::pong_body(&rtt::ping_body(42), &coordinate)),
        plain(Kind::MetaRequest, &[0; 768]),
        plain(Kind::MetaReply, &postcard::to_allocvec(&meta("peer-2")).expect("a meta encodes")),
    ]
}

/// Real push/pull messages (plaintext envelopes), as a joining peer sends them.
pub(crate) fn push_pull_seeds() -> Vec<Vec<u8>> {
    let state = PushPullState {
        members: vec![foca::Member::alive(id("peer-1", 18302, 5)), foca::Member::alive(id("peer-2", 18303, 7)), foca::Member::down(id("peer-4", 18305, 2))],
        metas: vec![meta("peer-1"), meta("peer-2")],
        leaves: vec![LeaveIntent { name: NodeName::new("peer-4").expect("valid"), bump: 2, prune: true }],
        user_event_ltime: 17,
    };
    let body = postcard::to_allocvec(&state).expect("a state encodes");
    vec![plain(Kind::PushPullRequest, &body), plain(Kind::PushPullResponse, &postcard::to_allocvec(&PushPullState::default()).expect("encodes"))]
}

/// A keyring request body as a member reads it: decoded, then applied to an in-memory ring of
/// [`FUZZ_KEY`] (one per input, so inputs do not change each other's ring). True when it
/// decoded.
pub(crate) fn keyring_request(runtime: &tokio::runtime::Runtime, body: &[u8]) -> bool {
    let Ok(op) = super::keyring_wire::decode_request(body) else { return false };
    let ring = super::keyring_ops::LocalKeyring::new(Sealer::new(vec![cipher(FUZZ_KEY)], true, true), None);
    let applied = runtime.block_on(ring.apply(&op));
    if let Ok(keys) = &applied {
        assert!(!keys.keys.is_empty() && keys.keys.len() <= super::keyring::KEYRING_KEYS_MAX, "a ring outside its bounds: {}", keys.keys.len());
    }
    true
}

/// A keyring answer body as the asking agent reads it. True when it decoded.
pub(crate) fn keyring_response(body: &[u8]) -> bool {
    super::keyring_wire::decode_response(body).is_ok()
}

/// Real keyring request and answer bodies: every operation, a member's keys, a member's error.
pub(crate) fn keyring_seeds() -> Vec<Vec<u8>> {
    use super::keyring_ops::{GossipKey, KeyringOp, NodeKeys};
    let key = || GossipKey::from_base64(WRONG_KEY).expect("a valid key");
    let own = || GossipKey::from_base64(FUZZ_KEY).expect("a valid key");
    let requests = [KeyringOp::List, KeyringOp::Install(key()), KeyringOp::Use(own()), KeyringOp::Remove(key())];
    let mut seeds: Vec<Vec<u8>> = requests.iter().map(super::keyring_wire::encode_request).collect();
    seeds.push(super::keyring_wire::encode_response(&Ok(NodeKeys { keys: vec![FUZZ_KEY.to_owned(), WRONG_KEY.to_owned()] })));
    seeds.push(super::keyring_wire::encode_response(&Err("Requested key is not in the keyring".to_owned())));
    seeds
}
