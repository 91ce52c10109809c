//! The one place that decides which node answers a request.
//!
//! An agent is a [`Role::Server`] (it runs Raft) or a [`Role::Client`] (it knows the servers'
//! addresses from gossip). Two decisions follow from the role, and nothing else makes them:
//!
//! - **writes** ([`Agent::write`]): a server proposes the command to its Raft; if another
//!   server leads, it forwards the command once to that leader (`/raft/forward`, applied only
//!   there). A client sends the command to a server chosen at random (`/rpc/write`, which
//!   applies or forwards it), trying the next server when one cannot be reached; writes made
//!   while several are in flight travel together as one batch (`client_writes`). Both wait for
//!   a leader up to Consul's `rpc_hold_timeout` and then fail with `No cluster leader`; a
//!   client that knows no server fails at once with `No known Consul servers`, as Consul's;
//! - **reads** ([`Agent::read_route`]): a server answers `?stale` itself and everything else
//!   once it leads, or relays the request to the leader; a client relays every request that
//!   needs the catalog to a server.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::agent::client_writes::ClientWrites;
use crate::agent::remote_view::{ViewRequest, ViewRows};
use crate::agent::{Agent, AgentError, RPC_HOLD_TIMEOUT_MS};
use crate::catalog::{Command, Outcome};
use crate::raft::RaftServer;
use crate::raft::write_batch::Proposed;
use crate::rpc::client::RpcClient;
use crate::rpc::server::WriteRoute;
use crate::telemetry::names;

/// Pause between attempts while a client waits for a leader to appear.
const LEADER_RETRY_PAUSE_MS: u64 = 100;
/// Most server addresses a client keeps (a datacenter has 3 or 5).
pub(crate) const SERVER_POOL_MAX: usize = 64;

/// What this agent is.
pub enum Role {
    Server(Arc<RaftServer>),
    /// The servers a client knows, and its queue of writes to them.
    Client { pool: ServerPool, writes: ClientWrites },
}

/// The servers a client agent can send requests to: their server-port addresses. Clones
/// share one list.
#[derive(Clone, Default)]
pub struct ServerPool {
    /// Replaced whole whenever gossip reports a change. Short critical sections only.
    servers: Arc<RwLock<Vec<String>>>,
}

impl ServerPool {
    pub fn set(&self, mut servers: Vec<String>) {
        servers.sort();
        servers.dedup();
        servers.truncate(SERVER_POOL_MAX);
        *self.servers.write().expect("server pool lock poisoned") = servers;
    }

    pub fn list(&self) -> Vec<String> {
        self.servers.read().expect("server pool lock poisoned").clone()
    }

    /// The servers in a random order: the first is the one to try, the rest are failovers.
    fn shuffled(&self) -> Vec<String> {
        use rand::seq::SliceRandom;
        let mut servers = self.list();
        servers.shuffle(&mut rand::thread_rng());
        servers
    }
}

/// Why a write failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    /// Consul's exact message, which clients match on.
    #[error("No cluster leader")]
    NoLeader,
    /// Consul's exact message for a client agent that knows no server.
    #[error("No known Consul servers")]
    NoServers,
    #[error("raft is shutting down")]
    ShuttingDown,
    /// This server's Raft core quit on an error (a full disk, for one).
    #[error("{0}")]
    RaftStopped(String),
    /// This server waits for disk space; it answers again by itself once there is room.
    #[error("{}", crate::raft::disk_full::DISK_FULL_MESSAGE)]
    DiskFull,
    #[error("{0}")]
    Forward(String),
    #[error("timed out waiting for the write to commit (no quorum?)")]
    Timeout,
    /// The write needs a format that some server does not read yet (`agent::formats`).
    #[error("this write needs encoding format {needed}, but some servers read only format {cluster}: finish upgrading every server first")]
    FormatTooNew { needed: u8, cluster: u8 },
}

impl WriteError {
    /// Rebuilds the error from the text a server answered with.
    fn from_remote(reason: String) -> WriteError {
        match reason.as_str() {
            "No cluster leader" => WriteError::NoLeader,
            "raft is shutting down" => WriteError::ShuttingDown,
            _ => WriteError::Forward(reason),
        }
    }
}

