//! Raft: the only module that names `openraft`.
//!
//! [`RaftServer`] runs one openraft node over the RocksDB log store ([`log_store`]) and state
//! machine ([`state_machine`]), talking to peers through [`network`] (over `rpc`). The rest of
//! the agent sees three things: `propose(command)` (applied here if this server leads; the
//! agent's role decides where to send it otherwise), a consistency barrier for reads, and
//! [`CatalogView`], the in-memory catalog that applied entries update and blocking queries wait
//! on. A single server is a one-voter cluster on the same code path.

pub mod archive;
pub mod bounds;
pub mod cluster;
pub mod disk_full;
pub mod log_store;
mod metrics_watch;
pub mod network;
mod read_batch;
pub mod snapshot;
pub mod state_machine;
pub mod write_batch;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::catalog::{Catalog, ChangeSet, Command};
use crate::rpc::client::RpcClient;
use crate::rpc::fault::Faults;
use crate::store::Store;
use crate::watch::Watches;
use write_batch::Proposed;

pub type NodeId = u64;

/// Most entries in one AppendEntries request.
pub const RAFT_APPEND_ENTRIES_MAX: u64 = 16;

/// What the cluster knows about a server: its name and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    pub name: String,
    /// `host:port` of the server port (Raft RPC).
    pub raft_addr: String,
    /// `host:port` of the HTTP API.
    pub http_addr: String,
}

