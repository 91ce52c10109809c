//! The agent: the composition root of one running node.
//!
//! [`Agent`] owns the RocksDB store, its [`role::Role`] (the Raft server on server agents, the
//! known servers on client agents), the in-memory catalog view, the agent's local services and
//! checks, and the check runners. It exposes the operations the HTTP and DNS front ends need
//! and runs the background loops:
//! - check results → local state → anti-entropy sync (at once on a status change);
//! - a periodic full anti-entropy sync (Consul's `ae` loop);
//! - user events received by gossip → filters → the event ring (`events`);
//! - on servers, the leader's duties (`leader`) and cluster formation (`cluster`).
//!
//! Listeners and the HTTP/DNS servers are wired by `daemon`, which sits above this module.

pub mod acl;
mod acl_client;
mod alias;
pub(crate) mod anti_entropy;
pub mod autopilot;
mod check_status;
mod client_writes;
mod cluster;
pub mod coordinates;
pub mod config_defs;
mod data_dir;
pub mod formats;
mod gauges;
pub mod endpoint;
pub mod events;
mod leader;
pub mod local;
pub mod members;
mod operations;
mod persist;
pub mod prepared_query;
pub mod raft_view;
mod reconcile;
pub mod remote_view;
pub mod role;
mod sync;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::agent::local::{CheckRunner, LocalCell, LocalCheck, LocalService, LocalState};
use crate::catalog::command::Registration;
use crate::checks::{CheckLimits, CheckResult, Scheduler};
use crate::config::RuntimeConfig;
use crate::gossip::Gossip;
use crate::agent::role::{Role, ServerPool};
use crate::raft::{CatalogView, RaftServer, RaftSettings, RaftStatus, ServerNode};
use crate::rpc::client::RpcClient;
use crate::rpc::fault::{FAULT_INJECTION_ENV, Faults};
use crate::store::Store;
use crate::tls::AgentTls;

pub use anti_entropy::{LEADER_OWNED_CHECK_ID, LEADER_OWNED_SERVICE_ID};

