//! Answer building: turns catalog lookup results into the records of a DNS response.
//!
//! This module is pure: it reads no clock, no socket and no catalog. The SOA serial comes in
//! with the [`Question`], randomness comes in as `&mut impl Rng`, and the instances come from
//! the caller, so every Consul rule below is testable without a server.
//!
//! The rules are those of Consul's `agent/dns.go`:
//! - services: instances whose health is Critical are dropped, and Warning ones too when
//!   `only_passing` is set; a service that is unknown, or whose every instance is filtered out,
//!   is NXDOMAIN. The survivors are shuffled on every answer, so that clients spread load;
//! - A/AAAA/ANY/TXT on a service answer address records named like the question, one per
//!   distinct address (the service address when it is an IP, else the node's), cut at
//!   `a_record_limit`;
//! - SRV answers `1 <weight> <port> <target>`, the target being `<node>.node.<dc>.<domain>`, or
//!   `<hex>.addr.<dc>.<domain>` when the service has its own IP that differs from the node's.
//!   The target's address, and the node's metadata as TXT records, go in the additional section;
//! - a name that exists but has no record of the asked type is NODATA: NOERROR, no answer, and
//!   the SOA in the authority section (RFC 2308), as is every NXDOMAIN.
//!
//! Addresses that are host names rather than IPs are skipped (Consul would answer a CNAME;
//! cairn does not yet). Records whose name cannot be built (a label longer than 63 bytes, a name
//! longer than 255) are skipped rather than failing the whole answer.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;

use super::zone::{Zone, soa_record};
use super::{DnsHealth, DnsInstance, DnsNode};

/// Most records in one section of an answer. Bounds the work and the size of a response for a
/// service with thousands of instances: 256 SRV records with their addresses take about 16 KiB,
/// well inside the 64 KiB a DNS message over TCP can hold.
pub const DNS_ANSWER_RECORDS_MAX: usize = 256;

/// Most NS records in an apex answer. Consul hands out three random servers.
pub const NS_RECORDS_MAX: usize = 3;

/// Longest character-string inside a TXT record, in bytes (RFC 1035 section 3.3).
const TXT_STRING_BYTES_MAX: usize = 255;

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
    fn or_no_data(self, zone: &Zone, question: &Question<'_>) -> Answer {
        if self.answers.is_empty() {
            Answer::no_data(zone, question)
        } else {
            self
        }
    }

    /// Adds an additional record unless it is already there or the section is full.
    fn push_additional(&mut self, record: Record) {
        if self.additionals.len() < DNS_ANSWER_RECORDS_MAX && !self.additionals.contains(&record) {
            self.additionals.push(record);
        }
    }
}

/// Answers a service question. `instances` is the catalog's answer: `None` = no such service.
/// `tag` filters case-insensitively, like Consul's catalog.
pub(crate) fn service_answer(
    zone: &Zone,
    question: &Question<'_>,
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
    let answer = match question.record_type {
        RecordType::SRV => srv_records(zone, question, &selected),
        RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT => {
            address_records(zone, question, &selected)
        }
        _ => Answer::default(),
    };
    answer.or_no_data(zone, question)
}

/// One address record per distinct address, in the (shuffled) order of `instances`.
fn address_records(zone: &Zone, question: &Question<'_>, instances: &[&DnsInstance]) -> Answer {
    let mut answer = Answer::default();
    let mut seen = HashSet::new();
    for instance in instances {
        let Some(ip) = instance_ip(instance) else {
            continue;
        };
        if !family_wanted(question.record_type, ip) || !seen.insert(ip) {
            continue;
        }
        answer.answers.push(address_record(
            question.name.clone(),
            zone.service_ttl_s,
            ip,
        ));
        if answer.answers.len() == zone.a_record_limit
            || answer.answers.len() >= DNS_ANSWER_RECORDS_MAX
        {
            break;
        }
    }
    answer
}

