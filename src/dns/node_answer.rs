//! Answer building for everything but services: nodes, `<hex>.addr` names, PTR questions and
//! the SOA and NS records of the zone.
//!
//! Pure, like `answer`. The rules are those of Consul's DNS server:
//! - a node whose address is an IP answers A/AAAA with it (and its metadata as TXT); a node
//!   whose address is a host name answers a CNAME to it (Consul's `makeRecordFromFQDN`),
//!   followed by what the recursors resolve it to when there are any (`recursor`);
//! - PTR (`in-addr.arpa`, `ip6.arpa`): the node with that address, as
//!   `<node>.node.<dc>.<domain>`, else a service instance registered with that address, as
//!   `<service>.service.<dc>.<domain>`; always in the primary domain, with TTL 0 (Consul's
//!   `FetchRecordsByIp`); an address nobody has is NXDOMAIN, or asked of the recursors when
//!   there are any (the handler decides; Consul's `handlePtr`);
//! - SOA and NS questions are answered for every name in the domain, whatever the name, as
//!   Consul does (its router sends every SOA and NS question to the list of servers). The
//!   records are owned by the domain itself, so a validating resolver may discard those
//!   asked below the apex; Consul hands them out all the same.

use std::net::IpAddr;

use hickory_server::proto::rr::rdata::{NS, PTR};
use hickory_server::proto::rr::{RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;

use super::answer::{Answer, DNS_ANSWER_RECORDS_MAX, NS_RECORDS_MAX, Question};
use super::records::{
    Address, address_record, cname_record, family_wanted, is_plain_label, meta_txt_records,
};
use super::zone::{Zone, soa_record};
use super::{DnsAddressOwner, DnsNode};

/// TTL of PTR records, in seconds: Consul hard-codes 0 (hashicorp/consul#10577).
const PTR_TTL_S: u32 = 0;

/// Answers a node question. `node` is the catalog's answer: `None` = no such node.
pub(crate) fn node_answer(zone: &Zone, question: &Question<'_>, node: Option<&DnsNode>) -> Answer {
    let Some(node) = node else {
        return Answer::name_error(zone, question);
    };
    let ttl = zone.node_ttl_s;
    let mut answer = Answer::default();
    let address = Address::parse(&node.address);
    if let Address::Host(host) = address {
        // A CNAME owns its name alone (RFC 1034 section 3.6.2): no TXT beside it.
        if matches!(
            question.record_type,
            RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::CNAME
        ) {
            answer
                .answers
                .push(cname_record(question.name.clone(), ttl, host));
        } else if question.record_type == RecordType::TXT {
            answer.answers = meta_txt_records(question.name, ttl, &node.meta);
        }
        return answer.or_no_data(zone, question);
    }
    let ip = address.ip();
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

/// Answers a PTR question (`zone` is the primary zone). `owner` is the catalog's answer for
/// the address: `None` = nobody has it. Other question types on a known address are NODATA:
/// Consul answers a PTR record whatever the type asked, which resolvers then discard.
pub(crate) fn ptr_answer(
    zone: &Zone,
    question: &Question<'_>,
    owner: Option<&DnsAddressOwner>,
) -> Answer {
    let Some(owner) = owner else {
        return Answer::name_error(zone, question);
    };
    let target = match owner {
        DnsAddressOwner::Node(node) => zone.node_name(node),
        DnsAddressOwner::Service(service) => zone.service_name(service),
    };
    let Some(target) = target else {
        return Answer::name_error(zone, question);
    };
    let mut answer = Answer::default();
    if matches!(question.record_type, RecordType::PTR | RecordType::ANY) {
        answer.answers.push(Record::from_rdata(
            question.name.clone(),
            PTR_TTL_S,
            RData::PTR(PTR(target)),
        ));
    }
    answer.or_no_data(zone, question)
}

/// Answers a question for the domain apex, and SOA and NS questions for any name in the
/// domain. `servers` are all server nodes; up to [`NS_RECORDS_MAX`] random ones are named.
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
    answer.answers.truncate(DNS_ANSWER_RECORDS_MAX);
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
        if let Some(ip) = Address::parse(&server.address).ip() {
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