/// Capacity of the check-result channel; results beyond it are dropped and re-reported.
const CHECK_RESULTS_QUEUE_MAX: usize = 1024;
/// Consul's `rpc_hold_timeout`: how long a request waits for a leader.
pub const RPC_HOLD_TIMEOUT_MS: u64 = 7_000;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("raft: {0}")]
    RaftStart(#[from] crate::raft::RaftStartError),
    #[error("{0}")]
    Write(#[from] role::WriteError),
    #[error("{0}")]
    Read(#[from] crate::raft::ReadError),
    /// A rule of the data model refused the command (Consul answers these with 500 or 400).
    #[error("{0}")]
    Rejected(String),
    /// Bad input to an agent operation (answered with 400).
    #[error("{0}")]
    Invalid(String),
    /// Something this agent's settings turn off, such as script checks (Consul answers 500).
    #[error("{0}")]
    Disabled(String),
    /// An unknown service or check ID (answered with 404).
    #[error("{0}")]
    NotFound(String),
    /// Input over a size limit (answered with 413).
    #[error("{0}")]
    TooLarge(String),
    /// Gossip refused a request (busy or shut down).
    #[error("gossip: {0}")]
    Gossip(String),
    #[error("this agent is not a server")]
    NoServer,
    #[error("{0}")]
    Rpc(#[from] crate::rpc::RpcError),
    /// Something on this agent failed that the request could not cause (answered with 500).
    #[error("{0}")]
    Internal(String),
}

/// The bound LAN gossip sockets (UDP and TCP on `ports.serf_lan`), from `daemon`.
pub struct GossipSockets {
    pub udp: tokio::net::UdpSocket,
    pub tcp: tokio::net::TcpListener,
}

/// Who this agent is on the network.
#[derive(Clone, Debug)]
pub struct Identity {
    pub node_name: String,
    pub node_id: String,
    pub datacenter: String,
    pub advertise_addr: IpAddr,
}

/// One running agent.
pub struct Agent {
    config: RuntimeConfig,
    identity: Identity,
    data_dir: PathBuf,
    store: Store,
    view: Arc<CatalogView>,
    /// Server or client: decides where writes and reads go (`role`).
    role: Role,
    /// The one client of the server port (writes, relayed reads, joins, Raft peers).
    rpc: Arc<RpcClient>,
    /// Bumped whenever the cluster's members change; wakes the leader's reconcile.
    members_changed: watch::Sender<u64>,
    /// This agent's membership in the LAN pool (`members`).
    gossip: Gossip,
    /// On client agents: services cached for DNS (`remote_view`).
    service_cache: Option<remote_view::ServiceCache>,
    /// The user events this agent kept (`events`).
    events: events::EventLog,
    /// Services and checks registered with this agent. Short critical sections only, never
    /// held across an await.
    local: Arc<LocalCell>,
    /// Writes the local state to the data dir (`persist`).
    persister: persist::PersistWriter,
    /// The locks of anti-entropy runs, and a client's copy of its node's rows (`sync`).
    sync: sync::SyncLocks,
    /// Wakes the anti-entropy loop for a full sync (a new server appeared).
    full_sync_wanted: tokio::sync::Notify,
    scheduler: Scheduler,
    /// On the leader: when each TTL session expires unless renewed. In memory only, as in
    /// Consul: a new leader gives every session a fresh TTL.
    session_deadlines: Mutex<std::collections::HashMap<String, Instant>>,
    /// When each server's autopilot health last changed, as this server saw it (`autopilot`).
    autopilot_stability: autopilot::Stability,
    /// The leaders this server saw elected, for the dashboard (`raft_view`).
    leader_changes: raft_view::LeaderChanges,
    /// Set to `true` to stop the agent (signal, `PUT /v1/agent/leave`).
    shutdown: watch::Sender<bool>,
    /// Which services and checks come from config files, and the reload queue (`config_defs`).
    config_defs: config_defs::ConfigDefs,
    started_at: Instant,
    /// TLS on the server port, when configured (`tls`).
    tls: Option<Arc<AgentTls>>,
    /// Token resolution and this agent's own tokens (`acl`).
    acl: acl::AgentAcl,
}

/// The server port's TLS from the config's `tls_rpc` (files read now; again on reload).
fn rpc_tls(config: &RuntimeConfig) -> Result<Option<Arc<AgentTls>>, AgentError> {
    let Some(settings) = &config.tls_rpc else { return Ok(None) };
    let server_name = crate::tls::server_name(&config.datacenter, &config.domain);
    AgentTls::load(settings, &server_name).map(|tls| Some(Arc::new(tls))).map_err(|e| AgentError::Invalid(e.to_string()))
}

impl Agent {
    /// Opens the store, starts Raft (on servers) and the check runners, and restores the local
    /// state persisted by a previous run. Background loops start with [`Agent::spawn_loops`].
    pub async fn start(config: RuntimeConfig, data_dir: PathBuf, sockets: GossipSockets) -> Result<(Arc<Agent>, mpsc::Receiver<CheckResult>), AgentError> {
        let history_max = crate::catalog::kv::KV_HISTORY_VERSIONS_MAX;
        if config.kv_history_versions > history_max {
            return Err(AgentError::Invalid(format!("kv_history_versions must be at most {history_max}")));
        }
        data_dir::prepare(&data_dir)?;
        let store = {
            let path = data_dir.join("rocksdb");
            tokio::task::spawn_blocking(move || Store::open(&path)).await.map_err(|e| AgentError::Invalid(e.to_string()))??
        };
        let node_id = match &config.node_id {
            Some(id) => id.clone(),
            None => load_or_create_node_id(&store)?,
        };
        let advertise_addr = config.advertise_addr.unwrap_or_else(|| default_advertise(config.bind_addr));
        let identity = Identity {
            node_name: config.node_name.clone(),
            node_id: node_id.clone(),
            datacenter: config.datacenter.clone(),
            advertise_addr,
        };
        let view = CatalogView::new();
        let own_server_addr = if config.server { format!("{}:{}", advertise_addr, config.ports.server) } else { String::new() };
        let faults = Arc::new(Faults::new(std::env::var(FAULT_INJECTION_ENV).is_ok_and(|v| v == "1")));
        let source_ip = (!config.bind_addr.is_unspecified()).then_some(config.bind_addr);
        let tls = rpc_tls(&config)?;
        let rpc = Arc::new(RpcClient::new(faults, own_server_addr.clone(), source_ip, tls.clone())?);
        let role = if config.server {
            let settings = RaftSettings {
                node_id: raft_node_id(&node_id),
                node: ServerNode {
                    name: identity.node_name.clone(),
                    raft_addr: own_server_addr,
                    http_addr: format!("{}:{}", advertise_addr, config.ports.http.unwrap_or(0)),
                },
                heartbeat_interval_ms: config.raft.heartbeat_interval_ms,
                election_timeout_min_ms: config.raft.election_timeout_min_ms,
                election_timeout_max_ms: config.raft.election_timeout_max_ms,
                snapshot_threshold_entries: config.raft.snapshot_threshold_entries,
                trailing_logs_entries: config.raft.trailing_logs_entries,
                leader_wait_ms_max: RPC_HOLD_TIMEOUT_MS,
                datacenter: config.datacenter.clone(),
                snapshot_dir: data_dir.join("raft"),
            };
            Role::Server(RaftServer::start(settings, store.clone(), view.clone(), rpc.clone()).await?)
        } else {
            let pool = ServerPool::default();
            Role::Client { writes: client_writes::ClientWrites::start(rpc.clone(), pool.clone()), pool }
        };
        let service_cache = (!config.server).then(remote_view::ServiceCache::default);
        let gossip_config = members::gossip_config(&config, &identity)?;
        let gossip = Gossip::start(gossip_config, sockets.udp, sockets.tcp).await.map_err(|e| AgentError::Invalid(format!("gossip: {e}")))?;
        let (results_tx, results_rx) = mpsc::channel(CHECK_RESULTS_QUEUE_MAX);
        let scheduler = Scheduler::new(results_tx, CheckLimits { output_bytes_max: config.check_output_max_size_bytes });
        let local = Arc::new(LocalCell::new(restore_local_state(&store, config.enable_script_checks)?));
        let persister = persist::PersistWriter::start(local.clone(), store.clone())?;
        let (shutdown, _) = watch::channel(false);
        let acl = acl::AgentAcl::new(&config, &data_dir);
        let agent = Arc::new(Agent {
            acl,
            config,
            identity,
            data_dir,
            store,
            view,
            role,
            rpc,
            members_changed: watch::channel(0).0,
            service_cache,
            gossip,
            events: events::EventLog::default(),
            persister,
            local,
            sync: sync::SyncLocks::default(),
            full_sync_wanted: tokio::sync::Notify::new(),
            session_deadlines: Mutex::new(std::collections::HashMap::new()),
            autopilot_stability: autopilot::Stability::default(),
            leader_changes: raft_view::LeaderChanges::default(),
            scheduler,
            shutdown,
            config_defs: config_defs::ConfigDefs::default(),
            started_at: Instant::now(),
            tls,
        });
        agent.restart_check_runners();
        Ok((agent, results_rx))
    }

    /// Makes a `-bootstrap`/`-dev` server the sole voter of a new cluster (no-op once formed).
    pub async fn bootstrap_if_configured(&self) -> Result<(), AgentError> {
        if let Some(raft) = self.raft()
            && (self.config.bootstrap || self.config.dev)
        {
            raft.bootstrap_single().await?;
        }
        Ok(())
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Token resolution and this agent's own tokens.
    pub fn acl(&self) -> &acl::AgentAcl {
        &self.acl
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// What RocksDB holds in memory (`/v1/agent/self`'s `store` stats).
    pub fn store_memory(&self) -> crate::store::StoreMemory {
        self.store.memory()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn view(&self) -> &Arc<CatalogView> {
        &self.view
    }

    /// The Raft server, on server agents.
    pub fn raft(&self) -> Option<&Arc<RaftServer>> {
        match &self.role {
            Role::Server(raft) => Some(raft),
            Role::Client { .. } => None,
        }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// TLS on the server port, when configured.
    pub fn tls(&self) -> Option<Arc<AgentTls>> {
        self.tls.clone()
    }

    pub fn rpc(&self) -> &Arc<RpcClient> {
        &self.rpc
    }

    /// Changes whenever the cluster's members change.
    pub fn member_changes(&self) -> watch::Receiver<u64> {
        self.members_changed.subscribe()
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    pub fn raft_status(&self) -> Option<RaftStatus> {
        self.raft().map(|r| r.status())
    }

    /// Waits until a read may be served linearizably (`?consistent`).
    pub async fn consistent_barrier(&self) -> Result<(), AgentError> {
        let raft = self.raft().ok_or(AgentError::NoServer)?;
        Ok(raft.linearizable_barrier().await?)
    }

    /// Asks the agent to stop (signal handler, `PUT /v1/agent/leave`).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops check runners and Raft.
    pub async fn stop(&self) {
        self.scheduler.shutdown();
        self.gossip.shutdown().await;
        if let Some(raft) = self.raft() {
            raft.shutdown().await;
        }
        self.persister.stop().await;
    }

    /// The registration of this agent's own node, without services or checks.
    pub(crate) fn node_registration(&self) -> Registration {
        let address = self.identity.advertise_addr.to_string();
        let mut tagged_addresses = std::collections::BTreeMap::new();
        for tag in ["lan", "lan_ipv4", "wan", "wan_ipv4"] {
            tagged_addresses.insert(tag.to_string(), address.clone());
        }
        let mut node_meta = self.config.node_meta.clone();
        node_meta.insert("consul-network-segment".to_string(), String::new());
        Registration {
            node_id: self.identity.node_id.clone(),
            node: self.identity.node_name.clone(),
            address,
            datacenter: self.identity.datacenter.clone(),
            tagged_addresses,
            node_meta,
            skip_node_update: false,
            service: None,
            checks: Vec::new(),
        }
    }

    fn restart_check_runners(&self) {
        // Collected first: `start_runner` may take the local-state lock itself.
        let checks: Vec<_> = self.local.read().checks.values().filter(|check| check.runner.is_some()).cloned().collect();
        for check in &checks {
            self.start_runner(&check.registration.check_id, check);
        }
    }

    /// Spawns the background loops; they stop when shutdown is requested.
    pub fn spawn_loops(self: &Arc<Self>, results: mpsc::Receiver<CheckResult>) {
        tokio::spawn(operations::check_results_loop(self.clone(), results));
        tokio::spawn(sync::anti_entropy_loop(self.clone()));
        tokio::spawn(members::member_events_loop(self.clone()));
        tokio::spawn(members::retry_join_loop(self.clone()));
        tokio::spawn(members::reconnect_loop(self.clone()));
        tokio::spawn(events::user_events_loop(self.clone()));
        tokio::spawn(coordinates::coordinate_sync_loop(self.clone()));
        tokio::spawn(gauges::gauges_loop(self.clone()));
        if let Some(raft) = self.raft() {
            tokio::spawn(leader::leader_loop(self.clone(), raft.clone()));
            tokio::spawn(cluster::formation_loop(self.clone(), raft.clone()));
        }
    }

    /// Sees every later change to this agent's own services and checks.
    pub fn local_changes(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }

    pub fn local_services(&self) -> Vec<LocalService> {
        self.local.read().services.values().cloned().collect()
    }

    pub fn local_service(&self, id: &str) -> Option<LocalService> {
        self.local.read().services.get(id).cloned()
    }

    pub fn local_checks(&self) -> Vec<LocalCheck> {
        self.local.read().checks.values().cloned().collect()
    }

    pub fn local_runner(&self, check_id: &str) -> Option<CheckRunner> {
        self.local.read().checks.get(check_id).and_then(|c| c.runner.clone())
    }
}

fn load_or_create_node_id(store: &Store) -> Result<String, AgentError> {
    if let Some(bytes) = store.agent_get("node-id")? {
        return decode_node_id(&bytes).map_err(|e| AgentError::Invalid(format!("the data dir's node-id row: {e}")));
    }
    let id = new_uuid();
    store.agent_put("node-id", encode_node_id(&id))?;
    Ok(id)
}

/// Format byte of the `node-id` row. Rows of the first release are the bare UUID text, whose
/// first byte is an ASCII hex digit, never this byte; they are still read.
const NODE_ID_FORMAT_V1: u8 = 1;

pub(crate) fn encode_node_id(id: &str) -> Vec<u8> {
    let mut out = vec![NODE_ID_FORMAT_V1];
    out.extend(postcard::to_allocvec(id).expect("postcard encodes a string"));
    out
}

pub(crate) fn decode_node_id(bytes: &[u8]) -> Result<String, String> {
    match bytes.split_first() {
        Some((&NODE_ID_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
        Some((first, _)) if first.is_ascii_hexdigit() => std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| e.to_string()),
        Some((version, _)) => Err(format!("unknown format {version} (written by a newer release of cairn?)")),
        None => Err("empty".into()),
    }
}

/// Wall-clock milliseconds, stamped into commands by the proposer (the state machine never
/// reads a clock itself). The one place the agent's proposers read the time.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Creates the data dir private to the agent (or tightens it), before anything is written in
/// it; `Agent::start` does the same, so this only matters to what comes before (the pid file).
pub fn prepare_data_dir(path: &std::path::Path) -> Result<(), AgentError> {
    data_dir::prepare(path)
}

/// A random (version 4) UUID in Consul's textual form.
pub fn new_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The Raft node ID: the first 8 bytes of the node UUID, so it is stable across restarts.
fn raft_node_id(node_id: &str) -> u64 {
    let hex: String = node_id.chars().filter(|c| c.is_ascii_hexdigit()).take(16).collect();
    u64::from_str_radix(&hex, 16).unwrap_or_else(|_| crc32fast::hash(node_id.as_bytes()) as u64)
}

fn default_advertise(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    // Like Consul, advertise the address the default route would use; without a route, loopback.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| {
            socket.connect("192.0.2.1:9")?;
            socket.local_addr()
        })
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The local state an earlier run persisted (registered through the API: config entries are
/// registered again from the files). A script check is dropped, with a warning, unless
/// `enable_script_checks` allows it from the API now, as Consul's `loadChecks` purges the
/// checks it cannot add back.
fn restore_local_state(store: &Store, api_scripts_allowed: bool) -> Result<LocalState, AgentError> {
    let mut local = LocalState::default();
    for (key, bytes) in store.agent_scan(local::SERVICE_PREFIX)? {
        match local::decode::<LocalService>(&bytes) {
            Ok(service) => {
                local.services.insert(service.registration.id.clone(), service);
            }
            Err(error) => tracing::warn!(%key, %error, "skipping unreadable local service"),
        }
    }
    for (key, bytes) in store.agent_scan(local::CHECK_PREFIX)? {
        match local::decode::<LocalCheck>(&bytes) {
            Ok(check) if matches!(check.runner, Some(local::CheckRunner::Script { .. })) && !api_scripts_allowed => {
                tracing::warn!(check = %check.registration.check_id, "dropping a persisted script check: {}", operations::SCRIPTS_DISABLED_FROM_API);
                store.agent_delete(&key)?;
            }
            Ok(check) => {
                local.checks.insert(check.registration.check_id.clone(), check);
            }
            Err(error) => tracing::warn!(%key, %error, "skipping unreadable local check"),
        }
    }
    Ok(local)
}
