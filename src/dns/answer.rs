//! Answer building for services: turns catalog lookup results into the records of a response.
//!
//! This module is pure: it reads no clock, no socket and no catalog. The SOA serial comes in
//! with the [`Question`], randomness comes in as `&mut impl Rng`, and the instances come from
//! the caller, so every Consul rule below is testable without a server. Node, `addr`, PTR and
//! zone-apex answers are in `node_answer`.
//!
//! The rules are those of Consul's DNS server (`agent/dns/message_serializer.go`):
//! - instances whose health is Critical are dropped, and Warning ones too when `only_passing`
//!   is set; a service that is unknown, or whose every instance is filtered out, is NXDOMAIN.
//!   The survivors are shuffled on every answer, so that clients spread load;
//! - an instance is reached at its service address, or at its node's address when that is
//!   empty. An IP gives an address record; a host name gives a CNAME (`web.service.consul.
//!   CNAME backend.example.org.`). As in Consul, a CNAME is answered only when no instance has
//!   an address record for the question, and then only the first one (a name has at most one
//!   CNAME). With recursors, the handler then adds what they resolve the host name to
//!   (`recursor`); without, the CNAME comes alone;
//! - A/AAAA/ANY/TXT/CNAME on a service answer records named like the question, one per
//!   distinct address, cut at `a_record_limit` (which never applies to SRV, as in Consul);
//! - SRV answers `1 <weight> <port> <target>`, the target being `<node>.node.<dc>.<domain>`,
//!   `<hex>.addr.<dc>.<domain>` when the service has its own IP that differs from the node's,
//!   or the host name itself when the address is one. Every SRV record gets its own address
//!   record for the target in the additional section, even when several SRV records share a
//!   target (three instances on one node give three identical A records): Consul appends the
//!   glue per SRV record, and SRV consumers such as HAProxy's `server-template` pair each SRV
//!   record with one additional record. Node metadata TXT records go there too, once per node;
//! - a name that exists but has no record of the asked type is NODATA: NOERROR, no answer, and
//!   the SOA in the authority section (RFC 2308), as is every NXDOMAIN.
//!
//! Records whose name cannot be built (a label longer than 63 bytes, a name longer than 255)
//! are skipped rather than failing the whole answer.

use std::collections::HashSet;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::SRV;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;

use super::records::{Address, address_record, cname_record, family_wanted, meta_txt_records};
use super::zone::{Zone, soa_record};
use super::{DnsHealth, DnsInstance, DnsQueryResult};

/// Most address records (or CNAMEs) built for one answer. A DNS message cannot hold more than
/// 65535 bytes, and a compressed A record takes 16: about 4,000 fit. The encoder
/// (`wire`) cuts the answer to the bytes the transport allows; this bounds the work before it.
/// Consul cuts at the same count (`trimTCPResponse`).
pub const DNS_ANSWER_RECORDS_MAX: usize = 4096;

/// Most SRV records built for one answer: an SRV record with its glue takes at least 45
/// compressed bytes, so no more than about 1,400 fit in 65535 bytes. Consul cuts at 1024.
pub const DNS_SRV_RECORDS_MAX: usize = 1024;

/// Most NS records in an apex answer. Consul hands out three random servers.
pub const NS_RECORDS_MAX: usize = 3;

/// Priority of every SRV record: Consul expresses preference only through weights.
const SRV_PRIORITY: u16 = 1;

/// The question being answered, plus the one input that depends on the clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Question<'a> {
    /// The question name as the client wrote it: answers echo its case.
    pub name: &'a Name,
    pub record_type: RecordType,
    /// Serial of the SOA record, if one is included: Unix seconds, like Consul.
    pub soa_serial: u32,
}

/// The sections of a response, with its response code.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Answer {
    pub response_code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    /// NXDOMAIN with our SOA in the authority section, for names that do not exist.
    pub(crate) fn name_error(zone: &Zone, question: &Question<'_>) -> Answer {
        Answer {
            response_code: ResponseCode::NXDomain,
            authorities: vec![soa_record(zone, question.soa_serial)],
            ..Answer::default()
        }
    }

    /// NODATA (RFC 2308 section 2.2): the name exists, but has no record of the asked type.
    pub(crate) fn no_data(zone: &Zone, question: &Question<'_>) -> Answer {
        Answer {
            response_code: ResponseCode::NoError,
            authorities: vec![soa_record(zone, question.soa_serial)],
            ..Answer::default()
        }
    }

    /// `self` if it has answers, else NODATA.
    pub(crate) fn or_no_data(self, zone: &Zone, question: &Question<'_>) -> Answer {
        if self.answers.is_empty() {
            Answer::no_data(zone, question)
        } else {
            self
        }
    }

    /// Adds an additional record unless an identical one is already there.
    fn push_additional_once(&mut self, record: Record) {
        if !self.additionals.contains(&record) {
            self.additionals.push(record);
        }
    }
}

