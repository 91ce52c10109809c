//! The agent's place in the LAN gossip pool (`gossip`): its tags, joining and leaving, and
//! what member events change.
//!
//! Gossip decides nothing about the catalog. This file turns its events into the agent's
//! decisions: a client's server pool (alive `role=consul` members of our datacenter, at their
//! `port` tag), the servers a forming cluster can find (`-bootstrap-expect`), and a bump of
//! `members_changed` that wakes the leader's reconcile. It also decides which gossip keyring
//! the agent starts with (`gossip_keyring`): the keyring file wins over `encrypt`, as Consul's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{Agent, AgentError, Identity};
use crate::config::RuntimeConfig;
use crate::gossip::{Gossip, GossipConfig, Keyring, Member, MemberStatus, timing::GossipTiming};

/// The Consul version cairn reports: the API level it implements.
pub const CONSUL_COMPAT_VERSION: &str = "1.22.0";
/// Serf's tombstone timeout: a member that left is listed for a day, then forgotten.
const LEFT_MEMBER_TTL_MS: u64 = 24 * 3600 * 1000;
/// How long a graceful leave waits for the intent to spread (Consul's `leave_propagate_delay`).
pub(crate) const LEAVE_PROPAGATE_WAIT_MS: u64 = 1_000;

/// Consul's serf tags for this agent.
pub fn own_tags(config: &RuntimeConfig, identity: &Identity) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::from([
        ("role".to_string(), if config.server { "consul" } else { "node" }.to_string()),
        ("dc".to_string(), identity.datacenter.clone()),
        ("id".to_string(), identity.node_id.clone()),
        ("build".to_string(), format!("{CONSUL_COMPAT_VERSION}:cairn-{}", env!("CARGO_PKG_VERSION"))),
        ("vsn".to_string(), "2".to_string()),
        ("vsn_min".to_string(), "2".to_string()),
        ("vsn_max".to_string(), "3".to_string()),
        ("segment".to_string(), String::new()),
    ]);
    if config.server {
        tags.insert("port".into(), config.ports.server.to_string());
        tags.insert("raft_vsn".into(), "3".into());
        tags.insert(crate::agent::formats::FORMAT_TAG.into(), crate::catalog::codec::FORMAT_NEWEST.to_string());
        if config.bootstrap || config.dev {
            tags.insert("bootstrap".into(), "1".into());
        }
        if config.bootstrap_expect > 0 {
            tags.insert("expect".into(), config.bootstrap_expect.to_string());
        }
    }
    tags
}

/// Consul's LAN keyring file, under the data dir (`agent.SerfLANKeyring`).
pub const KEYRING_FILE: &str = "serf/local.keyring";

/// The gossip keyring this agent starts with, and the file its changes are saved to.
///
/// As Consul's `setupBaseKeyrings`: an existing keyring file wins over `encrypt` (it holds the
/// keys the pool rotated to, which `encrypt` in a config file does not know), with a warning
/// when it lacks the `encrypt` key; with only `encrypt`, the file is written from it. In dev
/// mode or without a data dir, the ring lives in memory only.
fn gossip_keyring(config: &RuntimeConfig) -> Result<(Option<Keyring>, Option<PathBuf>), AgentError> {
    let encrypt = config.gossip.encrypt.as_deref();
    let configured = match encrypt {
        Some(key) => Some(Keyring::from_base64(key).map_err(|e| AgentError::Invalid(format!("encrypt: {e}")))?),
        None => None,
    };
    let file = match &config.data_dir {
        Some(data_dir) if !config.dev => data_dir.join(KEYRING_FILE),
        _ => return Ok((configured, None)),
    };
    let saved = Keyring::load_file(&file).map_err(|e| AgentError::Invalid(e.to_string()))?;
    match (saved, configured) {
        (Some(saved), _) => {
            if let Some(key) = encrypt
                && !saved.contains(key)
            {
                tracing::warn!(keyring = "LAN", path = %file.display(), "LAN keyring doesn't include key provided with -encrypt, using keyring");
            }
            Ok((Some(saved), Some(file)))
        }
        (None, Some(configured)) => {
            configured.write_file(&file).map_err(|e| AgentError::Invalid(e.to_string()))?;
            Ok((Some(configured), Some(file)))
        }
        (None, None) => Ok((None, None)),
    }
}