/// Where a read is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadRoute {
    /// By this agent, from its own catalog view.
    Local,
    /// By the server whose server-port address this is (relayed to its `/fwd`).
    Relay(String),
}

/// How fresh a read must be (Consul's consistency modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Stale,
    Default,
    Consistent,
}

/// A committed write: the index it was applied at and its outcome.
pub type Written = (u64, Outcome);

impl Agent {
    /// Commits a command: the role decides where (see the module docs).
    pub async fn write(&self, command: Command) -> Result<Written, AgentError> {
        let command = command.stamped(crate::agent::wall_clock_ms());
        let written = match &self.role {
            Role::Server(raft) => self.write_on_server(raft, command, WriteRoute::AnyServer).await,
            Role::Client { writes, .. } => writes.write(self.fit_format(None, command)?).await,
        };
        Ok(written?)
    }

    /// A command that reached this server: applied here if it leads, else (if `route`
    /// allows) forwarded once to the leader.
    pub(crate) async fn write_on_server(&self, raft: &RaftServer, command: Command, route: WriteRoute) -> Result<Written, WriteError> {
        let command = self.fit_format(Some(raft), command)?;
        let started = Instant::now();
        let written = self.write_on_server_untimed(raft, &command, route).await;
        if written.is_ok() {
            record_write_time(&command, crate::telemetry::ms_since(started));
        }
        written
    }

    async fn write_on_server_untimed(&self, raft: &RaftServer, command: &Command, route: WriteRoute) -> Result<Written, WriteError> {
        let deadline = Instant::now() + Duration::from_millis(RPC_HOLD_TIMEOUT_MS);
        loop {
            // A leader cut off from its quorum never commits; give up at the hold timeout
            // (the outcome is then unknown to the client, as with any timed-out request).
            let attempt = tokio::time::timeout_at(deadline.into(), raft.propose(command.clone())).await;
            let Ok(attempt) = attempt else { return Err(WriteError::Timeout) };
            match (attempt, route) {
                (Proposed::Applied { log_index, outcome }, _) => return Ok((log_index, outcome)),
                (Proposed::NotLeader(Some(leader)), WriteRoute::AnyServer) => {
                    let written = self.forward_to_leader(&leader.raft_addr, command, deadline).await?;
                    // Read-your-writes on this server: wait until it has applied the write too.
                    raft.wait_applied(written.0, deadline.saturating_duration_since(Instant::now())).await;
                    return Ok(written);
                }
                (Proposed::NotLeader(_), WriteRoute::LeaderOnly) => return Err(WriteError::NoLeader),
                (Proposed::NotLeader(None), WriteRoute::AnyServer) => {}
                (Proposed::Refused(reason), _) => return Err(WriteError::Forward(reason)),
                (Proposed::ShuttingDown, _) => return Err(WriteError::ShuttingDown),
                (Proposed::Stopped(reason), _) => return Err(WriteError::RaftStopped(reason)),
                (Proposed::DiskFull, _) => return Err(WriteError::DiskFull),
            }
            if !raft.wait_for_leader(deadline).await {
                return Err(WriteError::NoLeader);
            }
        }
    }