/// Answers a service question. `service` is the (lower-case) service name, which picks the
/// TTL; `instances` is the catalog's answer: `None` = no such service. `tag` filters
/// case-insensitively, like Consul's catalog.
pub(crate) fn service_answer(
    zone: &Zone,
    question: &Question<'_>,
    service: &str,
    tag: Option<&str>,
    instances: Option<&[DnsInstance]>,
    rng: &mut impl Rng,
) -> Answer {
    let Some(instances) = instances else {
        return Answer::name_error(zone, question);
    };
    let mut selected: Vec<&DnsInstance> = instances
        .iter()
        .filter(|instance| zone.admits(instance.health))
        .filter(|instance| {
            tag.is_none_or(|tag| {
                instance
                    .tags
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(tag))
            })
        })
        .collect();
    if selected.is_empty() {
        return Answer::name_error(zone, question);
    }
    selected.shuffle(rng);
    let ttl = zone.service_ttl_s(service);
    let answer = match question.record_type {
        RecordType::SRV => srv_records(zone, question, ttl, &selected),
        RecordType::A
        | RecordType::AAAA
        | RecordType::ANY
        | RecordType::TXT
        | RecordType::CNAME => address_records(zone, question, ttl, &selected),
        _ => Answer::default(),
    };
    answer.or_no_data(zone, question)
}

/// Answers a prepared-query question (`<name>.query.consul`, `_<name>._tcp.query.consul`):
/// the instances come filtered and ordered by the query's execution, so they are neither
/// filtered by `only_passing` nor shuffled again here (Consul's `handlePreparedQuery`). No
/// query, or no instance, is NXDOMAIN. The TTL is the query's `DNS.TTL`, else the service TTL
/// of the service it selected.
pub(crate) fn prepared_query_answer(zone: &Zone, question: &Question<'_>, result: Option<&DnsQueryResult>) -> Answer {
    let Some(result) = result.filter(|result| !result.instances.is_empty()) else {
        return Answer::name_error(zone, question);
    };
    let ttl = result.ttl_s.unwrap_or_else(|| zone.service_ttl_s(&result.service));
    let selected: Vec<&DnsInstance> = result.instances.iter().collect();
    let answer = match question.record_type {
        RecordType::SRV => srv_records(zone, question, ttl, &selected),
        RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT | RecordType::CNAME => {
            address_records(zone, question, ttl, &selected)
        }
        _ => Answer::default(),
    };
    answer.or_no_data(zone, question)
}

/// Where an instance is reached, as Consul decides it: its service address, else its node's;
/// a service address that is the question name itself stands for the node's IP.
fn instance_address(instance: &DnsInstance, question: &Question<'_>) -> Address {
    let node_address = Address::parse(&instance.node.address);
    match Address::parse(&instance.service_address) {
        Address::Empty => node_address,
        Address::Host(host) if &host == question.name => match node_address {
            Address::Ip(ip) => Address::Ip(ip),
            _ => Address::Host(host),
        },
        service_address => service_address,
    }
}

/// One address record per distinct address, in the (shuffled) order of `instances`, or the
/// first CNAME when no instance has an address of the asked family.
fn address_records(
    zone: &Zone,
    question: &Question<'_>,
    ttl: u32,
    instances: &[&DnsInstance],
) -> Answer {
    let mut answer = Answer::default();
    let mut seen = HashSet::new();
    let mut first_cname = None;
    for instance in instances {
        match instance_address(instance, question) {
            Address::Ip(ip) => {
                if !family_wanted(question.record_type, ip) || !seen.insert(ip) {
                    continue;
                }
                answer
                    .answers
                    .push(address_record(question.name.clone(), ttl, ip));
                if answer.answers.len() == zone.a_record_limit
                    || answer.answers.len() >= DNS_ANSWER_RECORDS_MAX
                {
                    break;
                }
            }
            Address::Host(host) if first_cname.is_none() => {
                first_cname = Some(cname_record(question.name.clone(), ttl, host));
            }
            _ => {}
        }
    }
    if answer.answers.is_empty() {
        answer.answers.extend(first_cname);
    }
    answer
}

/// Where an SRV record points and the address record that goes with it, if any.
struct SrvTarget {
    target: Name,
    glue: Option<Record>,
    /// Owner of the node's metadata TXT records: the node name, or the question name when the
    /// target is a host name (Consul's rule).
    meta_owner: Name,
}

