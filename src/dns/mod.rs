//! Consul's DNS interface: answers `*.service.consul`, `*.node.consul`, `*.addr.consul`,
//! `*.query.consul` (prepared queries), the
//! zone apex (under `domain` and `alt_domain`) and PTR questions under `arpa.` from the
//! committed catalog, over UDP and TCP. hickory-proto reads requests; cairn serves the sockets
//! and encodes the responses itself.
//!
//! The module is split so that the Consul rules can be tested without sockets:
//! - `name` (pure) parses a question name into the lookup Consul would do;
//! - `zone` (pure) holds the validated domains and datacenter, the names built from them and
//!   the per-service TTLs;
//! - `answer` (services), `node_answer` (nodes, addr, PTR, SOA/NS) and `records` (record
//!   builders), all pure, build the records from the lookup results;
//! - `wire` (pure) encodes a response with every name compressed, cut to the bytes the
//!   transport allows;
//! - `handler` turns one raw request into one encoded response, `transport` serves the UDP
//!   socket and the TCP listener, `recursor` forwards to the recursors (the only other
//!   sockets), and this file owns the server tasks.
//!
//! The agent reads nothing of DNS but this module's public items: it implements
//! [`DnsCatalog`] over its state machine and calls [`DnsServer::start`] with sockets it bound.
//!
//! Protocol choices (each follows Consul unless said otherwise):
//! - names outside our domains and `arpa.`, and PTR questions for addresses nobody in the
//!   catalog has, are forwarded to the recursors when there are any (`recursor` says how);
//!   without recursors, names outside our domains are REFUSED and unknown PTRs NXDOMAIN;
//! - every answer for our domain is authoritative (AA); recursion available (RA) is set on
//!   every answer when recursors are configured, and on none otherwise, as in Consul;
//! - an OPT record in the request is answered with one, offering
//!   `max(request size, 512)` bytes (capped at the largest sendable datagram); an EDNS
//!   version above 0 gets BADVERS;
//! - UDP without EDNS: at most `udp_answer_limit` answers (never more than
//!   [`UDP_ANSWER_RECORDS_MAX`]), with TC set only when `enable_truncate` is on, as in Consul;
//! - a UDP answer larger than the client accepts (512 bytes, or the EDNS size) is cut to the
//!   answers that fit with their glue, keeping the OPT record, and TC is set so that the
//!   client retries over TCP (Consul sets TC here only with `enable_truncate`; a silent cut
//!   hides instances). Over TCP the whole answer comes, up to a 65535-byte message: about
//!   1,400 SRV records with their glue, or 4,000 A records ([`DNS_SRV_RECORDS_MAX`] and
//!   [`DNS_ANSWER_RECORDS_MAX`] bound the work before encoding);
//! - a datacenter label other than ours is NXDOMAIN with the SOA: Consul's RPC fails with "no
//!   path to datacenter", which its DNS server turns into NXDOMAIN (`rCodeFromError`);
//! - SOA and NS questions are answered for any name in the domain (and under `arpa.`) with the
//!   zone's SOA and NS records, as Consul's router does (`requestTypeConsul`), even though the
//!   owner name then differs from the question.
//!
//! Each answered question is logged at DEBUG under this module's target.

mod answer;
mod answer_cache;
mod handler;
mod name;
mod node_answer;
mod recursor;
mod records;
mod transport;
mod wire;
mod zone;

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod recursor_tests;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use answer::{DNS_ANSWER_RECORDS_MAX, DNS_SRV_RECORDS_MAX, NS_RECORDS_MAX};

pub(crate) use handler::Handler;
#[cfg(test)]
pub(crate) use transport::Transport;
use zone::Zones;

/// Hard cap on answers in a UDP response without EDNS, whatever `udp_answer_limit` says.
/// Consul's `maxUDPAnswerLimit`: about what fits in 512 bytes with room for additionals.
pub const UDP_ANSWER_RECORDS_MAX: usize = 8;

