//! The request handler: one raw request in, one encoded response out (or none).
//!
//! It reads the request (hickory-proto's decoder), decides the answer with the pure modules
//! (`name`, `zone`, `answer`, `node_answer`) over the [`DnsCatalog`], and encodes it with
//! `wire` within the size the transport allows. The sockets are `transport`'s; questions
//! that are not ours go to the recursors through `recursor`, whose reply is relayed as is.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_server::proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, RecordType};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder};
use tracing::{debug, error};

use super::answer::{self, Answer, Question};
use super::answer_cache::AnswerCache;
use super::name::{QueryName, parse_arpa_name, parse_query_name};
use super::node_answer;
use super::recursor::Recursors;
use super::transport::Transport;
use super::wire::{self, DNS_TCP_MESSAGE_BYTES_MAX, Response, ResponseHeader};
use super::zone::{Zone, Zones};
use super::{DnsCatalog, DnsConfig, DnsNode, UDP_ANSWER_RECORDS_MAX};

/// The service every server registers, whose instances are the name servers (Consul's
/// `structs.ConsulServiceName`).
const CONSUL_SERVICE: &str = "consul";

/// Smallest UDP payload every DNS client accepts, in bytes (RFC 1035 section 4.2.1).
const UDP_PAYLOAD_MIN_BYTES: u16 = 512;

/// Largest UDP payload we offer or send, in bytes: 65535 less the IP and UDP headers, as in
/// Consul (`maxUDPDatagramSize`). A bigger datagram cannot be sent at all, so a client that
/// advertises 65535 would otherwise get no answer.
const UDP_PAYLOAD_MAX_BYTES: u16 = u16::MAX - 68;

/// Turns each request into a [`Reply`] and encodes it.
pub(crate) struct Handler {
    /// `None` when the configuration was invalid: everything is refused.
    zones: Option<Zones>,
    /// Effective answer limit for UDP without EDNS, already capped.
    udp_answer_limit: usize,
    enable_truncate: bool,
    catalog: Arc<dyn DnsCatalog>,
    /// `None` without recursors: foreign names are then REFUSED, and RA is never set.
    recursors: Option<Recursors>,
    /// Encoded service answers, shared while the catalog's generation holds.
    cache: AnswerCache,
    /// `dns.domain_query`, labelled with this agent's node name as Consul does.
    query_time: metrics::Histogram,
}

/// Everything a response needs besides the request it answers.
#[derive(Default)]
struct Reply {
    answer: Answer,
    authoritative: bool,
    truncated: bool,
    edns: Option<Edns>,
    /// The question is not ours: forward the request to the recursors and relay their reply.
    forward: bool,
    /// The encoded response may be shared with identical requests while the catalog holds
    /// (`answer_cache`): a service answer with records that depends on nothing but the catalog.
    cacheable: bool,
}

impl Reply {
    fn forward(mut self) -> Reply {
        self.forward = true;
        self
    }

