//! The gossip task: one tokio task that owns foca, the UDP socket, foca's timers and the
//! member view, and serves the `Gossip` handle's commands.
//!
//! Every input (a datagram, a due timer, a command, the periodic tick) is handled to the end
//! before the next: foca is called, then `flush` drains foca's `AccumulatingRuntime` (sends,
//! timers, notifications) and the broadcast tables' inbox until both are empty, applies the
//! news to the member view, emits member events and publishes the member snapshot.
//!
//! Invariants: foca's timers fire in deadline order (a binary heap ordered by deadline, then
//! by submission), never early, and a timer `suspicion::timer_still_due` calls stale (a
//! suspicion the member already refuted) is dropped instead of handed to foca; nothing from
//! the network can panic the task; the task never awaits while holding the tables lock;
//! foca's configuration follows the pool size.

mod state;
mod timers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foca::AccumulatingRuntime;
use rand010::RngExt as _;
use rand010::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::coordinate::{CoordinateClient, CoordinateConfig};
use super::broadcasts::{Handler, Item, LeaveIntent, NodeMeta, Tables, UserEventItem};
use super::envelope::{GOSSIP_PACKET_BYTES_MAX, Kind, Sealer};
use super::identity::{NodeId, NodeName};
use super::push_pull::PushPullState;
use super::rtt::{self, PongCoordinate};
use super::stats::{DropLog, bump};
use super::suspicion::timer_still_due;
use super::timing::{self, GossipTiming};
use super::view::MemberView;
use super::{GossipError, MemberStatus, RttSample, Shared};

/// How often a random member is asked for a full push/pull (memberlist's `PushPullInterval`),
/// in pools up to `PUSH_PULL_SCALE_THRESHOLD` members.
const PUSH_PULL_INTERVAL: Duration = Duration::from_secs(30);

/// Above this many members the push/pull interval grows (memberlist's `pushPullScaleThreshold`).
const PUSH_PULL_SCALE_THRESHOLD: usize = 32;

/// RTT probes awaiting their pong; older ones are forgotten.
const RTT_PROBES_OUTSTANDING_MAX: usize = 8;

/// A tag request is padded to this many bytes so that the answer (a node meta, at most about
/// 700 bytes sealed) is never larger than the request: no amplification by spoofed sources.
const META_REQUEST_BYTES: usize = 768;

type GossipFoca = foca::Foca<NodeId, foca::PostcardCodec, StdRng, Handler>;

/// What the `Gossip` handle and the push/pull listener ask of the task.
pub(super) enum Command {
    /// Our state, for a push/pull we dial.
    LocalState(oneshot::Sender<PushPullState>),
    /// Merge a state we pulled (`join`: also ignore the pool's older user events).
    Merge {
        remote: PushPullState,
        join: bool,
        done: oneshot::Sender<()>,
    },
    /// A push/pull we serve: answer with our state, then merge theirs.
    Serve {
        remote: PushPullState,
        reply: oneshot::Sender<PushPullState>,
    },
    SetTags(std::collections::BTreeMap<String, String>),
    FireUserEvent(UserEventItem),
    /// First step of a graceful leave: disseminate our leave intent.
    LeaveIntent(oneshot::Sender<()>),
    /// Second step: declare ourselves down to foca.
    LeaveCluster(oneshot::Sender<()>),
    ForceLeave {
        node: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    /// Tests only: stop reading the socket and timers for a while, like SIGSTOP.
    #[cfg(test)]
    Pause(Duration),
}

/// Everything `Driver::new` needs.
pub(super) struct DriverParts {
    pub(super) id: NodeId,
    pub(super) tags: std::collections::BTreeMap<String, String>,
    pub(super) udp: UdpSocket,
    pub(super) sealer: Sealer,
    pub(super) shared: Arc<Shared>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) commands_weak: mpsc::WeakSender<Command>,
    pub(super) timing: GossipTiming,
    pub(super) reconnect_timeout: Duration,
    pub(super) tombstone_timeout: Duration,
}