/// Read access to the committed catalog, implemented by the agent.
///
/// Health filtering is not done by the implementor: it returns all instances with their
/// aggregated health. Lookups run on the DNS server's tasks: they may wait (a client agent
/// fetches a service it has not cached yet from a server) but must not block a thread. Names
/// arrive lower-cased, because DNS is case-insensitive: match them the way Consul's catalog
/// does, case-insensitively.
#[async_trait::async_trait]
pub trait DnsCatalog: Send + Sync + 'static {
    /// Every instance of `service`, healthy or not. `None` = no such service registered at all.
    async fn service_instances(&self, service: &str) -> Option<Vec<DnsInstance>>;
    /// The node called `node`, if registered.
    async fn node(&self, node: &str) -> Option<DnsNode>;
    /// Who has the address `ip`, for PTR answers: a node whose address it is, else a service
    /// instance registered with it (Consul's order). `None` = nobody.
    async fn address_owner(&self, ip: IpAddr) -> Option<DnsAddressOwner>;
    /// The instances a prepared query (by name or ID) selects, already filtered and ordered
    /// as executing it does (Consul's `PreparedQuery.Execute`). `None` = no such query.
    async fn prepared_query(&self, _name_or_id: &str) -> Option<DnsQueryResult> {
        None
    }
    /// A number that changes whenever any answer may change (a server's applied Raft index),
    /// under which encoded service answers are shared between identical requests
    /// (`answer_cache`). `None` = answer every request anew.
    fn answer_generation(&self) -> Option<u64> {
        None
    }
}

/// An executed prepared query, as DNS answers it.
#[derive(Clone, Debug)]
pub struct DnsQueryResult {
    /// The service the query selected (a template rendered), which picks the TTL when the
    /// query has none.
    pub service: String,
    /// The query's `DNS.TTL`, in seconds, when it has one.
    pub ttl_s: Option<u32>,
    /// The selected instances, in answer order (the health filter is the query's own).
    pub instances: Vec<DnsInstance>,
}

/// The owner of an address, named in a PTR answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAddressOwner {
    /// A node, by name.
    Node(String),
    /// A service, by name (a service instance registered with that address).
    Service(String),
}

/// A catalog node as DNS sees it.
#[derive(Clone, Debug)]
pub struct DnsNode {
    pub name: String,
    /// An IP address, or a host name (answered with a CNAME to it).
    pub address: String,
    /// Node metadata, served as TXT records (RFC 1464 `key=value`).
    pub meta: BTreeMap<String, String>,
}

/// One registered service instance, with the node it runs on.
#[derive(Clone, Debug)]
pub struct DnsInstance {
    pub node: DnsNode,
    pub service_id: String,
    /// `""` = use the node address. An IP address, or a host name (answered with a CNAME to
    /// it, or as the SRV target).
    pub service_address: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// SRV weight while the instance is passing.
    pub weight_passing: u16,
    /// SRV weight while the instance is warning.
    pub weight_warning: u16,
    pub health: DnsHealth,
}

/// Aggregated health of an instance: the worst of its service checks and its node's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsHealth {
    Passing,
    Warning,
    /// Any critical service or node check, including maintenance mode.
    Critical,
}