fn srv_target(
    zone: &Zone,
    question: &Question<'_>,
    ttl: u32,
    instance: &DnsInstance,
) -> Option<SrvTarget> {
    let node_name = zone.node_name(&instance.node.name)?;
    let node_address = Address::parse(&instance.node.address);
    let on_node = |ip| SrvTarget {
        target: node_name.clone(),
        glue: Some(address_record(node_name.clone(), ttl, ip)),
        meta_owner: node_name.clone(),
    };
    let on_host = |host: Name| SrvTarget {
        target: host,
        glue: None,
        meta_owner: question.name.clone(),
    };
    match (instance_address(instance, question), node_address.ip()) {
        (Address::Ip(ip), Some(node_ip)) if ip == node_ip => Some(on_node(ip)),
        (Address::Ip(ip), _) if !instance.service_address.trim().is_empty() => {
            let addr_name = zone.addr_name(ip)?;
            Some(SrvTarget {
                glue: Some(address_record(addr_name.clone(), ttl, ip)),
                target: addr_name,
                meta_owner: node_name.clone(),
            })
        }
        (Address::Ip(ip), _) => Some(on_node(ip)),
        (Address::Host(host), _) => Some(on_host(host)),
        (Address::Empty | Address::Unusable, _) => None,
    }
}

/// SRV records, each with its target's address in the additional section, plus the nodes'
/// metadata as TXT records.
fn srv_records(
    zone: &Zone,
    question: &Question<'_>,
    ttl: u32,
    instances: &[&DnsInstance],
) -> Answer {
    let mut answer = Answer::default();
    // Consul's de-duplication key: the same node, address and port is one endpoint.
    let mut seen = HashSet::new();
    for instance in instances {
        if answer.answers.len() >= DNS_SRV_RECORDS_MAX {
            break;
        }
        let key = (
            &instance.node.name,
            &instance.service_address,
            instance.port,
        );
        if !seen.insert(key) {
            continue;
        }
        let Some(target) = srv_target(zone, question, ttl, instance) else {
            continue;
        };
        let weight = match instance.health {
            DnsHealth::Warning => instance.weight_warning,
            DnsHealth::Passing | DnsHealth::Critical => instance.weight_passing,
        };
        let srv = SRV::new(SRV_PRIORITY, weight, instance.port, target.target);
        answer.answers.push(Record::from_rdata(
            question.name.clone(),
            ttl,
            RData::SRV(srv),
        ));
        answer.additionals.extend(target.glue);
        for txt in meta_txt_records(&target.meta_owner, ttl, &instance.node.meta) {
            answer.push_additional_once(txt);
        }
    }
    answer
}

/// Consul's limit for UDP answers without EDNS: keeps the first `limit` answers and only the
/// additional records that belong to a kept SRV record. Returns whether anything was cut.
pub(crate) fn limit_answers(answer: &mut Answer, limit: usize) -> bool {
    if answer.answers.len() <= limit {
        return false;
    }
    answer.answers.truncate(limit);
    retain_glue_of_answers(answer);
    true
}

/// Keeps, for every SRV record in the answer section, one additional record of each kind
/// (address, TXT) owned by its target, in order; drops the rest. Other answers keep every
/// additional record whose owner they name.
pub(crate) fn retain_glue_of_answers(answer: &mut Answer) {
    // How many address records each target name may keep: one per SRV record naming it.
    let mut glue_wanted: Vec<(&Name, usize)> = Vec::new();
    for record in &answer.answers {
        if let RData::SRV(srv) = &record.data {
            match glue_wanted
                .iter_mut()
                .find(|(target, _)| *target == &srv.target)
            {
                Some((_, count)) => *count += 1,
                None => glue_wanted.push((&srv.target, 1)),
            }
        }
    }
    let owners: Vec<&Name> = answer.answers.iter().map(|record| &record.name).collect();
    let mut kept = Vec::with_capacity(answer.additionals.len());
    for record in answer.additionals.drain(..) {
        let is_address = matches!(record.record_type(), RecordType::A | RecordType::AAAA);
        let slot = glue_wanted
            .iter_mut()
            .find(|(target, _)| *target == &record.name);
        let keep = match slot {
            Some((_, count)) if is_address && *count > 0 => {
                *count -= 1;
                true
            }
            Some(_) => !is_address,
            None => owners.contains(&&record.name),
        };
        if keep {
            kept.push(record);
        }
    }
    answer.additionals = kept;
}

/// True for an answer with records whose every name is in our zones: no CNAME to a host name
/// and no SRV target outside them, so nothing in it would be resolved through the recursors
/// and it may be shared while the catalog holds (`answer_cache`).
pub(crate) fn depends_on_catalog_only(answer: &Answer, is_ours: impl Fn(&Name) -> bool) -> bool {
    answer.response_code == ResponseCode::NoError
        && !answer.answers.is_empty()
        && answer.answers.iter().all(|record| match &record.data {
            RData::CNAME(_) => false,
            RData::SRV(srv) => is_ours(&srv.target),
            _ => true,
        })
}