pub(super) struct Driver {
    foca: GossipFoca,
    runtime: AccumulatingRuntime<NodeId>,
    udp: UdpSocket,
    sealer: Sealer,
    /// foca's timers, earliest first.
    timers: timers::TimerQueue,
    view: MemberView,
    /// Shared with foca's broadcast handler; locked only between awaits.
    tables: Arc<Mutex<Tables>>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    /// For the periodic push/pull task to hand its result back without keeping us alive.
    commands_weak: mpsc::WeakSender<Command>,
    timing: GossipTiming,
    reconnect_timeout: Duration,
    tombstone_timeout: Duration,
    /// The pool size foca's configuration was last computed for.
    configured_size: usize,
    local_meta: NodeMeta,
    /// Set by a graceful leave: our own leave intent is not refuted.
    leaving: bool,
    /// RTT probes in flight: (sequence, peer name, peer address, sent at).
    rtt_probes: VecDeque<(u64, NodeName, SocketAddr, Instant)>,
    rtt_sequence: u64,
    /// This agent's network coordinate, moved by every RTT sample that came with the peer's.
    coordinates: CoordinateClient,
    next_push_pull: Instant,
    drop_log: DropLog,
}

impl Driver {
    pub(super) fn new(parts: DriverParts) -> Driver {
        let now = Instant::now();
        let tables = Arc::new(Mutex::new(Tables::default()));
        let handler = Handler {
            tables: Arc::clone(&tables),
            user_events: parts.shared.user_events.clone(),
            clock: Arc::clone(&parts.shared.user_event_clock),
        };
        let config = timing::foca_config(1, &parts.timing);
        let rng: StdRng = rand010::make_rng();
        let foca = foca::Foca::with_custom_broadcast(parts.id.clone(), config, rng, foca::PostcardCodec, handler);
        let local_meta = NodeMeta { name: parts.id.name.clone(), version: parts.id.bump, tags: parts.tags.clone() };
        let mut driver = Driver {
            foca,
            runtime: AccumulatingRuntime::new(),
            udp: parts.udp,
            sealer: parts.sealer,
            timers: timers::TimerQueue::default(),
            view: MemberView::new(&parts.id, parts.tags, now),
            tables,
            shared: parts.shared,
            commands: parts.commands,
            commands_weak: parts.commands_weak,
            timing: parts.timing,
            reconnect_timeout: parts.reconnect_timeout,
            tombstone_timeout: parts.tombstone_timeout,
            configured_size: 1,
            local_meta,
            leaving: false,
            rtt_probes: VecDeque::new(),
            rtt_sequence: rand010::rng().random(),
            coordinates: CoordinateClient::new(CoordinateConfig::consul_default(), rand010::rng().random())
                .expect("Consul's coordinate config is valid"),
            next_push_pull: now + PUSH_PULL_INTERVAL,
            drop_log: DropLog::default(),
        };
        // Our tags ride the first gossip once we have peers.
        let meta = Item::Meta(driver.local_meta.clone());
        driver.add_item(&meta);
        driver.flush();
        driver
    }