    fn error(mut self, response_code: ResponseCode) -> Reply {
        self.answer = Answer {
            response_code,
            ..Answer::default()
        };
        self
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
            recursors: Recursors::new(config),
            cache: AnswerCache::default(),
            query_time: metrics::histogram!(crate::telemetry::names::DNS_DOMAIN_QUERY, "node" => config.node_name.clone()),
        }
    }

    /// Answers one raw request that arrived over `transport`. `None` = send nothing: the
    /// bytes are not even a DNS header, or they are a response (answering those would let
    /// anyone aim our replies at a third party).
    pub(crate) async fn respond(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let started = std::time::Instant::now();
        let response = self.respond_untimed(request, transport).await;
        self.query_time.record(crate::telemetry::ms_since(started));
        response
    }

    async fn respond_untimed(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let header = Header::read(&mut BinDecoder::new(request)).ok()?;
        if header.metadata.message_type == MessageType::Response {
            return None;
        }
        let generation = self.catalog.answer_generation();
        if let Some(generation) = generation
            && let Some(cached) = self.cache.get(generation, transport, request)
        {
            return Some(cached);
        }
        let (message, reply) = match Message::from_vec(request) {
            Ok(message) => {
                let mut reply = self.reply(&message, transport).await;
                if reply.forward {
                    let relayed = match &self.recursors {
                        Some(recursors) => recursors.forward(request, transport).await,
                        None => None,
                    };
                    if relayed.is_some() {
                        return relayed;
                    }
                    // Consul's answer when every recursor failed: SERVFAIL, not authoritative.
                    reply = reply.error(ResponseCode::ServFail);
                }
                (Some(message), reply)
            }
            Err(error) => {
                debug!(%error, id = header.metadata.id, "undecodable DNS request");
                (None, Reply::default().error(ResponseCode::FormErr))
            }
        };
        let question = message.as_ref().and_then(|message| message.queries.first());
        let response_header = ResponseHeader {
            id: header.metadata.id,
            op_code: header.metadata.op_code,
            authoritative: reply.authoritative,
            truncated: reply.truncated,
            recursion_desired: header.metadata.recursion_desired,
            recursion_available: self.recursors.is_some(),
            checking_disabled: header.metadata.checking_disabled,
            response_code: reply.answer.response_code,
        };
        let response = Response {
            header: response_header,
            question,
            answer: &reply.answer,
            edns: reply.edns.as_ref(),
        };
        let budget_bytes = match (transport, &reply.edns) {
            (Transport::Tcp, _) => DNS_TCP_MESSAGE_BYTES_MAX,
            (Transport::Udp, Some(edns)) => usize::from(edns.max_payload()),
            (Transport::Udp, None) => usize::from(UDP_PAYLOAD_MIN_BYTES),
        };
        match wire::encode_within(&response, budget_bytes, transport == Transport::Udp) {
            Ok(encoded) => {
                if reply.cacheable
                    && let Some(generation) = generation
                {
                    self.cache.put(generation, transport, request, &encoded.bytes);
                }
                if encoded.answers_cut > 0 {
                    debug!(
                        id = header.metadata.id,
                        cut = encoded.answers_cut,
                        bytes = encoded.bytes.len(),
                        "DNS answer cut to fit"
                    );
                }
                Some(encoded.bytes)
            }
            Err(error) => {
                error!(%error, id = header.metadata.id, "DNS response does not encode; answering SERVFAIL");
                let failed = Answer {
                    response_code: ResponseCode::ServFail,
                    ..Answer::default()
                };
                let header = ResponseHeader {
                    response_code: ResponseCode::ServFail,
                    truncated: false,
                    ..response_header
                };
                wire::encode(&Response {
                    header,
                    question,
                    answer: &failed,
                    edns: reply.edns.as_ref(),
                })
                .ok()
            }
        }
    }

    /// Decides the whole response (the records and flags), before encoding.
    async fn reply(&self, request: &Message, transport: Transport) -> Reply {
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
        let [query] = request.queries.as_slice() else {
            return reply.error(ResponseCode::FormErr);
        };
        let Some(zones) = &self.zones else {
            return reply.error(ResponseCode::Refused);
        };
        let record_type = query.query_type();
        let name = query.name();
        // The zone the name is in, and what it asks for. Names under `arpa.` are answered in
        // the primary zone, as Consul does. Other names go to the recursors whatever their
        // class or type, as in Consul, or are REFUSED without recursors.
        let (zone, parsed) = match zones.for_name(name) {
            Some(zone) => (
                zone,
                parse_query_name(name, &zone.domain, record_type == RecordType::SRV),
            ),
            None => match parse_arpa_name(name) {
                Some(parsed) => (&zones.primary, parsed),
                None if self.recursors.is_some() => return reply.forward(),
                None => return reply.error(ResponseCode::Refused),
            },
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return reply.error(ResponseCode::Refused);
        }
        reply.authoritative = true;
        if matches!(record_type, RecordType::AXFR | RecordType::IXFR) {
            return reply.error(ResponseCode::NotImp);
        }
        let question = Question {
            name,
            record_type,
            soa_serial: soa_serial_now(),
        };
        let is_service = matches!(parsed, QueryName::Service(_));
        let Some(answer) = self.local_answer(zone, &question, parsed).await else {
            reply.authoritative = false;
            return reply.forward();
        };
        reply.answer = answer;
        reply.cacheable = is_service && answer::depends_on_catalog_only(&reply.answer, |name| zones.for_name(name).is_some());
        if let Some(recursors) = &self.recursors {
            let is_ours = |name: &Name| {
                zones.for_name(name).is_some() || parse_arpa_name(name).is_some()
            };
            let edns = request.edns.is_some();
            recursors.resolve_host_names(&mut reply.answer, record_type, edns, is_ours).await;
        }
        if transport == Transport::Udp && request.edns.is_none() {
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

    /// The servers NS answers may name: the nodes of the `consul` service's instances, as
    /// Consul looks them up (`structs.ConsulServiceName`), healthy enough for the zone
    /// (critical ones, and warning ones with `only_passing`, are left out, as Consul's
    /// `Filter(onlyPassing)` does).
    async fn name_servers(&self, zone: &Zone) -> Vec<DnsNode> {
        let instances = self.catalog.service_instances(CONSUL_SERVICE).await;
        instances
            .unwrap_or_default()
            .into_iter()
            .filter(|instance| zone.admits(instance.health))
            .map(|instance| instance.node)
            .collect()
    }

    /// The answer to a question in one of our zones. `None` = ask the recursors instead: a PTR
    /// question for an address nobody here has, when there are recursors (Consul's
    /// `handlePtr`).
    async fn local_answer(
        &self,
        zone: &Zone,
        question: &Question<'_>,
        parsed: QueryName,
    ) -> Option<Answer> {
        if matches!(question.record_type, RecordType::SOA | RecordType::NS) {
            // Consul answers SOA and NS for every name it serves, with the zone's records.
            let servers = self.name_servers(zone).await;
            let rng = &mut rand::thread_rng();
            return Some(node_answer::apex_answer(zone, question, &servers, rng));
        }
        if let QueryName::Ptr(ip) = parsed {
            let owner = self.catalog.address_owner(ip).await;
            if owner.is_none() && self.recursors.is_some() {
                return None;
            }
            return Some(node_answer::ptr_answer(zone, question, owner.as_ref()));
        }
        Some(self.answer(zone, question, parsed).await)
    }

    /// Looks the parsed name up in the catalog and builds the answer.
    async fn answer(&self, zone: &Zone, question: &Question<'_>, parsed: QueryName) -> Answer {
        // The rng is made after each lookup's await: it cannot be held across one.
        match parsed {
            QueryName::Apex => {
                let servers = self.name_servers(zone).await;
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
            QueryName::PreparedQuery { name, datacenter } => {
                if !zone.is_local_datacenter(datacenter.as_deref()) {
                    return Answer::name_error(zone, question);
                }
                let result = self.catalog.prepared_query(&name).await;
                answer::prepared_query_answer(zone, question, result.as_ref())
            }
            QueryName::Addr(ip) => node_answer::addr_answer(zone, question, ip),
            QueryName::Invalid => Answer::name_error(zone, question),
            // Both answered by the caller (a PTR may be forwarded); refused should that change.
            QueryName::Ptr(_) | QueryName::Foreign => Answer {
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