/// The gossip settings for this agent.
pub(super) fn gossip_config(config: &RuntimeConfig, identity: &Identity) -> Result<GossipConfig, AgentError> {
    let (keyring, keyring_file) = gossip_keyring(config)?;
    let lan = config.gossip.lan;
    Ok(GossipConfig {
        node_name: identity.node_name.clone(),
        advertise: SocketAddr::new(identity.advertise_addr, config.ports.serf_lan),
        tags: own_tags(config, identity),
        keyring,
        keyring_file,
        encrypt_verify_incoming: config.gossip.encrypt_verify_incoming,
        encrypt_verify_outgoing: config.gossip.encrypt_verify_outgoing,
        timing: GossipTiming {
            gossip_nodes: lan.gossip_nodes,
            gossip_interval_ms: lan.gossip_interval_ms,
            probe_interval_ms: lan.probe_interval_ms,
            probe_timeout_ms: lan.probe_timeout_ms,
            retransmit_mult: lan.retransmit_mult,
            suspicion_mult: lan.suspicion_mult,
        },
        reconnect_timeout_ms: config.gossip.reconnect_timeout_ms,
        tombstone_timeout_ms: LEFT_MEMBER_TTL_MS,
        default_port: crate::config::DEFAULT_SERF_LAN_PORT,
    })
}

/// A server as gossip announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownServer {
    pub name: String,
    pub node_id: String,
    /// `host:port` of its server port.
    pub server_addr: String,
}

/// The alive servers of `datacenter` among `members`.
pub fn servers_of(members: &[Member], datacenter: &str) -> Vec<KnownServer> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .filter(|m| m.tags.get("role").is_some_and(|r| r == "consul") && m.tags.get("dc").is_some_and(|dc| dc == datacenter))
        .filter_map(|m| {
            let port: u16 = m.tags.get("port")?.parse().ok()?;
            Some(KnownServer { name: m.name.clone(), node_id: m.tags.get("id").cloned().unwrap_or_default(), server_addr: SocketAddr::new(m.addr, port).to_string() })
        })
        .collect()
}

impl Agent {
    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    /// The LAN members, this agent included.
    pub fn members(&self) -> Vec<Member> {
        self.gossip.members()
    }

    /// The alive servers of this datacenter that gossip knows.
    pub fn known_servers(&self) -> Vec<KnownServer> {
        servers_of(&self.gossip.members(), &self.identity.datacenter)
    }

    /// `cairn join` / `PUT /v1/agent/join/:addr`: joins the LAN pool through the agent at
    /// `address` (a gossip address; a bare host means the serf LAN port).
    pub async fn join(&self, address: &str) -> Result<usize, AgentError> {
        self.gossip.join(&[address.to_string()]).await.map_err(|e| AgentError::Invalid(e.to_string()))
    }

    /// Leaves the pool gracefully: the others see this agent as `left`, not `failed`.
    pub async fn leave(&self) {
        self.gossip.leave(Duration::from_millis(LEAVE_PROPAGATE_WAIT_MS)).await;
    }

    /// `force-leave`: a failed member becomes `left`; with `prune`, it is forgotten at once.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), AgentError> {
        self.gossip.force_leave(node, prune).await.map_err(|e| AgentError::Rejected(e.to_string()))
    }
}

/// How often a client's server pool is re-read from the member list without a member event.
const SERVER_POOL_REFRESH_MS: u64 = 5_000;