/// SRV records with their targets' addresses and node metadata in the additional section.
fn srv_records(zone: &Zone, question: &Question<'_>, instances: &[&DnsInstance]) -> Answer {
    let ttl = zone.service_ttl_s;
    let mut answer = Answer::default();
    // Consul's de-duplication key: the same node, address and port is one endpoint.
    let mut seen = HashSet::new();
    for instance in instances {
        if answer.answers.len() >= DNS_ANSWER_RECORDS_MAX {
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
        let Some(node_name) = zone.node_name(&instance.node.name) else {
            continue;
        };
        let node_ip = parse_ip(&instance.node.address);
        let (target, target_ip) = match service_ip(instance) {
            Some(ip) if Some(ip) != node_ip => match zone.addr_name(ip) {
                Some(addr_name) => (addr_name, Some(ip)),
                None => continue,
            },
            _ => (node_name.clone(), node_ip),
        };
        let weight = match instance.health {
            DnsHealth::Warning => instance.weight_warning,
            DnsHealth::Passing | DnsHealth::Critical => instance.weight_passing,
        };
        let srv = SRV::new(SRV_PRIORITY, weight, instance.port, target.clone());
        answer.answers.push(Record::from_rdata(
            question.name.clone(),
            ttl,
            RData::SRV(srv),
        ));
        if let Some(ip) = target_ip {
            answer.push_additional(address_record(target, ttl, ip));
        }
        for txt in meta_txt_records(&node_name, ttl, &instance.node.meta) {
            answer.push_additional(txt);
        }
    }
    answer
}

/// Answers a node question. `node` is the catalog's answer: `None` = no such node.
pub(crate) fn node_answer(zone: &Zone, question: &Question<'_>, node: Option<&DnsNode>) -> Answer {
    let Some(node) = node else {
        return Answer::name_error(zone, question);
    };
    let ttl = zone.node_ttl_s;
    let ip = parse_ip(&node.address);
    let mut answer = Answer::default();
    let address = |answer: &mut Answer| {
        if let Some(ip) = ip.filter(|ip| family_wanted(question.record_type, *ip)) {
            answer
                .answers
                .push(address_record(question.name.clone(), ttl, ip));
        }
    };
    match question.record_type {
        // Consul's `enable_additional_node_meta_txt` (on by default): metadata rides along.
        RecordType::A | RecordType::AAAA => {
            address(&mut answer);
            if !answer.answers.is_empty() {
                answer.additionals = meta_txt_records(question.name, ttl, &node.meta);
            }
        }
        RecordType::ANY => {
            address(&mut answer);
            answer
                .answers
                .extend(meta_txt_records(question.name, ttl, &node.meta));
        }
        RecordType::TXT => answer.answers = meta_txt_records(question.name, ttl, &node.meta),
        _ => {}
    }
    answer.answers.truncate(DNS_ANSWER_RECORDS_MAX);
    answer.additionals.truncate(DNS_ANSWER_RECORDS_MAX);
    answer.or_no_data(zone, question)
}

/// Answers `<hex>.addr.<domain>`: the address itself, if the question asks for its family.
pub(crate) fn addr_answer(zone: &Zone, question: &Question<'_>, ip: IpAddr) -> Answer {
    let mut answer = Answer::default();
    let answerable = matches!(
        question.record_type,
        RecordType::A | RecordType::AAAA | RecordType::ANY
    );
    if answerable && family_wanted(question.record_type, ip) {
        answer
            .answers
            .push(address_record(question.name.clone(), zone.node_ttl_s, ip));
    }
    answer.or_no_data(zone, question)
}

/// Answers a question for the domain apex: SOA and NS live there, nothing else does.
/// `servers` are all server nodes; up to [`NS_RECORDS_MAX`] random ones are named.
pub(crate) fn apex_answer(
    zone: &Zone,
    question: &Question<'_>,
    servers: &[DnsNode],
    rng: &mut impl Rng,
) -> Answer {
    let soa = || soa_record(zone, question.soa_serial);
    let mut answer = Answer::default();
    match question.record_type {
        RecordType::SOA => {
            let (ns, glue) = name_servers(zone, servers, rng);
            answer.answers.push(soa());
            answer.authorities = ns;
            answer.additionals = glue;
        }
        RecordType::NS => {
            (answer.answers, answer.additionals) = name_servers(zone, servers, rng);
        }
        RecordType::ANY => {
            let (ns, glue) = name_servers(zone, servers, rng);
            answer.answers.push(soa());
            answer.answers.extend(ns);
            answer.additionals = glue;
        }
        _ => {}
    }
    answer.or_no_data(zone, question)
}

/// NS records for up to [`NS_RECORDS_MAX`] random servers, and their glue address records.
/// Like Consul, servers whose name is not a plain DNS label are left out.
fn name_servers(
    zone: &Zone,
    servers: &[DnsNode],
    rng: &mut impl Rng,
) -> (Vec<Record>, Vec<Record>) {
    let mut candidates: Vec<&DnsNode> = servers
        .iter()
        .filter(|server| is_plain_label(&server.name))
        .collect();
    candidates.shuffle(rng);
    let mut ns = Vec::new();
    let mut glue = Vec::new();
    for server in candidates {
        if ns.len() >= NS_RECORDS_MAX {
            break;
        }
        let Some(target) = zone.node_name(&server.name.to_ascii_lowercase()) else {
            continue;
        };
        if let Some(ip) = parse_ip(&server.address) {
            glue.push(address_record(target.clone(), zone.node_ttl_s, ip));
        }
        let record = RData::NS(NS(target));
        ns.push(Record::from_rdata(
            zone.domain.clone(),
            zone.node_ttl_s,
            record,
        ));
    }
    (ns, glue)
}

/// Consul's limit for UDP answers without EDNS: keeps the first `limit` answers and only the
/// additional records that belong to a kept SRV target. Returns whether anything was cut.
pub(crate) fn limit_answers(answer: &mut Answer, limit: usize) -> bool {
    if answer.answers.len() <= limit {
        return false;
    }
    answer.answers.truncate(limit);
    let targets: Vec<&Name> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(&srv.target),
            _ => None,
        })
        .collect();
    answer
        .additionals
        .retain(|record| targets.iter().any(|target| **target == record.name));
    true
}

