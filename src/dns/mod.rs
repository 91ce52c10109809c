//! Consul's DNS interface: answers `*.service.consul`, `*.node.consul`, `*.addr.consul`, the
//! zone apex (under `domain` and `alt_domain`) and PTR questions under `arpa.` from the
//! committed catalog, over UDP and TCP, served by `hickory-server`.
//!
//! The module is split so that the Consul rules can be tested without sockets:
//! - `name` (pure) parses a question name into the lookup Consul would do;
//! - `zone` (pure) holds the validated domains and datacenter, the names built from them and
//!   the per-service TTLs;
//! - `answer` (services), `node_answer` (nodes, addr, PTR, SOA/NS) and `records` (record
//!   builders), all pure, build the records from the lookup results;
//! - this file wires them to hickory's [`RequestHandler`] and owns the server tasks.
//!
//! The agent reads nothing of DNS but this module's public items: it implements
//! [`DnsCatalog`] over its state machine and calls [`DnsServer::start`] with sockets it bound.
//!
//! Protocol choices (each follows Consul unless said otherwise):
//! - names outside our domains and `arpa.` are REFUSED: cairn has no recursors yet;
//! - every answer for our domain is authoritative (AA), with no recursion available (RA);
//! - an OPT record in the request is answered with one, offering
//!   `max(request size, 512)` bytes (capped at the largest sendable datagram); an EDNS
//!   version above 0 gets BADVERS;
//! - UDP without EDNS: at most `udp_answer_limit` answers (never more than
//!   [`UDP_ANSWER_RECORDS_MAX`]), with TC set only when `enable_truncate` is on, as in Consul.
//!   Independently, hickory sets TC whenever the encoded message exceeds what the client
//!   accepts (512 bytes, or the EDNS size), so a client that honours TC retries over TCP;
//! - a datacenter label other than ours is NXDOMAIN with the SOA: Consul's RPC fails with "no
//!   path to datacenter", which its DNS server turns into NXDOMAIN (`rCodeFromError`);
//! - SOA and NS questions are answered for any name in the domain (and under `arpa.`) with the
//!   zone's SOA and NS records, as Consul's router does (`requestTypeConsul`), even though the
//!   owner name then differs from the question.
//!
//! Hickory logs every request at INFO under the `hickory_server` target; the agent's log
//! filter should lower that target if per-query logs are unwanted.

mod answer;
mod name;
mod node_answer;
mod records;
mod zone;

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, error, warn};

pub use answer::{DNS_ANSWER_RECORDS_MAX, DNS_SRV_RECORDS_MAX, NS_RECORDS_MAX};

use answer::{Answer, Question};
use name::{QueryName, parse_arpa_name, parse_query_name};
use zone::{Zone, Zones};

/// Hard cap on answers in a UDP response without EDNS, whatever `udp_answer_limit` says.
/// Consul's `maxUDPAnswerLimit`: about what fits in 512 bytes with room for additionals.
pub const UDP_ANSWER_RECORDS_MAX: usize = 8;

/// Smallest UDP payload every DNS client accepts, in bytes (RFC 1035 section 4.2.1).
const UDP_PAYLOAD_MIN_BYTES: u16 = 512;

/// Largest UDP payload we offer or send, in bytes: 65535 less the IP and UDP headers, as in
/// Consul (`maxUDPDatagramSize`). A bigger datagram cannot be sent at all, so a client that
/// advertises 65535 would otherwise get no answer.
const UDP_PAYLOAD_MAX_BYTES: u16 = u16::MAX - 68;

/// How long a TCP connection may stay idle between requests before it is closed. Bounds the
/// connections a client can hold open doing nothing (RFC 7766 section 6.2.3 asks for seconds).
const TCP_IDLE_TIMEOUT_S: u64 = 10;

/// Responses queued per TCP connection before the handler waits for the client to read.
const TCP_RESPONSE_QUEUE_MESSAGES: usize = 32;

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
    /// The server nodes, for NS answers: name and address.
    async fn servers(&self) -> Vec<DnsNode>;
    /// Who has the address `ip`, for PTR answers: a node whose address it is, else a service
    /// instance registered with it (Consul's order). `None` = nobody.
    async fn address_owner(&self, ip: IpAddr) -> Option<DnsAddressOwner>;
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
}

impl Default for DnsConfig {
    /// Consul's defaults.
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".to_owned(),
            alt_domain: None,
            datacenter: "dc1".to_owned(),
            only_passing: false,
            node_ttl_s: 0,
            service_ttls_s: BTreeMap::new(),
            a_record_limit: 0,
            udp_answer_limit: 3,
            enable_truncate: false,
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
    server: Server<Handler>,
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
        let mut server = Server::new(Handler::new(&config, catalog));
        server.register_socket(udp);
        server.register_listener(
            tcp,
            Duration::from_secs(TCP_IDLE_TIMEOUT_S),
            TCP_RESPONSE_QUEUE_MESSAGES,
        );
        DnsServer { server }
    }

    /// Stops accepting queries and waits until the server tasks have ended.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            warn!(%error, "DNS server ended with an error");
        }
    }
}

/// Hickory's view of us: turns each request into a [`Reply`] and sends it.
pub(crate) struct Handler {
    /// `None` when the configuration was invalid: everything is refused.
    zones: Option<Zones>,
    /// Effective answer limit for UDP without EDNS, already capped.
    udp_answer_limit: usize,
    enable_truncate: bool,
    catalog: Arc<dyn DnsCatalog>,
}

/// Everything a response needs besides the request it answers.
#[derive(Default)]
struct Reply {
    answer: Answer,
    authoritative: bool,
    truncated: bool,
    edns: Option<Edns>,
}

