//! Gossip tests on real UDP/TCP sockets on 127.0.0.1 ephemeral ports, with short timings so
//! that failure detection takes well under a second.
//!
//! Helpers here; the tests are grouped by concern: `membership` (join, tags, crash, leave,
//! force-leave, reap), `wire` (keys, plaintext, hostile packets and messages, join errors),
//! `events` (user events and RTT samples), `keyring` (key rotation across the pool). Every wait is bounded and names what it waited for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::broadcast;

use super::timing::GossipTiming;
use super::{Gossip, GossipConfig, Keyring, MemberEvent, MemberStatus};

mod events;
mod keyring;
mod membership;
mod wire;

/// The longest any condition is waited for.
const WAIT: Duration = Duration::from_secs(10);

/// Fast timings: probe every 100 ms, suspicion 500 ms, gossip every 20 ms.
fn fast_timing() -> GossipTiming {
    GossipTiming {
        gossip_nodes: 3,
        gossip_interval_ms: 20,
        probe_interval_ms: 100,
        probe_timeout_ms: 40,
        retransmit_mult: 4,
        suspicion_mult: 5,
    }
}

/// A UDP socket and a TCP listener on the same loopback port (`port` 0: any free one).
async fn bind(port: u16) -> (UdpSocket, TcpListener, SocketAddr) {
    for _attempt in 0..50 {
        let tcp = TcpListener::bind(("127.0.0.1", port)).await.expect("bind tcp");
        let addr = tcp.local_addr().expect("tcp address");
        match UdpSocket::bind(addr).await {
            Ok(udp) => return (udp, tcp, addr),
            Err(_) if port == 0 => continue,
            Err(error) => panic!("bind udp {addr}: {error}"),
        }
    }
    panic!("no free port with both tcp and udp");
}

/// How a test agent is set up.
struct Setup {
    name: &'static str,
    port: u16,
    key: Option<String>,
    verify_incoming: bool,
    verify_outgoing: bool,
    reconnect_timeout_ms: u64,
    default_port: u16,
}

impl Setup {
    fn new(name: &'static str) -> Setup {
        Setup {
            name,
            port: 0,
            key: None,
            verify_incoming: true,
            verify_outgoing: true,
            reconnect_timeout_ms: 60_000,
            default_port: 8301,
        }
    }

    fn key(self, key: &str) -> Setup {
        Setup { key: Some(key.to_owned()), ..self }
    }

    async fn start(self) -> Agent {
        let (udp, tcp, addr) = bind(self.port).await;
        let config = GossipConfig {
            node_name: self.name.to_owned(),
            advertise: addr,
            tags: tags(self.name, "node"),
            keyring: self.key.as_deref().map(|key| Keyring::from_base64(key).expect("valid key")),
            keyring_file: None,
            encrypt_verify_incoming: self.verify_incoming,
            encrypt_verify_outgoing: self.verify_outgoing,
            timing: fast_timing(),
            reconnect_timeout_ms: self.reconnect_timeout_ms,
            tombstone_timeout_ms: 60_000,
            default_port: self.default_port,
        };
        let gossip = Gossip::start(config, udp, tcp).await.expect("gossip starts");
        Agent { name: self.name, gossip, addr }
    }
}

/// A running test agent.
struct Agent {
    name: &'static str,
    gossip: Gossip,
    addr: SocketAddr,
}

impl Agent {
    async fn join(&self, other: &Agent) {
        let joined = self.gossip.join(&[other.addr.to_string()]).await.expect("join succeeds");
        assert_eq!(joined, 1);
    }

    fn status_of(&self, name: &str) -> Option<MemberStatus> {
        self.gossip.members().into_iter().find(|member| member.name == name).map(|member| member.status)
    }

    fn tags_of(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.gossip.members().into_iter().find(|member| member.name == name).map(|member| member.tags)
    }
}

fn tags(name: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("id".to_owned(), name.to_owned()), ("role".to_owned(), role.to_owned())])
}

/// Polls `condition` every 10 ms until it holds, or panics after `WAIT` naming `what`.
async fn wait_until(what: &str, condition: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < WAIT, "timed out after {WAIT:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Three agents: b and c joined a; waits until all three list all three alive.
async fn three() -> (Agent, Agent, Agent) {
    let a = Setup::new("a").start().await;
    let b = Setup::new("b").start().await;
    let c = Setup::new("c").start().await;
    b.join(&a).await;
    c.join(&a).await;
    wait_all_alive(&[&a, &b, &c]).await;
    (a, b, c)
}

/// Waits until every agent lists every other agent alive.
async fn wait_all_alive(agents: &[&Agent]) {
    for observer in agents {
        for observed in agents {
            let what = format!("{} sees {} alive", observer.name, observed.name);
            wait_until(&what, || observer.status_of(observed.name) == Some(MemberStatus::Alive)).await;
        }
    }
}

/// The next member event about `name` that `matches`, skipping others; panics after `WAIT`.
async fn next_event(
    events: &mut broadcast::Receiver<MemberEvent>,
    name: &str,
    matches: fn(&MemberEvent) -> bool,
) -> MemberEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching member event about {name} within {WAIT:?}"))
            .expect("event channel open");
        if event_member_name(&event) == name && matches(&event) {
            return event;
        }
    }
}

fn event_member_name(event: &MemberEvent) -> &str {
    match event {
        MemberEvent::Join(member)
        | MemberEvent::Update(member)
        | MemberEvent::Failed(member)
        | MemberEvent::Left(member)
        | MemberEvent::Reap(member) => &member.name,
    }
}

/// Every event already queued on `events`, without waiting.
fn drain(events: &mut broadcast::Receiver<MemberEvent>) -> Vec<MemberEvent> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

#[test]
fn the_handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Gossip>();
}