/// Consul's `enable_additional_node_meta_txt` encoding: one TXT record per metadata entry,
/// `key=value` escaped as in RFC 1464, or the bare value for keys starting with `rfc1035-`.
pub(crate) fn meta_txt_records(
    owner: &Name,
    ttl: u32,
    meta: &BTreeMap<String, String>,
) -> Vec<Record> {
    meta.iter()
        .take(DNS_ANSWER_RECORDS_MAX)
        .map(|(key, value)| {
            let text = if key.to_ascii_lowercase().starts_with("rfc1035-") {
                value.clone()
            } else {
                rfc1464_pair(key, value)
            };
            let mut strings: Vec<&[u8]> = text.as_bytes().chunks(TXT_STRING_BYTES_MAX).collect();
            if strings.is_empty() {
                // A TXT record holds at least one (possibly empty) character-string.
                strings.push(&[]);
            }
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(strings)))
        })
        .collect()
}

/// `key=value` with RFC 1464 quoting: a backquote escapes `` ` ``, `=` and the spaces at either
/// end of the key; only backquotes are escaped in the value.
fn rfc1464_pair(key: &str, value: &str) -> String {
    let leading = key.len() - key.trim_start_matches(' ').len();
    let rest = &key[leading..];
    let core = rest.trim_end_matches(' ');
    let trailing = rest.len() - core.len();
    let core = core.replace('`', "``").replace('=', "`=");
    format!(
        "{}{core}{}={}",
        "` ".repeat(leading),
        "` ".repeat(trailing),
        value.replace('`', "``")
    )
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

/// Parses an address, mapping `::ffff:a.b.c.d` to IPv4 like Go's `To4` does in Consul.
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim()
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The service's own address, when it has one and it is an IP.
fn service_ip(instance: &DnsInstance) -> Option<IpAddr> {
    parse_ip(&instance.service_address)
}

/// The address an instance is reached at: its service address if that is an IP, else the
/// node's address.
fn instance_ip(instance: &DnsInstance) -> Option<IpAddr> {
    service_ip(instance).or_else(|| parse_ip(&instance.node.address))
}

/// A answers carry IPv4, AAAA answers IPv6; ANY, TXT and SRV take either.
fn family_wanted(record_type: RecordType, ip: IpAddr) -> bool {
    match record_type {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        _ => true,
    }
}

/// Consul's check for server names usable in NS records: letters, digits and `-` only.
fn is_plain_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}