openraft::declare_raft_types!(
    /// openraft type configuration for cairn.
    pub TypeConfig:
        D = Command,
        R = crate::catalog::Outcome,
        NodeId = NodeId,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The in-memory catalog, derived from what the state machine applied.
pub struct CatalogView {
    /// The catalog itself. Held for writing only while `apply` mutates it (microseconds);
    /// readers take short read locks and never await while holding one.
    catalog: RwLock<Catalog>,
    /// The last applied Raft index, published after each applied batch.
    applied: watch::Sender<u64>,
    /// Blocking queries park here, each on the topics its result depends on.
    watches: Watches,
}

impl CatalogView {
    pub fn new() -> Arc<CatalogView> {
        let (applied, _) = watch::channel(0);
        Arc::new(CatalogView { catalog: RwLock::new(Catalog::new()), applied, watches: Watches::new() })
    }

    /// Runs `read` against the current catalog.
    pub fn read<T>(&self, read: impl FnOnce(&Catalog) -> T) -> T {
        let catalog = self.catalog.read().expect("catalog lock poisoned by a panic in apply");
        read(&catalog)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().expect("catalog lock poisoned by a panic in apply")
    }

    fn replace(&self, catalog: Catalog, applied: u64) {
        *self.write() = catalog;
        self.applied.send_replace(applied);
        self.watches.publish(applied, &ChangeSet::everything_changed());
    }

    fn publish_applied(&self, index: u64, changes: &ChangeSet) {
        self.applied.send_replace(index);
        self.watches.publish(index, changes);
    }

    /// Where blocking queries subscribe to the topics they depend on.
    pub fn watches(&self) -> &Watches {
        &self.watches
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

/// Timing and compaction settings, from the agent's runtime config.
#[derive(Clone, Debug)]
pub struct RaftSettings {
    pub node_id: NodeId,
    pub node: ServerNode,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_threshold_entries: u64,
    pub trailing_logs_entries: u64,
    /// How long a write waits for a leader before failing (Consul's `rpc_hold_timeout`).
    pub leader_wait_ms_max: u64,
    /// This server's datacenter; joins from other datacenters are refused.
    pub datacenter: String,
    pub snapshot_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error("invalid raft settings: {0}")]
    Config(String),
    #[error("cannot open the state machine: {0}")]
    StateMachine(std::io::Error),
    #[error("raft failed to start: {0}")]
    Fatal(String),
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum ReadError {
    #[error("No cluster leader")]
    NoLeader,
    #[error("raft is shutting down")]
    ShuttingDown,
    /// The Raft core quit on an error (see [`raft_stopped_message`]).
    #[error("{0}")]
    Stopped(String),
}

/// What a write or a consistent read answers once openraft's core has quit on an error: it
/// quits on any storage error that reaches it and never starts again in this process, so only
/// a restart of the agent recovers (nothing acknowledged is lost). A full disk does not reach
/// it: the storage waits for space instead (`disk_full`).
pub fn raft_stopped_message(fatal: &openraft::error::Fatal<NodeId>) -> String {
    format!("Raft stopped on an error ({fatal}); this server cannot commit writes or serve consistent reads until the agent is restarted")
}

/// The leader this server knows of, or none once its Raft core has stopped: openraft leaves
/// `current_leader` as it was when the core quit, and a stopped server must not be named.
/// Nor does a server of a multi-server cluster name itself while its storage waits for disk
/// space: it sends no Raft messages meanwhile (`network`), so the others elect someone else
/// and "I lead" would be stale. (A lone server still leads: no one else can, and its reads
/// are current. A follower in that state still names the leader it knew: requests it relays
/// there can still be answered.)
fn live_leader(metrics: &openraft::RaftMetrics<NodeId, ServerNode>, space: &disk_full::DiskSpace) -> Option<NodeId> {
    let alone = metrics.membership_config.membership().voter_ids().count() <= 1;
    let stalled_self = |leader: &NodeId| *leader == metrics.id && space.is_full() && !alone;
    metrics.current_leader.filter(|leader| metrics.running_state.is_ok() && !stalled_self(leader))
}

/// The leadership facts a request needs, without copying the membership.
#[derive(Clone, Debug)]
pub struct LeaderView {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    /// The leader's server-port address when another server leads.
    pub other_leader_addr: Option<String>,
    pub millis_since_quorum_ack: Option<u64>,
}

impl LeaderView {
    pub fn leads(&self) -> bool {
        self.leader_id == Some(self.node_id)
    }
}

/// A snapshot of this server's Raft state, for status endpoints and the dashboard.
#[derive(Clone, Debug)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub state: &'static str,
    pub term: u64,
    pub leader: Option<(NodeId, ServerNode)>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub millis_since_quorum_ack: Option<u64>,
    pub voters: BTreeMap<NodeId, ServerNode>,
    pub learners: BTreeMap<NodeId, ServerNode>,
}

/// One running Raft server.
pub struct RaftServer {
    raft: Raft<TypeConfig>,
    /// The store, for point-in-time exports (`GET /v1/snapshot`).
    store: Store,
    settings: RaftSettings,
    view: Arc<CatalogView>,
    /// The agent's client of the server port (peers, joins); it also holds the fault plan.
    rpc: Arc<RpcClient>,
    /// `?consistent` reads share ReadIndex rounds (see `read_batch`).
    reads: Arc<read_batch::ReadBatcher>,
    /// Concurrent writes share Raft entries (see `write_batch`).
    writes: write_batch::WriteBatcher,
    /// The InstallSnapshot being received, so chunks cannot leave gaps (see `bounds`).
    snapshot_chunks: bounds::SnapshotChunks,
    /// Up while the storage waits for disk space: proposals are refused meanwhile.
    space: disk_full::DiskSpace,
    /// When each peer last answered this server's Raft messages (see `network`).
    contacts: Arc<network::PeerContacts>,
}

impl RaftServer {
    pub async fn start(settings: RaftSettings, store: Store, view: Arc<CatalogView>, rpc: Arc<RpcClient>) -> Result<Arc<RaftServer>, RaftStartError> {
        let config = Config {
            cluster_name: "cairn".to_string(),
            heartbeat_interval: settings.heartbeat_interval_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_threshold_entries),
            max_in_snapshot_log_to_keep: settings.trailing_logs_entries,
            install_snapshot_timeout: 10_000,
            // openraft gives each AppendEntries one heartbeat interval to complete, so batches
            // are kept small enough (16 × the 512 KiB value limit, 8 MiB) to cross in time.
            max_payload_entries: RAFT_APPEND_ENTRIES_MAX,
            ..Config::default()
        }
        .validate()
        .map_err(|e| RaftStartError::Config(e.to_string()))?;
        let space = disk_full::DiskSpace::default();
        let contacts = Arc::new(network::PeerContacts::default());
        let state_machine = state_machine::StateMachine::open(store.clone(), view.clone(), settings.snapshot_dir.clone(), space.clone())
            .map_err(RaftStartError::StateMachine)?;
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network::Network::new(rpc.clone(), space.clone(), contacts.clone()),
            log_store::LogStore::new(store.clone(), space.clone()),
            state_machine,
        )
        .await
        .map_err(|e| RaftStartError::Fatal(e.to_string()))?;
        tokio::spawn(metrics_watch::watch(raft.metrics()));
        let reads = read_batch::ReadBatcher::start(raft.clone(), Duration::from_millis(settings.leader_wait_ms_max));
        let writes = write_batch::WriteBatcher::start(raft.clone());
        Ok(Arc::new(RaftServer { raft, store, settings, view, rpc, reads, writes, snapshot_chunks: Default::default(), space, contacts }))
    }

    /// A backup of the applied state as Consul's archive (`archive`), taken at `now_ms` (the
    /// wall clock, for the snapshot's ID and the files' times), and the index it reflects.
    pub async fn export_snapshot(&self, now_ms: u64) -> Result<(Vec<u8>, u64), std::io::Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || state_machine::export(&store, now_ms)).await.map_err(std::io::Error::other)?
    }

    pub fn faults(&self) -> &Faults {
        self.rpc.faults()
    }

    pub fn node_id(&self) -> NodeId {
        self.settings.node_id
    }

    pub fn view(&self) -> &Arc<CatalogView> {
        &self.view
    }

    /// Makes this server the only voter of a new cluster. A no-op on an initialized server,
    /// so it is safe on every start (`-bootstrap`, `-dev`).
    pub async fn bootstrap_single(&self) -> Result<(), RaftStartError> {
        let members = BTreeMap::from([(self.settings.node_id, self.settings.node.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(RaftStartError::Fatal(e.to_string())),
        }
    }

    /// Proposes `command` here: applied if this server leads, otherwise answered with the
    /// leader it knows of. Where to send it then is the agent's decision (`agent::role`).
    /// While the disk is full the answer is [`Proposed::DiskFull`] at once: the core is
    /// waiting for space and would only queue the write (`disk_full`).
    pub async fn propose(&self, command: Command) -> Proposed {
        if self.space.is_full() {
            return Proposed::DiskFull;
        }
        self.writes.propose(command).await
    }

    /// Waits until this server has applied `index` (read-your-writes after a forwarded write),
    /// up to `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) {
        let mut applied = self.view.subscribe();
        let _ = tokio::time::timeout(timeout, applied.wait_for(|a| *a >= index)).await;
    }

    /// Waits until some server is known as leader, or the deadline passes.
    pub async fn wait_for_leader(&self, deadline: Instant) -> bool {
        let mut metrics = self.raft.metrics();
        let wait = metrics.wait_for(|m| m.current_leader.is_some());
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(Ok(_)) => Instant::now() < deadline,
            _ => false,
        }
    }

    /// Consul's `consistent` mode: confirms leadership with a quorum (ReadIndex) and waits
    /// until the local state machine has applied up to the read index.
    /// Concurrent callers share one round (`read_batch`).
    pub async fn linearizable_barrier(&self) -> Result<(), ReadError> {
        self.reads.barrier().await
    }

    /// Who leads, cheaply: read on every API request (forwarding and response headers), so it
    /// copies nothing but the leader's address, and that only when another server leads.
    pub fn leader_view(&self) -> LeaderView {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader_id = live_leader(&metrics, &self.space);
        let other_leader_addr = leader_id
            .filter(|id| *id != metrics.id)
            .and_then(|id| metrics.membership_config.membership().get_node(&id).map(|n| n.raft_addr.clone()));
        LeaderView { node_id: metrics.id, leader_id, other_leader_addr, millis_since_quorum_ack: metrics.millis_since_quorum_ack }
    }

    /// The IP addresses of the servers in the Raft membership (voters and learners).
    pub fn member_ips(&self) -> Vec<std::net::IpAddr> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let nodes = metrics.membership_config.membership().nodes().map(|(_, node)| node.raft_addr.parse::<std::net::SocketAddr>());
        nodes.filter_map(Result::ok).map(|addr| addr.ip()).collect()
    }

    /// This server's view of the cluster.
    /// How long ago `peer` last answered a Raft message from this server; `None` if it never
    /// has. On the leader this is each follower's last contact (Consul's `LastContact`).
    pub fn last_contact(&self, peer: NodeId) -> Option<Duration> {
        self.contacts.since(peer)
    }

    pub fn status(&self) -> RaftStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut voters = BTreeMap::new();
        let mut learners = BTreeMap::new();
        for (id, node) in membership.nodes() {
            if voter_ids.contains(id) {
                voters.insert(*id, node.clone());
            } else {
                learners.insert(*id, node.clone());
            }
        }
        let leader = live_leader(&metrics, &self.space).and_then(|id| membership.get_node(&id).map(|n| (id, n.clone())));
        RaftStatus {
            node_id: metrics.id,
            state: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            term: metrics.current_term,
            leader,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
            voters,
            learners,
        }
    }

    /// Waits until this server is leader, up to `timeout`.
    pub async fn wait_until_leader(&self, timeout: Duration) -> bool {
        let id = self.settings.node_id;
        let mut metrics = self.raft.metrics();
        let wait = metrics.wait_for(|m| m.current_leader == Some(id) && m.state == ServerState::Leader);
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }

    /// A receiver that changes whenever the leader changes, for logging elections.
    pub fn leader_changes(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, ServerNode>> {
        self.raft.metrics()
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::Fatal;
    use openraft::{StorageError, StorageIOError};

    use super::*;

    fn disk_full() -> Fatal<NodeId> {
        let error = std::io::Error::other("No space left on device");
        Fatal::StorageError(StorageError::from(StorageIOError::write_state_machine(&error)))
    }

    /// Regression (issue 11): after the core quit on ENOSPC, `/v1/status/leader` still named
    /// this server, whose Raft could no longer do anything.
    #[test]
    fn a_stopped_raft_names_no_leader() {
        let mut metrics = openraft::RaftMetrics::<NodeId, ServerNode>::new_initial(1);
        metrics.current_leader = Some(1);
        let space = disk_full::DiskSpace::default();
        assert_eq!(live_leader(&metrics, &space), Some(1));
        let full = disk_full::DiskSpace::full_for_test();
        assert_eq!(live_leader(&metrics, &full), Some(1), "a lone server waiting for disk space still leads");
        let three: BTreeSet<NodeId> = [1, 2, 3].into_iter().collect();
        let membership = openraft::Membership::<NodeId, ServerNode>::new(vec![three], None);
        metrics.membership_config = Arc::new(openraft::StoredMembership::new(None, membership));
        assert_eq!(live_leader(&metrics, &space), Some(1));
        assert_eq!(live_leader(&metrics, &full), None, "a leader of three waiting for disk space");
        metrics.current_leader = Some(2);
        assert_eq!(live_leader(&metrics, &full), Some(2), "a follower waiting for disk space");
        metrics.current_leader = Some(1);
        metrics.running_state = Err(disk_full());
        assert_eq!(live_leader(&metrics, &space), None);
    }

    #[test]
    fn a_stopped_raft_says_why_and_what_to_do() {
        let message = raft_stopped_message(&disk_full());
        assert!(message.contains("No space left on device") && message.contains("until the agent is restarted"), "{message}");
    }
}