impl Reply {
    fn error(mut self, response_code: ResponseCode) -> Reply {
        self.answer = Answer {
            response_code,
            ..Answer::default()
        };
        self
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = reply.authoritative;
        metadata.truncation = reply.truncated;
        metadata.response_code = reply.answer.response_code;
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &reply.edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            reply.answer.answers.iter(),
            reply.answer.authorities.iter(),
            std::iter::empty(),
            reply.answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(
                    %error,
                    id = request.metadata.id,
                    src = %request.src(),
                    "failed to send DNS response"
                );
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl Handler {
    /// The handler serving `config` from `catalog`.
    pub(crate) fn new(config: &DnsConfig, catalog: Arc<dyn DnsCatalog>) -> Handler {
        let zones = match Zones::new(config) {
            Ok(zones) => Some(zones),
            Err(error) => {
                error!(%error, "invalid DNS configuration, refusing every DNS query");
                None
            }
        };
        let udp_answer_limit = match config.udp_answer_limit {
            0 => UDP_ANSWER_RECORDS_MAX,
            limit => limit.min(UDP_ANSWER_RECORDS_MAX),
        };
        Handler {
            zones,
            udp_answer_limit,
            enable_truncate: config.enable_truncate,
            catalog,
        }
    }

    /// Decides the whole response. Synchronous, so that the thread-local RNG is never held
    /// across an await point (the request future must be `Send`).
    async fn reply(&self, request: &Request) -> Reply {
        let mut reply = Reply::default();
        if let Some(request_edns) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(
                request_edns
                    .max_payload()
                    .clamp(UDP_PAYLOAD_MIN_BYTES, UDP_PAYLOAD_MAX_BYTES),
            );
            edns.set_version(0);
            reply.edns = Some(edns);
            if request_edns.version() > 0 {
                return reply.error(ResponseCode::BADVERS);
            }
        }
        if request.metadata.op_code != OpCode::Query {
            return reply.error(ResponseCode::NotImp);
        }
        let [query] = request.queries.queries() else {
            return reply.error(ResponseCode::FormErr);
        };
        let Some(zones) = &self.zones else {
            return reply.error(ResponseCode::Refused);
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return reply.error(ResponseCode::Refused);
        }
        let record_type = query.query_type();
        let name = query.original().name();
        // The zone the name is in, and what it asks for. Names under `arpa.` are answered in
        // the primary zone, as Consul does.
        let (zone, parsed) = match zones.for_name(name) {
            Some(zone) => (
                zone,
                parse_query_name(name, &zone.domain, record_type == RecordType::SRV),
            ),
            None => match parse_arpa_name(name) {
                Some(parsed) => (&zones.primary, parsed),
                None => return reply.error(ResponseCode::Refused),
            },
        };
        reply.authoritative = true;
        if matches!(record_type, RecordType::AXFR | RecordType::IXFR) {
            return reply.error(ResponseCode::NotImp);
        }
        let question = Question {
            name,
            record_type,
            soa_serial: soa_serial_now(),
        };
        reply.answer = if matches!(record_type, RecordType::SOA | RecordType::NS) {
            // Consul answers SOA and NS for every name it serves, with the zone's records.
            let servers = self.catalog.servers().await;
            node_answer::apex_answer(zone, &question, &servers, &mut rand::thread_rng())
        } else {
            self.answer(zone, &question, parsed).await
        };
        if request.protocol() == Protocol::Udp && request.edns.is_none() {
            let trimmed = answer::limit_answers(&mut reply.answer, self.udp_answer_limit);
            reply.truncated = trimmed && self.enable_truncate;
        }
        debug!(
            name = %name,
            record_type = %record_type,
            response_code = %reply.answer.response_code,
            answers = reply.answer.answers.len(),
            truncated = reply.truncated,
            "DNS question answered"
        );
        reply
    }

    /// Looks the parsed name up in the catalog and builds the answer.
    async fn answer(&self, zone: &Zone, question: &Question<'_>, parsed: QueryName) -> Answer {
        // The rng is made after each lookup's await: it cannot be held across one.
        match parsed {
            QueryName::Apex => {
                let servers = self.catalog.servers().await;
                node_answer::apex_answer(zone, question, &servers, &mut rand::thread_rng())
            }
            QueryName::Service(service) => {
                if !zone.is_local_datacenter(service.datacenter.as_deref()) {
                    return Answer::name_error(zone, question);
                }
                let instances = self.catalog.service_instances(&service.service).await;
                answer::service_answer(
                    zone,
                    question,
                    &service.service,
                    service.tag.as_deref(),
                    instances.as_deref(),
                    &mut rand::thread_rng(),
                )
            }
            QueryName::Node { node, datacenter } => {
                if !zone.is_local_datacenter(datacenter.as_deref()) {
                    return Answer::name_error(zone, question);
                }
                node_answer::node_answer(zone, question, self.catalog.node(&node).await.as_ref())
            }
            QueryName::Addr(ip) => node_answer::addr_answer(zone, question, ip),
            QueryName::Ptr(ip) => {
                let owner = self.catalog.address_owner(ip).await;
                node_answer::ptr_answer(zone, question, owner.as_ref())
            }
            QueryName::Invalid => Answer::name_error(zone, question),
            // Filtered out by the caller; answered the same way should that ever change.
            QueryName::Foreign => Answer {
                response_code: ResponseCode::Refused,
                ..Answer::default()
            },
        }
    }
}

/// SOA serial: Unix seconds, like Consul. Truncation to 32 bits is intended: serials compare
/// modulo 2^32 (RFC 1982), and a clock before 1970 yields 0 rather than an error.
fn soa_serial_now() -> u32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    (seconds & u64::from(u32::MAX)) as u32
}