    async fn forward_to_leader(&self, leader_addr: &str, command: &Command, deadline: Instant) -> Result<Written, WriteError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let answer: Result<Written, String> =
            self.rpc.write(leader_addr, WriteRoute::LeaderOnly, command.format_needed(), command, timeout).await.map_err(|e| WriteError::Forward(e.to_string()))?;
        answer.map_err(WriteError::from_remote)
    }

    /// Where a read that needs the catalog is answered. On a server, default and
    /// `?consistent` reads wait up to the hold timeout for a leader.
    pub async fn read_route(&self, consistency: Consistency) -> Result<ReadRoute, AgentError> {
        let raft = match &self.role {
            Role::Client { pool, .. } => return pool.shuffled().into_iter().next().map(ReadRoute::Relay).ok_or(AgentError::Write(WriteError::NoServers)),
            Role::Server(raft) => raft,
        };
        if consistency == Consistency::Stale {
            return Ok(ReadRoute::Local);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(RPC_HOLD_TIMEOUT_MS);
        loop {
            let view = raft.leader_view();
            match (view.leads(), view.other_leader_addr) {
                (true, _) => return Ok(ReadRoute::Local),
                (false, Some(addr)) => return Ok(ReadRoute::Relay(addr)),
                (false, None) if tokio::time::Instant::now() >= deadline => return Err(AgentError::Write(WriteError::NoLeader)),
                (false, None) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A client's catalog read from a server (see `remote_view`): a random server first,
    /// failing over while one cannot be reached.
    pub(crate) async fn read_view(&self, request: ViewRequest) -> Result<ViewRows, AgentError> {
        let Role::Client { pool, .. } = &self.role else { return Err(AgentError::NoServer) };
        let wait_ms = match &request {
            ViewRequest::Service { wait_ms, .. } => *wait_ms,
            ViewRequest::Node { .. } | ViewRequest::AclToken { .. } | ViewRequest::Address { .. } | ViewRequest::PreparedQuery { .. } => 0,
        };
        let timeout = Duration::from_millis(wait_ms + RPC_HOLD_TIMEOUT_MS);
        let mut last_error = AgentError::Write(WriteError::NoServers);
        for server in pool.shuffled() {
            match self.rpc.call::<_, ViewRows>(&server, "/rpc/read", &request, timeout).await {
                Ok(rows) => return Ok(rows),
                Err(error) if error.not_delivered() => last_error = AgentError::Rpc(error),
                Err(error) => return Err(AgentError::Rpc(error)),
            }
        }
        Err(last_error)
    }

    /// The other servers a client may fail over to after `failed` could not be reached.
    pub fn other_servers(&self, failed: &str) -> Vec<String> {
        match &self.role {
            Role::Client { pool, .. } => pool.shuffled().into_iter().filter(|s| s != failed).collect(),
            Role::Server(_) => Vec::new(),
        }
    }
}

/// A client's write: to a random server, failing over to the others while none can be
/// reached, and retrying while the servers have no leader, up to the hold timeout.
pub(crate) async fn write_through_servers(rpc: &RpcClient, pool: &ServerPool, command: &Command) -> Result<Written, WriteError> {
    let deadline = Instant::now() + Duration::from_millis(RPC_HOLD_TIMEOUT_MS);
    loop {
        let servers = pool.shuffled();
        if servers.is_empty() {
            return Err(WriteError::NoServers);
        }
        let mut last_error = WriteError::NoServers;
        for server in &servers {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match rpc.write::<_, Result<Written, String>>(server, WriteRoute::AnyServer, command.format_needed(), command, timeout).await {
                Ok(Ok(written)) => return Ok(written),
                Ok(Err(reason)) => match WriteError::from_remote(reason) {
                    WriteError::NoLeader => last_error = WriteError::NoLeader,
                    other => return Err(other),
                },
                // Never delivered: safe to try another server.
                Err(error) if error.not_delivered() => last_error = WriteError::Forward(error.to_string()),
                // Delivered or maybe delivered: the outcome is unknown, as on a timeout.
                Err(error) => return Err(WriteError::Forward(error.to_string())),
            }
        }
        if Instant::now() + Duration::from_millis(LEADER_RETRY_PAUSE_MS) >= deadline {
            return Err(last_error);
        }
        tokio::time::sleep(Duration::from_millis(LEADER_RETRY_PAUSE_MS)).await;
    }
}

/// Consul's per-endpoint write timers (`kvs.apply`, `catalog.register`, ...): the time a
/// server took to commit the write, forwarding to the leader included. A client agent's
/// batch counts once for each write in it.
fn record_write_time(command: &Command, ms: f64) {
    let name = match command {
        Command::At { command, .. } => return record_write_time(command, ms),
        Command::Batch(commands) => {
            for command in commands {
                record_write_time(command, ms);
            }
            return;
        }
        Command::KvSet { .. } | Command::KvDelete { .. } | Command::KvDeleteTree { .. } | Command::KvLock { .. } | Command::KvUnlock { .. } => names::KVS_APPLY,
        Command::Txn { .. } | Command::TxnOps { .. } => names::TXN_APPLY,
        Command::Register(_) => names::CATALOG_REGISTER,
        Command::DeregisterNode { .. } | Command::DeregisterService { .. } | Command::DeregisterCheck { .. } => names::CATALOG_DEREGISTER,
        Command::SessionCreate(_) | Command::SessionDestroy { .. } => names::SESSION_APPLY,
        _ => return,
    };
    metrics::histogram!(name).record(ms);
}