    /// Runs until every `Gossip` handle is gone (or the task is aborted).
    pub(super) async fn run(mut self) {
        let mut buffer = vec![0u8; GOSSIP_PACKET_BYTES_MAX + 1];
        let period = Duration::from_millis(self.timing.probe_interval_ms.max(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.next_deadline();
            tokio::select! {
                received = self.udp.recv_from(&mut buffer) => match received {
                    Ok((bytes, from)) => self.on_datagram(&buffer[..bytes], from),
                    Err(error) => {
                        // Transient (an ICMP error surfacing on some systems); never fatal.
                        if self.drop_log.allow("udp receive", Instant::now()) {
                            tracing::debug!(%error, "gossip: udp receive failed");
                        }
                    }
                },
                () = sleep_until(next_timer) => self.on_timers_due(),
                command = self.commands.recv() => match command {
                    #[cfg(test)]
                    Some(Command::Pause(pause)) => tokio::time::sleep(pause).await,
                    Some(command) => self.on_command(command),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    pub(super) fn on_datagram(&mut self, packet: &[u8], from: SocketAddr) {
        let counters = &self.shared.counters;
        counters.received(packet.len());
        let now = Instant::now();
        if packet.len() > GOSSIP_PACKET_BYTES_MAX {
            bump(&counters.dropped_oversized);
            if self.drop_log.allow("oversized", now) {
                tracing::debug!(%from, bytes = packet.len(), "gossip: oversized packet dropped");
            }
            return;
        }
        let (kind, body) = match self.sealer.open(packet) {
            Ok(opened) => opened,
            Err(refused) => {
                counters.refused(refused);
                if self.drop_log.allow("refused", now) {
                    tracing::debug!(%from, ?refused, "gossip: packet dropped");
                }
                return;
            }
        };
        match kind {
            Kind::Foca => self.foca_call(|foca, runtime| foca.handle_data(&body, runtime)),
            Kind::Ping if body.len() <= rtt::PING_BODY_BYTES_MAX => {
                self.send(from, Kind::Pong, &rtt::pong_body(&body, &self.coordinates.coordinate()));
            }
            Kind::Ping => self.malformed(from, "ping longer than any ping"),
            Kind::Pong => self.on_pong(&body, from, now),
            Kind::MetaRequest if body.len() >= META_REQUEST_BYTES => {
                let reply = postcard::to_allocvec(&self.local_meta).expect("a node meta encodes");
                self.send(from, Kind::MetaReply, &reply);
            }
            Kind::MetaReply => {
                // Recorded, not re-disseminated: the member spreads its own tags.
                let meta = postcard::from_bytes::<NodeMeta>(&body).map_err(|error| error.to_string());
                let tables = &self.tables;
                let recorded = meta.and_then(|meta| {
                    let mut tables = tables.lock().expect("gossip tables lock poisoned");
                    tables.receive_meta(meta, now).map_err(|error| error.to_string())
                });
                if recorded.is_err() {
                    self.malformed(from, "meta reply refused");
                }
            }
            Kind::MetaRequest | Kind::PushPullRequest | Kind::PushPullResponse | Kind::KeyringRequest | Kind::KeyringResponse => {
                self.malformed(from, "unexpected kind on udp");
            }
        }
        self.flush();
    }

    fn malformed(&mut self, from: SocketAddr, reason: &'static str) {
        bump(&self.shared.counters.dropped_malformed);
        if self.drop_log.allow(reason, Instant::now()) {
            tracing::debug!(%from, reason, "gossip: packet dropped");
        }
    }

    pub(super) fn on_timers_due(&mut self) {
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now) {
            if !timer_still_due(self.foca.iter_membership_state(), &timer) {
                // foca 2.0.0 would tell a member that refuted its suspicion it is down.
                tracing::trace!(?timer, "gossip: stale suspicion timer dropped");
                continue;
            }
            self.foca_call(|foca, runtime| foca.handle_timer(timer, runtime));
            self.flush();
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::LocalState(reply) => {
                let _caller_gone = reply.send(self.local_state());
            }
            Command::Merge { remote, join, done } => {
                self.merge(remote, join);
                let _caller_gone = done.send(());
            }
            Command::Serve { remote, reply } => {
                let _caller_gone = reply.send(self.local_state());
                self.merge(remote, false);
            }
            Command::SetTags(tags) => self.set_tags(tags),
            Command::FireUserEvent(event) => self.add_item(&Item::UserEvent(event)),
            Command::LeaveIntent(done) => {
                self.leaving = true;
                self.view.set_local_status(MemberStatus::Leaving, Instant::now());
                let intent =
                    LeaveIntent { name: self.local_meta.name.clone(), bump: self.foca.identity().bump, prune: false };
                self.add_item(&Item::Leave(intent));
                self.foca_call(|foca, runtime| foca.gossip(runtime));
                let _caller_gone = done.send(());
            }
            Command::LeaveCluster(done) => {
                self.foca_call(|foca, runtime| foca.leave_cluster(runtime));
                self.view.set_local_status(MemberStatus::Left, Instant::now());
                let _caller_gone = done.send(());
            }
            Command::ForceLeave { node, prune, reply } => {
                let result = self.force_leave(&node, prune);
                let _caller_gone = reply.send(result);
            }
            #[cfg(test)]
            Command::Pause(_) => {}
        }
        self.flush();
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let (events, reaped) = self.view.tick(now, self.reconnect_timeout, self.tombstone_timeout);
        self.emit(events);
        {
            let mut tables = self.tables.lock().expect("gossip tables lock poisoned");
            reaped.iter().for_each(|name| tables.forget_meta(name));
            reaped.iter().for_each(|name| self.coordinates.forget(name.as_str()));
            tables.collect_garbage(now, |name| self.view.contains(name));
        }
        if !self.leaving {
            let missing_tags: Vec<SocketAddr> = self
                .view
                .active_peers()
                .into_iter()
                .filter(|id| !self.view.has_tags(&id.name))
                .map(|id| id.addr)
                .collect();
            for addr in missing_tags {
                self.send(addr, Kind::MetaRequest, &[0; META_REQUEST_BYTES]);
            }
            self.send_rtt_probe(now);
            if now >= self.next_push_pull {
                self.next_push_pull = now + push_pull_interval(self.configured_size);
                self.spawn_push_pull();
            }
        }
        self.flush();
    }

    fn send_rtt_probe(&mut self, now: Instant) {
        let peers = self.view.active_peers();
        if peers.is_empty() {
            return;
        }
        let peer = peers[rand010::rng().random_range(0..peers.len())];
        let (name, addr) = (peer.name.clone(), peer.addr);
        self.rtt_sequence = self.rtt_sequence.wrapping_add(1);
        if self.rtt_probes.len() >= RTT_PROBES_OUTSTANDING_MAX {
            self.rtt_probes.pop_front();
        }
        self.rtt_probes.push_back((self.rtt_sequence, name, addr, now));
        self.send(addr, Kind::Ping, &rtt::ping_body(self.rtt_sequence));
    }

    fn on_pong(&mut self, body: &[u8], from: SocketAddr, now: Instant) {
        let Some(pong) = rtt::parse_pong(body) else {
            return self.malformed(from, "pong of the wrong size");
        };
        let Some(position) = self.rtt_probes.iter().position(|(s, _, addr, _)| *s == pong.sequence && *addr == from) else {
            return;
        };
        let Some((_, name, _, sent)) = self.rtt_probes.remove(position) else { return };
        let rtt = now.saturating_duration_since(sent);
        match pong.coordinate {
            PongCoordinate::Present(other) => match self.coordinates.update(name.as_str(), &other, rtt) {
                Ok(coordinate) => *self.shared.coordinate.lock().expect("gossip coordinate lock poisoned") = coordinate,
                Err(error) => {
                    bump(&self.shared.counters.coordinates_refused);
                    if self.drop_log.allow("coordinate refused", now) {
                        tracing::debug!(%from, %error, "gossip: coordinate sample refused");
                    }
                }
            },
            PongCoordinate::Refused => {
                bump(&self.shared.counters.coordinates_refused);
                if self.drop_log.allow("coordinate refused", now) {
                    tracing::debug!(%from, "gossip: malformed coordinate refused");
                }
            }
            PongCoordinate::Absent => {}
        }
        let _no_subscribers = self.shared.rtt_samples.send(RttSample { node: name.as_str().to_owned(), rtt });
    }

    /// Hands an item to foca, which records it through our handler and disseminates it.
    fn add_item(&mut self, item: &Item) {
        let data = postcard::to_allocvec(item).expect("a broadcast item encodes");
        if let Err(error) = self.foca.add_broadcast(&data) {
            self.foca_error(error);
        }
    }

    fn foca_call(
        &mut self,
        call: impl FnOnce(&mut GossipFoca, &mut AccumulatingRuntime<NodeId>) -> Result<(), foca::Error>,
    ) {
        if let Err(error) = call(&mut self.foca, &mut self.runtime) {
            self.foca_error(error);
        }
    }

    /// Counts a foca error: input foca could not decode is malformed, anything else is
    /// protocol noise (stale identities, probes crossing a restart) that foca recovers from.
    fn foca_error(&mut self, error: foca::Error) {
        let counters = &self.shared.counters;
        let malformed = matches!(
            error,
            foca::Error::Decode(_)
                | foca::Error::MalformedPacket
                | foca::Error::DataTooBig
                | foca::Error::CustomBroadcast(_)
        );
        bump(if malformed { &counters.dropped_malformed } else { &counters.foca_errors });
        if self.drop_log.allow(if malformed { "foca malformed" } else { "foca error" }, Instant::now()) {
            tracing::debug!(%error, "gossip: foca refused input");
        }
    }

    /// Drains foca's runtime and the tables' inbox until both are empty, then publishes.
    fn flush(&mut self) {
        loop {
            while let Some((to, data)) = self.runtime.to_send() {
                self.send(to.addr, Kind::Foca, &data);
            }
            let now = Instant::now();
            while let Some((after, timer)) = self.runtime.to_schedule() {
                self.timers.push(now, after, timer);
            }
            while let Some(notification) = self.runtime.to_notify() {
                self.on_notification(notification, now);
            }
            let learned = std::mem::take(&mut self.tables.lock().expect("gossip tables lock poisoned").inbox);
            for news in learned {
                self.on_learned(news, now);
            }
            if self.runtime.backlog() == 0 && self.tables.lock().expect("gossip tables lock poisoned").inbox.is_empty()
            {
                break;
            }
        }
        self.rescale();
        self.publish_members();
    }

    /// Makes the member list that `Gossip::members` reads current.
    pub(super) fn publish_members(&mut self) {
        if self.view.take_changed() {
            *self.shared.members.lock().expect("gossip members lock poisoned") = Arc::new(self.view.members());
        }
    }

    /// Seals and sends one datagram; a full socket buffer drops it (gossip is lossy anyway).
    fn send(&self, to: SocketAddr, kind: Kind, body: &[u8]) {
        let packet = self.sealer.seal(kind, body);
        debug_assert!(packet.len() <= GOSSIP_PACKET_BYTES_MAX, "foca and our packets fit the limit");
        match self.udp.try_send_to(&packet, to) {
            Ok(_) => self.shared.counters.sent(packet.len()),
            Err(error) => {
                bump(&self.shared.counters.send_errors);
                tracing::trace!(%to, %error, "gossip: udp send failed");
            }
        }
    }
}

/// memberlist's `pushPullScale`: the interval times `ceil(log2(n) - log2(32)) + 1` above 32
/// members, so that the push/pull load per member stays flat as the pool grows.
fn push_pull_interval(cluster_size: usize) -> Duration {
    if cluster_size <= PUSH_PULL_SCALE_THRESHOLD {
        return PUSH_PULL_INTERVAL;
    }
    let multiplier = ((cluster_size as f64).log2() - (PUSH_PULL_SCALE_THRESHOLD as f64).log2()).ceil() + 1.0;
    PUSH_PULL_INTERVAL * multiplier as u32
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pull_interval_scales_like_memberlist() {
        assert_eq!(push_pull_interval(1), PUSH_PULL_INTERVAL);
        assert_eq!(push_pull_interval(32), PUSH_PULL_INTERVAL);
        assert_eq!(push_pull_interval(33), PUSH_PULL_INTERVAL * 2);
        assert_eq!(push_pull_interval(64), PUSH_PULL_INTERVAL * 2);
        assert_eq!(push_pull_interval(1000), PUSH_PULL_INTERVAL * 6);
    }
}