/// Follows member events: keeps a client's server pool current and wakes the leader's
/// reconcile. Runs until shutdown.
pub(super) async fn member_events_loop(agent: Arc<Agent>) {
    let mut events = agent.gossip.subscribe();
    let mut shutdown = agent.shutdown_requested();
    let mut servers_seen = Vec::new();
    let mut changed = true;
    loop {
        agent.refresh_server_pool(&mut servers_seen);
        if changed {
            agent.members_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        tokio::select! {
            event = events.recv() => match event {
                Ok(_) => changed = true,
                // Missed events only mean we re-read the whole member list, which we do anyway.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => changed = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            // A safety net: the pool is re-read now and then even without an event.
            _ = tokio::time::sleep(Duration::from_millis(SERVER_POOL_REFRESH_MS)) => changed = false,
            _ = shutdown.changed() => return,
        }
    }
}

impl Agent {
    /// Points a client's server pool at the servers gossip knows. A server not seen before
    /// (on any agent) triggers a full anti-entropy sync, as Consul's `ServerUp` does.
    fn refresh_server_pool(&self, seen: &mut Vec<String>) {
        let servers: Vec<String> = self.known_servers().into_iter().map(|s| s.server_addr).collect();
        if servers.iter().any(|s| !seen.contains(s)) {
            self.trigger_full_sync();
        }
        if let crate::agent::role::Role::Client { pool, .. } = &self.role {
            pool.set(servers.clone());
        }
        *seen = servers;
    }

    /// How many members the LAN pool holds, whatever their status (Consul's cluster size for
    /// the anti-entropy stagger).
    pub(crate) fn cluster_size(&self) -> usize {
        self.gossip.members().len()
    }
}

/// `-retry-join`: joins through the configured addresses, retrying every `retry_interval`
/// until one answers or `retry_max` attempts have failed (then the agent stops, as Consul's).
pub(super) async fn retry_join_loop(agent: Arc<Agent>) {
    let config = agent.config();
    if config.retry_join.is_empty() {
        return;
    }
    let mut shutdown = agent.shutdown_requested();
    let mut attempts: u32 = 0;
    loop {
        match agent.gossip.join(&config.retry_join).await {
            Ok(joined) => {
                tracing::info!(joined, "Join cluster completed. Synced with initial agents");
                return;
            }
            Err(error) => tracing::warn!(%error, "Join cluster failed, will retry"),
        }
        attempts += 1;
        if config.retry_max_attempts > 0 && attempts >= config.retry_max_attempts {
            tracing::error!(attempts, "Retry join is exhausted; shutting down");
            agent.request_shutdown();
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(config.retry_interval_s.max(1))) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How long gossip must have run before the leader may deregister catalog nodes that are not
/// members at all: a freshly started server has not heard of everyone yet (Consul restores
/// its member list from a serf snapshot; cairn waits for push/pull rounds instead).
const GOSSIP_SETTLE_MS: u64 = 60_000;

impl Agent {
    /// The members as the leader's reconcile sees them (this datacenter only).
    pub(crate) fn member_states(&self) -> Vec<crate::agent::reconcile::MemberState> {
        use crate::agent::reconcile::{Liveness, MemberState};
        self.gossip
            .members()
            .into_iter()
            .filter(|m| m.tags.get("dc").is_none_or(|dc| *dc == self.identity.datacenter))
            .map(|m| {
                let liveness = match m.status {
                    MemberStatus::Alive | MemberStatus::Leaving => Liveness::Alive,
                    MemberStatus::Failed => Liveness::Failed,
                    MemberStatus::Left | MemberStatus::None => Liveness::Left,
                };
                let server_port = (m.tags.get("role").is_some_and(|r| r == "consul")).then(|| m.tags.get("port").and_then(|p| p.parse().ok())).flatten();
                MemberState { name: m.name, node_id: m.tags.get("id").cloned().unwrap_or_default(), address: m.addr.to_string(), liveness, server_port }
            })
            .collect()
    }

    /// True once gossip has run long enough for a full view of the pool.
    pub(crate) fn gossip_settled(&self) -> bool {
        self.uptime() >= Duration::from_millis(GOSSIP_SETTLE_MS)
    }
}

/// Serf's `ReconnectInterval`: how often the agent tries to rejoin one failed member.
const RECONNECT_INTERVAL_MS: u64 = 30_000;

/// Serf's reconnector: every `RECONNECT_INTERVAL_MS` (with jitter) try a push/pull join with
/// one random failed member, so a member that was down (restarted, partitioned) comes back
/// even if nobody joins it explicitly: a restarted server with no `-retry-join` of its own, say.
/// Failed members are reaped after `reconnect_timeout`, which ends the attempts.
pub(super) async fn reconnect_loop(agent: Arc<Agent>) {
    use rand::seq::SliceRandom;
    let mut shutdown = agent.shutdown_requested();
    loop {
        let jitter_ms = rand::random::<u64>() % (RECONNECT_INTERVAL_MS / 10);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(RECONNECT_INTERVAL_MS + jitter_ms)) => {}
            _ = shutdown.changed() => return,
        }
        let failed: Vec<Member> = agent.members().into_iter().filter(|m| m.status == MemberStatus::Failed).collect();
        let Some(member) = failed.choose(&mut rand::thread_rng()) else { continue };
        let address = SocketAddr::new(member.addr, member.port).to_string();
        match agent.gossip.join(&[address]).await {
            Ok(_) => tracing::info!(member = %member.name, "reconnected to a failed member"),
            Err(error) => tracing::debug!(member = %member.name, %error, "reconnect to a failed member failed"),
        }
    }
}