/// DNS settings, named after Consul's `dns_config` options.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// This agent's node name: the `node` label of `dns.domain_query` (Consul's).
    pub node_name: String,
    /// Domain served, e.g. `consul.` (the trailing dot is optional).
    pub domain: String,
    /// A second domain served alongside (Consul's `alt_domain`); answers to questions asked
    /// under it use it too.
    pub alt_domain: Option<String>,
    /// This agent's datacenter, e.g. `dc1`.
    pub datacenter: String,
    /// Also drop instances in Warning state, not only Critical ones.
    pub only_passing: bool,
    pub node_ttl_s: u32,
    /// Consul's `service_ttl`: service name, `prefix*`, or `*` → TTL in seconds. An exact name
    /// wins over the longest matching prefix; no match = 0.
    pub service_ttls_s: BTreeMap<String, u32>,
    /// Most address records in a service answer; 0 = unlimited.
    pub a_record_limit: usize,
    /// Most answers over UDP without EDNS; Consul's default is 3. 0 means
    /// [`UDP_ANSWER_RECORDS_MAX`], which also caps any larger value.
    pub udp_answer_limit: usize,
    /// Set TC when `udp_answer_limit` cut answers, so that clients retry over TCP.
    pub enable_truncate: bool,
    /// Upstream DNS servers for names outside our domains (Consul's `recursors`), resolved
    /// to addresses. Empty = no recursion: such names are REFUSED.
    pub recursors: Vec<SocketAddr>,
    pub recursor_strategy: RecursorStrategy,
    /// How long one exchange with one recursor may take (Consul's `recursor_timeout`).
    pub recursor_timeout: Duration,
}

/// The order in which recursors are tried (Consul's `recursor_strategy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecursorStrategy {
    /// In the configured order, each until one answers.
    #[default]
    Sequential,
    /// In a random order drawn for every question.
    Random,
}

impl Default for DnsConfig {
    /// Consul's defaults.
    fn default() -> Self {
        DnsConfig {
            node_name: String::new(),
            domain: "consul.".to_owned(),
            alt_domain: None,
            datacenter: "dc1".to_owned(),
            only_passing: false,
            node_ttl_s: 0,
            service_ttls_s: BTreeMap::new(),
            a_record_limit: 0,
            udp_answer_limit: 3,
            enable_truncate: false,
            recursors: Vec::new(),
            recursor_strategy: RecursorStrategy::Sequential,
            recursor_timeout: Duration::from_secs(2),
        }
    }
}

impl DnsConfig {
    /// Checks that the domain and datacenter can be served, so that the agent can reject a
    /// bad configuration at load time rather than find out from [`DnsServer::start`].
    pub fn validate(&self) -> Result<(), DnsError> {
        Zones::new(self).map(|_| ())
    }
}

/// Why a [`DnsConfig`] cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The domain is not a valid DNS name, or is the root.
    #[error("invalid DNS domain {domain:?}: {reason}")]
    InvalidDomain { domain: String, reason: String },
    /// The datacenter cannot be a DNS label under the domain.
    #[error("invalid datacenter {datacenter:?} for DNS: {reason}")]
    InvalidDatacenter { datacenter: String, reason: String },
}

/// The running DNS server: one UDP socket and one TCP listener, served until [`shutdown`].
///
/// [`shutdown`]: DnsServer::shutdown
pub struct DnsServer {
    /// Cancelled by [`DnsServer::shutdown`]; both loops stop reading when it is.
    shutdown: CancellationToken,
    /// The UDP loop and the TCP accept loop; each owns (and, ended, aborts) its requests.
    tasks: JoinSet<()>,
}

impl DnsServer {
    /// Starts serving on already-bound sockets (so that tests can bind `127.0.0.1:0`).
    ///
    /// Must be called inside a Tokio runtime: the server runs as tasks spawned on it. A
    /// configuration that [`DnsConfig::validate`] rejects is logged at ERROR and every query
    /// is then REFUSED, rather than serving a domain nobody asked for.
    pub fn start(
        udp: tokio::net::UdpSocket,
        tcp: tokio::net::TcpListener,
        config: DnsConfig,
        catalog: Arc<dyn DnsCatalog>,
    ) -> DnsServer {
        let handler = Arc::new(Handler::new(&config, catalog));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(transport::serve_udp(udp, handler.clone(), shutdown.clone()));
        tasks.spawn(transport::serve_tcp(tcp, handler, shutdown.clone()));
        DnsServer { shutdown, tasks }
    }

    /// Stops accepting queries and waits until the server tasks have ended.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while let Some(ended) = self.tasks.join_next().await {
            if let Err(error) = ended {
                warn!(%error, "a DNS server task ended with an error");
            }
        }
    }
}
