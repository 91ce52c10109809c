//! `Gossip`'s methods: start, join, leave, force-leave, tags, user events, keyring operations,
//! and the readers.
//!
//! Most methods are requests to the gossip task (`driver::Command`); `join` does its TCP
//! push/pulls on the caller's task and hands the states it pulled to the gossip task, so a
//! slow peer never stalls gossip. Synchronous methods queue with `try_send` and report
//! `GossipError::Busy` rather than block.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::coordinate::{Coordinate, CoordinateConfig};
use super::join::{parse_join_address, resolve};
use super::keyring_ops::{ClusterAnswer, KeyringError, KeyringOp, LocalKeyring, NodeAnswer, NodeKeys, NodeOutcome};
use super::keyring_wire;
use super::{
    COMMANDS_QUEUE_MAX, Command, Counters, Driver, DriverParts, Gossip, GossipConfig, GossipError, GossipStats, Inner,
    MEMBER_EVENTS_CAPACITY, Member, MemberEvent, MemberStatus, NodeId, NodeName, RTT_SAMPLES_CAPACITY, RttSample, Sealer, Shared,
    USER_EVENT_BYTES_MAX, USER_EVENTS_CAPACITY, UserEvent, UserEventItem, check_tags, check_user_event, push_pull,
};

impl Gossip {
    /// Starts gossip on `udp` and `tcp`, which are bound to the same port (`advertise` is
    /// what others dial). The agent is alone until `join`.
    pub async fn start(config: GossipConfig, udp: UdpSocket, tcp: TcpListener) -> Result<Gossip, GossipError> {
        let name = NodeName::new(&config.node_name)
            .map_err(|reason| GossipError::InvalidNodeName { name: config.node_name.clone(), reason })?;
        check_tags(&config.tags).map_err(|reason| GossipError::TagsTooLarge { reason })?;
        let ciphers = config.keyring.map(|keyring| keyring.ciphers).unwrap_or_default();
        let sealer = Sealer::new(ciphers, config.encrypt_verify_outgoing, config.encrypt_verify_incoming);
        let id = NodeId::fresh(name, config.advertise);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            members: Mutex::new(Arc::new(Vec::new())),
            member_events: broadcast::channel(MEMBER_EVENTS_CAPACITY).0,
            user_events: broadcast::channel(USER_EVENTS_CAPACITY).0,
            rtt_samples: broadcast::channel(RTT_SAMPLES_CAPACITY).0,
            coordinate: Mutex::new(Coordinate::new(&CoordinateConfig::consul_default())),
            user_event_clock: Arc::new(AtomicU64::new(0)),
        });
        let (commands, commands_receiver) = mpsc::channel(COMMANDS_QUEUE_MAX);
        tracing::info!(identity = ?id, encrypted = sealer.encrypts(), "gossip: starting");
        let driver = Driver::new(DriverParts {
            id,
            tags: config.tags,
            udp,
            sealer: sealer.clone(),
            shared: Arc::clone(&shared),
            commands: commands_receiver,
            commands_weak: commands.downgrade(),
            timing: config.timing,
            reconnect_timeout: Duration::from_millis(config.reconnect_timeout_ms),
            tombstone_timeout: Duration::from_millis(config.tombstone_timeout_ms),
        });
        let driver_task = tokio::spawn(driver.run());
        let keyring = Arc::new(LocalKeyring::new(sealer.clone(), config.keyring_file));
        let listener = push_pull::serve(tcp, sealer.clone(), Arc::clone(&shared), commands.downgrade(), Arc::clone(&keyring));
        let listener_task = tokio::spawn(listener);
        let inner = Inner {
            commands,
            shared,
            sealer,
            keyring,
            node_name: config.node_name,
            default_port: config.default_port,
            tasks: Mutex::new(vec![driver_task, listener_task]),
        };
        Ok(Gossip { inner: Arc::new(inner) })
    }

    /// Consul's join: each address is `host`, `host:port`, `[v6]`, `[v6]:port` (a bare host
    /// gets `default_port`); names are resolved; each address gets a TCP push/pull (bounded by
    /// `JOIN_TIMEOUT_MS`) whose members are fed to foca. Returns how many addresses were
    /// joined, or every failure when none was.
    pub async fn join(&self, addresses: &[String]) -> Result<usize, GossipError> {
        let mut joined = 0;
        let mut errors = Vec::new();
        for address in addresses {
            match self.join_one(address).await? {
                Ok(()) => joined += 1,
                Err(failure) => errors.push(failure),
            }
        }
        if joined == 0 {
            if errors.is_empty() {
                errors.push("no address to join".to_owned());
            }
            return Err(GossipError::JoinFailed { errors });
        }
        if !errors.is_empty() {
            tracing::warn!(joined, ?errors, "gossip: some join addresses failed");
        }
        Ok(joined)
    }

    /// Joins one address: the first of its resolved socket addresses that answers. The outer
    /// error is for a gossip that has shut down, the inner one describes a failed address.
    async fn join_one(&self, address: &str) -> Result<Result<(), String>, GossipError> {
        let (host, port) = match parse_join_address(address, self.inner.default_port) {
            Ok(parsed) => parsed,
            Err(reason) => return Ok(Err(format!("Failed to join {address}: {reason}"))),
        };
        let addrs = match resolve(&host, port).await {
            Ok(addrs) => addrs,
            Err(reason) => return Ok(Err(format!("Failed to join {address}: {reason}"))),
        };
        let local = self.request(Command::LocalState).await?;
        let mut failure = String::new();
        for addr in addrs {
            let shared = &self.inner.shared;
            match push_pull::exchange(addr, &self.inner.sealer, &shared.counters, &local).await {
                Ok(remote) => {
                    self.request(|done| Command::Merge { remote, join: true, done }).await?;
                    tracing::info!(%address, %addr, "gossip: joined");
                    return Ok(Ok(()));
                }
                Err(reason) => failure = format!("Failed to join {addr}: {reason}"),
            }
        }
        Ok(Err(failure))
    }

    /// Every member known, the local agent included: alive, leaving, left and failed.
    pub fn members(&self) -> Vec<Member> {
        let members = self.inner.shared.members.lock().expect("gossip members lock poisoned");
        members.as_ref().clone()
    }

    /// Member events from now on. A subscriber that falls `MEMBER_EVENTS_CAPACITY` events
    /// behind gets `RecvError::Lagged` and should re-read `members`.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.inner.shared.member_events.subscribe()
    }

    /// Graceful leave: disseminates a leave intent for half of `propagate_wait`, then
    /// declares this agent down to foca and waits the other half, so that the others report
    /// `Left`, not `Failed`. Gossip keeps running (answering) until `shutdown`.
    pub async fn leave(&self, propagate_wait: Duration) {
        if self.request(Command::LeaveIntent).await.is_err() {
            return;
        }
        tokio::time::sleep(propagate_wait / 2).await;
        if self.request(Command::LeaveCluster).await.is_err() {
            return;
        }
        tokio::time::sleep(propagate_wait / 2).await;
    }

    /// Consul's force-leave: sends a leave intent on behalf of `node`, so a failed member
    /// becomes `Left` everywhere (an alive one refutes it); `prune` also removes it from the
    /// member lists at once.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), GossipError> {
        let node = node.to_owned();
        self.request(|reply| Command::ForceLeave { node, prune, reply }).await?
    }

    /// Replaces the local agent's tags; they are re-disseminated with a higher version.
    /// Refused when they encode to more than `TAGS_BYTES_MAX` bytes.
    pub fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        check_tags(&tags).map_err(|reason| GossipError::TagsTooLarge { reason })?;
        self.queue(Command::SetTags(tags))
    }

    /// Consul's `event fire`: stamps the event with the Lamport clock and disseminates it;
    /// every agent, this one included, delivers it once to its user-event subscribers.
    pub fn fire_user_event(&self, name: &str, payload: Vec<u8>) -> Result<UserEvent, GossipError> {
        if let Err((bytes, _)) = check_user_event(name, &payload) {
            if name.is_empty() {
                return Err(GossipError::UserEventNameEmpty);
            }
            return Err(GossipError::UserEventTooLarge { bytes, limit: USER_EVENT_BYTES_MAX });
        }
        let ltime = self.inner.shared.user_event_clock.fetch_add(1, Ordering::SeqCst);
        let event = UserEvent { ltime, name: name.to_owned(), payload };
        let item = UserEventItem { ltime, name: event.name.clone(), payload: event.payload.clone() };
        self.queue(Command::FireUserEvent(item))?;
        Ok(event)
    }

    /// User events from now on, each delivered once per agent.
    pub fn subscribe_user_events(&self) -> broadcast::Receiver<UserEvent> {
        self.inner.shared.user_events.subscribe()
    }

    pub fn stats(&self) -> GossipStats {
        self.inner.shared.counters.snapshot()
    }

    /// This agent's network coordinate (Serf's `GetCoordinate`): at the origin with the
    /// maximal error until RTT samples of members that send theirs move it.
    pub fn coordinate(&self) -> Coordinate {
        self.inner.shared.coordinate.lock().expect("gossip coordinate lock poisoned").clone()
    }

    /// Round-trip times to members, one random member per probe interval.
    pub fn rtt_samples(&self) -> broadcast::Receiver<RttSample> {
        self.inner.shared.rtt_samples.subscribe()
    }

    /// Applies a keyring operation to this agent's ring only; answers the ring afterwards.
    pub async fn keyring_local(&self, op: &KeyringOp) -> Result<NodeKeys, KeyringError> {
        self.inner.keyring.apply(op).await
    }

    /// Consul's `keyring` operations across the pool: applied here first, then on every other
    /// alive member (`keyring_wire`). One answer per alive member, this agent's first. On a
    /// pool without encryption only this agent answers, with serf's refusal: there is no key to
    /// seal the request with.
    pub async fn keyring_cluster(&self, op: &KeyringOp) -> ClusterAnswer {
        let local = match self.inner.keyring.apply(op).await {
            Ok(node_keys) => NodeOutcome::Applied(node_keys),
            Err(error) => NodeOutcome::Refused(error.to_string()),
        };
        let mut answers = vec![NodeAnswer { node: self.inner.node_name.clone(), outcome: local }];
        let others: Vec<(String, SocketAddr)> = self
            .members()
            .into_iter()
            .filter(|member| member.status == MemberStatus::Alive && member.name != self.inner.node_name)
            .map(|member| (member.name, SocketAddr::new(member.addr, member.port)))
            .collect();
        let asked = keyring_wire::ask_members(others, op, &self.inner.sealer, &self.inner.shared).await;
        answers.extend(asked.unwrap_or_default());
        ClusterAnswer { answers }
    }

    /// Stops gossip at once, without leaving (to the others, this is a crash), and waits
    /// until the sockets are closed.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("gossip tasks lock poisoned"));
        for task in tasks {
            task.abort();
            // An aborted task reports `JoinError::Cancelled`, which is what we asked for.
            let _cancelled = task.await;
        }
    }

    /// Tests only: the gossip task stops reading its socket and timers for `pause`, as if the
    /// process were stopped with SIGSTOP.
    #[cfg(test)]
    pub(super) async fn pause(&self, pause: Duration) {
        let _shut_down = self.inner.commands.send(Command::Pause(pause)).await;
    }

    /// Sends `command` to the gossip task and waits for its answer.
    async fn request<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, GossipError> {
        let (reply, answer) = oneshot::channel();
        self.inner.commands.send(command(reply)).await.map_err(|_| GossipError::ShutDown)?;
        answer.await.map_err(|_| GossipError::ShutDown)
    }

    /// Queues `command` for the gossip task without waiting.
    fn queue(&self, command: Command) -> Result<(), GossipError> {
        self.inner.commands.try_send(command).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => GossipError::Busy,
            mpsc::error::TrySendError::Closed(_) => GossipError::ShutDown,
        })
    }
}
